"""The search space (the reference code's, narrowed by `config.tune` for CPU budgets) and how a
point of it maps onto a `RunConfig`."""

from __future__ import annotations

from typing import Any

from scregnet.config import RunConfig


def suggest(trial, config: RunConfig) -> dict[str, Any]:
    """Sample one point of the search space (docs/reference-model.md, narrowed by `config.tune`)."""
    t = config.tune
    gnn = trial.suggest_categorical("gnn", list(t.gnn_kinds))
    n_gnn = trial.suggest_int("n_gnn_layers", 1, t.max_gnn_layers)
    for i in range(n_gnn):
        trial.suggest_int(f"gnn_dim_{i}", t.min_width, t.max_width, log=True)
    n_mlp = trial.suggest_int("n_mlp_layers", 1, t.max_mlp_layers)
    for i in range(n_mlp):
        trial.suggest_int(f"mlp_dim_{i}", t.min_width, t.max_width, log=True)
    trial.suggest_float("dropout", 0.1, 0.8)
    trial.suggest_float("lr", 1e-5, 1e-2, log=True)
    trial.suggest_float("weight_decay", 1e-7, 1e-4, log=True)
    trial.suggest_categorical("optimizer", list(t.optimizers))
    trial.suggest_categorical("batch_size", ["full" if b is None else str(b) for b in t.batch_sizes])
    if gnn == "gat":
        trial.suggest_int("gat_heads", 1, 8)
        trial.suggest_categorical("gat_concat", [False, True])
        trial.suggest_float("gat_negative_slope", 0.01, 0.5)
    return dict(trial.params)


def apply_params(config: RunConfig, params: dict[str, Any]) -> RunConfig:
    """A copy of `config` with a trial's (or the best) parameters set on `model` and `train`."""
    cfg = config.model_copy(deep=True)
    m, tr = cfg.model, cfg.train
    if "gnn" in params:
        m.gnn = params["gnn"]
    if "n_gnn_layers" in params:
        m.gnn_dims = [int(params[f"gnn_dim_{i}"]) for i in range(int(params["n_gnn_layers"]))]
    if "n_mlp_layers" in params:
        m.mlp_dims = [int(params[f"mlp_dim_{i}"]) for i in range(int(params["n_mlp_layers"]))]
    for key in ("dropout", "gat_heads", "gat_concat", "gat_negative_slope"):
        if key in params:
            setattr(m, key, params[key])
    for key in ("lr", "weight_decay", "optimizer"):
        if key in params:
            setattr(tr, key, params[key])
    if "batch_size" in params:
        b = params["batch_size"]
        tr.batch_size = None if b in (None, "full") else int(b)
    cfg.train.select_metric = config.tune.metric
    return RunConfig.model_validate(cfg.model_dump())  # re-validate the edited sections


def config_overrides(params: dict[str, Any], config: RunConfig) -> dict[str, Any]:
    """Best parameters as dotted config keys (`model.gnn_dims`, `train.lr`, ...) for YAML / --set."""
    cfg = apply_params(config, params)
    keys = [
        "model.gnn",
        "model.gnn_dims",
        "model.mlp_dims",
        "model.dropout",
        "train.lr",
        "train.weight_decay",
        "train.optimizer",
        "train.batch_size",
        "train.select_metric",
    ]
    if cfg.model.gnn == "gat":
        keys += ["model.gat_heads", "model.gat_concat", "model.gat_negative_slope"]
    flat = cfg.flat()
    return {k: flat[k] for k in keys}


def trial_config(config: RunConfig, params: dict[str, Any]) -> RunConfig:
    """Parameters applied, with the per-trial epoch budget and patience."""
    cfg = apply_params(config, params)
    cfg.train.max_epochs = config.tune.max_epochs
    cfg.train.patience = config.tune.patience
    return cfg
