"""One typed configuration object, from YAML to every step.

`RunConfig` is the only place defaults live. Steps and the CLI receive it (or one of its
sections) and never invent constants of their own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Protocol = Literal["genelink", "heldout_tf", "heldout_target", "heldout_both"]
EmbedderKind = Literal["none", "pca", "precomputed", "geneformer"]
GnnKind = Literal["gcn", "sage", "gat"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Section):
    """Where the expression and the priors come from.

    Either `path` (a BEELINE-layout directory) or `h5ad` + `priors`.
    """

    path: Path | None = None
    h5ad: Path | None = None
    priors: list[Path] = Field(default_factory=list)
    name: str | None = None  # dataset name used in the registry; derived from the path if unset
    min_cells: int = 10
    min_genes: int = 20
    # BEELINE directory + `priors`: the priors REPLACE Label.csv's labels instead of adding to
    # them (the S3 watcher trains on the union of the prior files it found, nothing else).
    replace_labels: bool = False
    # JSON manifest of the prior files (keys, ETags, sha256) written by `scregnet watch`;
    # the run is tagged `prior_manifest_sha256` and the manifest is logged as an artifact.
    prior_manifest: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.replace_labels and not self.priors:
            raise ValueError("data: 'replace_labels' needs at least one 'priors' table")
        if self.path is not None and self.h5ad is not None:
            raise ValueError("data: give either 'path' (BEELINE directory) or 'h5ad' (+ 'priors'), not both")
        if self.h5ad is not None and not self.priors:
            raise ValueError("data: 'h5ad' needs at least one 'priors' table (CSV/TSV with tf,target columns)")
        return self


class SplitConfig(_Section):
    protocol: Protocol = "genelink"
    seed: int = 0
    train_frac: float = 0.67
    val_frac: float = 0.10
    # Probability that a TF with a single positive sends it to train (GENELink's rule).
    single_positive_train_prob: float = 0.5
    # Fraction of TFs / targets held out for the held-out protocols.
    heldout_frac: float = 0.2
    # Degree-aware negatives: sample training negatives so target degree is balanced.
    degree_aware_negatives: bool = False
    # Read pre-made split files (Train_set.csv, ...) from this directory instead.
    split_dir: Path | None = None


class GeneformerConfig(_Section):
    model: str | None = None  # local directory or hub id
    dictionaries: Path | None = None  # directory with token/median/mapping dictionaries
    version: Literal["auto", "v1", "v2"] = "auto"
    layer: int = -2  # hidden-state index relative to the end: -1 = last layer, -2 = penultimate
    transform: Literal["none", "counts"] = "none"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Autocast dtype of the fast path. auto: bf16 on CUDA (tensor cores), fp32 on CPU (bf16 pays
    # off only on CPUs with native bf16 matmul: AVX512-BF16 / AMX). The reference path is fp32.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Attention of the fast path. packed: cells concatenated without padding, attention within each
    # cell (flash varlen kernel on CUDA in bf16, per-cell SDPA otherwise); sdpa / eager: padded
    # batches. auto: packed on CUDA when the flash varlen kernel runs (else sdpa), packed on CPU.
    attention: Literal["auto", "packed", "sdpa", "eager"] = "auto"
    batch_size: int | None = None  # None: chosen from free memory
    n_shards: int = 1
    max_cells: int | None = None


class EmbedderConfig(_Section):
    kind: EmbedderKind = "none"
    dim: int = 64  # pca components
    path: Path | None = None  # precomputed table (csv, tsv, parquet, .pt dict, .npy adapters)
    format: Literal["auto", "table", "torch", "scbert", "scfoundation", "ensembl_csv"] = "auto"
    gene_index: Path | None = None  # scFoundation gene order / scBERT gene list / Ensembl mapping
    geneformer: GeneformerConfig = Field(default_factory=GeneformerConfig)


class ModelConfig(_Section):
    gnn: GnnKind = "gcn"
    gnn_dims: list[int] = Field(default_factory=lambda: [128, 64])
    mlp_dims: list[int] = Field(default_factory=lambda: [64])
    dropout: float = 0.2
    gat_heads: int = 2
    gat_concat: bool = False
    gat_negative_slope: float = 0.2
    shared_towers: bool = True  # the paper's TF and target towers share weights
    # Link head input: "concat" = [h_tf, h_target] (the paper; additive in TF and target),
    # "interaction" = [h_tf, h_target, h_tf * h_target] (can score co-regulation of the pair).
    head: Literal["concat", "interaction"] = "concat"
    # "Wide" inputs to the link head: log(TF's training positive rate) and log1p(target's
    # training in-degree), from training labels only. GCN normalisation hides degree, which
    # the label_count baseline exploits; with these the model starts from that prior.
    degree_features: bool = False
    # Fixed offset added to the edge logit: "label_count" = log(TF training positive rate +
    # prior_eps) + log1p(target training in-degree), the no-learning baseline. The network then
    # learns a residual on top of it (head zero-initialised: the untrained model IS the baseline).
    prior: Literal["none", "label_count"] = "label_count"
    prior_eps: float = 1e-6
    # Training pairs see the prior without their own label (as held-out pairs do).
    prior_leave_one_out: bool = True
    # Pearson r and |r| of the pair's expression profiles as two extra inputs of the link head.
    coexpression: bool = True
    use_gnn: bool = True  # ablation: embedding (+ expression) only
    use_embedding: bool = True  # ablation: GNN only


class TrainConfig(_Section):
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    lr: float = 3e-3
    weight_decay: float = 1e-5
    batch_size: int | None = None  # None: every training pair in one step (full batch)
    max_epochs: int = 300
    eval_every: int = 5
    patience: int = 10  # evaluations without validation improvement before stopping
    # "auroc_auprc" = their mean: AUPRC alone can pick a checkpoint that sharpens the top of
    # the ranking while wrecking the rest (seen on mDC, prevalence ~4%).
    select_metric: Literal["auroc", "auprc", "auroc_auprc"] = "auroc_auprc"
    # Evaluate the untrained model too (epoch 0): with a prior that is the baseline itself, so
    # the selected checkpoint is never worse than the prior on validation.
    eval_at_start: bool = True
    # Per epoch, this fraction of training positives is removed from the GNN's message graph and
    # only those (plus all negatives) are supervised; 0 = the paper's full graph for both.
    edge_mask_frac: float = 0.0
    # Weight decay of the link head only (None = weight_decay).
    head_weight_decay: float | None = None
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    # CPU threads for training. These graphs (~1,000 nodes) are too small for intra-op
    # parallelism: measured under load on 2 cores, 1 thread trained mHSC-L in 7.8 s, 2 threads in 90 s.
    threads: int | None = 1


class RegistryConfig(_Section):
    model_prefix: str = "scregnet"
    promotion_metric: Literal["auroc", "auprc"] = "auprc"
    promotion_margin: float = 0.0  # challenger must beat champion by more than this
    enabled: bool = True  # False: train and evaluate only, register nothing


class TrackingConfig(_Section):
    experiment: str = "scregnet"
    tracking_uri: str | None = None  # None: sqlite at $SCREGNET_HOME/mlflow.db


class TuneConfig(_Section):
    """Optuna hyperparameter search (scregnet/tune.py). The space follows the reference code
    (docs/reference-model.md), narrowed where noted for CPU budgets; objective on validation only."""

    n_trials: int = 50  # target number of finished trials in the study (a resumed study runs the rest)
    timeout: float | None = None  # seconds for this worker's optimize() call
    storage: str | None = None  # Optuna RDB URL; None: $OPTUNA_STORAGE_URL or sqlite at $SCREGNET_HOME/optuna.db
    study_name: str | None = None  # None: derived from dataset, protocol, embedder and split seed
    pruner: Literal["median", "hyperband", "none"] = "median"
    sampler_seed: int = 0
    metric: Literal["auroc", "auprc"] = "auprc"  # validation metric to maximise (and to early-stop on)
    max_epochs: int = 100  # per trial (the final retrain uses train.max_epochs)
    patience: int = 4  # evaluations without validation improvement, per trial
    startup_trials: int = 5  # pruner: trials that are never pruned
    warmup_epochs: int = 10  # pruner: epochs before a trial may be pruned
    gnn_kinds: list[GnnKind] = Field(default_factory=lambda: ["gcn", "sage", "gat"])
    max_gnn_layers: int = 3  # reference: 6
    max_mlp_layers: int = 2  # reference: 6
    min_width: int = 4
    max_width: int = 256
    optimizers: list[Literal["adam", "rmsprop", "sgd"]] = Field(default_factory=lambda: ["adam", "rmsprop", "sgd"])
    # None = full batch. The reference range is 32..256 (mini-batches are ~100x slower per epoch here).
    batch_sizes: list[int | None] = Field(default_factory=lambda: [None])
    retrain: bool = True  # retrain with the best params and evaluate once on test


class RunConfig(_Section):
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    # Free-form settings for the orchestrator (read by pipelines/, ignored by the core).
    stack: dict[str, Any] = Field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        """Dotted key -> value, for logging as MLflow params."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = value

        walk("", self.model_dump(mode="json", exclude={"stack"}))
        return out


# Top-level keys of a ZenML run-config YAML (everything ZenML reads besides `parameters`).
ZENML_RUN_KEYS = (
    "settings",
    "steps",
    "enable_cache",
    "enable_artifact_metadata",
    "enable_artifact_visualization",
    "enable_step_logs",
    "enable_pipeline_logs",
    "run_name",
    "schedule",
    "build",
    "model",
    "extra",
    "tags",
    "substitutions",
    "cache_policy",
)


def split_run_config(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run-config mapping -> (the `RunConfig` part, the ZenML part).

    Two shapes are accepted: a ZenML run config, whose `parameters.config` is the RunConfig and
    whose other top-level keys are ZenML's; or a bare RunConfig mapping, where ZenML keys
    (`settings`, `steps`, ...) may stand beside the RunConfig sections. The one place that
    tells them apart: `load_config`, the pipeline launcher and the watcher all call it.
    """
    params = raw.get("parameters")
    if isinstance(params, dict) and "config" in params:
        config = params.get("config") or {}
        zenml = {k: v for k, v in raw.items() if k != "parameters"}
        rest = {k: v for k, v in params.items() if k != "config"}
        if rest:  # other pipeline parameters are ZenML's business
            zenml["parameters"] = rest
        return config, zenml
    return (
        {k: v for k, v in raw.items() if k not in ZENML_RUN_KEYS},
        {k: v for k, v in raw.items() if k in ZENML_RUN_KEYS},
    )


def read_run_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a run-config YAML file and split it (`split_run_config`); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    config, zenml = split_run_config(raw)
    if not isinstance(config, dict):
        raise ValueError(
            f"{path}: parameters.config must be a mapping of RunConfig sections, got {type(config).__name__}"
        )
    return config, zenml


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config and apply dotted-key overrides (`{"train.lr": 1e-3}`).

    Errors name the file and the offending key.
    """
    raw: dict[str, Any] = read_run_config(path)[0] if path is not None else {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    try:
        return RunConfig.model_validate(raw)
    except Exception as exc:  # pydantic's message lists each bad field
        where = f"{path}: " if path is not None else ""
        raise ValueError(f"{where}invalid run config:\n{exc}") from exc
