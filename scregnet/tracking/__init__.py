"""MLflow tracking: one tracker per tracking configuration (`client`), what a training run records
(`records`), and SIGTERM/SIGINT guards that mark a held run KILLED (`signals`).

A training run is one MLflow run reattached by id from each step (steps may run in different
processes or pods). A step holds its run inside `Tracker.holding`: an error marks it FAILED,
SIGTERM/SIGINT mark it KILLED.
"""

from scregnet.tracking.client import RETRY_ATTEMPTS, Tracker, as_tracker, resolve_uri, tracker, with_retries
from scregnet.tracking.signals import (
    KILL_MARK_SECONDS,
    KILLED_SIGNAL_TAG,
    Terminated,
    run_guard,
    signals_deferred,
    was_killed,
)

__all__ = [
    "KILLED_SIGNAL_TAG",
    "KILL_MARK_SECONDS",
    "RETRY_ATTEMPTS",
    "Terminated",
    "Tracker",
    "as_tracker",
    "resolve_uri",
    "run_guard",
    "signals_deferred",
    "tracker",
    "was_killed",
    "with_retries",
]
