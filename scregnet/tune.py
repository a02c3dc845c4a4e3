"""Optuna hyperparameter search over the reference search space, on validation only.

One study = one dataset + one split (protocol, seed) + one embedding. Every trial trains with
`fit` on the training part and is scored on the validation part; `fit`'s `on_eval` hook reports
each intermediate validation value to Optuna so the pruner (median or Hyperband) can stop bad
trials early. The objective receives the split WITHOUT its test part: test labels are not even
in memory during the search. After the search a final model is retrained with the best
parameters (selected on validation again) and evaluated once on test, beside the trivial baselines.

The study lives in an Optuna RDB storage (sqlite at $SCREGNET_HOME/optuna.db by default, or a
database URL): `load_if_exists=True` + "n_trials is the study's target" means a killed study
resumes where it stopped, and several workers can tune one study in parallel.

Tracking: a parent MLflow run per study (its id is kept in the study's user attributes, so a
resumed study or a second worker logs under the same parent); each trial is a nested run
(`mlflow.parentRunId` tag) with its parameters, intermediate curve, final value and state.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scregnet.config import RunConfig
from scregnet.data import GRNDataset
from scregnet.embeddings.base import GeneEmbedding
from scregnet.splits import Split, make_split
from scregnet.train import ModelInputs, fit

log = logging.getLogger(__name__)

FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")


# --------------------------------------------------------------------------- storage and study


def default_storage() -> str:
    """$OPTUNA_STORAGE_URL, else sqlite at $SCREGNET_HOME/optuna.db."""
    from scregnet.home import home

    url = os.environ.get("OPTUNA_STORAGE_URL")
    if url:
        return url
    root = home()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'optuna.db'}"


def resolve_storage(config: RunConfig, storage: str | None = None) -> str:
    return storage or config.tune.storage or default_storage()


def redact(url: str) -> str:
    """A storage URL safe to log: the password is replaced."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def default_study_name(config: RunConfig, dataset_name: str) -> str:
    proto = config.split.protocol + ("+degree_aware" if config.split.degree_aware_negatives else "")
    name = f"{dataset_name}-{proto}-{config.embedder.kind}-seed{config.split.seed}-{config.tune.metric}"
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)


def make_pruner(config: RunConfig):
    import optuna

    t = config.tune
    if t.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=t.startup_trials, n_warmup_steps=t.warmup_epochs)
    if t.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=max(config.train.eval_every, t.warmup_epochs), max_resource=t.max_epochs, reduction_factor=3
        )
    return optuna.pruners.NopPruner()


def make_storage(url: str):
    """An RDB storage with heartbeats, so a killed worker's RUNNING trials are failed on resume."""
    import optuna

    if url.startswith(("sqlite:", "postgresql", "mysql")):
        import warnings

        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
    return url


def create_study(config: RunConfig, study_name: str, storage: str | None):
    """Create or load (`load_if_exists=True`) the study; TPE sampler seeded from the config.

    storage=None: in-memory (tests); otherwise an RDB URL.
    """
    import optuna

    sampler = optuna.samplers.TPESampler(seed=config.tune.sampler_seed, n_startup_trials=config.tune.startup_trials)
    return optuna.create_study(
        study_name=study_name,
        storage=make_storage(storage) if storage else None,
        sampler=sampler,
        pruner=make_pruner(config),
        direction="maximize",
        load_if_exists=True,
    )


# --------------------------------------------------------------------------- search space


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


def without_test(split: Split) -> Split:
    """The split the objective sees: train and validation only (test labels are not passed on)."""
    return Split(split.train, split.val, np.zeros((0, 3), dtype=np.int64), protocol=split.protocol, seed=split.seed)


# --------------------------------------------------------------------------- MLflow


class TrialTracker:
    """Parent MLflow run per study, one nested run per trial (own client calls: works across
    processes and workers, unlike the fluent API's process-global active run)."""

    def __init__(self, config: RunConfig, parent_run_id: str):
        from scregnet import tracking

        self.config, self.parent, self.tracking = config, parent_run_id, tracking
        self.client = tracking.client(config)
        self.experiment_id = self.client.get_run(parent_run_id).info.experiment_id

    def start(self, trial, tags: dict[str, str]) -> str:
        run = self.tracking.with_retries(
            lambda: self.client.create_run(
                self.experiment_id,
                run_name=f"trial-{trial.number}",
                tags={
                    "mlflow.parentRunId": self.parent,
                    "kind": "tune_trial",
                    "optuna_trial": str(trial.number),
                    **tags,
                },
            ),
            "create a trial run",
        )
        return run.info.run_id

    def finish(
        self,
        run_id: str,
        trial,
        params: dict,
        state: str,
        value: float | None,
        curve: list[tuple[int, float]],
        seconds: float,
    ) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        metric = self.config.tune.metric
        metrics = [Metric(f"trial_val_{metric}", float(v), now, int(e)) for e, v in curve]
        if value is not None and np.isfinite(value):
            metrics.append(Metric(f"val_{metric}", float(value), now, 0))
        metrics.append(Metric("trial_seconds", float(seconds), now, 0))
        ps = [Param(k, str(v)) for k, v in params.items()]
        self.tracking.with_retries(lambda: self.client.log_batch(run_id, metrics=metrics, params=ps), "log a trial")
        self.tracking.with_retries(lambda: self.client.set_tag(run_id, "optuna_state", state), "tag a trial")
        status = "KILLED" if self.tracking.was_killed(run_id) else "FINISHED" if state != "FAIL" else "FAILED"
        self.tracking.with_retries(lambda: self.client.set_terminated(run_id, status), "close a trial run")


def study_tags(config: RunConfig, dataset: GRNDataset, study_name: str, storage: str | None) -> dict[str, str]:
    return {
        "dataset": dataset.name,
        "protocol": config.split.protocol + ("+degree_aware" if config.split.degree_aware_negatives else ""),
        "embedder": config.embedder.kind,
        "seed": str(config.split.seed),
        "priors_sha256": dataset.priors_hash(),
        "optuna_study": study_name,
        "optuna_storage": redact(storage) if storage else "in-memory",
    }


def _parent_run(config: RunConfig, study, tags: dict[str, str], parent_run_id: str | None) -> str:
    """The study's parent run: given, else the one recorded in the study, else a new one."""
    from scregnet import tracking

    if parent_run_id:
        study.set_user_attr("mlflow_parent_run_id", parent_run_id)
        tracking.set_tags(parent_run_id, tags, config)
        return parent_run_id
    existing = study.user_attrs.get("mlflow_parent_run_id")
    if existing:
        c = tracking.client(config)
        try:
            c.get_run(existing)
            return existing
        except Exception:  # the store was reset since: start a new parent
            pass
    run_id = tracking.start_run(config, {**tags, "kind": "tune"}, run_name=f"tune-{study.study_name}")
    study.set_user_attr("mlflow_parent_run_id", run_id)
    return run_id


# --------------------------------------------------------------------------- the search


class _Report:
    """`fit`'s on_eval hook: report to Optuna, prune when the pruner says so."""

    def __init__(self, trial):
        self.trial, self.curve = trial, []

    def __call__(self, epoch: int, value: float) -> None:
        import optuna

        self.curve.append((epoch, float(value)))
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} (validation {value:.4f})")


def make_objective(
    inputs: ModelInputs,
    split: Split,
    config: RunConfig,
    tracker: TrialTracker | None = None,
    tags: dict[str, str] | None = None,
) -> Callable:
    """Objective: best validation `config.tune.metric` of a trial. `split` must have no test part."""
    import optuna

    if len(split.test):
        raise ValueError("the objective must not receive test pairs: pass without_test(split)")

    def objective(trial) -> float:
        from scregnet import tracking

        params = suggest(trial, config)
        cfg = trial_config(config, params)
        report = _Report(trial)
        run_id = tracker.start(trial, tags or {}) if tracker else None
        t0 = time.perf_counter()
        state, value = "FAIL", None
        # SIGTERM/SIGINT: the trial's run (and, via the outer guard, the parent) is marked KILLED.
        with tracking.run_guard(run_id, config) if run_id else nullcontext():
            try:
                result = fit(inputs, split, cfg.model, cfg.train, on_eval=report)
                value, state = float(result.best_val), "COMPLETE"
                trial.set_user_attr("best_epoch", int(result.best_epoch))
                return value
            except optuna.TrialPruned:
                state = "PRUNED"
                value = max((v for _, v in report.curve), default=None)
                raise
            finally:
                trial.set_user_attr("seconds", time.perf_counter() - t0)
                if tracker and run_id:
                    tracker.finish(run_id, trial, params, state, value, report.curve, time.perf_counter() - t0)

    return objective


@dataclass
class TuneResult:
    study_name: str
    storage: str
    best_params: dict[str, Any]
    best_value: float
    metric: str
    overrides: dict[str, Any]
    counts: dict[str, int]
    seconds: float
    study_seconds: float = 0.0
    parent_run_id: str | None = None
    final_run_id: str | None = None
    final: dict[str, Any] = field(default_factory=dict)  # val/test metrics of the retrained model + baselines

    def as_dict(self) -> dict[str, Any]:
        return {
            "study_name": self.study_name,
            "storage": redact(self.storage),
            "metric": self.metric,
            "best_value": self.best_value,
            "best_params": self.best_params,
            "config_overrides": self.overrides,
            "trials": self.counts,
            "seconds": self.seconds,
            "study_seconds": self.study_seconds,
            "mlflow_parent_run_id": self.parent_run_id,
            "mlflow_final_run_id": self.final_run_id,
            "final": self.final,
        }


def state_counts(study) -> dict[str, int]:
    from collections import Counter

    c = Counter(t.state.name for t in study.trials)
    return {s: int(c.get(s, 0)) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")}


def run_study(
    dataset: GRNDataset,
    config: RunConfig,
    embedding: GeneEmbedding | None = None,
    *,
    split: Split | None = None,
    inputs: ModelInputs | None = None,
    storage: str | None = "default",
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    track: bool = True,
    parent_run_id: str | None = None,
    enqueue: list[dict] | None = None,
):
    """Run (or resume) the study; returns `(study, split)`.

    storage: "default" -> resolve_storage(config); None -> in memory; else an RDB URL.
    n_trials: the study's TARGET number of finished trials (COMPLETE/PRUNED/FAIL), so rerunning
    a killed study runs only what is missing; parallel workers share the target.
    """
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = resolve_storage(config) if storage == "default" else storage
    split = split if split is not None else make_split(dataset.label_graph(), config.split)
    inputs = inputs or ModelInputs.build(dataset, embedding)
    name = study_name or config.tune.study_name or default_study_name(config, dataset.name)
    study = create_study(config, name, url)
    study.set_user_attr("split_sha256", split.hash())
    target = n_trials if n_trials is not None else config.tune.n_trials
    done = sum(t.state.name in FINISHED_STATES for t in study.trials)
    for params in enqueue or []:
        study.enqueue_trial(params, skip_if_exists=True)
    tracker, tags = None, {}
    if track:
        tags = study_tags(config, dataset, name, url)
        tracker = TrialTracker(config, _parent_run(config, study, tags, parent_run_id))
    objective = make_objective(inputs, without_test(split), config, tracker, tags)
    if done < target:
        from scregnet import tracking

        with tracking.run_guard(tracker.parent, config) if tracker else nullcontext():  # a kill: parent KILLED
            study.optimize(
                objective,
                n_trials=target - done,
                timeout=timeout if timeout is not None else config.tune.timeout,
                callbacks=[MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))],
                catch=(RuntimeError, ValueError),
            )
    log.info("study %s: %s", name, state_counts(study))
    return study, split


def best_params_artifact(result: TuneResult, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "best_params.json"
    path.write_text(json.dumps(result.as_dict(), indent=2, default=str))
    return path


def tune(
    dataset: GRNDataset,
    config: RunConfig,
    embedding: GeneEmbedding | None = None,
    *,
    storage: str | None = "default",
    study_name: str | None = None,
    n_trials: int | None = None,
    timeout: float | None = None,
    track: bool = True,
    parent_run_id: str | None = None,
    retrain: bool | None = None,
    out_dir: Path | None = None,
) -> TuneResult:
    """Search, save the best params (JSON artifact), then retrain with them and evaluate once on test.

    The final model is logged as an ordinary training run (tags dataset/protocol/embedder/gnn/seed,
    `tuned=true`, metrics named like steps/evaluate's), so `scregnet compare` lists it.
    """
    from scregnet import tracking
    from scregnet.home import home

    t0 = time.perf_counter()
    inputs = ModelInputs.build(dataset, embedding)
    study, split = run_study(
        dataset,
        config,
        embedding,
        inputs=inputs,
        storage=storage,
        study_name=study_name,
        n_trials=n_trials,
        timeout=timeout,
        track=track,
        parent_run_id=parent_run_id,
    )
    study_seconds = time.perf_counter() - t0
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not completed:
        raise RuntimeError(f"study {study.study_name}: no trial completed ({state_counts(study)}); nothing to retrain")
    best = study.best_trial
    url = resolve_storage(config) if storage == "default" else (storage or "in-memory")
    result = TuneResult(
        study.study_name,
        url,
        dict(best.params),
        float(best.value),
        config.tune.metric,
        config_overrides(best.params, config),
        state_counts(study),
        0.0,
        study_seconds=study_seconds,
        parent_run_id=study.user_attrs.get("mlflow_parent_run_id") if track else None,
    )
    # The parent run this call closes (none was given): a kill while retraining marks it KILLED.
    owned = result.parent_run_id if parent_run_id is None else None
    with tracking.run_guard(owned, config) if owned else nullcontext():
        if retrain if retrain is not None else config.tune.retrain:
            result.final, result.final_run_id = retrain_and_evaluate(
                dataset, inputs, split, config, best.params, track, result.parent_run_id
            )
        result.seconds = time.perf_counter() - t0
        out = out_dir or home() / "tune" / study.study_name
        path = best_params_artifact(result, Path(out))
        if track and result.parent_run_id:
            tracking.log_artifacts(result.parent_run_id, path.parent, "tuning", config)
            tracking.log_metrics(
                result.parent_run_id,
                {
                    f"best_val_{config.tune.metric}": result.best_value,
                    **{f"n_trials_{k.lower()}": v for k, v in result.counts.items()},
                    **{f"final_{k}": v for k, v in _flat_final(result.final).items()},
                },
                config,
            )
            if owned:
                tracking.end_run(result.parent_run_id, "FINISHED", config)
    return result


def _flat_final(final: dict) -> dict[str, float]:
    if not final:
        return {}
    return flat_metrics(final["model"], final["baselines"])


def retrain_and_evaluate(
    dataset: GRNDataset,
    inputs: ModelInputs,
    split: Split,
    config: RunConfig,
    params: dict,
    track: bool = True,
    parent_run_id: str | None = None,
):
    """Retrain with `params` (full epoch budget, selection on validation) and evaluate once on test."""
    from scregnet import tracking
    from scregnet.experiment import evaluate
    from scregnet.train import bundle

    cfg = apply_params(config, params)
    res = fit(inputs, split, cfg.model, cfg.train)
    model = bundle(res, inputs, cfg.model, dataset=dataset.name, split_sha256=split.hash())
    ev = evaluate(model, split)
    final = {"model": ev.model, "baselines": ev.baselines, "best_epoch": res.best_epoch, "train_seconds": res.seconds}
    run_id = None
    if track:
        tags = {
            "dataset": dataset.name,
            "protocol": split.protocol,
            "embedder": cfg.embedder.kind,
            "gnn": cfg.model.gnn,
            "seed": str(cfg.train.seed),
            "priors_sha256": dataset.priors_hash(),
            "split_sha256": split.hash(),
            "tuned": "true",
            "kind": "train",
        }
        if parent_run_id:
            tags["tune_parent_run_id"] = parent_run_id
        tags.update(_manifest_tags(cfg))
        run_id = tracking.start_run(cfg, tags, run_name=f"tuned-{dataset.name}")
        tracking.log_history(run_id, res.history, cfg)
        tracking.log_metrics(
            run_id,
            {"best_epoch": res.best_epoch, "train_seconds": res.seconds, **flat_metrics(ev.model, ev.baselines)},
            cfg,
        )
        tracking.end_run(run_id, "FINISHED", cfg)
    return final, run_id


def _manifest_tags(config: RunConfig) -> dict[str, str]:
    """`prior_manifest_sha256` etc. when the run config names a prior manifest (as steps/train tags)."""
    manifest = getattr(config.data, "prior_manifest", None)
    if manifest is None:
        return {}
    try:
        from scregnet.priors_store import prior_manifest_tags
    except ImportError:  # pragma: no cover
        return {}
    return prior_manifest_tags(manifest)


def flat_metrics(model: dict, baselines: dict) -> dict[str, float]:
    """Same names as steps/evaluate's `flat_metrics` (`{part}_{model|baseline}_{metric}`), without ZenML."""
    out = {}
    for part, metrics in model.items():
        out.update({f"{part}_model_{k}": v for k, v in metrics.items()})
        for name, bm in baselines.get(part, {}).items():
            out.update({f"{part}_{name}_{k}": v for k, v in bm.items()})
    return out


# --------------------------------------------------------------------------- tuned vs default


def tuned_vs_default(
    dataset: GRNDataset,
    config: RunConfig,
    params: dict,
    embedding: GeneEmbedding | None = None,
    seeds: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Default config vs the tuned params over `seeds` independent splits + initialisations (test once each).

    The study tuned on split seed `config.split.seed`'s validation part; the other seeds are fresh splits.
    """
    from scregnet.experiment import run_seeds

    inputs = ModelInputs.build(dataset, embedding)
    out: dict[str, Any] = {"dataset": dataset.name, "protocol": config.split.protocol, "seeds": seeds, "params": params}
    for name, cfg in (("default", config), ("tuned", apply_params(config, params))):
        rows = run_seeds(dataset, cfg, embedding, seeds, inputs=inputs, log=log, label=name)
        out[name] = {
            k: (float(np.mean([r["model"][k] for r in rows])), float(np.std([r["model"][k] for r in rows])))
            for k in ("auroc", "auprc", "per_tf_auroc")
        }
        out[name]["seconds"] = float(np.mean([r["seconds"] for r in rows]))
        out["label_count"] = {
            k: (float(np.mean([r["label_count"][k] for r in rows])), float(np.std([r["label_count"][k] for r in rows])))
            for k in ("auroc", "auprc")
        }
    return out


def tuning_markdown(rows: list[dict[str, Any]]) -> str:
    from scregnet.reference import SCREGNET_GENEFORMER, cell_type

    lines = [
        "| dataset | protocol | trials (complete/pruned) | study s | best val | default AUROC | default AUPRC "
        "| tuned AUROC | tuned AUPRC | label_count AUROC/AUPRC | paper AUROC/AUPRC |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, d, t, lc = r["tune"]["trials"], r["compare"]["default"], r["compare"]["tuned"], r["compare"]["label_count"]
        paper = SCREGNET_GENEFORMER.get(cell_type(r["compare"]["dataset"]))
        ps = f"{paper[0]:.2f}/{paper[1]:.2f}" if paper and r["compare"]["protocol"] == "genelink" else "-"
        lines.append(
            f"| {r['compare']['dataset']} | {r['compare']['protocol']} | {c['COMPLETE']}/{c['PRUNED']} "
            f"| {r['tune']['study_seconds']:.0f} | {r['tune']['best_value']:.3f} "
            f"| {d['auroc'][0]:.3f} ± {d['auroc'][1]:.3f} | {d['auprc'][0]:.3f} ± {d['auprc'][1]:.3f} "
            f"| {t['auroc'][0]:.3f} ± {t['auroc'][1]:.3f} | {t['auprc'][0]:.3f} ± {t['auprc'][1]:.3f} "
            f"| {lc['auroc'][0]:.3f}/{lc['auprc'][0]:.3f} | {ps} |"
        )
    return "\n".join(lines) + "\n"
