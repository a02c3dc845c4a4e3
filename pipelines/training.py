"""The training pipeline: ingest -> validate -> preprocess -> embed -> train (and peers) -> evaluate -> register."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import yaml
from zenml import Model, pipeline

from scregnet.config import RunConfig, read_run_config
from scregnet.data import dataset_name_of
from scregnet.registry import model_name
from steps.embed.embed import embed
from steps.embed.shards import add_gene_sums, embed_shard, finalize_embedding
from steps.evaluate.evaluate import evaluate
from steps.evaluate.peers import peers
from steps.ingest.ingest import ingest
from steps.preprocess.preprocess import preprocess
from steps.register.register import register
from steps.train.train import train
from steps.validate.validate import validate


@pipeline(enable_cache=True)
def training_pipeline(config: RunConfig) -> None:
    expression, priors, gene_embedding = validated_inputs(config)
    model, split, run_id = train(expression, priors, gene_embedding, config, after="validate")
    peer_scores = peers(expression, priors, gene_embedding, config.peers)
    metrics, _ = evaluate(model, split, config, run_id, peer_scores)
    register(model, split, metrics, config, run_id)


def validated_inputs(config: RunConfig):
    """ingest -> validate -> preprocess -> embed, shared by the pipelines: (expression, priors,
    gene_embedding), the expression being the preprocessed one (a BEELINE directory's as read).

    Nothing is preprocessed or embedded (and, via `after="validate"` on train, nothing trained)
    until the inputs passed validation.
    """
    expression, priors = ingest(config)
    validate(expression, priors, config)
    expression = preprocess(expression, priors, config, after="validate")
    return expression, priors, embed_genes(expression, config)


def embed_genes(expression, config: RunConfig):
    """One embed step, or a fan-out over cell shards (Geneformer with n_shards > 1).

    Locally the shard steps run one after another; on Kubernetes each is its own (GPU) pod.
    """
    n_shards = config.embedder.geneformer.n_shards if config.embedder.kind == "geneformer" else 1
    if n_shards <= 1:
        return embed(expression, config.embedder, after="validate")
    total = None
    for i in range(n_shards):
        part = embed_shard(expression, config.embedder, shard=i, after="validate")
        total = part if total is None else add_gene_sums(total, part)
    return finalize_embedding(total)


def run_pipeline(
    pipeline_fn, config: RunConfig, zenml_config: str | Path | None = None, run_name: str | None = None, schedule=None
):
    """Run `pipeline_fn(config=...)` on the active ZenML stack; returns the pipeline run response.

    `zenml_config`: a run-config YAML; its `settings`/`steps` go to ZenML, its
    `parameters.config` has already been read into `config` by `load_config`.
    `schedule`: a `zenml.config.schedule.Schedule`; the orchestrator must support schedules
    (the local one refuses them; the Kubernetes one creates a CronJob for a cron expression).
    """
    config = config.model_copy(deep=True)
    config.data.name = dataset_name_of(config.data)
    options: dict = {
        "model": Model(
            name=model_name(config.registry.model_prefix, config.data.name),
            description="scRegNet TF -> target link predictor",
        )
    }
    if run_name:
        options["run_name"] = run_name
    if schedule is not None:
        options["schedule"] = schedule
    tmp = None
    if zenml_config is not None:
        zenml = read_run_config(zenml_config)[1]  # the RunConfig part is already in `config`
        if zenml:
            tmp = tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False)
            yaml.safe_dump(zenml, tmp)
            tmp.close()
            options["config_path"] = tmp.name
    try:
        return pipeline_fn.with_options(**options)(config=config)
    finally:
        if tmp is not None:
            os.unlink(tmp.name)


def run_training(config: RunConfig, zenml_config: str | Path | None = None, run_name: str | None = None, schedule=None):
    """The training pipeline through `run_pipeline`."""
    return run_pipeline(training_pipeline, config, zenml_config, run_name, schedule)
