"""SIGTERM / SIGINT while a step holds an MLflow run: mark the run KILLED instead of leaving it RUNNING.

A pod eviction, the watcher's timeout (SIGTERM to the run's process group), `kill` or Ctrl-C would
otherwise leave the run RUNNING forever. SIGKILL (and the OOM killer) cannot be caught.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

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


def mark_ended(run_id: str) -> None:
    """Record that this process closed `run_id` (a later signal must not turn FINISHED into KILLED)."""
    _ended.add(run_id)


def was_ended(run_id: str) -> bool:
    """Whether this process closed `run_id` (and no guard reopened it since)."""
    return run_id in _ended


def was_killed(run_id: str) -> bool:
    """Whether a signal made this process mark `run_id` KILLED (closers should keep that status)."""
    return run_id in _killed


def _on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _mark_killed(c, run_id: str, signame: str, timeout: float | None = None) -> bool:
    """Status KILLED and the signal's name as a tag, from a daemon thread joined with a timeout:
    the exit must not wait on a dead tracking server, nor on a lock the interrupted code holds."""
    from scregnet.tracking.client import with_retries

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
    def __init__(self, run_id: str, tracker):
        self.run_id, self.tracker = run_id, tracker
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> _RunGuard:
        # Python runs signal handlers in the main thread only and refuses to install one from
        # another thread (ValueError). A step run on a worker thread (e.g. by a thread-pool
        # orchestrator) cannot receive the signal, so there is nothing to do there.
        if not _on_main_thread():
            return self
        self.client = self.tracker.client  # resolved now: the handler should not import or configure
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


def run_guard(run_id: str, tracker=None) -> _RunGuard:
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
    from scregnet.tracking.client import as_tracker

    return _RunGuard(run_id, as_tracker(tracker))


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
