"""The tuning pipeline: ingest -> validate -> embed -> tune -> train (best params) -> evaluate -> register.

Reuses the training pipeline's steps; `tune` runs the Optuna study on validation only (resumable
from its RDB storage: `tune.storage`, $OPTUNA_STORAGE_URL, or sqlite under $SCREGNET_HOME) and hands
the config with the best parameters to `train`. Test is touched once, by `evaluate`.
"""

from __future__ import annotations

from pathlib import Path

from zenml import pipeline

from pipelines.training import run_pipeline, validated_inputs
from scregnet.config import RunConfig
from steps.evaluate.evaluate import evaluate
from steps.evaluate.peers import peers
from steps.register.register import register
from steps.train.train import train
from steps.tune.tune import link_tuned_run, tune


@pipeline(enable_cache=False)
def tuning_pipeline(config: RunConfig) -> None:
    expression, priors, gene_embedding = validated_inputs(config)
    _, tuned_config, tune_run_id = tune(expression, priors, gene_embedding, config, after="validate")
    model, split, run_id = train(expression, priors, gene_embedding, tuned_config)
    link_tuned_run(tune_run_id, run_id, tuned_config)
    peer_scores = peers(expression, priors, gene_embedding, config.peers)
    metrics, _ = evaluate(model, split, tuned_config, run_id, peer_scores)
    register(model, split, metrics, tuned_config, run_id)


def run_tuning(config: RunConfig, zenml_config: str | Path | None = None, run_name: str | None = None):
    """Run the tuning pipeline on the active ZenML stack; returns the pipeline run response."""
    return run_pipeline(tuning_pipeline, config, zenml_config, run_name)
