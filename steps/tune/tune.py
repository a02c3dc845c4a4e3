"""Optuna search on validation (scregnet/tune.py) as a ZenML step; the train step then retrains
with the best parameters and evaluate touches test once.

MLflow: the step opens the pipeline run's umbrella run (`kind=tune`, named after the ZenML run);
every trial is nested under it, the best params are its artifact, and `link_tuned_run` nests the
final training run under it too.
"""

from __future__ import annotations

from typing import Annotated

import anndata as ad
import pandas as pd
from zenml import step

from scregnet.config import RunConfig
from scregnet.data import GRNDataset
from scregnet.embeddings import GeneEmbedding
from scregnet.tracking import tracker
from scregnet.tune import apply_params, study_tags
from scregnet.tune import tune as run_tune
from steps.common import measured, pipeline_run_name, record


@step(enable_cache=False)
def tune(
    expression: ad.AnnData, priors: pd.DataFrame, gene_embedding: GeneEmbedding, config: RunConfig
) -> tuple[Annotated[dict, "best_params"], Annotated[RunConfig, "tuned_config"], Annotated[str, "tune_run_id"]]:
    """Run (or resume) the study; returns the best params, the config with them applied, and the umbrella run id."""
    with measured("tune"):
        dataset = GRNDataset.from_parts(expression, priors)
        if config.data.name:
            dataset.name = config.data.name
        run_name = pipeline_run_name()
        tags = {
            **study_tags(config, dataset, config.tune.study_name or "", None),
            "kind": "tune",
            "zenml_pipeline_run": run_name,
        }
        tags.pop("optuna_storage", None)
        mlflow = tracker(config)
        parent = mlflow.start_run(tags, config.flat(), run_name=f"tune-{run_name}")
        with mlflow.holding(parent):  # exception: FAILED; SIGTERM/SIGINT: KILLED
            result = run_tune(dataset, config, gene_embedding, parent_run_id=parent, retrain=False)
            mlflow.end_run(parent, "FINISHED")
        record(
            {
                "study": result.study_name,
                "best_value": result.best_value,
                "trials": result.counts,
                "study_seconds": result.study_seconds,
                "best_params": result.best_params,
            }
        )
        return result.as_dict(), apply_params(config, result.best_params), parent


@step(enable_cache=False)
def link_tuned_run(tune_run_id: str, mlflow_run_id: str, config: RunConfig) -> None:
    """Nest the final training run under the tuning run and mark it tuned (compare/--tag tuned=true)."""
    tracker(config).set_tags(
        mlflow_run_id, {"mlflow.parentRunId": tune_run_id, "tuned": "true", "tune_parent_run_id": tune_run_id}
    )
