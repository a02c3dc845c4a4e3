"""Register the model; move `champion` only if it beats the current one (MLflow + ZenML agree)."""

from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, step

from scregnet import audit, registry
from scregnet.config import RunConfig
from scregnet.serialize import ModelBundle
from scregnet.splits import Split
from scregnet.tracking import signals_deferred, tracker
from steps.common import measured, record


def mirror_to_zenml(promoted: bool) -> None:
    """ZenML Model version stage mirrors the MLflow aliases: production = champion."""
    model = get_step_context().model
    if model is not None:
        model.set_stage("production" if promoted else "staging", force=True)


def _pipeline_run_name() -> str:
    try:
        return get_step_context().pipeline_run.name
    except Exception:  # called outside a pipeline (entrypoint tests)
        return "standalone"


@step(enable_cache=False)
def register(
    model: ModelBundle, split: Split, metrics: dict, config: RunConfig, mlflow_run_id: str
) -> Annotated[dict, "promotion"]:
    with measured("register"):
        mlflow = tracker(config)
        with mlflow.holding(mlflow_run_id):  # exception: FAILED; SIGTERM/SIGINT: KILLED
            if not config.registry.enabled:
                mlflow.end_run(mlflow_run_id, "FINISHED")
                return {"registered": False}
            name = registry.model_name(config.registry.model_prefix, model.meta["dataset"])
            uri = registry.log_model(mlflow_run_id, model, mlflow)
            zenml_version = str(get_step_context().model.version) if get_step_context().model else ""
            # A kill waits for this block: no version, or a complete one with its run FINISHED.
            with signals_deferred():
                decision = registry.register(
                    mlflow_run_id,
                    uri,
                    name,
                    model,
                    split,
                    config.registry,
                    tracking=mlflow,
                    extra_tags={"zenml_model_version": zenml_version},
                )
                before = registry.current_champion(name, mlflow)
                registry.apply_promotion(decision, mirror_to_zenml, mlflow)
                audit.record_event(
                    name,
                    "promoted" if decision.promoted else "kept",
                    decision.version,
                    str(before.version) if before is not None else None,
                    decision.version if decision.promoted else (str(before.version) if before is not None else None),
                    decision.reason,
                    decision.numbers,
                    actor=f"{audit.who()} via pipeline run {_pipeline_run_name()}",
                    tracking=mlflow,
                )
                mlflow.set_tags(
                    mlflow_run_id,
                    {
                        "registered_model": name,
                        "registered_version": decision.version,
                        "promotion": "promoted" if decision.promoted else "rejected",
                    },
                )
                record(
                    {
                        "mlflow_model": name,
                        "mlflow_version": decision.version,
                        "promoted": decision.promoted,
                        "reason": decision.reason,
                    }
                )
                mlflow.end_run(mlflow_run_id, "FINISHED")
        return decision.as_dict()
