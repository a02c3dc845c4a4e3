"""MLflow tracking: one MLflow run per training run, reattached by id from each step.

Steps may run in different processes (or pods), so they pass the run id along and log
through `MlflowClient` rather than the process-global active run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

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
                "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_PARAMETER_VALUE"):
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
    batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items() if v is not None and not math.isnan(float(v))]
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
    with_retries(lambda: c.log_artifacts(run_id, str(local_dir), artifact_path), f"upload artifacts {artifact_path or ''}")


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


def fail_run(run_id: str, config=None) -> None:
    """Best effort: mark the run FAILED without hiding the error that got us here."""
    import logging

    try:
        end_run(run_id, "FAILED", config)
    except Exception as exc:  # the tracking server may be the thing that failed
        logging.getLogger(__name__).warning("could not mark MLflow run %s as FAILED: %s", run_id, exc)
