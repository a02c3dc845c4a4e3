"""The Optuna study: its storage, sampler and pruner, the objective (validation only), and the
MLflow parent run with one nested run per trial."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np

from scregnet.config import RunConfig
from scregnet.data import GRNDataset
from scregnet.embeddings.base import GeneEmbedding
from scregnet.splits import Split, make_split
from scregnet.tracking import records, tracker, was_killed
from scregnet.train import ModelInputs, fit
from scregnet.tune.space import suggest, trial_config

log = logging.getLogger(__name__)

FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")


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
    """The study's storage URL: given, configured, or the default."""
    return storage or config.tune.storage or default_storage()


def redact(url: str) -> str:
    """A storage URL safe to log: the password is replaced."""
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", url)


def default_study_name(config: RunConfig, dataset_name: str) -> str:
    """<dataset>-<protocol>-<embedder>-seed<k>-<metric>, safe for storage."""
    proto = config.split.protocol + ("+degree_aware" if config.split.degree_aware_negatives else "")
    name = f"{dataset_name}-{proto}-{config.embedder.kind}-seed{config.split.seed}-{config.tune.metric}"
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)


def make_pruner(config: RunConfig):
    """The configured Optuna pruner (median, Hyperband or none)."""
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


def without_test(split: Split) -> Split:
    """The split the objective sees: train and validation only (test labels are not passed on)."""
    return Split(split.train, split.val, np.zeros((0, 3), dtype=np.int64), protocol=split.protocol, seed=split.seed)


class TrialTracker:
    """Parent MLflow run per study, one nested run per trial (own client calls: works across
    processes and workers, unlike the fluent API's process-global active run)."""

    def __init__(self, config: RunConfig, parent_run_id: str):
        self.config, self.parent = config, parent_run_id
        self.tracker = tracker(config)
        self.client = self.tracker.client
        self.experiment_id = self.tracker.call(
            lambda: self.client.get_run(parent_run_id), "read the study run"
        ).info.experiment_id

    def start(self, trial, tags: dict[str, str]) -> str:
        """Open the nested MLflow run of one trial; returns its id."""
        run = self.tracker.call(
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
        """Log a trial's params, curve, value and time, then close its run."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        metric = self.config.tune.metric
        metrics = [Metric(f"trial_val_{metric}", float(v), now, int(e)) for e, v in curve]
        if value is not None and np.isfinite(value):
            metrics.append(Metric(f"val_{metric}", float(value), now, 0))
        metrics.append(Metric("trial_seconds", float(seconds), now, 0))
        ps = [Param(k, str(v)) for k, v in params.items()]
        self.tracker.call(lambda: self.client.log_batch(run_id, metrics=metrics, params=ps), "log a trial")
        self.tracker.call(lambda: self.client.set_tag(run_id, "optuna_state", state), "tag a trial")
        status = "KILLED" if was_killed(run_id) else "FINISHED" if state != "FAIL" else "FAILED"
        self.tracker.end_run(run_id, status)


def study_tags(config: RunConfig, dataset: GRNDataset, study_name: str, storage: str | None) -> dict[str, str]:
    """Tags of a study's parent run: the training-run tags (records.run_tags) plus the study's name and storage."""
    tags = records.run_tags(config, dataset.name, dataset.priors_hash())
    tags["seed"] = str(config.split.seed)  # a study is one split; its trials vary the initialisation
    return {**tags, "optuna_study": study_name, "optuna_storage": redact(storage) if storage else "in-memory"}


def _parent_run(config: RunConfig, study, tags: dict[str, str], parent_run_id: str | None) -> str:
    """The study's parent run: given, else the one recorded in the study, else a new one."""
    mlflow = tracker(config)
    if parent_run_id:
        study.set_user_attr("mlflow_parent_run_id", parent_run_id)
        mlflow.set_tags(parent_run_id, tags)
        return parent_run_id
    existing = study.user_attrs.get("mlflow_parent_run_id")
    if existing:
        try:
            mlflow.client.get_run(existing)
            return existing
        except Exception:  # the store was reset since: start a new parent
            pass
    run_id = mlflow.start_run({**tags, "kind": "tune"}, config.flat(), run_name=f"tune-{study.study_name}")
    study.set_user_attr("mlflow_parent_run_id", run_id)
    return run_id


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
    trials: TrialTracker | None = None,
    tags: dict[str, str] | None = None,
) -> Callable:
    """Objective: best validation `config.tune.metric` of a trial. `split` must have no test part."""
    import optuna

    if len(split.test):
        raise ValueError("the objective must not receive test pairs: pass without_test(split)")

    def objective(trial) -> float:
        params = suggest(trial, config)
        cfg = trial_config(config, params)
        report = _Report(trial)
        run_id = trials.start(trial, tags or {}) if trials else None
        t0 = time.perf_counter()
        state, value = "FAIL", None
        # SIGTERM/SIGINT: the trial's run (and, via the outer guard, the parent) is marked KILLED.
        with trials.tracker.guard(run_id) if run_id else nullcontext():
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
                if trials and run_id:
                    trials.finish(run_id, trial, params, state, value, report.curve, time.perf_counter() - t0)

    return objective


def state_counts(study) -> dict[str, int]:
    """Number of trials per state (COMPLETE, PRUNED, FAIL, RUNNING, WAITING)."""
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
    trials, tags = None, {}
    if track:
        tags = study_tags(config, dataset, name, url)
        trials = TrialTracker(config, _parent_run(config, study, tags, parent_run_id))
    objective = make_objective(inputs, without_test(split), config, trials, tags)
    if done < target:
        # A kill marks the parent KILLED; an error here marks it FAILED (tune() closes it otherwise).
        with trials.tracker.holding(trials.parent) if trials else nullcontext():
            study.optimize(
                objective,
                n_trials=target - done,
                timeout=timeout if timeout is not None else config.tune.timeout,
                callbacks=[MaxTrialsCallback(target, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))],
                catch=(RuntimeError, ValueError),
            )
    log.info("study %s: %s", name, state_counts(study))
    return study, split
