"""Faults: MLflow unreachable, a promotion that fails half-way."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from scregnet import registry
from scregnet.config import RunConfig
from scregnet.tracking import client as tracking_client
from scregnet.tracking import tracker


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket closes


def test_unreachable_tracking_server_retries_then_fails_clearly(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setattr(tracking_client, "RETRY_BASE_SECONDS", 0.05)
    calls = []
    real = tracking_client.with_retries

    def counting(fn, what, **kw):
        def wrapped():
            calls.append(time.monotonic())
            return fn()

        return real(wrapped, what, **kw)

    monkeypatch.setattr(tracking_client, "with_retries", counting)
    cfg = RunConfig()
    cfg.tracking.tracking_uri = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(
        RuntimeError, match=r"MLflow unreachable while trying to look up the experiment after 5 attempts"
    ):
        tracker(cfg).start_run({"dataset": "x"}, cfg.flat())
    assert len(calls) == 5
    gaps = np.diff(calls)
    assert all(b > a for a, b in zip(gaps, gaps[1:]))  # exponential backoff


def _registered(tmp_path, monkeypatch, n_versions: int):
    """A real sqlite MLflow registry holding `n_versions` versions of one model."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cfg = RunConfig()
    cfg.tracking.tracking_uri = uri
    c = tracker(cfg).client
    exp = tracker(cfg).experiment_id("faults")
    name = "scregnet-faults"
    c.create_registered_model(name)
    for _ in range(n_versions):
        run = c.create_run(exp)
        c.create_model_version(name, source=(tmp_path / "model").as_uri(), run_id=run.info.run_id)
    return cfg, name


def test_failed_mirror_reverts_the_champion_alias(tmp_path, monkeypatch):
    cfg, name = _registered(tmp_path, monkeypatch, 2)
    registry.set_champion(name, "1", cfg)

    def broken_mirror(promoted):
        raise ConnectionError("ZenML server went away")

    decision = registry.Decision(name, "2", True, "better", "auprc", 0.9, "1", 0.8)
    with pytest.raises(ConnectionError):
        registry.apply_promotion(decision, broken_mirror, cfg)
    c = tracker(cfg).client
    assert str(c.get_model_version_by_alias(name, "champion").version) == "1"
    assert c.get_registered_model(name).tags[registry.HISTORY_TAG] == "1"


def test_rollback_steps_back_through_champion_history(tmp_path, monkeypatch):
    cfg, name = _registered(tmp_path, monkeypatch, 3)
    for v in ("1", "3"):
        registry.set_champion(name, v, cfg)
    assert registry.rollback(name, cfg) == "1"
    c = tracker(cfg).client
    assert str(c.get_model_version_by_alias(name, "champion").version) == "1"
    with pytest.raises(ValueError, match="no previous champion"):
        registry.rollback(name, cfg)


def test_rollback_after_a_promotion_by_hand_leaves_no_stale_promotion_tag(tmp_path, monkeypatch):
    """`scregnet promote --version 2` then `scregnet rollback`: version 2 must not still say 'forced'."""
    from pipelines.promotion import manual_promote, manual_rollback

    cfg, name = _registered(tmp_path, monkeypatch, 2)
    registry.set_champion(name, "1", cfg)
    c = tracker(cfg).client
    c.set_model_version_tag(name, "1", "promotion_decision", "promoted")
    manual_promote(name, "2")
    assert c.get_model_version(name, "2").tags["promotion_decision"] == "forced"  # by hand, past the gate
    assert manual_rollback(name) == "1"
    assert str(c.get_model_version_by_alias(name, "champion").version) == "1"
    v2 = c.get_model_version(name, "2").tags
    assert v2["promotion_decision"] == registry.ROLLED_BACK == "rolled back"
    assert v2["promotion_reason"] == "rolled back: champion returned to version 1"
    assert c.get_model_version(name, "1").tags["promotion_decision"] == "promoted"


@pytest.mark.services
def test_mlflow_server_stopped_mid_run_leaves_no_half_registered_model(tmp_path, monkeypatch, synthetic, fast_config):
    """A real `mlflow server` on 127.0.0.1 goes down between training and registration."""
    from mlflow import MlflowClient

    from scregnet.experiment import run_experiment
    from tests.services import _stop, start_mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    # A stopped server refuses connections at once; the timeout only guards the live calls,
    # which can take seconds on a loaded 2-core machine.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")
    monkeypatch.setattr(tracking_client, "RETRY_BASE_SECONDS", 0.05)
    server = start_mlflow(tmp_path)
    try:
        cfg = fast_config
        cfg.tracking.tracking_uri = server.url
        run_id = tracker(cfg).start_run({"dataset": "synthetic"}, cfg.flat())
        fast_config.train.max_epochs = 5
        bundle = run_experiment(synthetic, cfg, None, seed=0).model
    finally:
        _stop(server.proc)  # the tracking server dies mid-run
    with pytest.raises(RuntimeError, match=r"MLflow unreachable while trying to log the model after 5 attempts"):
        registry.log_model(run_id, bundle, cfg)
    # Back up on the same store: the run exists, no model version was created.
    again = start_mlflow(tmp_path)
    try:
        c = MlflowClient(tracking_uri=again.url, registry_uri=again.url)
        assert c.get_run(run_id).info.run_id == run_id
        assert c.search_model_versions("name LIKE 'scregnet%'") == []
    finally:
        _stop(again.proc)
