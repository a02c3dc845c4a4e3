"""One typed configuration object, from YAML to every step.

`RunConfig` is the only place defaults live. Steps and the CLI receive it (or one of its
sections) and never invent constants of their own.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from scregnet.errors import ConfigError

Protocol = Literal["genelink", "heldout_tf", "heldout_target", "heldout_both"]
PeerName = Literal["grnboost2", "genie3", "pearson", "spearman", "embedding_cosine"]
PEERS: tuple[str, ...] = typing.get_args(PeerName)  # scregnet.peers computes them; records names them
EmbedderKind = Literal["none", "pca", "precomputed", "geneformer"]
GnnKind = Literal["gcn", "sage", "gat"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _relation(text: str) -> PydanticCustomError:
    """A rule between fields; `text` names them as `{field}` (or `{section.field}` from `RunConfig`),
    which `describe_validation_error` writes as full key paths (`split.train_frac`)."""
    return PydanticCustomError("config_relation", text.replace("{", "").replace("}", ""), {"text": text})


class DataConfig(_Section):
    """Where the expression and the priors come from.

    Either `path` (a BEELINE-layout directory) or `h5ad` + `priors`.
    """

    path: Path | None = None
    h5ad: Path | None = None
    priors: list[Path] = Field(default_factory=list)
    # How prior files are read (scregnet.priors): auto-detected or forced format; the TF of
    # single-TF files (ChIP-Atlas) when neither header nor file name gives it; pairs with a
    # score below `prior_min_score` dropped.
    prior_format: Literal["auto", "pairs", "gmt", "chip-atlas"] = "auto"
    prior_tf: str | None = None
    prior_min_score: float | None = Field(None, allow_inf_nan=False)
    # var column with gene symbols (h5ad whose var_names are Ensembl IDs; scregnet.genes).
    gene_symbols: str | None = None
    name: str | None = None  # dataset name used in the registry; derived from the path if unset
    min_cells: int = Field(10, ge=1)
    min_genes: int = Field(20, ge=1)
    # Expression sanity (scregnet.validation): more cells / genes without a single non-zero value
    # than these fractions is an error (a raw droplet matrix, a wrong gene subset); fewer, a warning.
    max_empty_cell_frac: float = Field(0.5, ge=0, le=1)
    max_empty_gene_frac: float = Field(0.95, ge=0, le=1)
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
            raise ValueError(
                "data: 'h5ad' needs at least one 'priors' file (CSV/TSV with tf,target columns, GMT or ChIP-Atlas)"
            )
        return self


class PreprocessConfig(_Section):
    """scanpy preprocessing of a lab's AnnData (scregnet/preprocess.py), between validate and embed.

    BEELINE directories are already gene-selected and log-normalised: with `mode: auto` they pass
    through unchanged, so every BEELINE number stays reproducible.
    """

    # auto: preprocess .h5ad inputs, pass BEELINE directories through; always / never: override.
    mode: Literal["auto", "always", "never"] = "auto"
    # What X holds. auto: integer-valued stored values (sampled) = raw counts, else log-normalised.
    input: Literal["auto", "counts", "log"] = "auto"
    min_genes_per_cell: int = Field(200, ge=0)  # sc.pp.filter_cells(min_genes=...)
    min_cells_per_gene: int = Field(3, ge=0)  # sc.pp.filter_genes(min_cells=...)
    max_pct_mt: float | None = Field(None, gt=0, le=100)  # cells above this % of MT-/mt- counts are dropped
    target_sum: float = Field(1e4, gt=0)  # sc.pp.normalize_total, counts input only
    # Every expressed prior TF plus this many most variable other genes (BEELINE's "TFs+1000");
    # "all" keeps every gene that passed the filters.
    n_top_genes: Annotated[int, Field(ge=0)] | Literal["all"] = 1000
    # seurat: dispersions of the log-normalised data (runs on the pinned stack); seurat_v3 ranks
    # counts and needs the scikit-misc package; cell_ranger: seurat's binning by quantiles.
    hvg_flavor: Literal["seurat", "seurat_v3", "cell_ranger"] = "seurat"
    # Node features of the GNN (and the model's co-expression input). cells: each gene's
    # expression over the cells; metacells: its mean over `n_metacells` k-means clusters of the
    # cells' PCA, so the width stops growing with the cells; auto: cells up to `auto_max_cells`.
    cell_features: Literal["auto", "cells", "metacells"] = "auto"
    auto_max_cells: int = Field(2000, ge=1)
    n_metacells: int = Field(500, ge=2)
    n_pcs: int = Field(50, ge=2)  # cell PCA (arpack, sparse) that the metacells cluster on
    sample_values: int = Field(100_000, ge=100)  # stored values sampled to detect counts
    seed: int = Field(0, ge=0)


class SplitConfig(_Section):
    """How (TF, target) pairs are cut into train / validation / test (scregnet.splits)."""

    protocol: Protocol = "genelink"
    seed: int = Field(0, ge=0)
    train_frac: float = Field(0.67, gt=0, lt=1)
    val_frac: float = Field(0.10, gt=0, lt=1)
    # Probability that a TF with a single positive sends it to train (GENELink's rule).
    single_positive_train_prob: float = Field(0.5, ge=0, le=1)
    # Fraction of TFs / targets held out for the held-out protocols.
    heldout_frac: float = Field(0.2, gt=0, lt=1)
    # Degree-aware negatives: sample training negatives so target degree is balanced.
    degree_aware_negatives: bool = False
    # Read pre-made split files (Train_set.csv, ...) from this directory instead.
    split_dir: Path | None = None

    @model_validator(mode="after")
    def _parts_not_empty(self) -> SplitConfig:
        if self.split_dir is not None:  # pre-made split files: the fractions are not used
            return self
        if self.protocol == "genelink" and self.train_frac + self.val_frac >= 1:
            raise _relation(
                f"{{train_frac}} + {{val_frac}} = {self.train_frac:g} + {self.val_frac:g} = "
                f"{self.train_frac + self.val_frac:g}: must be < 1 (the rest is the test part, which would be empty)"
            )
        if self.protocol != "genelink" and self.heldout_frac + self.val_frac >= 1:
            raise _relation(
                f"{{heldout_frac}} + {{val_frac}} = {self.heldout_frac:g} + {self.val_frac:g} = "
                f"{self.heldout_frac + self.val_frac:g}: must be < 1 (the rest is the training part, which would be empty)"
            )
        return self


class GeneformerConfig(_Section):
    """Geneformer checkpoint, dictionaries and extraction settings (docs/geneformer.md)."""

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
    batch_size: int | None = Field(None, ge=1)  # None: chosen from free memory
    n_shards: int = Field(1, ge=1)
    max_cells: int | None = Field(None, ge=1)


class EmbedderConfig(_Section):
    """Which gene embedding joins the GNN output (none, pca, precomputed file, geneformer)."""

    kind: EmbedderKind = "none"
    dim: int = Field(64, ge=1)  # pca components
    path: Path | None = None  # precomputed table (csv, tsv, parquet, .pt dict, .npy adapters)
    format: Literal["auto", "table", "torch", "scbert", "scfoundation", "ensembl_csv"] = "auto"
    gene_index: Path | None = None  # scFoundation gene order / scBERT gene list / Ensembl mapping
    geneformer: GeneformerConfig = Field(default_factory=GeneformerConfig)


class ModelConfig(_Section):
    """The scRegNet architecture: GNN, towers, link head and the label_count prior."""

    gnn: GnnKind = "gcn"
    gnn_dims: list[PositiveInt] = Field(default_factory=lambda: [128, 64], min_length=1)
    mlp_dims: list[PositiveInt] = Field(default_factory=lambda: [64], min_length=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    gat_heads: int = Field(2, ge=1)
    gat_concat: bool = False
    gat_negative_slope: float = Field(0.2, ge=0, allow_inf_nan=False)
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
    prior_eps: float = Field(1e-6, gt=0, allow_inf_nan=False)
    # Training pairs see the prior without their own label (as held-out pairs do).
    prior_leave_one_out: bool = True
    # Pearson r and |r| of the pair's expression profiles as two extra inputs of the link head.
    coexpression: bool = True
    # Start the head's r and |r| weights (and its bias) at a logistic regression of the training
    # labels on (r, |r|) with the prior as offset, instead of at zero: the untrained model is then
    # label_count + co-expression, and selection on validation keeps it if training does not beat
    # it. Off by default until the BEELINE tables are rerun with it (benchmarks/lab_coexpression.py).
    coexpression_init: bool = False
    use_gnn: bool = True  # ablation: embedding (+ expression) only
    use_embedding: bool = True  # ablation: GNN only

    @model_validator(mode="after")
    def _coexpression_init_needs(self) -> ModelConfig:
        if self.coexpression_init and (not self.coexpression or self.prior == "none"):
            raise _relation(
                f"{{coexpression_init}} needs {{coexpression}}: true and {{prior}}: label_count "
                f"(got coexpression {self.coexpression}, prior {self.prior}): it starts the zero-initialised "
                "head's r and |r| weights"
            )
        return self


class TrainConfig(_Section):
    """Optimiser, epochs, early stopping and checkpoint selection (validation only)."""

    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    lr: float = Field(3e-3, gt=0, allow_inf_nan=False)
    weight_decay: float = Field(1e-5, ge=0, allow_inf_nan=False)
    batch_size: int | None = Field(None, ge=1)  # None: every training pair in one step (full batch)
    max_epochs: int = Field(300, ge=1)
    eval_every: int = Field(5, ge=1)  # the last epoch is always evaluated too
    patience: int = Field(10, ge=1)  # evaluations without validation improvement before stopping
    # "auroc_auprc" = their mean: AUPRC alone can pick a checkpoint that sharpens the top of
    # the ranking while wrecking the rest (seen on mDC, prevalence ~4%).
    select_metric: Literal["auroc", "auprc", "auroc_auprc"] = "auroc_auprc"
    # Evaluate the untrained model too (epoch 0): with a prior that is the baseline itself, so
    # the selected checkpoint is never worse than the prior on validation.
    eval_at_start: bool = True
    # Per epoch, this fraction of training positives is removed from the GNN's message graph and
    # only those (plus all negatives) are supervised; 0 = the paper's full graph for both.
    edge_mask_frac: float = Field(0.0, ge=0, lt=1)
    # Weight decay of the link head only (None = weight_decay).
    head_weight_decay: float | None = Field(None, ge=0, allow_inf_nan=False)
    seed: int = Field(0, ge=0)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    # CPU threads for training. These graphs (~1,000 nodes) are too small for intra-op
    # parallelism: measured under load on 2 cores, 1 thread trained mHSC-L in 7.8 s, 2 threads in 90 s.
    threads: int | None = Field(1, ge=1)


class RegistryConfig(_Section):
    """Model registry: name prefix and the promotion gate."""

    model_prefix: str = "scregnet"
    promotion_metric: Literal["auroc", "auprc"] = "auprc"
    promotion_margin: float = Field(0.0, ge=0, lt=1)  # challenger must beat champion by more than this
    enabled: bool = True  # False: train and evaluate only, register nothing
    # Fair champion comparison (scregnet/promotion.py): both models are scored only on the
    # challenger's test pairs that the champion neither trained nor selected a checkpoint on.
    # Below these sizes the set cannot decide: the champion stays. 20 positives keep the AUPRC
    # standard error near 0.05; 3 TFs, because pairs of one TF are not independent.
    fair_min_pairs: int = Field(100, ge=1)
    fair_min_positives: int = Field(20, ge=1)
    fair_min_tfs: int = Field(3, ge=1)
    # Gate against the no-learning baselines, on the challenger's own test part: the lower bound
    # of the paired bootstrap interval (over TFs) of per-TF AUROC (model - baseline) must exceed
    # baseline_margin for EVERY baseline. 0.0 = "better than no learning, with 95 % confidence".
    baseline_gate: bool = True
    baseline_margin: float = Field(0.0, gt=-1, lt=1, allow_inf_nan=False)
    baseline_min_tfs: int = Field(3, ge=1)  # fewer test TFs with both classes: no interval, not promoted
    bootstrap_samples: int = Field(2000, ge=1)
    bootstrap_level: float = Field(0.95, gt=0, lt=1)
    bootstrap_seed: int = Field(0, ge=0)

    def bootstrap(self) -> dict[str, float | int]:
        """The paired bootstrap's settings as keyword arguments (`n_boot`, `seed`, `level`)."""
        return {"n_boot": self.bootstrap_samples, "seed": self.bootstrap_seed, "level": self.bootstrap_level}


class PeerConfig(_Section):
    """What a lab would run instead of the model (scregnet/peers.py): unsupervised scores of
    every (TF, gene) pair from the expression alone, or from a gene embedding."""

    peers: list[PeerName] = Field(default_factory=lambda: ["grnboost2", "pearson", "spearman", "embedding_cosine"])
    # GRNBoost2 as arboreto runs it (SCENIC's default): stochastic gradient boosting per target
    # gene on the regulators' expression, stopped when the mean out-of-bag improvement over the
    # last `early_stop_window` trees turns negative; importance x number of trees.
    gb_learning_rate: float = Field(0.01, gt=0, le=1)
    gb_max_estimators: int = Field(5000, ge=1)
    gb_max_features: float = Field(0.1, gt=0, le=1)
    gb_subsample: float = Field(0.9, gt=0, le=1)
    gb_early_stop_window: int = Field(25, ge=1)
    # GENIE3 (Huynh-Thu et al. 2010): a random forest per target gene, importance normalised
    # per target, 1,000 trees as in the paper (~0.3-2 s per target gene on one core: opt-in).
    rf_n_estimators: int = Field(1000, ge=1)
    rf_max_features: Literal["sqrt", "all"] = "sqrt"
    # Tree peers cost ~cells x genes (one regression per gene): beyond `max_cells` cells a seeded
    # random subset is used (every BEELINE dataset has fewer), and beyond `tree_max_genes` genes
    # they are left out with a logged reason (GRNBoost2 on 30,000 genes takes hours on 2 cores).
    max_cells: int | None = Field(1000, ge=1)
    tree_max_genes: int = Field(5000, ge=1)
    seed: int = Field(0, ge=0)
    n_jobs: int = Field(1, ge=1)  # worker processes for the tree peers (results do not depend on it)
    cache: bool = True  # score matrices under $SCREGNET_HOME/peers/, keyed by expression content


class TrackingConfig(_Section):
    """MLflow tracking server and experiment."""

    experiment: str = "scregnet"
    tracking_uri: str | None = None  # None: sqlite at $SCREGNET_HOME/mlflow.db


class TuneConfig(_Section):
    """Optuna hyperparameter search (scregnet/tune.py). The space follows the reference code
    (docs/reference-model.md), narrowed where noted for CPU budgets; objective on validation only."""

    n_trials: int = Field(50, ge=1)  # target number of finished trials in the study (a resumed study runs the rest)
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False)  # seconds for this worker's optimize() call
    storage: str | None = None  # Optuna RDB URL; None: $OPTUNA_STORAGE_URL or sqlite at $SCREGNET_HOME/optuna.db
    study_name: str | None = None  # None: derived from dataset, protocol, embedder and split seed
    pruner: Literal["median", "hyperband", "none"] = "median"
    sampler_seed: int = Field(0, ge=0)
    metric: Literal["auroc", "auprc"] = "auprc"  # validation metric to maximise (and to early-stop on)
    max_epochs: int = Field(100, ge=1)  # per trial (the final retrain uses train.max_epochs)
    patience: int = Field(4, ge=1)  # evaluations without validation improvement, per trial
    startup_trials: int = Field(5, ge=0)  # pruner: trials that are never pruned
    warmup_epochs: int = Field(10, ge=0)  # pruner: epochs before a trial may be pruned
    gnn_kinds: list[GnnKind] = Field(default_factory=lambda: ["gcn", "sage", "gat"], min_length=1)
    max_gnn_layers: int = Field(3, ge=1)  # reference: 6
    max_mlp_layers: int = Field(2, ge=1)  # reference: 6
    min_width: int = Field(4, ge=1)
    max_width: int = Field(256, ge=1)
    optimizers: list[Literal["adam", "rmsprop", "sgd"]] = Field(
        default_factory=lambda: ["adam", "rmsprop", "sgd"], min_length=1
    )
    # None = full batch. The reference range is 32..256 (mini-batches are ~100x slower per epoch here).
    batch_sizes: list[PositiveInt | None] = Field(default_factory=lambda: [None], min_length=1)
    retrain: bool = True  # retrain with the best params and evaluate once on test

    @model_validator(mode="after")
    def _widths(self) -> TuneConfig:
        if self.min_width > self.max_width:
            raise _relation(
                f"{{min_width}} = {self.min_width} > {{max_width}} = {self.max_width}: must be <= {{max_width}}"
            )
        return self


class RunConfig(_Section):
    """Everything one run needs, from YAML to every step."""

    data: DataConfig = Field(default_factory=DataConfig)
    preprocess: PreprocessConfig = Field(default_factory=PreprocessConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    embedder: EmbedderConfig = Field(default_factory=EmbedderConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    peers: PeerConfig = Field(default_factory=PeerConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    # Free-form settings for the orchestrator (read by pipelines/, ignored by the core).
    stack: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _hyperband_budget(self) -> RunConfig:
        # Hyperband's smallest budget is the first evaluation (or the warm-up); it must fit in a trial.
        low = max(self.train.eval_every, self.tune.warmup_epochs)
        if self.tune.pruner == "hyperband" and low > self.tune.max_epochs:
            raise _relation(
                f"{{tune.max_epochs}} = {self.tune.max_epochs}: must be >= max({{train.eval_every}}, "
                f"{{tune.warmup_epochs}}) = {low} with the hyperband pruner"
            )
        return self

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
    zenml_keys = [k for k in raw if k in ZENML_RUN_KEYS and not (k == "model" and _is_model_section(raw[k]))]
    return (
        {k: v for k, v in raw.items() if k not in zenml_keys},
        {k: v for k, v in raw.items() if k in zenml_keys},
    )


def _is_model_section(value: Any) -> bool:
    """A bare config's `model:` is RunConfig's `ModelConfig` (gnn, gnn_dims, ...) unless it is ZenML's
    Model (a mapping with its required `name`); a typo then gets "unknown key", not a ZenML error."""
    return not (isinstance(value, dict) and "name" in value)


def read_run_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a run-config YAML file and split it (`split_run_config`); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    params = raw.get("parameters", {})
    sections = ", ".join(RunConfig.model_fields)
    if not isinstance(params, dict) or (params and "config" not in params):
        raise ConfigError(f"{path}: parameters: expected a mapping with a 'config' key holding the run config")
    if "config" in params and not isinstance(params["config"], dict):
        got = "empty" if params["config"] is None else f"a {type(params['config']).__name__}"
        raise ConfigError(f"{path}: parameters.config is {got}; expected a mapping of run-config sections ({sections})")
    return split_run_config(raw)


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _section_of(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The model class at `loc` under `root` (None when `loc` leaves the models)."""
    model: Any = root
    for part in loc:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        model = next(
            (
                a
                for a in (field.annotation, *typing.get_args(field.annotation))
                if isinstance(a, type) and issubclass(a, BaseModel)
            ),
            None,
        )
        if model is None:
            return None
    return model


def _path_to(root: type[BaseModel], target: type[BaseModel], prefix: str = "") -> str | None:
    """Dotted key path of section class `target` inside `root` (`GeneformerConfig` -> embedder.geneformer)."""
    for name in root.model_fields:
        section = _section_of(root, (name,))
        if section is None:
            continue
        path = f"{prefix}.{name}" if prefix else name
        if section is target:
            return path
        found = _path_to(section, target, path)
        if found:
            return found
    return None


def _allowed_range(root: type[BaseModel], loc: tuple) -> str | None:
    """`> 0 (finite)`, `in [0, 1)`, ... from the field's constraints; None when it has none."""
    section = _section_of(root, loc[:-1])
    field = section.model_fields.get(loc[-1]) if section is not None and isinstance(loc[-1], str) else None
    if field is None:
        return None
    low = high = None
    finite = False
    for m in field.metadata:
        for attr, side in (("gt", "("), ("ge", "["), ("lt", ")"), ("le", "]")):
            value = getattr(m, attr, None)
            if value is not None:
                if side in "([":
                    low = (side, value)
                else:
                    high = (side, value)
        finite = finite or getattr(m, "allow_inf_nan", None) is False
    if low and high:
        text = f"in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    elif low:
        text = f"{'>' if low[0] == '(' else '>='} {low[1]:g}"
    elif high:
        text = f"{'<' if high[0] == ')' else '<='} {high[1]:g}"
    else:
        text = "a finite number" if finite else None
        return text
    integer = field.annotation in (int, int | None)
    return f"{'an integer ' if integer else ''}{text}" + (" (finite)" if finite and not (low and high) else "")


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def describe_validation_error(exc: ValidationError, root: type[BaseModel] | None = None, prefix: str = "") -> list[str]:
    """One line per error of a RunConfig (or section) validation: `key.path = value: must be ...`.

    `root` is the validated model class (default `RunConfig`); `prefix` the key path of `root`
    (e.g. "data" when a `DataConfig` was validated alone).
    """
    root = root or RunConfig
    if root is not RunConfig and not prefix:  # e.g. a DataConfig built alone: keys read `data.min_cells`
        prefix = _path_to(RunConfig, root) or ""
    lines: list[str] = []
    alternatives: dict[str, tuple[int, Any, list[str]]] = {}  # path -> (line, value, messages)
    for err in exc.errors():
        loc = _without_tags(root, tuple(err.get("loc", ())))
        path = _dotted(((prefix,) if prefix else ()) + loc) or "(top level)"
        kind, msg, value = err["type"], err.get("msg", ""), err.get("input")
        ctx = err.get("ctx") or {}
        if kind == "config_relation":
            base = _dotted(((prefix,) if prefix else ()) + loc)
            text = ctx.get("text", msg)
            lines.append(re.sub(r"\{([\w.]+)\}", lambda m, base=base: f"{base}.{m[1]}" if base else m[1], text))
            continue
        if kind == "extra_forbidden":
            section = _section_of(root, loc[:-1])
            allowed = f"; expected one of: {', '.join(section.model_fields)}" if section is not None else ""
            lines.append(f"{path}: unknown key{allowed}")
            continue
        if kind == "value_error":
            text = str(ctx.get("error", msg)).removeprefix("Value error, ")
            lines.append(text if text.startswith(f"{path}:") or text.startswith(f"{path} ") else f"{path}: {text}")
            continue
        if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"):
            allowed = _allowed_range(root, loc)
            ops = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
            bound = next((v for v in ctx.values() if isinstance(v, (int, float))), None)
            if allowed:
                msg = f"must be {allowed}"
            elif kind in ops and bound is not None:  # a list item (e.g. model.gnn_dims[1])
                msg = f"must be {ops[kind]} {bound:g}"
        elif kind == "too_short":
            msg = f"must list at least {ctx.get('min_length', 1)} item(s)"
        elif kind == "model_type" or kind == "dict_type":
            msg = "must be a mapping of settings"
        else:
            msg = msg.replace("Input should be", "must be")
        if kind == "missing":
            lines.append(f"{path}: {msg}")
        elif path in alternatives:  # another member of a union (`int >= 0 | "all"`): one line, "or"
            i, _, msgs = alternatives[path]
            msgs.append(msg.removeprefix("must be "))
            lines[i] = f"{path} = {_show(value)}: {' or '.join(msgs)}"
        else:
            alternatives[path] = (len(lines), value, [msg])
            lines.append(f"{path} = {_show(value)}: {msg}")
    return lines


def _without_tags(root: type[BaseModel], loc: tuple) -> tuple:
    """`loc` without pydantic's union-member tags (`constrained-int`, `literal['all']`) after a field."""
    out: list = []
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            out.append(part)
        elif model is not None:  # a section: a field name (or an unknown key, kept for its message)
            out.append(part)
            model = _section_of(model, (part,)) if part in model.model_fields else None
        # else: a tag inside a leaf field's union
    return tuple(out)


def validate_config(raw: dict[str, Any], where: str = "") -> RunConfig:
    """`RunConfig` from a mapping; a `ConfigError` with one line per bad key (path, value, allowed range)."""
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        lines = describe_validation_error(exc)
        head = f"{where}: invalid run config" if where else "invalid run config"
        raise ConfigError(f"{head} ({len(lines)} problem(s)):\n" + "\n".join(f"  - {line}" for line in lines)) from None


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a YAML run config and apply dotted-key overrides (`{"train.lr": 1e-3}`).

    Every field is checked (types, ranges, relations between fields) before anything runs;
    a `ConfigError` (a ValueError) names the file, each bad key, its value and the allowed range.
    """
    raw: dict[str, Any] = read_run_config(path)[0] if path is not None else {}
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        node = raw
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                where = f"{path}: " if path is not None else ""
                raise ConfigError(f"{where}{'.'.join(parts[: i + 1])} = {_show(node)}: must be a mapping of settings")
        node[parts[-1]] = value
    return validate_config(raw, str(path) if path is not None else "")
