"""`scregnet watch`: retrain a dataset when its prior files in S3 change.

One pass (`watch_once`):
  1. list `s3://BUCKET/PREFIX/` (boto3 paginator) -> prior files per dataset;
  2. skip datasets whose (key, ETag) set equals the one recorded in the bucket state, or
     whose newest upload has not settled yet, or without expression under
     `EXPRESSION_ROOT/<dataset>/` (a BEELINE directory, or one .h5ad);
  3. take the dataset's lease (S3 conditional write; another watcher holding it -> skip),
     re-read the state under the lease (that watcher may just have finished), download the
     priors into a content-addressed directory with their manifest;
  4. run `python -m scregnet.cli train --config <generated YAML>` in its OWN process (ZenML
     runs one pipeline per process), the priors replacing Label.csv's labels;
  5. only when the run exited 0, record the manifest in the state. A failed or killed run
     leaves the state alone, so the next pass retries it.
No ZenML or MLflow import here: the watcher stays light, the child does the work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml

from scregnet import priors_store as ps

# Keys of a ZenML run-config YAML that are not our RunConfig.
ZENML_KEYS = ("settings", "steps", "enable_cache", "enable_artifact_metadata", "enable_artifact_visualization",
              "enable_step_logs", "run_name", "schedule", "build", "model", "extra", "tags", "substitutions",
              "enable_pipeline_logs", "cache_policy")


@dataclass
class WatchConfig:
    bucket: str
    prefix: str
    expression_root: Path
    priors_dir: Path
    run_config: Path | None = None  # base run-config YAML (SCREGNET_RUN_CONFIG)
    endpoint_url: str | None = None
    settle_seconds: float = 15.0
    lease_seconds: float = 300.0
    run_timeout: float = 6 * 3600.0
    workdir: Path | None = None  # generated run configs and run logs
    train_command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "scregnet.cli", "train"])


@dataclass
class Outcome:
    dataset: str
    status: str  # trained | failed | up-to-date | settling | no-expression | locked | changed | same-content
    detail: str = ""
    manifest_sha256: str | None = None
    seconds: float | None = None


@dataclass
class RunRequest:
    dataset: str
    config_path: Path
    manifest_path: Path
    log_path: Path


def find_expression(root: Path, dataset: str) -> tuple[str, Path] | None:
    """("path", DIR) for a BEELINE directory, ("h5ad", FILE) for a single .h5ad, else None."""
    from scregnet.data import EXPRESSION_FILE, find_file

    d = ps.safe_join(root, dataset)
    if not d.is_dir():
        return None
    if find_file(d, EXPRESSION_FILE) is not None and find_file(d, "Target.csv") is not None:
        return "path", d
    h5ads = sorted(d.glob("*.h5ad"))
    if len(h5ads) == 1:
        return "h5ad", h5ads[0]
    return None


def write_run_config(base: Path | None, dataset: str, source: tuple[str, Path], manifest_path: Path,
                     out: Path) -> Path:
    """The base run-config YAML with `parameters.config.data` pointing at this dataset's priors."""
    raw: dict = {}
    if base is not None:
        raw = yaml.safe_load(Path(base).read_text()) or {}
    if isinstance(raw.get("parameters"), dict) and "config" in raw["parameters"]:
        cfg = raw["parameters"]["config"] or {}
    else:  # a bare RunConfig YAML: move it under parameters.config, keep ZenML keys on top
        cfg = {k: v for k, v in raw.items() if k not in ZENML_KEYS}
        raw = {k: v for k, v in raw.items() if k in ZENML_KEYS}
        raw["parameters"] = {}
    data = dict(cfg.get("data") or {})
    for k in ("path", "h5ad", "priors", "name", "replace_labels", "prior_manifest"):
        data.pop(k, None)
    kind, where = source
    data.update({kind: str(where), "priors": [str(p) for p in ps.manifest_files(manifest_path)], "name": dataset,
                 "prior_manifest": str(manifest_path)})
    if kind == "path":
        data["replace_labels"] = True  # the S3 priors are the labels, not an addition to Label.csv
    cfg["data"] = data
    raw["parameters"]["config"] = cfg
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def run_subprocess(cfg: WatchConfig, req: RunRequest, log: Callable[[str], None]) -> int:
    """The training run in its own process (own session, so a timeout kills the whole tree)."""
    cmd = [*cfg.train_command, "--config", str(req.config_path)]
    log(f"[{req.dataset}] start: {' '.join(cmd)}  (log: {req.log_path})")
    req.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(req.log_path, "wb") as logf:
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=dict(os.environ))
        try:
            return proc.wait(timeout=cfg.run_timeout)
        except subprocess.TimeoutExpired:
            log(f"[{req.dataset}] run exceeded {cfg.run_timeout:.0f}s: killing it")
            return -1
        finally:  # timeout, SIGTERM/KeyboardInterrupt of the watcher: no orphaned run
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=30)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def watch_once(cfg: WatchConfig, s3=None, runner: Callable[[WatchConfig, RunRequest, Callable], int] | None = None,
               log: Callable[[str], None] = print) -> list[Outcome]:
    """One pass over the prefix; returns one outcome per dataset seen."""
    s3 = s3 or ps.s3_client(cfg.endpoint_url)
    runner = runner or run_subprocess
    workdir = Path(cfg.workdir or cfg.priors_dir.parent / "watch")
    listing = ps.list_priors(s3, cfg.bucket, cfg.prefix)
    for key, why in listing.refused:
        log(f"refused s3://{cfg.bucket}/{key}: {why}")
    state = ps.WatchState(s3, cfg.bucket, cfg.prefix)
    recorded = state.read()["datasets"]
    outcomes: dict[str, Outcome] = {}
    candidates: dict[str, list] = {}
    for dataset, objects in sorted(listing.datasets.items()):
        done = recorded.get(dataset)
        if done and ps.fingerprint(done.get("files", [])) == ps.fingerprint(objects):
            outcomes[dataset] = Outcome(dataset, "up-to-date", manifest_sha256=done.get("manifest_sha256"))
        elif find_expression(cfg.expression_root, dataset) is None:
            outcomes[dataset] = Outcome(dataset, "no-expression",
                                        f"no BEELINE directory or single .h5ad at {cfg.expression_root / dataset}")
        else:
            candidates[dataset] = objects
    # Settling: a dataset is trained on once its newest upload is `settle_seconds` old (S3
    # clock) and a fresh listing shows the same files. Fresh uploads are waited for (at most
    # `settle_seconds`) within this pass, so `--once` right after an upload still trains.
    young = {d for d, objs in candidates.items() if not ps.is_settled(objs, listing.server_time, cfg.settle_seconds)}
    if young:
        now = listing.server_time or datetime.now(timezone.utc)
        wait = max(cfg.settle_seconds - (now - max(o.last_modified for o in candidates[d])).total_seconds()
                   for d in young)
        log(f"waiting {max(wait, 0):.0f}s for uploads to settle: {', '.join(sorted(young))}")
        time.sleep(min(max(wait, 0.0), cfg.settle_seconds) + 1.0)
        again = ps.list_priors(s3, cfg.bucket, cfg.prefix)
        for d in young:
            objs = again.datasets.get(d, [])
            if ps.fingerprint(objs) != ps.fingerprint(candidates[d]) or not ps.is_settled(
                    objs, again.server_time, cfg.settle_seconds):
                outcomes[d] = Outcome(d, "settling", "still being uploaded; next pass")
                del candidates[d]
    for dataset, objects in sorted(candidates.items()):
        source = find_expression(cfg.expression_root, dataset)
        outcomes[dataset] = _process(cfg, s3, state, dataset, objects, source, runner, workdir, log)
    outcomes = [outcomes[d] for d in sorted(outcomes)]
    for o in outcomes:
        log(f"[{o.dataset}] {o.status}" + (f": {o.detail}" if o.detail else ""))
    return outcomes


def _process(cfg, s3, state, dataset, objects, source, runner, workdir, log) -> Outcome:
    lock = ps.S3Lock(s3, cfg.bucket, ps.lock_key(cfg.prefix, dataset), cfg.lease_seconds)
    if not lock.acquire():
        return Outcome(dataset, "locked", "another watcher holds this dataset's lease")
    lock.start_heartbeat()
    try:
        done = state.dataset(dataset)  # re-read under the lease: another watcher may have finished
        if done and ps.fingerprint(done.get("files", [])) == ps.fingerprint(objects):
            return Outcome(dataset, "up-to-date", "trained by another watcher", done.get("manifest_sha256"))
        try:
            manifest_path, manifest = ps.materialize(s3, cfg.bucket, cfg.prefix, dataset, objects, cfg.priors_dir)
        except ps.ChangedDuringDownload as exc:
            return Outcome(dataset, "changed", str(exc))
        digest = manifest["sha256"]
        record = {"manifest_sha256": digest,
                  "files": [{k: f[k] for k in ("key", "rel", "etag", "sha256", "size")} for f in manifest["files"]]}
        if done and done.get("manifest_sha256") == digest:  # same bytes re-uploaded: note the new ETags only
            state.update(lambda s: s["datasets"][dataset].update(record))
            return Outcome(dataset, "same-content", "ETags changed, content did not: nothing to train", digest)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        req = RunRequest(dataset, write_run_config(cfg.run_config, dataset, source, manifest_path,
                                                   workdir / "runs" / f"{dataset}-{digest[:12]}-{stamp}.yaml"),
                         manifest_path, workdir / "logs" / f"{dataset}-{digest[:12]}-{stamp}.log")
        t0 = time.perf_counter()
        rc = runner(cfg, req, log)
        seconds = time.perf_counter() - t0
        if rc != 0:
            log(f"[{dataset}] run failed (exit {rc}); state unchanged, retried next pass. Log tail:\n"
                f"{_tail(req.log_path)}")
            return Outcome(dataset, "failed", f"exit {rc}, log {req.log_path}", digest, seconds)
        if lock.lost:
            log(f"[{dataset}] warning: the lease was lost during the run (heartbeat could not renew it)")

        def _record(s: dict) -> None:
            s["datasets"][dataset] = {**record, "trained_at": datetime.now(timezone.utc).isoformat(),
                                      "seconds": round(seconds, 1), "run_config": str(req.config_path),
                                      "log": str(req.log_path), "manifest": str(manifest_path)}

        state.update(_record)
        return Outcome(dataset, "trained", f"{seconds:.0f}s", digest, seconds)
    finally:
        lock.release()


def watch(cfg: WatchConfig, once: bool = True, interval: float = 900.0, log: Callable[[str], None] = print,
          max_passes: int | None = None) -> list[Outcome]:
    """`--once`: one pass. Otherwise a pass every `interval` seconds until stopped."""
    s3 = ps.s3_client(cfg.endpoint_url)
    passes = 0
    while True:
        t0 = time.monotonic()
        try:
            outcomes = watch_once(cfg, s3, log=log)
        except Exception as exc:  # noqa: BLE001 - a loop survives a transient S3 error
            if once:
                raise
            log(f"pass failed: {type(exc).__name__}: {exc}")
            outcomes = []
        passes += 1
        if once or (max_passes is not None and passes >= max_passes):
            return outcomes
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
