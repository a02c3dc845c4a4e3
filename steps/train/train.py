"""Split, train (early stopping on validation), and open the run's MLflow record."""

from __future__ import annotations

from typing import Annotated

import anndata as ad
import pandas as pd
from zenml import step

from materializers import ModelBundleMaterializer, SplitMaterializer
from scregnet.config import RunConfig
from scregnet.data import GRNDataset
from scregnet.embeddings import GeneEmbedding
from scregnet.preprocess import run_params
from scregnet.serialize import ModelBundle
from scregnet.splits import Split, make_split
from scregnet.tracking import records, tracker
from scregnet.train import ModelInputs, bundle, fit
from steps.common import measured, pipeline_run_name


@step(enable_cache=False, output_materializers={"model": ModelBundleMaterializer, "split": SplitMaterializer})
def train(
    expression: ad.AnnData, priors: pd.DataFrame, gene_embedding: GeneEmbedding, config: RunConfig
) -> tuple[Annotated[ModelBundle, "model"], Annotated[Split, "split"], Annotated[str, "mlflow_run_id"]]:
    with measured("train"):
        dataset = GRNDataset.from_parts(expression, priors)
        split = make_split(dataset.label_graph(), config.split)
        mlflow = tracker(config)
        run_id = records.start_training_run(
            mlflow, config, dataset, split, **{records.PIPELINE_RUN_TAG: pipeline_run_name()}
        )
        with mlflow.holding(run_id):  # exception: FAILED; SIGTERM/SIGINT: KILLED
            records.log_inputs(mlflow, run_id, gene_embedding, config.data.prior_manifest)
            # What preprocessing resolved (input kind, genes kept, node features), beside the config.
            if info := expression.uns.get("preprocess"):
                mlflow.log_params(run_id, run_params(info))
            inputs = ModelInputs.build(dataset, gene_embedding)
            result = fit(inputs, split, config.model, config.train)
            records.log_training(mlflow, run_id, result, split, inputs, config.train.select_metric)
            model = bundle(
                result, inputs, config.model, dataset=dataset.name, split_sha256=split.hash(), tfs=dataset.tfs
            )
        return model, split, run_id
