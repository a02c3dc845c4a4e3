"""MLflow tracking: one MLflow run per training run, reattached by id from each step.

Steps may run in different processes (or pods), so they pass the run id along and log
through `MlflowClient` rather than the process-global active run. A step holds its run inside
`holding_run` (or `run_guard`): an error marks it FAILED, SIGTERM/SIGINT mark it KILLED.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

RETRY_ATTEMPTS = 5
RETRY_BASE_SECONDS = 0.5


def with_retries(fn: Callable[[], T], what: str, attempts: int = RETRY_ATTEMPTS, base: float = RETRY_BASE_SECONDS) -> T:
    """Call `fn`, retrying on connection-type failures with exponential backoff.

    The last failure is re-raised as a RuntimeError that says what could not be done.
    """
    from mlflow.exceptions import MlflowException

    last: Exception | None = None
    for i in range(attempts):
        try:
            return fn()
        except (ConnectionError, OSError, MlflowException) as exc:
            # A 4xx "does not exist"/"already exists" is not transient: do not retry it.
            if isinstance(exc, MlflowException) and getattr(exc, "error_code", "") in (
                "RESOURCE_DOES_NOT_EXIST",
                "RESOURCE_ALREADY_EXISTS",
                "INVALID_PARAMETER_VALUE",
            ):
                raise
            last = exc
            if i < attempts - 1:
                time.sleep(base * 2**i)
    raise RuntimeError(f"MLflow unreachable while trying to {what} after {attempts} attempts: {last}") from last


def tracking_uri(config=None) -> str:
    from scregnet.home import default_tracking_uri

    if config is not None and config.tracking.tracking_uri:
        return config.tracking.tracking_uri
    return os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def client(config=None):
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def ensure_experiment(c, name: str) -> str:
    """Experiment id; local artifacts go to $SCREGNET_ARTIFACTS rather than ./mlruns."""
    exp = with_retries(lambda: c.get_experiment_by_name(name), "look up the experiment")
    if exp is not None:
        return exp.experiment_id
    location = None
    if c.tracking_uri.startswith("sqlite:") or c.tracking_uri.startswith("file:"):
        from scregnet.home import home

        root = Path(os.environ.get("SCREGNET_ARTIFACTS", home() / "mlartifacts"))
        location = (root / name).resolve().as_uri()
    try:
        return c.create_experiment(name, artifact_location=location)
    except Exception:  # created concurrently by another process
        return c.get_experiment_by_name(name).experiment_id


def start_run(config, tags: dict[str, str], run_name: str | None = None) -> str:
    """Create the MLflow run of a training run; logs the full config as params. Returns run id."""
    c = client(config)
    exp_id = ensure_experiment(c, config.tracking.experiment)
    run = with_retries(lambda: c.create_run(exp_id, tags=tags, run_name=run_name), "create the run")
    params = {k: json.dumps(v) if isinstance(v, (list, dict)) else str(v) for k, v in config.flat().items()}
    items = list(params.items())
    from mlflow.entities import Param

    for i in range(0, len(items), 90):
        batch = [Param(k, v[:6000]) for k, v in items[i : i + 90]]
        with_retries(lambda b=batch: c.log_batch(run.info.run_id, params=b), "log params")
    return run.info.run_id


def log_metrics(run_id: str, metrics: dict[str, float], config=None, step: int | None = None) -> None:
    import math

    from mlflow.entities import Metric

    c = client(config)
    now = int(time.time() * 1000)
    batch = [
        Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None and not math.isnan(float(v))
    ]
    for i in range(0, len(batch), 500):
        with_retries(lambda b=batch[i : i + 500]: c.log_batch(run_id, metrics=b), "log metrics")


def log_history(run_id: str, history: list[dict[str, float]], config=None) -> None:
    """Training curves: one metric point per epoch (train_loss) / evaluation (val_*)."""
    from mlflow.entities import Metric

    c = client(config)
    now = int(time.time() * 1000)
    batch = []
    for rec in history:
        epoch = int(rec["epoch"])
        batch += [Metric(f"curve_{k}", float(v), now, epoch) for k, v in rec.items() if k != "epoch"]
    for i in range(0, len(batch), 900):
        with_retries(lambda b=batch[i : i + 900]: c.log_batch(run_id, metrics=b), "log training curves")


def log_artifacts(run_id: str, local_dir: str | Path, artifact_path: str | None = None, config=None) -> None:
    c = client(config)
    with_retries(
        lambda: c.log_artifacts(run_id, str(local_dir), artifact_path), f"upload artifacts {artifact_path or ''}"
    )


def log_figure(run_id: str, fig, filename: str, config=None) -> None:
    c = client(config)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        fig.savefig(path, dpi=110, bbox_inches="tight")
        with_retries(lambda: c.log_artifact(run_id, str(path), "plots"), f"upload plot {filename}")


def set_tags(run_id: str, tags: dict[str, Any], config=None) -> None:
    c = client(config)
    for k, v in tags.items():
        with_retries(lambda k=k, v=v: c.set_tag(run_id, k, str(v)), f"set tag {k}")


def end_run(run_id: str, status: str = "FINISHED", config=None) -> None:
    c = client(config)
    with_retries(lambda: c.set_terminated(run_id, status), "close the run")
    _ended.add(run_id)


def fail_run(run_id: str, config=None) -> None:
    """Best effort: mark the run FAILED without hiding the error that got us here."""
    if run_id in _killed or run_id in _ended:  # KILLED by a signal, or already closed here: keep that
        return
    try:
        end_run(run_id, "FAILED", config)
    except Exception as exc:  # the tracking server may be the thing that failed
        log.warning("could not mark MLflow run %s as FAILED: %s", run_id, exc)


# --------------------------------------------------------------------------- SIGTERM / SIGINT
#
# A pod eviction, the watcher's timeout (SIGTERM to the run's process group), `kill` or Ctrl-C
# would otherwise leave the run RUNNING forever. SIGKILL (and the OOM killer) cannot be caught.

KILLED_SIGNAL_TAG = "killed_by_signal"
# Per attempt at marking a run KILLED. Kubernetes sends SIGKILL 30 s after SIGTERM by default
# (the watcher too), and MLflow's own HTTP retries against a dead server take minutes.
KILL_MARK_SECONDS = 5.0
_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_killed: dict[str, str] = {}  # run id -> signal name: runs this process marked KILLED
_ended: set[str] = set()  # runs this process closed: a later signal must not turn FINISHED into KILLED
_guards: list[_RunGuard] = []  # active guards, innermost last
_defer = {"depth": 0, "pending": []}


class Terminated(SystemExit):
    """SIGTERM as an exception: `finally` blocks run, `except Exception` does not swallow it, and
    uncaught it exits with status 128 + 15, as a process killed by the signal would."""

    def __init__(self, signum: int = signal.SIGTERM):
        super().__init__(128 + int(signum))
        self.signum = int(signum)

    def __str__(self) -> str:  # what ZenML's "Failed to run step" line shows, rather than "143"
        return f"stopped by {signal.Signals(self.signum).name} (exit status {self.code})"


def was_killed(run_id: str) -> bool:
    """Whether a signal made this process mark `run_id` KILLED (closers should keep that status)."""
    return run_id in _killed


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _mark_killed(c, run_id: str, signame: str, timeout: float | None = None) -> bool:
    """Status KILLED and the signal's name as a tag, from a daemon thread joined with a timeout:
    the exit must not wait on a dead tracking server, nor on a lock the interrupted code holds."""
    errors: list[Exception] = []

    def work() -> None:
        try:
            with_retries(lambda: c.set_terminated(run_id, "KILLED"), "mark the run KILLED", attempts=3, base=0.2)
            with_retries(
                lambda: c.set_tag(run_id, KILLED_SIGNAL_TAG, signame), "tag the killed run", attempts=3, base=0.2
            )
        except Exception as exc:
            errors.append(exc)

    timeout = KILL_MARK_SECONDS if timeout is None else timeout
    worker = threading.Thread(target=work, name=f"mlflow-kill-{run_id[:8]}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive() or errors:
        why = errors[0] if errors else f"no answer within {timeout:.0f}s"
        log.warning("could not mark MLflow run %s as KILLED (%s); it may stay RUNNING", run_id, why)
        return False
    return True


class _RunGuard:
    def __init__(self, run_id: str, config=None):
        self.run_id, self.config = run_id, config
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _RunGuard:
        # Python runs signal handlers in the main thread only and refuses to install one from
        # another thread (ValueError). A step run on a worker thread (e.g. by a thread-pool
        # orchestrator) cannot receive the signal, so there is nothing to do there.
        if not _on_main_thread():
            return self
        self.client = client(self.config)  # built now: the handler should not import or configure
        _ended.discard(self.run_id)  # guarded (again): the run is live
        _killed.pop(self.run_id, None)
        for sig in _SIGNALS:
            # Ignored on purpose (e.g. SIGINT of a job started with `&` by a script): keep it so.
            if signal.getsignal(sig) is not signal.SIG_IGN:
                self.previous[sig] = signal.signal(sig, self._handle)
        self.active = True
        _guards.append(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not getattr(self, "active", False):
            return
        self.active = False
        for sig, prev in self.previous.items():
            signal.signal(sig, signal.SIG_DFL if prev is None else prev)  # None: set outside Python
        _guards.remove(self)
        # On the way out, MLflow's fluent `with start_run()` or other closers may have written
        # FAILED: set KILLED again, once, from the outermost guard of this run.
        if self.run_id in _killed and not any(g.run_id == self.run_id for g in _guards):
            _mark_killed(self.client, self.run_id, _killed[self.run_id])

    def _handle(self, signum: int, frame) -> None:
        name = signal.Signals(signum).name
        if _defer["depth"]:
            if signum not in _defer["pending"]:
                _defer["pending"].append(signum)
            log.warning("%s received during work that must not be cut short; stopping once it is done", name)
            return
        if self.run_id not in _ended and self.run_id not in _killed:
            _killed[self.run_id] = name
            log.warning("%s received: marking MLflow run %s as KILLED", name, self.run_id)
            _mark_killed(self.client, self.run_id, name)
        stop = KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)
        prev = self.previous.get(signum)
        # An outer guard (its run is killed too) or ZenML's step handler (it records the step as
        # stopped) still gets the signal; the process then stops with this guard's exception.
        if callable(prev) and prev is not signal.default_int_handler:
            try:
                prev(signum, frame)
            except type(stop):  # an outer guard already raised the same stop
                raise
            except BaseException as outer:
                raise stop from outer
        raise stop


def run_guard(run_id: str, config=None) -> _RunGuard:
    """While the block holds MLflow run `run_id`, SIGTERM and SIGINT mark it KILLED.

    On either signal: set the run's status to KILLED and tag `killed_by_signal` (best effort,
    bounded by KILL_MARK_SECONDS, a warning if the server does not answer), pass the signal on
    to the handler that was installed before (e.g. an outer guard or ZenML's), then raise
    KeyboardInterrupt for SIGINT or `Terminated` (a SystemExit, status 143) for SIGTERM so
    `finally` blocks run and the step fails. The previous handlers come back on exit.

    A normal exception goes through untouched (the caller marks FAILED via `fail_run`, which
    leaves a KILLED run alone). A run closed by `end_run` inside the block is not re-marked.
    Outside the main thread this is a no-op (see `_RunGuard.__enter__`).
    """
    return _RunGuard(run_id, config)


@contextmanager
def holding_run(run_id: str, config=None) -> Iterator[None]:
    """The body of a step that holds run `run_id`: an exception marks it FAILED, a signal KILLED."""
    with run_guard(run_id, config):
        try:
            yield
        except BaseException:
            fail_run(run_id, config)  # leaves a KILLED run alone
            raise


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Under a `run_guard`, hold SIGTERM/SIGINT until the block is done, then act on them.

    For short all-or-nothing work (registration + promotion): a kill then leaves either no
    model version or a complete one. Keep it short: Kubernetes SIGKILLs after its grace period.
    """
    if not _on_main_thread():
        yield
        return
    _defer["depth"] += 1
    try:
        yield
    finally:
        _defer["depth"] -= 1
        if not _defer["depth"] and _defer["pending"]:
            pending, _defer["pending"] = _defer["pending"], []
            for signum in pending:
                signal.raise_signal(signum)  # the guard's handler runs now
