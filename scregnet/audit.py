"""The champion audit log: every change of `champion`, and every refusal to change it.

MLflow keeps no history of aliases, so each event (gate promotion, gate refusal, manual promote,
rollback) is one MLflow run in the experiment `scregnet-champion-audit`: tags say when, who or
what did it (pipeline run, watcher, CLI user), the model, the version, the champion before and
after, and the reason; the gate's numbers are metrics. Runs are append-only, so two writers never
lose each other's entries. Each event run also carries the whole history up to then as a table
artifact (`champion_history.csv`), and the registered model's tag `champion_audit_run` points to
the newest one: the table sits next to the registered model.
"""

from __future__ import annotations

import getpass
import math
import os
import socket
import tempfile
import time
from pathlib import Path

import pandas as pd

from scregnet.tracking import as_tracker

AUDIT_EXPERIMENT = "scregnet-champion-audit"
AUDIT_TAG = "champion_audit_run"
COLUMNS = ["time", "action", "model", "version", "champion_before", "champion_after", "who", "reason", "numbers"]
ACTIONS = ("promoted", "kept", "forced", "rolled_back")


def who() -> str:
    """Who is acting: $SCREGNET_ACTOR (the watcher and pipelines set it), else user@host (cli)."""
    actor = os.environ.get("SCREGNET_ACTOR")
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()} (cli)"


def record_event(
    model: str,
    action: str,
    version: str | None,
    before: str | None,
    after: str | None,
    reason: str,
    numbers: dict[str, float] | None = None,
    actor: str | None = None,
    tracking=None,
) -> str:
    """Append one event; returns its run id. `numbers` (finite floats) are logged as metrics."""
    if action not in ACTIONS:
        raise ValueError(f"audit action must be one of {ACTIONS}, got {action!r}")
    t = as_tracker(tracking)
    exp = t.experiment_id(AUDIT_EXPERIMENT)
    tags = {
        "model": model,
        "action": action,
        "version": str(version or ""),
        "champion_before": str(before or ""),
        "champion_after": str(after or ""),
        "who": actor or who(),
        "reason": reason[:5000],
        "mlflow.runName": f"{model} {action} v{version or '-'}",
    }
    run = t.call(lambda: t.client.create_run(exp, tags=tags), "record the champion audit event")
    run_id = run.info.run_id
    finite = {k: float(v) for k, v in (numbers or {}).items() if v is not None and math.isfinite(float(v))}
    if finite:
        t.log_metrics(run_id, finite)
    table = history(model, t)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "champion_history.csv"
        table.to_csv(path, index=False)
        t.log_artifact(run_id, path)
    t.end_run(run_id, "FINISHED")
    t.call(lambda: t.client.set_registered_model_tag(model, AUDIT_TAG, run_id), "point the model at its audit log")
    return run_id


def history(model: str, tracking=None) -> pd.DataFrame:
    """The model's audit events, oldest first (columns: COLUMNS)."""
    t = as_tracker(tracking)
    exp = t.client.get_experiment_by_name(AUDIT_EXPERIMENT)
    if exp is None:
        return pd.DataFrame(columns=COLUMNS)
    runs, token = [], None
    while True:
        page = t.call(
            lambda token=token: t.client.search_runs(
                [exp.experiment_id], f"tags.model = '{model}'", max_results=1000, page_token=token
            ),
            "read the champion audit log",
        )
        runs += list(page)
        token = page.token
        if not token:
            break
    rows = []
    for r in sorted(runs, key=lambda r: r.info.start_time):
        tags = r.data.tags
        numbers = "; ".join(f"{k}={v:.4g}" for k, v in sorted(r.data.metrics.items()))
        rows.append(
            {
                "time": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r.info.start_time / 1000)) + "Z",
                "action": tags.get("action", ""),
                "model": tags.get("model", ""),
                "version": tags.get("version", ""),
                "champion_before": tags.get("champion_before", ""),
                "champion_after": tags.get("champion_after", ""),
                "who": tags.get("who", ""),
                "reason": tags.get("reason", ""),
                "numbers": numbers,
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)
