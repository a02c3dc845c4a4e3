"""`mlflow models serve` on a registered version, end to end, against a real `mlflow server`.

The core library trains a small model on the synthetic fixture and registers it on the
server (`registry.log_model` + `register` + `apply_promotion`: what the pipeline's register
step does, without ZenML). Then `mlflow models serve -m models:/<name>@champion --env-manager
local` runs as a subprocess on 127.0.0.1, and the test scores pairs over HTTP and compares
them with the same version loaded in-process.
"""

from __future__ import annotations

import json
import os
import socket
import time
import urllib.error
import urllib.request
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from services import BIN, HOST, _stop, free_port, start_service

pytestmark = pytest.mark.services
DATASET = "servesyn"
NAME = f"scregnet-{DATASET}"  # registry.model_name("scregnet", DATASET)


@pytest.fixture(scope="module")
def registered(mlflow_server, synthetic):
    """Version 1 of NAME on the server, alias champion (and challenger)."""
    from scregnet import registry
    from scregnet.config import RunConfig
    from scregnet.experiment import run_experiment
    from scregnet.tracking import tracker

    cfg = RunConfig()
    cfg.model.gnn_dims, cfg.model.mlp_dims = [32, 16], [16]
    cfg.train.max_epochs, cfg.train.patience = 5, 4
    cfg.tracking.tracking_uri = mlflow_server.url
    cfg.registry.baseline_gate = False  # serving is under test; the gate has its own tests
    assert registry.model_name(cfg.registry.model_prefix, DATASET) == NAME
    run_id = tracker(cfg).start_run({"dataset": DATASET}, cfg.flat())
    result = run_experiment(synthetic, cfg, None, seed=0)
    uri = registry.log_model(run_id, result.model, cfg)
    decision = registry.register(run_id, uri, NAME, result.model, result.split, cfg.registry, tracking=cfg)
    registry.apply_promotion(decision, None, cfg)
    tracker(cfg).end_run(run_id, "FINISHED")
    assert decision.promoted and decision.version == "1"
    return SimpleNamespace(cfg=cfg, version=decision.version, genes=list(result.model.genes), tfs=list(synthetic.tfs))


def _refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
        return False
    except OSError:
        return True


@pytest.fixture(scope="module")
def served(registered, mlflow_server, tmp_path_factory):
    """`mlflow models serve` of NAME@champion on 127.0.0.1:<free port>; stopped at teardown."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    exe = BIN / "mlflow"
    # MLflow starts the scoring server as `bash -c "exec uvicorn ..."`: uvicorn is looked up
    # on PATH, so the environment's bin directory must be on it (as in an activated venv).
    env = {"MLFLOW_TRACKING_URI": mlflow_server.url, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = start_service(
        [
            str(exe),
            "models",
            "serve",
            "-m",
            f"models:/{NAME}@champion",
            "--env-manager",
            "local",
            "-h",
            HOST,
            "-p",
            str(port),
        ],
        f"http://{HOST}:{port}/ping",
        log,
        timeout=120,
        env=env,
    )
    try:
        yield SimpleNamespace(url=f"http://{HOST}:{port}", port=port, log=log)
    finally:
        _stop(proc)
    # The whole tree (mlflow CLI -> uvicorn) is gone: nothing listens on the port any more.
    deadline = time.monotonic() + 15
    while not _refused(port) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _refused(port), f"scoring server still listening on {port} after stop:\n{log.read_text()[-2000:]}"


def _post(served, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{served.url}/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, {"raw": raw.decode(errors="replace")}


def _use_server(registered, monkeypatch):
    from scregnet.tracking import tracker

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered.cfg.tracking.tracking_uri)
    tracker(registered.cfg).activate()


def _pairs(registered, n: int = 24) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    tfs = rng.choice(registered.tfs, n)
    targets = rng.choice(registered.genes, n)
    frame = pd.DataFrame({"tf": tfs, "target": targets})
    frame.loc[::3, "tf"] = frame.loc[::3, "tf"].str.lower()  # symbols match case-insensitively
    return frame


def test_served_champion_scores_equal_the_in_process_model(registered, served, monkeypatch):
    import mlflow

    from scregnet.predict import load_model

    _use_server(registered, monkeypatch)
    frame = _pairs(registered)
    status, body = _post(served, {"dataframe_split": {"columns": ["tf", "target"], "data": frame.values.tolist()}})
    assert status == 200, (body, served.log.read_text()[-3000:])
    assert list(body) == ["predictions"] and len(body["predictions"]) == len(frame)
    assert all(list(row) == ["tf", "target", "score"] for row in body["predictions"])
    got = pd.DataFrame(body["predictions"])
    assert got["tf"].tolist() == frame["tf"].str.upper().tolist()
    assert got["target"].tolist() == frame["target"].str.upper().tolist()
    served_scores = got["score"].to_numpy(dtype=float)
    assert np.all((served_scores >= 0) & (served_scores <= 1))
    assert np.ptp(served_scores) > 1e-4  # a real model: the comparison below is not between constants

    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    np.testing.assert_allclose(served_scores, pyfunc.predict(frame)["score"].to_numpy(dtype=float), rtol=0, atol=1e-6)
    loaded = load_model(DATASET, "champion", registered.cfg)  # what `scregnet predict` scores with
    assert loaded.version == registered.version
    np.testing.assert_allclose(
        served_scores, loaded.bundle.score_symbols(frame["tf"].tolist(), frame["target"].tolist()), rtol=0, atol=1e-6
    )

    # The other JSON request formats of the scoring server give the same answer.
    for body_in in (
        {"dataframe_records": frame.to_dict(orient="records")},
        {"inputs": {"tf": frame["tf"].tolist(), "target": frame["target"].tolist()}},
    ):
        status, other = _post(served, body_in)
        assert status == 200, other
        assert other == body, list(body_in)


def test_unknown_gene_is_a_400_naming_the_gene(registered, served, monkeypatch):
    import mlflow
    from mlflow.exceptions import MlflowException

    tf, target = registered.tfs[0], registered.genes[-1]
    status, body = _post(
        served, {"dataframe_records": [{"tf": tf, "target": target}, {"tf": "NOPE1", "target": target}]}
    )
    assert status == 400, body
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert "genes not in the model's gene set: ['NOPE1']" in body["message"], body
    assert "stack_trace" not in body  # the reason is the message, not buried in a traceback
    status, ok = _post(served, {"dataframe_records": [{"tf": tf, "target": target}]})
    assert status == 200 and len(ok["predictions"]) == 1  # still serving after a bad request

    _use_server(registered, monkeypatch)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    with pytest.raises(MlflowException, match=r"NOPE1"):
        pyfunc.predict(pd.DataFrame({"tf": ["NOPE1"], "target": [target]}))


def test_malformed_requests_are_4xx_naming_what_is_wrong(registered, served):
    tf, target = registered.tfs[0], registered.genes[-1]
    status, body = _post(served, {"dataframe_records": [{"tf": tf}]})
    assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
    assert "missing inputs ['target']" in body["message"], body

    status, body = _post(served, {"dataframe_split": {"columns": ["tf", "target"], "data": [[tf, target], [tf, None]]}})
    assert status == 400, body
    assert "column 'target' has empty gene symbols at rows [1]" in body["message"], body

    status, body = _post(served, {"pairs": [[tf, target]]})  # none of the scoring server's input keys
    assert status == 400 and body["error_code"] == "BAD_REQUEST" and "dataframe_split" in body["message"], body
