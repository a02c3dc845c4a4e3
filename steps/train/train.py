"""Split, train (early stopping on validation), and open the run's MLflow record."""

from __future__ import annotations

import tempfile
from typing import Annotated

import anndata as ad
import pandas as pd
from zenml import step

from materializers import ModelBundleMaterializer, SplitMaterializer
from scregnet import tracking
from scregnet.config import RunConfig
from scregnet.data import GRNDataset
from scregnet.embeddings import GeneEmbedding
from scregnet.plots import training_curves_figure
from scregnet.preprocess import run_params
from scregnet.priors_store import prior_manifest_tags
from scregnet.serialize import ModelBundle
from scregnet.splits import Split, make_split
from scregnet.train import ModelInputs, bundle, fit


def run_tags(config: RunConfig, dataset: GRNDataset) -> dict[str, str]:
    return {
        "dataset": dataset.name,
        "protocol": config.split.protocol,
        "embedder": config.embedder.kind,
        "gnn": config.model.gnn,
        "seed": str(config.train.seed),
        "priors_sha256": dataset.priors_hash(),
        **prior_manifest_tags(config.data.prior_manifest),
    }


@step(enable_cache=False, output_materializers={"model": ModelBundleMaterializer, "split": SplitMaterializer})
def train(
    expression: ad.AnnData, priors: pd.DataFrame, gene_embedding: GeneEmbedding, config: RunConfig
) -> tuple[Annotated[ModelBundle, "model"], Annotated[Split, "split"], Annotated[str, "mlflow_run_id"]]:
    dataset = GRNDataset.from_parts(expression, priors)
    split = make_split(dataset.label_graph(), config.split)
    run_id = tracking.start_run(config, run_tags(config, dataset) | {"split_sha256": split.hash()})
    with tracking.holding_run(run_id, config):  # exception: FAILED; SIGTERM/SIGINT: KILLED
        with tempfile.TemporaryDirectory() as tmp:
            gene_embedding.save(tmp)
            tracking.log_artifacts(run_id, tmp, "embedding", config)
        if config.data.prior_manifest is not None:  # the watcher's record of the prior files
            tracking.with_retries(
                lambda: tracking.client(config).log_artifact(run_id, str(config.data.prior_manifest), "priors"),
                "upload the prior manifest",
            )
        info = expression.uns.get("preprocess")
        if info:  # what preprocessing resolved (input kind, genes kept, node features), beside the config
            from mlflow.entities import Param

            params = [Param(k, v) for k, v in run_params(info).items()]
            tracking.with_retries(
                lambda: tracking.client(config).log_batch(run_id, params=params), "log the preprocessing params"
            )
        inputs = ModelInputs.build(dataset, gene_embedding)
        result = fit(inputs, split, config.model, config.train)
        tracking.log_history(run_id, result.history, config)
        tracking.log_figure(
            run_id,
            training_curves_figure(result.history, config.train.select_metric, result.best_epoch),
            "training_curves.png",
            config,
        )
        tracking.log_metrics(
            run_id,
            {
                "best_epoch": result.best_epoch,
                "train_seconds": result.seconds,
                **{f"split_n_{k}": v for k, v in split.sizes().items()},
                "embedding_coverage": float(inputs.embedding_found.mean())
                if inputs.embedding_found is not None
                else 0.0,
            },
            config,
        )
        model = bundle(result, inputs, config.model, dataset=dataset.name, split_sha256=split.hash(), tfs=dataset.tfs)
    return model, split, run_id
