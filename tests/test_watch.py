"""The S3 priors watcher against a real moto S3 server on 127.0.0.1.

Fast tests drive `watch_once` in-process with a stand-in runner (state, lock, retry, key
safety); one end-to-end test runs `scregnet watch --once` as the CronJob does, each pass a
real training pipeline in its own process, and counts registered versions in
$SCREGNET_HOME/mlflow.db.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml

from scregnet import priors_store as ps
from scregnet.watch import WatchConfig, watch_once
from services import FAKE_AWS, moto_s3, s3_client  # noqa: F401  (fixture)

pytestmark = pytest.mark.services
SCREGNET = Path(sys.executable).parent / "scregnet"


@pytest.fixture(scope="module")
def expression_root(tmp_path_factory):
    from scregnet.synthetic import make_synthetic_dataset

    root = tmp_path_factory.mktemp("expression")
    make_synthetic_dataset(root / "synth", seed=0, n_cells=120, n_genes=80, n_tfs=8)
    return root


@pytest.fixture(scope="module")
def network(expression_root):
    return pd.read_csv(expression_root / "synth" / "BL--network.csv")


@pytest.fixture
def bucket(moto_s3):
    name = f"priors-{uuid.uuid4().hex[:10]}"
    s3_client(moto_s3.url).create_bucket(Bucket=name)
    return name


def _csv(frame: pd.DataFrame, header=("tf", "target"), sep=",") -> bytes:
    return frame.set_axis(list(header), axis=1).to_csv(index=False, sep=sep).encode()


def _cfg(tmp_path, bucket, endpoint, expression_root, **kw) -> WatchConfig:
    return WatchConfig(bucket=bucket, prefix="incoming/", expression_root=expression_root,
                       priors_dir=tmp_path / "priors", endpoint_url=endpoint, settle_seconds=0,
                       workdir=tmp_path / "watch", **kw)


class FakeRunner:
    """Stands in for the training subprocess: records requests, returns the next exit code."""

    def __init__(self, *codes: int, delay: float = 0.0):
        self.codes, self.delay, self.calls = list(codes), delay, []

    def __call__(self, cfg, req, log) -> int:
        self.calls.append(req)
        time.sleep(self.delay)
        return self.codes.pop(0) if self.codes else 0


# ------------------------------------------------------------------------------------
# keys


@pytest.mark.parametrize("key", ["incoming/ds/../x.csv", "incoming/../x.csv", "incoming//etc/passwd.csv",
                                 "incoming/ds\\..\\x.csv", "incoming/ds/./a.csv", "incoming/.hidden/a.csv",
                                 "incoming/a.csv", "other/ds/a.csv", "incoming/ds/a\x00.csv"])
def test_keys_escaping_the_prefix_are_refused(key):
    with pytest.raises(ps.UnsafeKeyError):
        ps.split_key("incoming/", key)


def test_safe_keys_and_local_paths(tmp_path):
    assert ps.split_key("incoming", "incoming/hESC/chip/a.tsv") == ("hESC", "chip/a.tsv")
    assert ps.safe_join(tmp_path, "chip/a.tsv") == (tmp_path / "chip" / "a.tsv").resolve()
    for rel in ("../a.csv", "/abs.csv", "a\\b.csv", "a//b.csv"):
        with pytest.raises(ps.UnsafeKeyError):
            ps.safe_join(tmp_path, rel)
    with pytest.raises(ps.UnsafeKeyError):
        ps.normalize_prefix("../up")


def test_unsafe_keys_are_listed_as_refused_and_never_downloaded(moto_s3, bucket, tmp_path, expression_root, network):
    s3 = s3_client(moto_s3.url)
    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network))
    for bad in ("incoming/synth/../../evil.csv", "incoming/synth\\..\\evil.csv", "incoming//evil.csv"):
        s3.put_object(Bucket=bucket, Key=bad, Body=b"tf,target\nX,Y\n")
    s3.put_object(Bucket=bucket, Key="incoming/synth/README.md", Body=b"not a prior")
    listing = ps.list_priors(s3, bucket, "incoming/")
    assert [o.key for o in listing.datasets["synth"]] == ["incoming/synth/a.csv"]
    assert len(listing.refused) == 3 and listing.ignored == ["incoming/synth/README.md"]
    runner = FakeRunner(0)
    watch_once(_cfg(tmp_path, bucket, moto_s3.url, expression_root), s3, runner, log=lambda m: None)
    files = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".csv")
    assert len(files) == 1 and files[0].name == "a.csv" and "evil" not in str(files)


# ------------------------------------------------------------------------------------
# state, retries, manifests


def test_state_written_only_after_success_and_crashed_runs_are_retried(moto_s3, bucket, tmp_path, expression_root,
                                                                        network):
    s3 = s3_client(moto_s3.url)
    cfg = _cfg(tmp_path, bucket, moto_s3.url, expression_root)
    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network.iloc[:60]))
    state = ps.WatchState(s3, bucket, "incoming/")

    runner = FakeRunner(1)  # the run crashes
    [out] = watch_once(cfg, s3, runner, log=lambda m: None)
    assert out.status == "failed" and len(runner.calls) == 1
    assert state.dataset("synth") is None  # nothing recorded: the change is not lost

    runner = FakeRunner(0)  # next pass: retried, succeeds, recorded
    [out] = watch_once(cfg, s3, runner, log=lambda m: None)
    assert out.status == "trained" and len(runner.calls) == 1
    rec = state.dataset("synth")
    manifest = json.loads(runner.calls[0].manifest_path.read_text())
    assert rec["manifest_sha256"] == manifest["sha256"] == out.manifest_sha256
    assert [f["key"] for f in manifest["files"]] == ["incoming/synth/a.csv"]
    assert manifest["files"][0]["etag"] and len(manifest["files"][0]["sha256"]) == 64
    assert runner.calls[0].manifest_path.parent.name == manifest["sha256"]  # content-addressed directory

    runner = FakeRunner(0)  # nothing new: nothing runs
    [out] = watch_once(cfg, s3, runner, log=lambda m: None)
    assert out.status == "up-to-date" and runner.calls == []

    # Same bytes uploaded again (new LastModified; moto keeps the MD5 ETag): still nothing.
    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network.iloc[:60]))
    [out] = watch_once(cfg, s3, runner, log=lambda m: None)
    assert out.status == "up-to-date" and runner.calls == []

    # A second prior file: one run, whose config lists both files and replaces Label.csv.
    s3.put_object(Bucket=bucket, Key="incoming/synth/b.tsv", Body=_csv(network.iloc[60:], ("Gene1", "Gene2"), "\t"))
    [out] = watch_once(cfg, s3, runner, log=lambda m: None)
    assert out.status == "trained" and len(runner.calls) == 1
    data = yaml.safe_load(runner.calls[0].config_path.read_text())["parameters"]["config"]["data"]
    assert [Path(p).name for p in data["priors"]] == ["a.csv", "b.tsv"]
    assert data["replace_labels"] is True and data["name"] == "synth"
    assert Path(data["path"]) == (expression_root / "synth").resolve()
    assert state.dataset("synth")["manifest_sha256"] != rec["manifest_sha256"]


def test_generated_config_loads_and_priors_replace_the_labels(moto_s3, bucket, tmp_path, expression_root, network):
    from scregnet.config import load_config
    from scregnet.data import load_dataset

    s3 = s3_client(moto_s3.url)
    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network.iloc[:50]))
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({"settings": {"docker": {"skip_build": True}},
                                    "parameters": {"config": {"train": {"max_epochs": 7},
                                                              "data": {"path": "/elsewhere"}}}}))
    runner = FakeRunner(0)
    watch_once(_cfg(tmp_path, bucket, moto_s3.url, expression_root, run_config=base), s3, runner, log=lambda m: None)
    raw = yaml.safe_load(runner.calls[0].config_path.read_text())
    assert raw["settings"] == {"docker": {"skip_build": True}}  # ZenML settings travel with the run
    config = load_config(runner.calls[0].config_path)
    assert config.train.max_epochs == 7 and config.data.replace_labels
    dataset = load_dataset(config.data)
    expected = set(zip(network.iloc[:50]["Gene1"], network.iloc[:50]["Gene2"]))
    assert set(zip(dataset.priors["tf"], dataset.priors["target"])) == expected  # Label.csv not added
    assert ps.prior_manifest_tags(config.data.prior_manifest)["prior_manifest_sha256"] == \
        runner.calls[0].manifest_path.parent.name


def test_h5ad_expression_and_missing_expression(moto_s3, bucket, tmp_path, synthetic, network):
    s3 = s3_client(moto_s3.url)
    root = tmp_path / "expr"
    (root / "cells").mkdir(parents=True)
    synthetic.adata.write_h5ad(root / "cells" / "counts.h5ad")
    s3.put_object(Bucket=bucket, Key="incoming/cells/a.csv", Body=_csv(network.iloc[:40]))
    s3.put_object(Bucket=bucket, Key="incoming/nothing/a.csv", Body=_csv(network.iloc[:40]))
    runner = FakeRunner(0)
    out = {o.dataset: o.status for o in watch_once(_cfg(tmp_path, bucket, moto_s3.url, root), s3, runner,
                                                   log=lambda m: None)}
    assert out == {"cells": "trained", "nothing": "no-expression"}
    data = yaml.safe_load(runner.calls[0].config_path.read_text())["parameters"]["config"]["data"]
    assert data["h5ad"].endswith("counts.h5ad") and "replace_labels" not in data


def test_fresh_uploads_are_waited_for_within_the_pass(moto_s3, bucket, tmp_path, expression_root, network):
    s3 = s3_client(moto_s3.url)
    cfg = _cfg(tmp_path, bucket, moto_s3.url, expression_root)
    cfg.settle_seconds = 2
    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network))
    runner, logs = FakeRunner(0), []
    t0 = time.monotonic()
    [out] = watch_once(cfg, s3, runner, log=logs.append)
    assert out.status == "trained" and time.monotonic() - t0 >= 1.5
    assert any("settle" in m for m in logs)


# ------------------------------------------------------------------------------------
# locks


def test_lock_one_winner_takeover_of_a_dead_lease_and_heartbeat(moto_s3, bucket):
    s3 = s3_client(moto_s3.url)
    key = ps.lock_key("incoming/", "synth")
    contenders = [ps.S3Lock(s3, bucket, key, lease_seconds=60) for _ in range(8)]
    with ThreadPoolExecutor(8) as ex:
        won = list(ex.map(lambda lk: lk.acquire(), contenders))
    assert sum(won) == 1
    holder = contenders[won.index(True)]
    assert not ps.S3Lock(s3, bucket, key).acquire()
    holder.release()
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) == 0

    # A watcher that died holding a 2 s lease: after it expires exactly one contender takes over.
    dead = ps.S3Lock(s3, bucket, key, lease_seconds=2)
    assert dead.acquire()
    assert not ps.S3Lock(s3, bucket, key, lease_seconds=2).acquire()
    time.sleep(3.5)
    contenders = [ps.S3Lock(s3, bucket, key, lease_seconds=2) for _ in range(6)]
    with ThreadPoolExecutor(6) as ex:
        won = list(ex.map(lambda lk: lk.acquire(), contenders))
    assert sum(won) == 1
    winner = contenders[won.index(True)]
    # The heartbeat keeps a live lease from expiring; the dead owner cannot delete it.
    winner.start_heartbeat()
    time.sleep(3.5)
    assert not ps.S3Lock(s3, bucket, key, lease_seconds=2).acquire() and not winner.lost
    dead.release()
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) == 1
    winner.release()


def test_two_watchers_in_parallel_start_one_run(moto_s3, bucket, tmp_path, expression_root, network):
    s3 = s3_client(moto_s3.url)
    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network))
    runner = FakeRunner(0, 0, delay=1.5)
    barrier = threading.Barrier(2)

    def one(i):
        barrier.wait()
        return watch_once(_cfg(tmp_path / str(i), bucket, moto_s3.url, expression_root), s3_client(moto_s3.url),
                          runner, log=lambda m: None)[0].status

    with ThreadPoolExecutor(2) as ex:
        statuses = sorted(ex.map(one, range(2)))
    assert len(runner.calls) == 1, statuses
    assert statuses[1] == "trained" and statuses[0] in ("locked", "up-to-date")


# ------------------------------------------------------------------------------------
# end to end: `scregnet watch --once`, real pipeline runs in their own processes


def _versions(db: Path, name: str) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as con:
        try:
            return con.execute("SELECT count(*) FROM model_versions WHERE name = ?", (name,)).fetchone()[0]
        except sqlite3.OperationalError:  # tables not created yet
            return 0


def _run_tags(db: Path, key: str) -> list[str]:
    with sqlite3.connect(db) as con:
        return [r[0] for r in con.execute("SELECT value FROM tags WHERE key = ? ORDER BY rowid", (key,))]


@pytest.mark.e2e
@pytest.mark.timeout(420)
def test_watch_once_cli_trains_once_per_change(moto_s3, bucket, tmp_path, expression_root, network):
    home = tmp_path / "home"
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump({"parameters": {"config": {
        "embedder": {"kind": "pca", "dim": 16}, "model": {"gnn_dims": [32, 16], "mlp_dims": [16]},
        "train": {"max_epochs": 20, "patience": 4, "eval_every": 5}}}}))
    env = {k: v for k, v in os.environ.items()
           if k not in ("ZENML_CONFIG_PATH", "MLFLOW_TRACKING_URI", "SCREGNET_ARTIFACTS", "MPLCONFIGDIR")}
    env.update(FAKE_AWS, SCREGNET_HOME=str(home), ZENML_LOGGING_VERBOSITY="INFO")
    cmd = [str(SCREGNET), "watch", "--bucket", bucket, "--prefix", "incoming", "--endpoint-url", moto_s3.url,
           "--expression-root", str(expression_root), "--config", str(config), "--settle", "1", "--once"]
    db, name = home / "mlflow.db", "scregnet-synth"
    s3 = s3_client(moto_s3.url)
    state = ps.WatchState(s3, bucket, "incoming")

    def watch(n: int = 1) -> list[subprocess.CompletedProcess]:
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True) for _ in range(n)]
        done = []
        for p in procs:
            try:
                out, _ = p.communicate(timeout=300)
            finally:
                if p.poll() is None:
                    os.killpg(p.pid, 9)
            done.append(subprocess.CompletedProcess(cmd, p.returncode, out))
        return done

    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network.iloc[:80]))
    [first] = watch()
    assert first.returncode == 0, first.stdout[-4000:]
    assert _versions(db, name) == 1, first.stdout[-4000:]
    rec1 = state.dataset("synth")
    assert _run_tags(db, "prior_manifest_sha256") == [rec1["manifest_sha256"]]

    [again] = watch()  # nothing new
    assert again.returncode == 0 and "[synth] up-to-date" in again.stdout, again.stdout[-2000:]
    assert _versions(db, name) == 1

    s3.put_object(Bucket=bucket, Key="incoming/synth/b.csv", Body=_csv(network.iloc[80:], ("Gene1", "Gene2")))
    both = watch(2)  # two watchers at once, one change
    assert all(p.returncode == 0 for p in both), [p.stdout[-2000:] for p in both]
    assert sum("[synth] trained" in p.stdout for p in both) == 1, [p.stdout[-2000:] for p in both]
    assert _versions(db, name) == 2
    rec2 = state.dataset("synth")
    assert _run_tags(db, "prior_manifest_sha256") == [rec1["manifest_sha256"], rec2["manifest_sha256"]]
    log2 = re.sub(r"\x1b\[[0-9;]*m", "", Path(rec2["log"]).read_text(errors="replace"))
    assert "Using cached version of step embed" in log2  # only the priors changed: the embedding is reused
    print(f"\ncold run (first, fresh ZenML store): {rec1['seconds']}s; "
          f"retrain after new priors (cached embed): {rec2['seconds']}s")


# ------------------------------------------------------------------------------------
# schedules


def test_schedule_on_the_local_stack_says_what_to_do_instead():
    from click.testing import CliRunner

    from scregnet.cli import main

    r = CliRunner().invoke(main, ["schedule", "--cron", "0 3 * * 1"])
    assert r.exit_code == 2
    assert "does not run schedules" in r.output and "scregnet watch" in r.output and "Kubernetes" in r.output
    r = CliRunner().invoke(main, ["schedule", "--cron", "every monday"])
    assert r.exit_code == 2 and "5 fields" in r.output
