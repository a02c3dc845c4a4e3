"""The tuning pipeline: ingest -> validate -> embed -> tune -> train (best params) -> evaluate -> register.

Reuses the training pipeline's steps; `tune` runs the Optuna study on validation only (resumable
from its RDB storage: `tune.storage`, $OPTUNA_STORAGE_URL, or sqlite under $SCREGNET_HOME) and hands
the config with the best parameters to `train`. Test is touched once, by `evaluate`.
"""

from __future__ import annotations

from pathlib import Path

from zenml import Model, pipeline

from pipelines.training import resolve_dataset_name
from scregnet.config import RunConfig
from scregnet.registry import model_name
from steps.embed.embed import embed
from steps.evaluate.evaluate import evaluate
from steps.ingest.ingest import ingest
from steps.register.register import register
from steps.train.train import train
from steps.tune.tune import link_tuned_run, tune
from steps.validate.validate import validate


@pipeline(enable_cache=False)
def tuning_pipeline(config: RunConfig) -> None:
    expression, priors = ingest(config)
    validate(expression, priors, config)
    gene_embedding = embed(expression, config.embedder, after="validate")
    _, tuned_config, tune_run_id = tune(expression, priors, gene_embedding, config, after="validate")
    model, split, run_id = train(expression, priors, gene_embedding, tuned_config)
    link_tuned_run(tune_run_id, run_id, tuned_config)
    metrics = evaluate(model, split, tuned_config, run_id)
    register(model, split, metrics, tuned_config, run_id)


def run_tuning(config: RunConfig, zenml_config: str | Path | None = None, run_name: str | None = None):
    """Run the tuning pipeline on the active ZenML stack; returns the pipeline run response."""
    import os
    import tempfile

    import yaml

    config = config.model_copy(deep=True)
    config.data.name = resolve_dataset_name(config)
    options: dict = {"model": Model(name=model_name(config.registry.model_prefix, config.data.name),
                                    description="scRegNet TF -> target link predictor")}
    if run_name:
        options["run_name"] = run_name
    tmp = None
    if zenml_config is not None:
        raw = yaml.safe_load(Path(zenml_config).read_text()) or {}
        raw.pop("parameters", None)
        if raw:
            tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
            yaml.safe_dump(raw, tmp)
            tmp.close()
            options["config_path"] = tmp.name
    try:
        return tuning_pipeline.with_options(**options)(config=config)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)
