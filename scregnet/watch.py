"""`scregnet watch`: retrain a dataset when its prior files in S3 change.

One pass (`watch_once`):
  1. list `s3://BUCKET/PREFIX/` (boto3 paginator) -> prior files per dataset; every key is
     judged there (`priors_store.keys`). A dataset with a refused key (unsafe, too long for
     the local disk, colliding with another of its files) is not trained on the rest: status
     `refused-keys` and a failure entry (below), so it backs off like a failing run;
  2. skip datasets whose (key, ETag) set equals the one recorded in the bucket state, or
     whose last run failed on that same set and is backing off (see below), or whose newest
     upload has not settled yet, or without expression under `EXPRESSION_ROOT/<dataset>/`
     (a BEELINE directory, or one .h5ad);
  3. take the dataset's lease (S3 conditional write; another watcher holding it -> skip),
     re-read the state under the lease (that watcher may just have finished), download the
     priors into a content-addressed directory with their manifest;
  4. run `python -m scregnet.cli train --config <generated YAML>` in its OWN process (ZenML
     runs one pipeline per process), the priors replacing Label.csv's labels;
  5. only when the run exited 0, record the manifest in the state (and clear any failure
     entry). A failed run is not recorded as trained: instead a failure entry
     (`state["failed"][dataset]`: the listing fingerprint, manifest sha256, consecutive
     failures, first/last failure time, exit code, log) makes later passes skip the same
     priors with status `backoff` until `last_failed_at + min(retry_base * 2**(failures-1),
     retry_max)`, and with `gave-up` after `max_failures` failures. Decided from the listing
     alone (no download, no lease). New priors (another fingerprint) train at once;
     `retry_failed` (CLI `--retry-failed`) ignores the entries for one pass. A killed
     watcher (SIGTERM, Ctrl-C) records nothing, so the next pass retries at once.
Any other exception while handling one dataset (download, disk, a runner that cannot start)
is recorded the same way (status `error`, the exception's class and message) and the pass
goes on with the other datasets. A corrupt state object is moved aside (see `WatchState`).
Times come from the S3 server's clock (the listing's `Date` header plus elapsed monotonic
time), so watchers on hosts with skewed clocks agree; tests inject `clock`.
No ZenML or MLflow import here: the watcher stays light, the child does the work.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from scregnet import priors_store as ps
from scregnet.config import read_run_config


@dataclass
class WatchConfig:
    """Where to watch, what to train with, and the timing and backoff settings."""

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
    # Backoff after a failed run of the same priors: 15 min (one default CronJob/--interval
    # period, so a transient failure such as a preempted node is retried on the next pass),
    # doubling to at most 6 h (= the default run timeout: once capped, a run that keeps timing
    # out holds the GPU at most half the time). 8 failures = 7 waits of 15m+30m+1h+2h+4h+6h+6h,
    # about a day of retries, after which the priors are given up on until they change or
    # `--retry-failed`; None = no limit. retry_base_seconds=0 retries on every pass.
    retry_base_seconds: float = 15 * 60.0
    retry_max_seconds: float = 6 * 3600.0
    max_failures: int | None = 8
    train_command: list[str] = field(default_factory=lambda: [sys.executable, "-m", "scregnet.cli", "train"])


@dataclass
class Outcome:
    """What one pass did with one dataset."""

    dataset: str
    status: str  # trained | failed | refused-keys | error | backoff | gave-up | up-to-date | settling
    #              | no-expression | locked | changed | same-content
    detail: str = ""
    manifest_sha256: str | None = None
    seconds: float | None = None


@dataclass
class RunRequest:
    """One triggered training run: its config, manifest and log paths."""

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


def write_run_config(base: Path | None, dataset: str, source: tuple[str, Path], manifest_path: Path, out: Path) -> Path:
    """The base run-config YAML with `parameters.config.data` pointing at this dataset's priors."""
    cfg, raw = read_run_config(base) if base is not None else ({}, {})
    data = dict(cfg.get("data") or {})
    for k in ("path", "h5ad", "priors", "name", "replace_labels", "prior_manifest"):
        data.pop(k, None)
    kind, where = source
    data.update(
        {
            kind: str(where),
            "priors": [str(p) for p in ps.manifest_files(manifest_path)],
            "name": dataset,
            "prior_manifest": str(manifest_path),
        }
    )
    if kind == "path":
        data["replace_labels"] = True  # the S3 priors are the labels, not an addition to Label.csv
    cfg["data"] = data
    raw["parameters"] = {**raw.get("parameters", {}), "config": cfg}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(raw, sort_keys=False))
    return out


def run_subprocess(cfg: WatchConfig, req: RunRequest, log: Callable[[str], None]) -> int:
    """The training run in its own process (own session, so a timeout kills the whole tree)."""
    cmd = [*cfg.train_command, "--config", str(req.config_path)]
    log(f"[{req.dataset}] start: {' '.join(cmd)}  (log: {req.log_path})")
    req.log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(req.log_path, "wb") as logf:
        proc = subprocess.Popen(
            cmd,
            stdout=logf,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # The audit log names the watcher as the one who moved (or kept) the champion.
            env={
                **os.environ,
                "SCREGNET_ACTOR": f"watcher {socket.gethostname()}:{os.getpid()} "
                f"for s3://{cfg.bucket}/{cfg.prefix.rstrip('/') + '/' if cfg.prefix else ''}{req.dataset}",
            },
        )
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


# ------------------------------------------------------------------------------------
# failure backoff

FAILURE_STATUSES = ("failed", "refused-keys", "error")  # a failure entry was written in this pass
MAX_REFUSED_RECORDED = 20  # refused keys listed in a failure entry (all of them are logged)


def retry_delay(failures: int, base: float, cap: float) -> float:
    """Seconds to wait after the `failures`-th consecutive failure: base, 2 base, 4 base, ... <= cap."""
    if failures <= 0:
        return 0.0
    return min(base * 2.0 ** min(failures - 1, 62), cap)  # exponent bounded: no float overflow


def server_clock(listing: ps.Listing) -> Callable[[], datetime]:
    """Now by the S3 server's clock: the listing's `Date` plus local monotonic time since (no
    skew between watchers); the local UTC clock when the endpoint sent no `Date`. Whole
    seconds, like `Date`: a failure stamped at 12:00:00.7 must not look later than the
    next listing's `Date: 12:00:00` (taken at 12:00:00.9)."""
    if listing.server_time is None:
        return lambda: datetime.now(UTC).replace(microsecond=0)
    base, t0 = listing.server_time, time.monotonic()
    return lambda: (base + timedelta(seconds=time.monotonic() - t0)).replace(microsecond=0)


def _when(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _span(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, sec = divmod(rest, 60)
    return "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (sec, "s")) if v) or "0s"


def _last_failure(entry: dict) -> str:
    """The last failure of a failure entry, in words."""
    reason = entry.get("reason", "run-failed")
    if reason == "refused-keys":
        refused = entry.get("refused") if isinstance(entry.get("refused"), list) else []
        first = refused[0] if refused and isinstance(refused[0], dict) else {}
        return f"{len(refused)} key(s) refused, e.g. {first.get('key')!r}: {first.get('why')}"
    if reason == "error":
        return str(entry.get("error"))
    return f"exit {entry.get('exit_code')}, log {entry.get('log')}"


def held_back(cfg: WatchConfig, dataset: str, entry: dict | None, objects, now: datetime) -> Outcome | None:
    """`backoff` / `gave-up` when `entry` (state["failed"][dataset]) is a failure of exactly
    these objects and no retry is due yet; None when the dataset should run."""
    if not isinstance(entry, dict) or entry.get("fingerprint") != ps.fingerprint(objects):
        return None  # no failure, or the priors changed since: train at once
    try:
        failures, last = int(entry["failures"]), datetime.fromisoformat(entry["last_failed_at"])
    except (KeyError, TypeError, ValueError):
        return None  # a hand-edited or foreign entry must not block training forever
    what = f"failed {failures}x in a row on these priors (last: {_last_failure(entry)})"
    if cfg.max_failures is not None and failures >= cfg.max_failures:
        return Outcome(
            dataset,
            "gave-up",
            f"{what}; not retried until its priors change or --retry-failed",
            entry.get("manifest_sha256"),
        )
    due = last + timedelta(seconds=retry_delay(failures, cfg.retry_base_seconds, cfg.retry_max_seconds))
    if now >= due:
        return None
    return Outcome(
        dataset,
        "backoff",
        f"{what}; next retry at {_when(due)} (in {_span((due - now).total_seconds())})",
        entry.get("manifest_sha256"),
    )


def _count(previous: dict) -> int:
    try:
        return max(0, int(previous.get("failures", 0)))
    except (TypeError, ValueError):
        return 0  # a hand-edited count starts again


def failure_entry(
    cfg: WatchConfig,
    previous: dict | None,
    objects,
    digest: str | None,
    rc: int | None,
    log_path: Path | None,
    at: datetime,
    *,
    reason: str = "run-failed",
    error: str | None = None,
    refused: list[dict] | None = None,
) -> dict:
    """The state["failed"][dataset] entry after a failure: the count continues only when the
    previous failure was of the same listing (same keys and ETags).

    `reason`: `run-failed` (the run exited `rc`), `refused-keys` (`refused`: [{key, why}]) or
    `error` (`error`: the exception, class and message).
    """
    fp = ps.fingerprint(objects)
    same = isinstance(previous, dict) and previous.get("fingerprint") == fp
    failures = (_count(previous) if same else 0) + 1
    gave_up = cfg.max_failures is not None and failures >= cfg.max_failures
    delay = retry_delay(failures, cfg.retry_base_seconds, cfg.retry_max_seconds)
    entry = {
        "fingerprint": fp,
        "reason": reason,
        "manifest_sha256": digest,
        "failures": failures,
        "first_failed_at": previous.get("first_failed_at", at.isoformat()) if same else at.isoformat(),
        "last_failed_at": at.isoformat(),
        "exit_code": rc,
        "log": None if log_path is None else str(log_path),
        # for whoever reads the state; a watcher recomputes it from its own settings
        "next_retry_at": None if gave_up else (at + timedelta(seconds=delay)).isoformat(),
    }
    if error is not None:
        entry["error"] = error
    if refused is not None:
        entry["refused"] = refused
    return entry


def _then(cfg: WatchConfig, entry: dict, at: datetime) -> str:
    """When a failed dataset is tried again, in words."""
    if entry["next_retry_at"] is None:
        return f"giving up on these priors (max {cfg.max_failures} failures) until they change or --retry-failed"
    due = datetime.fromisoformat(entry["next_retry_at"])
    return f"next retry at {_when(due)} (in {_span((due - at).total_seconds())}) unless the priors change"


def pass_failed(outcomes: list[Outcome]) -> bool:
    """True when this pass wrote a failure entry (a failed run, refused keys, an error): `--once`
    exits 1. Backing off and given up are not failures of the pass."""
    return any(o.status in FAILURE_STATUSES for o in outcomes)


def pass_summary(outcomes: list[Outcome]) -> str:
    """The last line of a pass."""
    n = Counter(o.status for o in outcomes)
    return (
        f"pass done: {n['trained']} trained, {n['failed']} failed, {n['refused-keys']} with refused keys, "
        f"{n['error']} errors, {n['backoff']} backing off, {n['gave-up']} given up on, "
        f"{len(outcomes)} dataset(s) seen"
    )


# ------------------------------------------------------------------------------------
# one pass


@dataclass
class Pass:
    """What one pass shares: settings, S3 client and state, the runner, where runs write, the log, the clock."""

    cfg: WatchConfig
    s3: Any
    state: ps.WatchState
    runner: Callable[[WatchConfig, RunRequest, Callable], int]
    workdir: Path
    log: Callable[[str], None]
    clock: Callable[[], datetime]
    retry_failed: bool = False


def watch_once(
    cfg: WatchConfig,
    s3=None,
    runner: Callable[[WatchConfig, RunRequest, Callable], int] | None = None,
    log: Callable[[str], None] = print,
    clock: Callable[[], datetime] | None = None,
    retry_failed: bool = False,
) -> list[Outcome]:
    """One pass over the prefix; returns one outcome per dataset seen.

    `clock`: timezone-aware now (default: the S3 server's clock, see `server_clock`).
    `retry_failed`: run datasets in backoff or given up on now, as if their priors were new.
    A problem of one dataset (refused keys, an exception) is recorded for it; the pass goes on.
    """
    s3 = s3 or ps.s3_client(cfg.endpoint_url)
    listing = ps.list_priors(s3, cfg.bucket, cfg.prefix, local_root=cfg.priors_dir)
    ctx = Pass(
        cfg=cfg,
        s3=s3,
        state=ps.WatchState(s3, cfg.bucket, cfg.prefix, log=log),
        runner=runner or run_subprocess,
        workdir=Path(cfg.workdir or cfg.priors_dir.parent / "watch"),
        log=log,
        clock=clock or server_clock(listing),
        retry_failed=retry_failed,
    )
    in_datasets = {r.key for refused in listing.blocked.values() for r in refused}
    for key, why in listing.refused:
        if key not in in_datasets:  # those are reported with their dataset
            log(f"refused s3://{cfg.bucket}/{key}: {why}")
    outcomes, candidates = _triage(ctx, listing)
    outcomes.update(_settle(ctx, listing, candidates))
    for dataset, objects in sorted(candidates.items()):
        outcomes[dataset] = _process(ctx, dataset, objects)
    outcomes = [outcomes[d] for d in sorted(outcomes)]
    for o in outcomes:
        log(f"[{o.dataset}] {o.status}" + (f": {o.detail}" if o.detail else ""))
    return outcomes


def _triage(ctx: Pass, listing: ps.Listing) -> tuple[dict[str, Outcome], dict[str, list]]:
    """From the listing and the state alone: (outcomes of datasets with nothing to run, candidates to run)."""
    current = ctx.state.read()
    now = ctx.clock()
    outcomes: dict[str, Outcome] = {}
    candidates: dict[str, list] = {}
    for dataset in sorted(set(listing.datasets) | set(listing.blocked)):
        objects = listing.datasets.get(dataset, [])
        try:
            if dataset in listing.blocked:
                outcomes[dataset] = _refused(ctx, current, dataset, objects, listing.blocked[dataset], now)
            elif (skip := _skip(ctx, current, dataset, objects, now)) is not None:
                outcomes[dataset] = skip
            else:
                candidates[dataset] = objects
        except Exception as exc:  # noqa: BLE001 - one dataset's problem is its own
            outcomes[dataset] = _record_error(ctx, dataset, objects, exc)
    return outcomes, candidates


def _skip(ctx: Pass, current: dict, dataset: str, objects: list, now: datetime) -> Outcome | None:
    """Why this dataset needs no run now; None when it is a candidate."""
    done = current["datasets"].get(dataset)
    held = held_back(ctx.cfg, dataset, current["failed"].get(dataset), objects, now)
    if done and ps.fingerprint(done.get("files", [])) == ps.fingerprint(objects):
        return Outcome(dataset, "up-to-date", manifest_sha256=done.get("manifest_sha256"))
    if held is not None and not ctx.retry_failed:
        return held
    if find_expression(ctx.cfg.expression_root, dataset) is None:
        where = ctx.cfg.expression_root / dataset
        return Outcome(dataset, "no-expression", f"no BEELINE directory or single .h5ad at {where}")
    if held is not None:
        ctx.log(f"[{dataset}] {held.status}, retried now (--retry-failed): {held.detail}")
    return None


def _refused(
    ctx: Pass, current: dict, dataset: str, objects: list, refused: list[ps.RefusedKey], now: datetime
) -> Outcome:
    """A dataset with refused keys is not trained: its other files alone would be a partial set of
    priors (labels silently missing). Recorded like a failed run, so it backs off and gives up."""
    cfg, items = ctx.cfg, [*objects, *refused]
    held = held_back(cfg, dataset, current["failed"].get(dataset), items, now)
    if held is not None and not ctx.retry_failed:
        return held
    at = ctx.clock()
    listed = [{"key": r.key, "why": r.why} for r in refused[:MAX_REFUSED_RECORDED]]

    def _failed(s: dict) -> None:
        previous = s["failed"].get(dataset)
        if not ctx.retry_failed and held_back(cfg, dataset, previous, items, at) is not None:
            return  # another watcher recorded this very refusal a moment ago: counted once
        s["failed"][dataset] = failure_entry(
            cfg, previous, items, None, None, None, at, reason="refused-keys", refused=listed
        )

    entry = ctx.state.update(_failed)["failed"][dataset]
    keys = "; ".join(f"s3://{cfg.bucket}/{r.key}: {r.why}" for r in refused)
    ctx.log(f"[{dataset}] refused {len(refused)} key(s); the dataset is not trained until they are fixed: {keys}")
    shown = "; ".join(f"{r.why}" for r in refused[:3]) + ("; ..." if len(refused) > 3 else "")
    return Outcome(
        dataset,
        "refused-keys",
        f"{len(refused)} key(s) refused ({shown}); failure {entry['failures']}, {_then(cfg, entry, at)}",
    )


def _describe(exc: BaseException) -> str:
    """`Class: message (at file:line in function)` of an unexpected exception."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name})"
    return f"{type(exc).__name__}: {str(exc)[:500]}{where}"


def _record_error(ctx: Pass, dataset: str, objects: list, exc: BaseException) -> Outcome:
    """An unexpected error while handling one dataset (download, disk, a runner that cannot start):
    recorded like a failed run, so it backs off; the pass goes on with the other datasets."""
    what, at = _describe(exc), ctx.clock()

    def _failed(s: dict) -> None:
        previous = s["failed"].get(dataset)
        s["failed"][dataset] = failure_entry(
            ctx.cfg, previous, objects, None, None, None, at, reason="error", error=what
        )

    try:
        entry = ctx.state.update(_failed)["failed"][dataset]
        then = f"failure {entry['failures']}, {_then(ctx.cfg, entry, at)}"
    except Exception as again:  # noqa: BLE001 - e.g. S3 down: say so, the next pass tries again
        then = f"the failure could not be recorded ({_describe(again)}); tried again next pass"
    ctx.log(f"[{dataset}] error: {what}; {then}")
    return Outcome(dataset, "error", f"{what}; {then}")


def _settle(ctx: Pass, listing: ps.Listing, candidates: dict[str, list]) -> dict[str, Outcome]:
    """Drop (with status `settling`) the candidates whose upload is still going on.

    A dataset is trained on once its newest upload is `settle_seconds` old (S3 clock) and a
    fresh listing shows the same files. Fresh uploads are waited for (at most
    `settle_seconds`) within this pass, so `--once` right after an upload still trains.
    """
    cfg = ctx.cfg
    young = {d for d, objs in candidates.items() if not ps.is_settled(objs, listing.server_time, cfg.settle_seconds)}
    if not young:
        return {}
    now = listing.server_time or datetime.now(UTC)
    wait = max(cfg.settle_seconds - (now - max(o.last_modified for o in candidates[d])).total_seconds() for d in young)
    ctx.log(f"waiting {max(wait, 0):.0f}s for uploads to settle: {', '.join(sorted(young))}")
    time.sleep(min(max(wait, 0.0), cfg.settle_seconds) + 1.0)
    again = ps.list_priors(ctx.s3, cfg.bucket, cfg.prefix, local_root=cfg.priors_dir)
    outcomes = {}
    for d in young:
        objs = again.datasets.get(d, [])
        if (
            d in again.blocked  # a bad key arrived meanwhile: judged next pass
            or ps.fingerprint(objs) != ps.fingerprint(candidates[d])
            or not ps.is_settled(objs, again.server_time, cfg.settle_seconds)
        ):
            outcomes[d] = Outcome(d, "settling", "still being uploaded; next pass")
            del candidates[d]
    return outcomes


def _process(ctx: Pass, dataset: str, objects: list) -> Outcome:
    """One dataset under its lease: re-check the state, download, run, record. An exception is
    recorded as this dataset's failure (under its lease) and does not end the pass."""
    cfg = ctx.cfg
    try:
        source = find_expression(cfg.expression_root, dataset)
        if source is None:
            return Outcome(dataset, "no-expression", f"{cfg.expression_root / dataset} vanished during the pass")
        lock = ps.S3Lock(ctx.s3, cfg.bucket, ps.lock_key(cfg.prefix, dataset), cfg.lease_seconds)
        if not lock.acquire():
            return Outcome(dataset, "locked", "another watcher holds this dataset's lease")
    except Exception as exc:  # noqa: BLE001
        return _record_error(ctx, dataset, objects, exc)
    lock.start_heartbeat()
    try:
        return _under_lease(ctx, lock, dataset, objects, source)
    except Exception as exc:  # noqa: BLE001 - SIGTERM/Ctrl-C (BaseException) still stop the watcher
        return _record_error(ctx, dataset, objects, exc)
    finally:
        try:
            lock.release()
        except Exception as exc:  # noqa: BLE001 - the lease expires by itself
            ctx.log(f"[{dataset}] warning: could not release the lease: {_describe(exc)}")


def _under_lease(ctx: Pass, lock: ps.S3Lock, dataset: str, objects: list, source: tuple[str, Path]) -> Outcome:
    current = ctx.state.read()  # re-read under the lease: another watcher may have finished (or failed)
    done = current["datasets"].get(dataset)
    if done and ps.fingerprint(done.get("files", [])) == ps.fingerprint(objects):
        return Outcome(dataset, "up-to-date", "trained by another watcher", done.get("manifest_sha256"))
    held = held_back(ctx.cfg, dataset, current["failed"].get(dataset), objects, ctx.clock())
    if held is not None and not ctx.retry_failed:
        held.detail = f"another watcher's run just failed: {held.detail}"
        return held
    try:
        manifest_path, manifest = ps.materialize(
            ctx.s3, ctx.cfg.bucket, ctx.cfg.prefix, dataset, objects, ctx.cfg.priors_dir
        )
    except ps.ChangedDuringDownload as exc:
        return Outcome(dataset, "changed", str(exc))
    digest = manifest["sha256"]
    record = {
        "manifest_sha256": digest,
        "files": [{k: f[k] for k in ("key", "rel", "etag", "sha256", "size")} for f in manifest["files"]],
    }
    if done and done.get("manifest_sha256") == digest:  # same bytes re-uploaded: note the new ETags only

        def _same(s: dict) -> None:
            s["datasets"][dataset].update(record)
            s["failed"].pop(dataset, None)  # a failure of other priors no longer applies

        ctx.state.update(_same)
        return Outcome(dataset, "same-content", "ETags changed, content did not: nothing to train", digest)
    req = _run_request(ctx, dataset, source, manifest_path, digest)
    t0 = time.perf_counter()
    rc = ctx.runner(ctx.cfg, req, ctx.log)
    seconds = time.perf_counter() - t0
    if rc != 0:
        return _record_failed_run(ctx, dataset, objects, digest, rc, req, seconds)
    if lock.lost:
        ctx.log(f"[{dataset}] warning: the lease was lost during the run (heartbeat could not renew it)")

    def _record(s: dict) -> None:
        s["datasets"][dataset] = {
            **record,
            "trained_at": datetime.now(UTC).isoformat(),
            "seconds": round(seconds, 1),
            "run_config": str(req.config_path),
            "log": str(req.log_path),
            "manifest": str(manifest_path),
        }
        s["failed"].pop(dataset, None)  # the failure streak is over

    ctx.state.update(_record)
    return Outcome(dataset, "trained", f"{seconds:.0f}s", digest, seconds)


def _run_request(ctx: Pass, dataset: str, source: tuple[str, Path], manifest_path: Path, digest: str) -> RunRequest:
    """The generated run config and the log path of one run."""
    name = f"{dataset}-{digest[:12]}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    config = write_run_config(ctx.cfg.run_config, dataset, source, manifest_path, ctx.workdir / "runs" / f"{name}.yaml")
    return RunRequest(dataset, config, manifest_path, ctx.workdir / "logs" / f"{name}.log")


def _record_failed_run(
    ctx: Pass, dataset: str, objects: list, digest: str, rc: int, req: RunRequest, seconds: float
) -> Outcome:
    """A run that exited non-zero: not trained; its failure entry starts or continues the backoff."""
    cfg, at = ctx.cfg, ctx.clock()

    def _failed(s: dict) -> None:  # not trained: `datasets` keeps the last successful run
        s["failed"][dataset] = failure_entry(cfg, s["failed"].get(dataset), objects, digest, rc, req.log_path, at)

    entry = ctx.state.update(_failed)["failed"][dataset]
    then = _then(cfg, entry, at)
    ctx.log(
        f"[{dataset}] run failed (exit {rc}), failure {entry['failures']} in a row on these priors; {then}. "
        f"Log tail:\n{_tail(req.log_path)}"
    )
    return Outcome(
        dataset, "failed", f"exit {rc}, log {req.log_path}; failure {entry['failures']}, {then}", digest, seconds
    )


def watch(
    cfg: WatchConfig,
    once: bool = True,
    interval: float = 900.0,
    log: Callable[[str], None] = print,
    max_passes: int | None = None,
    retry_failed: bool = False,
) -> list[Outcome]:
    """`--once`: one pass. Otherwise a pass every `interval` seconds until stopped.
    `retry_failed` applies to the first pass only: later passes back off again."""
    s3 = ps.s3_client(cfg.endpoint_url)
    passes = 0
    while True:
        t0 = time.monotonic()
        try:
            outcomes = watch_once(cfg, s3, log=log, retry_failed=retry_failed and passes == 0)
        except Exception as exc:  # noqa: BLE001 - a loop survives a transient S3 error
            if once:
                raise
            log(f"pass failed: {type(exc).__name__}: {exc}")
            outcomes = []
        passes += 1
        if once or (max_passes is not None and passes >= max_passes):
            return outcomes
        time.sleep(max(0.0, interval - (time.monotonic() - t0)))
