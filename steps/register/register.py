"""Register the model; move `champion` only if it passes the promotion gate (MLflow + ZenML agree)."""

from __future__ import annotations

from typing import Annotated

from zenml import get_step_context, step

from scregnet import audit, registry
from scregnet.config import RunConfig
from scregnet.serialize import ModelBundle
from scregnet.splits import Split
from scregnet.tracking import signals_deferred, tracker
from steps.common import measured, pipeline_run_name, record


def mirror_to_zenml(promoted: bool) -> None:
    """ZenML Model version stage mirrors the MLflow aliases: production = champion."""
    model = get_step_context().model
    if model is not None:
        model.set_stage("production" if promoted else "staging", force=True)


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
            uri = registry.log_model(mlflow_run_id, model, mlflow)
            zenml_version = str(get_step_context().model.version) if get_step_context().model else ""
            # A kill waits for this block: no version, or a complete one with its run FINISHED.
            with signals_deferred():
                decision = registry.register_and_gate(
                    mlflow_run_id,
                    uri,
                    model,
                    split,
                    config.registry,
                    tracking=mlflow,
                    mirror=mirror_to_zenml,
                    actor=f"{audit.who()} via pipeline run {pipeline_run_name()}",
                    extra_tags={"zenml_model_version": zenml_version},
                )
                mlflow.set_tags(
                    mlflow_run_id,
                    {
                        "registered_model": decision.name,
                        "registered_version": decision.version,
                        "promotion": "promoted" if decision.promoted else "rejected",
                    },
                )
                record(
                    {
                        "mlflow_model": decision.name,
                        "mlflow_version": decision.version,
                        "promoted": decision.promoted,
                        "reason": decision.reason,
                    }
                )
                mlflow.end_run(mlflow_run_id, "FINISHED")
        return decision.as_dict()
