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
from scregnet.tracking import records
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


def pipeline_run_name(pipeline_fn, config: RunConfig) -> str:
    """`mHSC-L-TFs500 genelink pca s0 2026_05_01 14_03_22_123456` (ZenML fills in `{date}` and `{time}`;
    run names must be unique). Other pipelines than training add their kind (`... tuning ...`)."""
    kind = getattr(pipeline_fn, "name", "training_pipeline").removesuffix("_pipeline")
    return records.run_label(config, config.data.name, None, "" if kind == "training" else kind) + " {date} {time}"


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
    # The RunConfig part of the file is already in `config`; the rest is ZenML's.
    zenml = read_run_config(zenml_config)[1] if zenml_config is not None else {}
    if run_name or not zenml.get("run_name"):  # a run name in the file wins over the default
        options["run_name"] = run_name or pipeline_run_name(pipeline_fn, config)
    if schedule is not None:
        options["schedule"] = schedule
    tmp = None
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
