"""SIGTERM / SIGINT while a step holds an MLflow run: the run ends KILLED, not RUNNING forever.

Against a real `mlflow server` on 127.0.0.1 (tests/services.py): in process with `os.kill` on
ourselves, and end to end by SIGTERM-ing `scregnet train` mid-training.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from scregnet import tracking
from scregnet.config import RunConfig

pytestmark = pytest.mark.services

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cfg(mlflow_server):  # noqa: F811
    c = RunConfig()
    c.tracking.tracking_uri = mlflow_server.url
    c.tracking.experiment = "signals"
    return c


def _new_run(cfg: RunConfig) -> str:
    return tracking.tracker(cfg).start_run({"dataset": "signals"}, cfg.flat())


def _run(cfg: RunConfig, run_id: str):
    return MlflowClient(tracking_uri=cfg.tracking.tracking_uri).get_run(run_id)


def _assert_killed_by(cfg: RunConfig, run_id: str, signame: str) -> None:
    run = _run(cfg, run_id)
    assert run.info.status == "KILLED"
    assert run.data.tags[tracking.KILLED_SIGNAL_TAG] == signame


def _signal_self(sig: int) -> None:
    """Send `sig` to this process and give the handler the chance to run (it raises)."""
    os.kill(os.getpid(), sig)
    for _ in range(100):  # the handler runs between bytecodes of the main thread
        time.sleep(0.05)
    pytest.fail(f"{signal.Signals(sig).name} did not stop the block")


@pytest.fixture
def previous_sigterm():
    """A Python SIGTERM handler installed before the guard, as ZenML's step launcher does."""
    calls: list[int] = []

    def handler(signum, frame):
        calls.append(signum)

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield handler, calls
    finally:
        signal.signal(signal.SIGTERM, old)


def test_sigterm_marks_the_run_killed_raises_and_restores_the_handler(cfg, previous_sigterm):
    handler, calls = previous_sigterm
    run_id = _new_run(cfg)
    cleaned = []
    with pytest.raises(tracking.Terminated) as info:
        with tracking.run_guard(run_id, cfg):
            assert signal.getsignal(signal.SIGTERM) is not handler
            try:
                _signal_self(signal.SIGTERM)
            finally:
                cleaned.append(True)
    assert info.value.code == 128 + signal.SIGTERM  # exit status of an uncaught Terminated
    assert cleaned == [True]  # `finally` blocks run
    assert calls == [signal.SIGTERM]  # the previous handler still heard about it
    assert signal.getsignal(signal.SIGTERM) is handler
    _assert_killed_by(cfg, run_id, "SIGTERM")


def test_sigint_marks_the_run_killed_and_raises_keyboard_interrupt(cfg):
    run_id = _new_run(cfg)
    # Python's own Ctrl-C handler, as in a terminal (a shell's background job starts with SIGINT
    # ignored, and then Python installs none).
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with tracking.tracker(cfg).holding(run_id):  # the step form: its fail_run must not win
                _signal_self(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outer)
    _assert_killed_by(cfg, run_id, "SIGINT")


def test_an_ordinary_exception_marks_the_run_failed_not_killed(cfg):
    run_id = _new_run(cfg)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(ValueError, match="bad input"):
        with tracking.tracker(cfg).holding(run_id):
            raise ValueError("bad input")
    assert signal.getsignal(signal.SIGTERM) is before
    run = _run(cfg, run_id)
    assert run.info.status == "FAILED"
    assert tracking.KILLED_SIGNAL_TAG not in run.data.tags


def test_nested_guards_kill_both_runs_and_restore_the_outer_handlers(cfg):
    parent, child = _new_run(cfg), _new_run(cfg)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(tracking.Terminated):
        with tracking.run_guard(parent, cfg):
            outer_handler = signal.getsignal(signal.SIGTERM)
            try:
                with tracking.run_guard(child, cfg):
                    _signal_self(signal.SIGTERM)
            finally:
                assert signal.getsignal(signal.SIGTERM) is outer_handler
    assert signal.getsignal(signal.SIGTERM) is before
    assert _run(cfg, parent).info.status == "KILLED"
    assert _run(cfg, child).info.status == "KILLED"


def test_killed_stays_killed_when_mlflow_closes_the_run_failed_on_the_way_out(cfg):
    """`registry.log_model` holds the run through MLflow's fluent `with start_run()`, whose exit
    writes FAILED when an exception passes; the guard sets KILLED again afterwards."""
    run_id = _new_run(cfg)
    mlflow.set_tracking_uri(cfg.tracking.tracking_uri)
    with pytest.raises(tracking.Terminated):
        with tracking.tracker(cfg).holding(run_id):
            with mlflow.start_run(run_id=run_id):
                _signal_self(signal.SIGTERM)
    assert _run(cfg, run_id).info.status == "KILLED"


def test_a_deferred_block_completes_and_a_closed_run_is_not_marked_killed(cfg):
    """The register step's shape: registration + end_run FINISHED run to the end, then the stop."""
    run_id = _new_run(cfg)
    done = []
    with pytest.raises(tracking.Terminated):
        with tracking.tracker(cfg).holding(run_id):
            with tracking.signals_deferred():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.5)  # the handler has run by now; it only noted the signal
                done.append("registered")
                tracking.tracker(cfg).end_run(run_id, "FINISHED")
            pytest.fail("the deferred signal was not acted on")
    assert done == ["registered"]
    run = _run(cfg, run_id)
    assert run.info.status == "FINISHED"
    assert tracking.KILLED_SIGNAL_TAG not in run.data.tags


def test_a_hanging_tracking_server_does_not_hold_up_the_stop(monkeypatch, caplog):
    """A server that accepts connections and never answers: the stop comes within the bound."""
    monkeypatch.setattr(tracking.signals, "KILL_MARK_SECONDS", 1.0)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # connections complete in the backlog; nothing ever answers
        c = RunConfig()
        c.tracking.tracking_uri = f"http://127.0.0.1:{listener.getsockname()[1]}"
        t0 = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="scregnet.tracking"):
            with pytest.raises(tracking.Terminated):
                with tracking.run_guard("0" * 32, c):
                    _signal_self(signal.SIGTERM)
        elapsed = time.monotonic() - t0
    assert elapsed < 6  # the handler's attempt and the exit's, 1 s each, plus slack
    assert "could not mark MLflow run" in caplog.text and "no answer within 1s" in caplog.text


@pytest.mark.timeout(180)
def test_sigterm_during_a_tuning_trial_kills_the_trial_and_the_study_parent(
    cfg, synthetic, fast_config, previous_sigterm
):
    """Nested guards in real use: the trial's run inside the study's parent run."""
    from scregnet.tune import run_study

    # `previous_sigterm`: a signal outside the guards lands in a harmless handler (the test then
    # fails on its timeout) instead of killing pytest; inside, only the guards raise Terminated.
    c = fast_config.model_copy(deep=True)
    c.tracking = cfg.tracking
    c.tune.max_epochs, c.tune.patience = 1_000_000, 1_000_000  # a trial runs until killed
    client = MlflowClient(tracking_uri=cfg.tracking.tracking_uri)
    exp_id = tracking.tracker(cfg).experiment_id()
    trial_filter = "tags.kind = 'tune_trial' and tags.optuna_study = 'killed-study'"

    def kill_once_a_trial_runs():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not client.search_runs([exp_id], trial_filter):
            time.sleep(0.3)
        time.sleep(1.0)  # inside fit by now
        os.kill(os.getpid(), signal.SIGTERM)

    killer = threading.Thread(target=kill_once_a_trial_runs, daemon=True)
    killer.start()
    with pytest.raises(tracking.Terminated):
        run_study(synthetic, c, None, storage=None, study_name="killed-study", n_trials=2)
    killer.join(5)
    (trial,) = client.search_runs([exp_id], trial_filter)
    parent = client.get_run(trial.data.tags["mlflow.parentRunId"])
    assert trial.info.status == "KILLED" and trial.data.tags[tracking.KILLED_SIGNAL_TAG] == "SIGTERM"
    assert parent.info.status == "KILLED" and parent.data.tags[tracking.KILLED_SIGNAL_TAG] == "SIGTERM"


def test_off_the_main_thread_the_guard_does_nothing(cfg):
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body():
        with tracking.run_guard("0" * 32, cfg):
            seen.append(signal.getsignal(signal.SIGTERM))

    worker = threading.Thread(target=body)
    worker.start()
    worker.join(30)
    assert seen == [before]  # no ValueError from signal.signal, nothing installed


# --------------------------------------------------------------------------- end to end


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_sigterm_to_scregnet_train_kills_the_run_and_registers_nothing(mlflow_server, synthetic_dir, tmp_path):  # noqa: F811
    home = tmp_path / "home"
    config = tmp_path / "long.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "parameters": {
                    "config": {
                        "model": {"gnn_dims": [32, 16], "mlp_dims": [16]},
                        "train": {"max_epochs": 1_000_000, "patience": 1_000_000},  # trains until killed
                        "embedder": {"kind": "pca", "dim": 8},
                        "tracking": {"tracking_uri": mlflow_server.url, "experiment": "sigterm-e2e"},
                    }
                }
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "SCREGNET_"))}
    env.update(SCREGNET_HOME=str(home), ZENML_LOGGING_VERBOSITY="WARN")
    log = tmp_path / "train.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "scregnet.cli",
                "train",
                "--data",
                str(synthetic_dir),
                "--config",
                str(config),
                "--name",
                "sigterm",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    c = MlflowClient(tracking_uri=mlflow_server.url, registry_uri=mlflow_server.url)
    try:
        run_id, deadline = None, time.monotonic() + 150
        # Training has started once the train step uploaded the embedding (then it fits, for ever).
        while run_id is None:
            assert proc.poll() is None, f"train exited early ({proc.returncode}):\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no training run appeared:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
            exp = c.get_experiment_by_name("sigterm-e2e")
            runs = c.search_runs([exp.experiment_id]) if exp else []
            if runs and any(a.path == "embedding" for a in c.list_artifacts(runs[0].info.run_id)):
                run_id = runs[0].info.run_id
        time.sleep(1.0)
        assert c.get_run(run_id).info.status == "RUNNING"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=45)
        stopped_in = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text(errors="replace")
    assert code != 0, text[-3000:]
    assert stopped_in < 30, text[-3000:]  # before Kubernetes' (or the watcher's) SIGKILL
    run = c.get_run(run_id)
    assert run.info.status == "KILLED", text[-3000:]
    assert run.data.tags[tracking.KILLED_SIGNAL_TAG] == "SIGTERM"
    assert c.search_model_versions("name LIKE 'scregnet%'") == []
    assert c.search_registered_models() == []
