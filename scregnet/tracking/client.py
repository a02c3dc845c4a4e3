"""One MLflow tracker per tracking configuration: the client is built once, retries live here.

Steps may run in different processes (or pods), so they pass the run id along and log through
the tracker's `MlflowClient` rather than the process-global active run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

RETRY_ATTEMPTS = 5
RETRY_BASE_SECONDS = 0.5
# MLflow refuses batches above 1,000 entries (100 params); stay under both.
PARAMS_PER_BATCH = 90
METRICS_PER_BATCH = 900
PARAM_VALUE_LIMIT = 6000
NOT_TRANSIENT = ("RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_PARAMETER_VALUE")


def with_retries(fn: Callable[[], T], what: str, attempts: int = RETRY_ATTEMPTS, base: float | None = None) -> T:
    """Call `fn`, retrying connection-type failures with exponential backoff (`base` s, doubling).

    The last failure is re-raised as a RuntimeError that says what could not be done.
    """
    from mlflow.exceptions import MlflowException

    base = RETRY_BASE_SECONDS if base is None else base
    last: Exception | None = None
    for i in range(attempts):
        try:
            return fn()
        except (ConnectionError, OSError, MlflowException) as exc:
            # A 4xx "does not exist"/"already exists" is not transient: do not retry it.
            if isinstance(exc, MlflowException) and getattr(exc, "error_code", "") in NOT_TRANSIENT:
                raise
            last = exc
            if i < attempts - 1:
                time.sleep(base * 2**i)
    raise RuntimeError(f"MLflow unreachable while trying to {what} after {attempts} attempts: {last}") from last


def resolve_uri(tracking_cfg=None) -> str:
    """The configured URI, else $MLFLOW_TRACKING_URI, else sqlite under $SCREGNET_HOME."""
    from scregnet.home import default_tracking_uri

    if tracking_cfg is not None and tracking_cfg.tracking_uri:
        return tracking_cfg.tracking_uri
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


class Tracker:
    """MLflow records of one tracking URI and experiment: runs, params, metrics, artifacts, tags.

    Every call goes through `call` (retries with backoff). Build it with `tracker(config)`.
    """

    def __init__(self, uri: str, experiment: str = "scregnet"):
        from mlflow import MlflowClient

        self.uri, self.experiment = uri, experiment
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def __repr__(self) -> str:
        return f"Tracker({self.uri!r}, experiment={self.experiment!r})"

    def call(
        self, fn: Callable[[], T], what: str, attempts: int = RETRY_ATTEMPTS, base: float = RETRY_BASE_SECONDS
    ) -> T:
        """`fn()` with retries (see `with_retries`)."""
        return with_retries(fn, what, attempts=attempts, base=base)

    def activate(self) -> Tracker:
        """Point MLflow's fluent API (log_model, register_model, artifact downloads) at this URI."""
        import mlflow

        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        return self

    def experiment_id(self, name: str | None = None) -> str:
        """Id of experiment `name` (default: this tracker's), created on first use.

        Local stores keep artifacts under $SCREGNET_ARTIFACTS rather than ./mlruns.
        """
        name = name or self.experiment
        exp = self.call(lambda: self.client.get_experiment_by_name(name), "look up the experiment")
        if exp is not None:
            exp_id = exp.experiment_id
        else:
            location = None
            if self.uri.startswith(("sqlite:", "file:")):
                from scregnet.home import home

                root = Path(os.environ.get("SCREGNET_ARTIFACTS", home() / "mlartifacts"))
                location = (root / name).resolve().as_uri()
            try:
                exp_id = self.client.create_experiment(name, artifact_location=location)
            except Exception:  # created concurrently by another process
                exp_id = self.client.get_experiment_by_name(name).experiment_id
        return exp_id

    def start_run(self, tags: dict[str, str], params: dict[str, Any] | None = None, run_name: str | None = None) -> str:
        """Create a run in the experiment with `tags` and `params` (e.g. `RunConfig.flat()`); returns its id."""
        exp_id = self.experiment_id()
        run = self.call(lambda: self.client.create_run(exp_id, tags=tags, run_name=run_name), "create the run")
        if params:
            try:
                self.log_params(run.info.run_id, params)
            except BaseException:  # nobody holds the run yet: close it here rather than leave it RUNNING
                self.fail_run(run.info.run_id)
                raise
        return run.info.run_id

    def log_params(self, run_id: str, params: dict[str, Any]) -> None:
        """Params as strings (lists and dicts as JSON), in batches."""
        from mlflow.entities import Param

        items = [(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in params.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            batch = [Param(k, v[:PARAM_VALUE_LIMIT]) for k, v in items[i : i + PARAMS_PER_BATCH]]
            self.call(lambda b=batch: self.client.log_batch(run_id, params=b), "log params")

    def log_metrics(self, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
        """Values of `metrics` at `step` (NaN and None are left out: MLflow charts cannot show them)."""
        self.log_series(run_id, {k: [(step or 0, v)] for k, v in metrics.items()}, "log metrics")

    def log_series(
        self, run_id: str, series: dict[str, list[tuple[int, float]]], what: str = "log metric series"
    ) -> None:
        """Per-step values: name -> [(step, value), ...] (e.g. training curves by epoch), in batches."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(name, float(v), now, int(step))
            for name, points in series.items()
            for step, v in points
            if v is not None and not math.isnan(float(v))
        ]
        for i in range(0, len(batch), METRICS_PER_BATCH):
            self.call(lambda b=batch[i : i + METRICS_PER_BATCH]: self.client.log_batch(run_id, metrics=b), what)

    def log_artifacts(self, run_id: str, local_dir: str | Path, artifact_path: str | None = None) -> None:
        """Upload a directory under `artifact_path`."""
        self.call(
            lambda: self.client.log_artifacts(run_id, str(local_dir), artifact_path),
            f"upload artifacts {artifact_path or ''}",
        )

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        """Upload one file under `artifact_path`."""
        self.call(lambda: self.client.log_artifact(run_id, str(path), artifact_path), f"upload {Path(path).name}")

    def log_figure(self, run_id: str, fig, filename: str) -> None:
        """A matplotlib figure as `plots/<filename>`."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / filename
            fig.savefig(path, dpi=110, bbox_inches="tight")
            self.call(lambda: self.client.log_artifact(run_id, str(path), "plots"), f"upload plot {filename}")

    def log_dataset(
        self, run_id: str, name: str, digest: str, source: dict[str, str], context: str = "training"
    ) -> None:
        """Record the run's input dataset (MLflow's Dataset column and Datasets filter show it)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        dataset = Dataset(name=name, digest=digest, source_type="local", source=json.dumps(source, sort_keys=True))
        inputs = [DatasetInput(dataset, [InputTag("mlflow.data.context", context)])]
        self.call(lambda: self.client.log_inputs(run_id, datasets=inputs), "log the input dataset")

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        """Set run tags (values as strings) in one request."""
        from mlflow.entities import RunTag

        batch = [RunTag(k, str(v)) for k, v in tags.items()]
        if batch:
            self.call(lambda: self.client.log_batch(run_id, tags=batch), f"set tags {', '.join(tags)}")

    def end_run(self, run_id: str, status: str = "FINISHED") -> None:
        """Close the run with `status` (FINISHED, FAILED, KILLED)."""
        from scregnet.tracking import signals

        self.call(lambda: self.client.set_terminated(run_id, status), "close the run")
        signals.mark_ended(run_id)

    def fail_run(self, run_id: str) -> None:
        """Best effort: mark the run FAILED without hiding the error that got us here.

        A run a signal marked KILLED, or one already closed by this process, keeps its status.
        """
        from scregnet.tracking import signals

        if signals.was_killed(run_id) or signals.was_ended(run_id):
            return
        try:
            self.end_run(run_id, "FAILED")
        except Exception as exc:  # the tracking server may be the thing that failed
            log.warning("could not mark MLflow run %s as FAILED: %s", run_id, exc)

    def guard(self, run_id: str):
        """While the block holds `run_id`, SIGTERM/SIGINT mark it KILLED (see `signals.run_guard`)."""
        from scregnet.tracking.signals import run_guard

        return run_guard(run_id, self)

    @contextmanager
    def holding(self, run_id: str) -> Iterator[None]:
        """The body of a step that holds run `run_id`: an exception marks it FAILED, a signal KILLED."""
        with self.guard(run_id):
            try:
                yield
            except BaseException:
                self.fail_run(run_id)  # leaves a KILLED run alone
                raise


_TRACKERS: dict[tuple[str, str], Tracker] = {}


def tracker(config=None) -> Tracker:
    """The tracker of a `RunConfig` or `TrackingConfig` (None: the defaults), reused per (URI, experiment)."""
    tracking_cfg = getattr(config, "tracking", config)
    uri = resolve_uri(tracking_cfg)
    experiment = getattr(tracking_cfg, "experiment", None) or "scregnet"
    key = (uri, experiment)
    if key not in _TRACKERS:
        _TRACKERS[key] = Tracker(uri, experiment)
    return _TRACKERS[key]


def as_tracker(tracking=None) -> Tracker:
    """A `Tracker` as given, or the tracker of a RunConfig / TrackingConfig / None (`tracker`)."""
    return tracking if isinstance(tracking, Tracker) else tracker(tracking)
