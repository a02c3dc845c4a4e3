"""The S3 priors watcher against a real moto S3 server on 127.0.0.1.

Fast tests drive `watch_once` in-process with a stand-in runner (state, lock, retry, failure
backoff with an injected clock, key safety); one end-to-end test runs `scregnet watch --once` as
the CronJob does, each pass a real training pipeline in its own process, and counts registered
versions in $SCREGNET_HOME/mlflow.db.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml
from services import FAKE_AWS, s3_client

from scregnet import priors_store as ps
from scregnet.watch import WatchConfig, held_back, retry_delay, watch_once

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
    return WatchConfig(
        bucket=bucket,
        prefix="incoming/",
        expression_root=expression_root,
        priors_dir=tmp_path / "priors",
        endpoint_url=endpoint,
        settle_seconds=0,
        workdir=tmp_path / "watch",
        **kw,
    )


class FakeRunner:
    """Stands in for the training subprocess: records requests, returns the next exit code."""

    def __init__(self, *codes: int, delay: float = 0.0):
        self.codes, self.delay, self.calls = list(codes), delay, []

    def __call__(self, cfg, req, log) -> int:
        self.calls.append(req)
        time.sleep(self.delay)
        return self.codes.pop(0) if self.codes else 0


class Clock:
    """An injected clock the test moves by hand (stands in for the S3 server's clock)."""

    def __init__(self):
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def _s3_calls(s3) -> list[tuple[str, str]]:
    """(operation, key) of every request `s3` makes from now on: a botocore event hook, nothing mocked."""
    calls: list[tuple[str, str]] = []
    s3.meta.events.register(
        "before-parameter-build.s3", lambda params, model, **_: calls.append((model.name, params.get("Key", "")))
    )
    return calls


# ------------------------------------------------------------------------------------
# keys


@pytest.mark.parametrize(
    "key",
    [
        "incoming/ds/../x.csv",
        "incoming/../x.csv",
        "incoming//etc/passwd.csv",
        "incoming/ds\\..\\x.csv",
        "incoming/ds/./a.csv",
        "incoming/.hidden/a.csv",
        "incoming/a.csv",
        "other/ds/a.csv",
        "incoming/ds/a\x00.csv",
        "incoming/ds/C:/x.csv",  # absolute on Windows
        "incoming/ds/chip/c:x.csv",  # drive-relative on Windows, in any component
        "incoming/ds/~/x.csv",  # home directory after ~ expansion
        "incoming/ds/chip/~user/x.csv",
        "incoming/ds/" + "\u00e9" * 128 + ".csv",  # 132 characters, 260 bytes in UTF-8: over NAME_MAX
    ],
)
def test_keys_escaping_the_prefix_are_refused(key):
    with pytest.raises(ps.UnsafeKeyError) as refused:
        ps.split_key("incoming/", key)
    assert refused.value.dataset == ("ds" if key.startswith("incoming/ds/") else None)  # whose folder holds it


def test_colliding_names_and_accepted_suffixes():
    assert ps.colliding(["a.csv", "b.csv", "chip/a.csv", "Chip/b.csv"]) == {}  # no file is another's folder
    clash = ps.colliding(["a.csv", "a.csv/b.csv", "a.csv/c/d.tsv", "x.csv"])
    assert sorted(clash) == ["a.csv", "a.csv/b.csv", "a.csv/c/d.tsv"] and "folder" in clash["a.csv"]
    assert sorted(ps.colliding(["TF.csv", "tf.csv", "u.csv"])) == ["TF.csv", "tf.csv"]  # one file on APFS/NTFS
    assert sorted(ps.colliding(["\u00e9.csv", "e\u0301.csv"])) == ["e\u0301.csv", "\u00e9.csv"]  # NFC == NFD
    for name in ("a.gmt", "b.GMT.gz", "c.tsv", "d.csv.gz", "e.txt"):
        assert ps.is_prior_file(f"chip/{name}")
    assert not ps.is_prior_file("README.md") and not ps.is_prior_file(".hidden.gmt")


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
    assert [r.key for r in listing.blocked["synth"]] == ["incoming/synth/../../evil.csv"]  # the others: no dataset
    runner = FakeRunner(0)
    [out] = watch_once(_cfg(tmp_path, bucket, moto_s3.url, expression_root), s3, runner, log=lambda m: None)
    # synth is not trained on a.csv alone (a partial set of its priors): nothing is downloaded
    assert out.status == "refused-keys" and runner.calls == []
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix == ".csv"]


# ------------------------------------------------------------------------------------
# a bucket with bad objects: the bad dataset is recorded and backs off, the others train


@pytest.fixture(scope="module")
def three_datasets(expression_root):
    """`a-good`, `bad`, `z-good`: the same small BEELINE directory under three names (one sorted
    before the bad dataset, one after it)."""
    import shutil

    root = expression_root.parent / "three"
    for name in ("a-good", "bad", "z-good"):
        if not (root / name).exists():
            shutil.copytree(expression_root / "synth", root / name)
    return root


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """The watcher runs with its working directory and HOME in empty folders: a key written
    relative to either (`C:/...`, `~/...`) would show up there."""
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HOME", str(home))
    return tmp_path


def _put_three(s3, bucket, network, bad_keys):
    for name in ("a-good", "bad", "z-good"):
        s3.put_object(Bucket=bucket, Key=f"incoming/{name}/ok.csv", Body=_csv(network.iloc[:60]))
    for key in bad_keys:
        s3.put_object(Bucket=bucket, Key=key, Body=_csv(network.iloc[60:70]))


def _written(root: Path) -> list[str]:
    """Every file under `root` outside the priors and watch folders (must stay empty)."""
    allowed = (root / "priors", root / "watch")
    return [str(p) for p in root.rglob("*") if p.is_file() and not any(a in p.parents for a in allowed)]


class RaisingRunner(FakeRunner):
    """A runner that cannot start for one dataset (e.g. the train command is missing)."""

    def __init__(self, bad: str):
        super().__init__()
        self.bad = bad

    def __call__(self, cfg, req, log) -> int:
        self.calls.append(req)
        if req.dataset == self.bad:
            raise FileNotFoundError(2, "No such file or directory", "/no/such/python")
        return 0


BAD_KEYS = {
    "drive": ["incoming/bad/C:/x.csv"],
    "home": ["incoming/bad/~/x.csv"],
    "long-name": ["incoming/bad/" + "\u00e9" * 130 + ".csv"],  # 264 bytes: OSError "File name too long"
    "file-and-folder": ["incoming/bad/a.csv", "incoming/bad/a.csv/b.csv"],  # was FileExistsError
    "case": ["incoming/bad/TF.csv", "incoming/bad/tf.csv"],  # one file on APFS/NTFS
}


@pytest.mark.parametrize("case", sorted(BAD_KEYS))
def test_a_refused_key_holds_back_its_dataset_only(moto_s3, bucket, sandbox, three_datasets, network, case):
    s3 = s3_client(moto_s3.url)
    cfg = _cfg(sandbox, bucket, moto_s3.url, three_datasets, retry_base_seconds=60)
    _put_three(s3, bucket, network, BAD_KEYS[case])
    runner, clock, logs = FakeRunner(), Clock(), []

    out = {o.dataset: o for o in watch_once(cfg, s3, runner, log=logs.append, clock=clock)}
    assert {d: o.status for d, o in out.items()} == {"a-good": "trained", "bad": "refused-keys", "z-good": "trained"}
    assert [r.dataset for r in runner.calls] == ["a-good", "z-good"]
    entry = ps.WatchState(s3, bucket, "incoming").read()["failed"]["bad"]
    assert entry["reason"] == "refused-keys" and entry["failures"] == 1
    assert sorted(r["key"] for r in entry["refused"]) == sorted(BAD_KEYS[case])
    assert datetime.fromisoformat(entry["next_retry_at"]) == clock.now + timedelta(seconds=60)
    for key in BAD_KEYS[case]:  # each refused key is logged with its reason
        assert any(f"s3://{bucket}/{key}: " in m for m in logs), logs
    assert "failure 1, next retry at" in out["bad"].detail
    assert not (sandbox / "priors" / "bad").exists()  # nothing of the bad dataset was downloaded
    assert _written(sandbox) == []

    # Next pass: the bad dataset backs off (from the listing alone), the good ones are up to date.
    out = {o.dataset: o.status for o in watch_once(cfg, s3, runner, log=logs.append, clock=clock)}
    assert out == {"a-good": "up-to-date", "bad": "backoff", "z-good": "up-to-date"} and len(runner.calls) == 2
    clock.now += timedelta(seconds=60)  # due: judged again, refused again, counted
    assert watch_once(cfg, s3, runner, log=logs.append, clock=clock)[1].status == "refused-keys"
    assert ps.WatchState(s3, bucket, "incoming").read()["failed"]["bad"]["failures"] == 2

    # The key fixed (removed): the dataset trains at once on what is left.
    s3.delete_object(Bucket=bucket, Key=BAD_KEYS[case][-1])
    out = {o.dataset: o.status for o in watch_once(cfg, s3, runner, log=logs.append, clock=clock)}
    assert out["bad"] == "trained" and runner.calls[-1].dataset == "bad"
    assert "bad" not in ps.WatchState(s3, bucket, "incoming").read()["failed"]
    assert _written(sandbox) == []


def test_a_local_path_too_long_is_refused_at_listing(moto_s3, bucket, sandbox, three_datasets, network):
    s3 = s3_client(moto_s3.url)
    deep = sandbox / "priors"
    while len(os.fsencode(str(deep))) < 3400:  # ~3.5 kB: the key below needs ~4.3 kB locally
        deep = deep / ("d" * 200)
    deep.mkdir(parents=True)
    long_key = "incoming/bad/" + "/".join(["p" * 100] * 8) + ".csv"  # 824 bytes: a valid S3 key (<= 1024)
    _put_three(s3, bucket, network, [long_key])
    cfg = _cfg(sandbox, bucket, moto_s3.url, three_datasets)
    cfg.priors_dir = deep
    runner, logs = FakeRunner(), []
    out = {o.dataset: o for o in watch_once(cfg, s3, runner, log=logs.append)}
    assert {d: o.status for d, o in out.items()} == {"a-good": "trained", "bad": "refused-keys", "z-good": "trained"}
    assert "this file system allows 4095" in out["bad"].detail
    assert not (deep / "bad").exists() and _written(sandbox) == []


@pytest.mark.parametrize("problem", ["runner-raises", "priors-folder-blocked"])
def test_an_exception_in_one_dataset_is_its_failure_only(moto_s3, bucket, sandbox, three_datasets, network, problem):
    s3 = s3_client(moto_s3.url)
    cfg = _cfg(sandbox, bucket, moto_s3.url, three_datasets, retry_base_seconds=60)
    _put_three(s3, bucket, network, [])
    if problem == "runner-raises":
        runner, error = RaisingRunner("bad"), "FileNotFoundError"
    else:  # a file where the dataset's priors folder should be: the download cannot write (OSError)
        (sandbox / "priors").mkdir()
        (sandbox / "priors" / "bad").write_text("in the way")
        runner, error = FakeRunner(), "Error"  # FileExistsError or NotADirectoryError
    clock, logs = Clock(), []
    out = {o.dataset: o for o in watch_once(cfg, s3, runner, log=logs.append, clock=clock)}
    assert {d: o.status for d, o in out.items()} == {"a-good": "trained", "bad": "error", "z-good": "trained"}
    entry = ps.WatchState(s3, bucket, "incoming").read()["failed"]["bad"]
    assert entry["reason"] == "error" and error in entry["error"] and entry["failures"] == 1
    assert datetime.fromisoformat(entry["next_retry_at"]) == clock.now + timedelta(seconds=60)
    assert any(m.startswith("[bad] error: ") and error in m for m in logs), logs
    assert s3.list_objects_v2(Bucket=bucket, Prefix="incoming/.scregnet-watch/locks/").get("KeyCount", 0) == 0

    calls = len(runner.calls)  # the next pass backs off instead of failing again at once
    out = {o.dataset: o.status for o in watch_once(cfg, s3, runner, log=logs.append, clock=clock)}
    assert out == {"a-good": "up-to-date", "bad": "backoff", "z-good": "up-to-date"} and len(runner.calls) == calls
    assert _written(sandbox) == []


CORRUPT_STATES = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\xff\xfe",  # UnicodeDecodeError before
    "list": b"[1, 2, 3]",  # AttributeError: 'list' object has no attribute 'get' before
    "truncated": b'{"version": 1, "datasets": {"a-good": {"files": [',
    "wrong-sections": b'{"version": 1, "datasets": [], "failed": "none"}',
}


@pytest.mark.parametrize("case", sorted(CORRUPT_STATES))
def test_a_corrupt_state_is_moved_aside_and_the_pass_goes_on(moto_s3, bucket, sandbox, three_datasets, network, case):
    s3 = s3_client(moto_s3.url)
    key = ps.state_key("incoming")
    s3.put_object(Bucket=bucket, Key=key, Body=CORRUPT_STATES[case])
    _put_three(s3, bucket, network, ["incoming/bad/C:/x.csv"])
    cfg = _cfg(sandbox, bucket, moto_s3.url, three_datasets)
    runner, logs = FakeRunner(), []
    out = {o.dataset: o.status for o in watch_once(cfg, s3, runner, log=logs.append)}
    assert out == {"a-good": "trained", "bad": "refused-keys", "z-good": "trained"}
    [warning] = [m for m in logs if "is unusable" in m]
    assert f"s3://{bucket}/{key} " in warning and "an empty state" in warning
    [aside] = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=key + ".corrupt-")["Contents"]]
    assert f"s3://{bucket}/{aside}" in warning
    assert s3.get_object(Bucket=bucket, Key=aside)["Body"].read() == CORRUPT_STATES[case]  # kept byte for byte
    state = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    assert set(state["datasets"]) == {"a-good", "z-good"} and set(state["failed"]) == {"bad"}

    logs.clear()  # repaired: the next pass reads it without a warning and trains nothing
    out = {o.dataset: o.status for o in watch_once(cfg, s3, runner, log=logs.append)}
    assert out == {"a-good": "up-to-date", "bad": "backoff", "z-good": "up-to-date"} and len(runner.calls) == 2
    assert not [m for m in logs if "unusable" in m]
    assert len(s3.list_objects_v2(Bucket=bucket, Prefix=key + ".corrupt-")["Contents"]) == 1
    assert _written(sandbox) == []


def test_wrong_typed_entries_are_dropped_and_the_rest_kept(moto_s3, bucket, sandbox, three_datasets, network):
    s3 = s3_client(moto_s3.url)
    key = ps.state_key("incoming")
    _put_three(s3, bucket, network, [])
    cfg = _cfg(sandbox, bucket, moto_s3.url, three_datasets)
    runner, logs = FakeRunner(), []
    watch_once(cfg, s3, runner, log=logs.append)
    state = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    state["datasets"]["a-good"] = "trained, honest"  # an entry that is not an object
    state["datasets"]["bad"]["files"] = [["ok.csv", "etag"]]  # files that are not objects
    state["failed"] = {"z-good": 42}
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(state).encode())
    out = {o.dataset: o.status for o in watch_once(cfg, s3, runner, log=logs.append)}
    # the two broken records are dropped (retrained once); z-good's record was fine: up to date
    assert out == {"a-good": "trained", "bad": "trained", "z-good": "up-to-date"} and len(runner.calls) == 5
    [warning] = [m for m in logs if "is unusable" in m]
    assert "datasets.a-good: a JSON str" in warning and "datasets.bad: 'files'" in warning
    assert "failed.z-good: a JSON int" in warning and "the entries that could be read" in warning
    [aside] = s3.list_objects_v2(Bucket=bucket, Prefix=key + ".corrupt-")["Contents"]
    assert json.loads(s3.get_object(Bucket=bucket, Key=aside["Key"])["Body"].read()) == state


def test_watch_once_mode_returns_outcomes_for_a_bad_bucket(
    moto_s3, bucket, sandbox, three_datasets, network, monkeypatch
):
    import scregnet.watch
    from scregnet.watch import pass_failed, pass_summary, watch

    for k, v in FAKE_AWS.items():
        monkeypatch.setenv(k, v)
    runner = FakeRunner()
    monkeypatch.setattr(scregnet.watch, "run_subprocess", runner)  # watch() uses the default runner
    s3 = s3_client(moto_s3.url)
    s3.put_object(Bucket=bucket, Key=ps.state_key("incoming"), Body=b"\xff\xfe binary")
    _put_three(s3, bucket, network, ["incoming/bad/a.csv", "incoming/bad/a.csv/b.csv", "incoming/bad/~/x.csv"])
    cfg = _cfg(sandbox, bucket, moto_s3.url, three_datasets)
    outcomes = watch(cfg, once=True, log=lambda m: None)  # no traceback
    assert {o.dataset: o.status for o in outcomes} == {"a-good": "trained", "bad": "refused-keys", "z-good": "trained"}
    assert pass_failed(outcomes) and "2 trained, 0 failed, 1 with refused keys, 0 errors" in pass_summary(outcomes)
    assert "3 key(s) refused" in outcomes[1].detail
    outcomes = watch(cfg, once=True, log=lambda m: None)
    assert not pass_failed(outcomes) and "1 backing off" in pass_summary(outcomes)  # backoff: exit 0


# ------------------------------------------------------------------------------------
# state, retries, manifests


def test_state_written_only_after_success_and_crashed_runs_are_retried(
    moto_s3, bucket, tmp_path, expression_root, network
):
    s3 = s3_client(moto_s3.url)
    cfg = _cfg(tmp_path, bucket, moto_s3.url, expression_root, retry_base_seconds=0)  # no backoff (tested below)
    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network.iloc[:60]))
    state = ps.WatchState(s3, bucket, "incoming/")

    runner = FakeRunner(1)  # the run crashes
    [out] = watch_once(cfg, s3, runner, log=lambda m: None)
    assert out.status == "failed" and len(runner.calls) == 1
    assert state.dataset("synth") is None  # not recorded as trained: the change is not lost

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
    base.write_text(
        yaml.safe_dump(
            {
                "settings": {"docker": {"skip_build": True}},
                "parameters": {"config": {"train": {"max_epochs": 7}, "data": {"path": "/elsewhere"}}},
            }
        )
    )
    runner = FakeRunner(0)
    watch_once(_cfg(tmp_path, bucket, moto_s3.url, expression_root, run_config=base), s3, runner, log=lambda m: None)
    raw = yaml.safe_load(runner.calls[0].config_path.read_text())
    assert raw["settings"] == {"docker": {"skip_build": True}}  # ZenML settings travel with the run
    config = load_config(runner.calls[0].config_path)
    assert config.train.max_epochs == 7 and config.data.replace_labels
    dataset = load_dataset(config.data)
    expected = set(zip(network.iloc[:50]["Gene1"], network.iloc[:50]["Gene2"]))
    assert set(zip(dataset.priors["tf"], dataset.priors["target"])) == expected  # Label.csv not added
    assert (
        ps.prior_manifest_tags(config.data.prior_manifest)["prior_manifest_sha256"]
        == runner.calls[0].manifest_path.parent.name
    )


def test_h5ad_expression_and_missing_expression(moto_s3, bucket, tmp_path, synthetic, network):
    s3 = s3_client(moto_s3.url)
    root = tmp_path / "expr"
    (root / "cells").mkdir(parents=True)
    synthetic.adata.write_h5ad(root / "cells" / "counts.h5ad")
    s3.put_object(Bucket=bucket, Key="incoming/cells/a.csv", Body=_csv(network.iloc[:40]))
    s3.put_object(Bucket=bucket, Key="incoming/nothing/a.csv", Body=_csv(network.iloc[:40]))
    runner = FakeRunner(0)
    out = {
        o.dataset: o.status
        for o in watch_once(_cfg(tmp_path, bucket, moto_s3.url, root), s3, runner, log=lambda m: None)
    }
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
# failure backoff


def test_retry_delays_double_up_to_the_cap_and_no_limit_never_gives_up():
    assert [retry_delay(n, 900, 6 * 3600) for n in range(1, 8)] == [900, 1800, 3600, 7200, 14400, 21600, 21600]
    assert retry_delay(0, 900, 3600) == 0 and retry_delay(10_000, 900, 3600) == 3600  # no float overflow
    objs = [{"rel": "a.csv", "etag": "e1"}]
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    entry = {"fingerprint": ps.fingerprint(objs), "failures": 50, "last_failed_at": now.isoformat(), "exit_code": 1}
    cfg = WatchConfig(bucket="b", prefix="p", expression_root=Path("."), priors_dir=Path("."), max_failures=None)
    held = held_back(cfg, "d", entry, objs, now + timedelta(hours=5))
    assert held.status == "backoff" and "failed 50x" in held.detail and "in 1h" in held.detail
    assert held_back(cfg, "d", entry, objs, now + timedelta(hours=6)) is None  # due: retried
    cfg.max_failures = 50
    assert held_back(cfg, "d", entry, objs, now + timedelta(days=30)).status == "gave-up"
    assert held_back(cfg, "d", entry, [{"rel": "a.csv", "etag": "e2"}], now) is None  # other priors: at once
    assert held_back(cfg, "d", {**entry, "last_failed_at": "yesterday"}, objs, now) is None  # unreadable: not stuck


def test_a_failing_dataset_backs_off_doubling_then_gives_up(moto_s3, bucket, tmp_path, expression_root, network):
    s3 = s3_client(moto_s3.url)
    cfg = _cfg(
        tmp_path, bucket, moto_s3.url, expression_root, retry_base_seconds=60, retry_max_seconds=150, max_failures=4
    )
    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network.iloc[:60]))
    state = ps.WatchState(s3, bucket, "incoming/")
    runner, clock, logs = FakeRunner(3, 3, 3, 3, 0), Clock(), []
    calls = _s3_calls(s3)

    def once():
        [out] = watch_once(cfg, s3, runner, log=logs.append, clock=clock)
        return out, state.read()["failed"].get("synth")

    t0 = clock.now
    out, entry = once()
    assert out.status == "failed" and len(runner.calls) == 1 and "failure 1, next retry at" in out.detail
    listed = ps.list_priors(s3, bucket, "incoming/").datasets["synth"]
    assert entry["fingerprint"] == ps.fingerprint(listed) and entry["manifest_sha256"] == out.manifest_sha256
    assert (entry["failures"], entry["exit_code"], entry["log"]) == (1, 3, str(runner.calls[0].log_path))
    assert datetime.fromisoformat(entry["last_failed_at"]) == datetime.fromisoformat(entry["first_failed_at"]) == t0
    assert datetime.fromisoformat(entry["next_retry_at"]) == t0 + timedelta(seconds=60)
    assert state.dataset("synth") is None  # failed: not marked trained
    assert any("failure 1 in a row" in m and "next retry at" in m for m in logs)

    # The wait after the n-th failure: 60 s, doubled to 120 s, then capped at 150 s. One second
    # early the pass holds the dataset back from the listing alone: no download, no lease.
    at = t0
    for n, wait in ((1, 60), (2, 120), (3, 150)):
        calls.clear()
        clock.now = at + timedelta(seconds=wait - 1)
        out, _ = once()
        assert out.status == "backoff" and len(runner.calls) == n, out
        assert f"failed {n}x in a row" in out.detail and "(in 1s)" in out.detail
        assert ("GetObject", ps.state_key("incoming/")) in calls  # the hook sees requests...
        assert not [c for c in calls if c[1].startswith("incoming/synth/") or "/locks/" in c[1]]  # ...but none of these
        clock.now = at + timedelta(seconds=wait)
        out, entry = once()
        assert out.status == "failed" and len(runner.calls) == n + 1
        assert entry["failures"] == n + 1 and datetime.fromisoformat(entry["last_failed_at"]) == clock.now
        assert datetime.fromisoformat(entry["first_failed_at"]) == t0
        at = clock.now
    assert "giving up on these priors (max 4 failures)" in out.detail and entry["next_retry_at"] is None

    clock.now += timedelta(days=30)  # given up on: however long it waits
    out, entry = once()
    assert out.status == "gave-up" and len(runner.calls) == 4 and entry["failures"] == 4
    assert "failed 4x in a row on these priors (last: exit 3" in out.detail and "--retry-failed" in out.detail

    [out] = watch_once(cfg, s3, runner, log=logs.append, clock=clock, retry_failed=True)  # the operator's override
    assert out.status == "trained" and len(runner.calls) == 5
    assert any("gave-up, retried now (--retry-failed)" in m for m in logs)
    current = state.read()
    assert "synth" not in current["failed"] and current["datasets"]["synth"]["manifest_sha256"] == out.manifest_sha256


def test_new_priors_reset_the_backoff_and_success_clears_it(moto_s3, bucket, tmp_path, expression_root, network):
    s3 = s3_client(moto_s3.url)
    cfg = _cfg(tmp_path, bucket, moto_s3.url, expression_root, retry_base_seconds=3600)
    state = ps.WatchState(s3, bucket, "incoming/")
    runner, clock = FakeRunner(0, 5, 5, 0), Clock()

    def once():
        return watch_once(cfg, s3, runner, log=lambda m: None, clock=clock)[0]

    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network.iloc[:60]))
    assert once().status == "trained"
    first = state.dataset("synth")

    s3.put_object(Bucket=bucket, Key="incoming/synth/b.csv", Body=_csv(network.iloc[60:90]))
    assert once().status == "failed" and len(runner.calls) == 2
    current = state.read()
    assert current["datasets"]["synth"] == first  # the last successful run is kept
    assert current["failed"]["synth"]["failures"] == 1
    assert once().status == "backoff" and len(runner.calls) == 2  # not "up-to-date", not retried

    # A corrected upload (new ETag) is trained at once, and its failure starts a new count.
    s3.put_object(Bucket=bucket, Key="incoming/synth/b.csv", Body=_csv(network.iloc[60:100]))
    assert once().status == "failed" and len(runner.calls) == 3
    entry = state.read()["failed"]["synth"]
    assert entry["failures"] == 1 and entry["manifest_sha256"] == runner.calls[2].manifest_path.parent.name

    clock.now += timedelta(seconds=3600)  # due: retried, succeeds
    out = once()
    assert out.status == "trained" and len(runner.calls) == 4
    current = state.read()
    assert current["failed"] == {}  # the failure entry is cleared...
    rec = current["datasets"]["synth"]  # ...and the dataset recorded as trained on the new priors
    assert rec["manifest_sha256"] == out.manifest_sha256 != first["manifest_sha256"]
    assert sorted(f["rel"] for f in rec["files"]) == ["a.csv", "b.csv"]
    assert once().status == "up-to-date" and len(runner.calls) == 4


def test_cli_backoff_flags_and_retry_failed(moto_s3, bucket, tmp_path, expression_root, network, monkeypatch):
    import signal

    from click.testing import CliRunner

    import scregnet.watch
    from scregnet.cli import main

    for k, v in FAKE_AWS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("SCREGNET_HOME", str(tmp_path / "home"))
    runner = FakeRunner(7, 0)
    monkeypatch.setattr(scregnet.watch, "run_subprocess", runner)  # the default runner of `scregnet watch`
    s3 = s3_client(moto_s3.url)
    s3.put_object(Bucket=bucket, Key="incoming/synth/a.csv", Body=_csv(network.iloc[:60]))
    base = [
        "watch",
        "--bucket",
        bucket,
        "--prefix",
        "incoming",
        "--endpoint-url",
        moto_s3.url,
        "--expression-root",
        str(expression_root),
        "--settle",
        "0",
        "--once",
    ]
    sigterm = signal.getsignal(signal.SIGTERM)  # the command installs its own handler
    try:
        r = CliRunner().invoke(main, [*base, "--retry-base", "-1"])
        assert r.exit_code == 2 and "must not be negative" in r.output

        r = CliRunner().invoke(main, [*base, "--retry-base", "600"])
        assert r.exit_code == 1 and "[synth] failed: exit 7" in r.output and len(runner.calls) == 1, r.output
        entry = ps.WatchState(s3, bucket, "incoming").read()["failed"]["synth"]
        # recorded by the S3 server's clock (moto runs on this host, so it is close to ours)
        assert abs((datetime.fromisoformat(entry["last_failed_at"]) - datetime.now(UTC)).total_seconds()) < 60
        assert (
            datetime.fromisoformat(entry["next_retry_at"]) - datetime.fromisoformat(entry["last_failed_at"])
        ).total_seconds() == 600

        r = CliRunner().invoke(main, [*base, "--retry-base", "600"])
        assert r.exit_code == 0 and "[synth] backoff: failed 1x" in r.output and len(runner.calls) == 1, r.output
        assert "1 backing off" in r.output

        r = CliRunner().invoke(main, [*base, "--max-failures", "1"])
        assert r.exit_code == 0 and "[synth] gave-up" in r.output and "1 given up on" in r.output, r.output

        r = CliRunner().invoke(main, [*base, "--max-failures", "1", "--retry-failed"])
        assert r.exit_code == 0 and "[synth] trained" in r.output and len(runner.calls) == 2, r.output
        assert "synth" not in ps.WatchState(s3, bucket, "incoming").read()["failed"]
    finally:
        signal.signal(signal.SIGTERM, sigterm)


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
        return watch_once(
            _cfg(tmp_path / str(i), bucket, moto_s3.url, expression_root),
            s3_client(moto_s3.url),
            runner,
            log=lambda m: None,
        )[0].status

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
    config.write_text(
        yaml.safe_dump(
            {
                "parameters": {
                    "config": {
                        "embedder": {"kind": "pca", "dim": 16},
                        "model": {"gnn_dims": [32, 16], "mlp_dims": [16]},
                        "train": {"max_epochs": 20, "patience": 4, "eval_every": 5},
                    }
                }
            }
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ZENML_CONFIG_PATH", "MLFLOW_TRACKING_URI", "SCREGNET_ARTIFACTS", "MPLCONFIGDIR")
    }
    env.update(FAKE_AWS, SCREGNET_HOME=str(home), ZENML_LOGGING_VERBOSITY="INFO")
    cmd = [
        str(SCREGNET),
        "watch",
        "--bucket",
        bucket,
        "--prefix",
        "incoming",
        "--endpoint-url",
        moto_s3.url,
        "--expression-root",
        str(expression_root),
        "--config",
        str(config),
        "--settle",
        "1",
        "--once",
    ]
    db, name = home / "mlflow.db", "scregnet-synth"
    s3 = s3_client(moto_s3.url)
    state = ps.WatchState(s3, bucket, "incoming")

    def watch(n: int = 1) -> list[subprocess.CompletedProcess]:
        procs = [
            subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
            )
            for _ in range(n)
        ]
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
    log2 = Path(rec2["log"]).read_text(errors="replace")
    assert "\x1b[" not in log2  # a redirected log: no colour codes
    assert re.search(r"Using cached version of step `?embed`?", log2)  # only the priors changed: embedding reused
    print(
        f"\ncold run (first, fresh ZenML store): {rec1['seconds']}s; "
        f"retrain after new priors (cached embed): {rec2['seconds']}s"
    )


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
