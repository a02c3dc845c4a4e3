"""Registry gate, promotion/rollback, batch inference and the pyfunc, against a real
`mlflow server` (sqlite backend, local artifacts) on 127.0.0.1.

Two real training pipelines (subprocesses: one ZenML pipeline per process) register
versions 1 and 2 of `scregnet-predsyn` on the server; the ZenML store is this test
session's ($SCREGNET_HOME from conftest), so promotions here can be checked against the
ZenML Model version stages.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

pytestmark = [pytest.mark.services, pytest.mark.e2e]
DATASET, NAME = "predsyn", "scregnet-predsyn"
SCREGNET = Path(sys.executable).parent / "scregnet"


@pytest.fixture(scope="module")
def tracking(mlflow_server):
    """Point this process's MLflow at the server for the module; restore afterwards."""
    import mlflow

    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_server.url
    yield mlflow_server.url
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old
    mlflow.set_tracking_uri(old)
    mlflow.set_registry_uri(old)


def _train(data_dir: Path, config: Path, seed: int, home_env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(SCREGNET),
            "train",
            "--data",
            str(data_dir),
            "--config",
            str(config),
            "--name",
            DATASET,
            "--seed",
            str(seed),
        ],
        env=home_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def trained(tracking, synthetic_dir, tmp_path_factory):
    """Versions 1 and 2 registered on the server by two real pipeline runs."""
    work = tmp_path_factory.mktemp("predict")
    config = work / "small.yaml"
    cfg = {
        "embedder": {"kind": "pca", "dim": 16},
        "model": {"gnn_dims": [32, 16], "mlp_dims": [16]},
        "train": {"max_epochs": 20, "patience": 4},
        "tracking": {"tracking_uri": tracking},
        # Promotion mechanics are under test; the baseline gate has its own tests (test_registry_gate.py).
        "registry": {"baseline_gate": False},
    }
    config.write_text(yaml.safe_dump({"parameters": {"config": cfg}}))
    env = dict(os.environ)  # same SCREGNET_HOME / ZenML store as this process (conftest)
    for seed in (0, 1):
        r = _train(synthetic_dir, config, seed, env)
        assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    return {"config": config, "cfg": cfg, "env": env, "work": work, "data": synthetic_dir}


def _client():
    from scregnet.tracking import tracker

    return tracker().client


def _champion() -> str:
    return str(_client().get_model_version_by_alias(NAME, "champion").version)


def _zenml_stages() -> dict[str, str | None]:
    """MLflow version -> stage of the ZenML model version it mirrors."""
    from zenml.client import Client

    out = {}
    for mv in _client().search_model_versions(f"name='{NAME}'"):
        zv = (mv.tags or {}).get("zenml_model_version")
        stage = Client().get_model_version(NAME, zv).stage
        out[str(mv.version)] = getattr(stage, "value", stage)
    return out


def _assert_agree(expected_champion: str) -> None:
    assert _champion() == expected_champion
    stages = _zenml_stages()
    assert [v for v, s in stages.items() if s == "production"] == [expected_champion], stages


def _cli(*args):
    from scregnet.cli import main

    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_pipeline_registers_versions_and_the_gate_agrees_with_zenml(trained):
    versions = sorted(int(v.version) for v in _client().search_model_versions(f"name='{NAME}'"))
    assert versions == [1, 2]
    v2 = _client().get_model_version(NAME, "2")
    assert v2.tags["promotion_decision"] in ("promoted", "rejected")
    _assert_agree("2" if v2.tags["promotion_decision"] == "promoted" else "1")
    assert str(_client().get_model_version_by_alias(NAME, "challenger").version) == "2"


def test_promote_and_rollback_move_alias_and_zenml_stage_together(trained):
    r = _cli("promote", "--dataset", DATASET, "--version", "2")
    assert r.exit_code == 0, r.output
    _assert_agree("2")
    r = _cli("rollback", "--dataset", DATASET)
    assert r.exit_code == 0 and "version 1" in r.output, r.output
    _assert_agree("1")
    r = _cli("promote", "--dataset", DATASET, "--version", "99")  # no such version
    assert r.exit_code == 1
    _assert_agree("1")


def test_failed_promotion_or_run_never_moves_champion(trained):
    from scregnet import registry

    before = _champion()
    history = _client().get_registered_model(NAME).tags.get(registry.HISTORY_TAG)
    other = "2" if before == "1" else "1"

    def broken_mirror(promoted):
        raise RuntimeError("ZenML unreachable")

    with pytest.raises(RuntimeError):
        registry.apply_promotion(registry.Decision(NAME, other, True, "test", "auprc", 1.0), broken_mirror)
    assert _champion() == before
    assert _client().get_registered_model(NAME).tags.get(registry.HISTORY_TAG) == history

    # A run that fails validation registers nothing and leaves champion alone.
    bad = trained["work"] / "bad.yaml"
    cfg = {**trained["cfg"], "data": {"min_cells": 100000}}
    bad.write_text(yaml.safe_dump({"parameters": {"config": cfg}}))
    r = _train(trained["data"], bad, 0, trained["env"])
    assert r.returncode != 0
    assert len(_client().search_model_versions(f"name='{NAME}'")) == 2
    _assert_agree(before)


def _check_network(frame: pd.DataFrame, genes: list[str], tfs: list[str]) -> None:
    assert len(frame) == len(tfs) * len(genes) - len(set(tfs) & set(genes))
    assert not (frame["tf"] == frame["target"]).any()
    assert set(frame["tf"]) == set(tfs) and set(frame["target"]) == set(genes)
    assert not frame.duplicated(["tf", "target"]).any()
    assert frame["score"].between(0, 1).all() and frame["score"].notna().all()
    assert (np.diff(frame["score"].to_numpy()) <= 0).all()
    assert frame["rank"].tolist() == list(range(1, len(frame) + 1))


def test_predict_champion_and_version(trained, synthetic, tmp_path):
    from scregnet.predict import load_model

    champion = _champion()
    r = _cli("predict", "--dataset", DATASET, "--out", str(tmp_path / "net.csv"))
    assert r.exit_code == 0 and f"version {champion}" in r.output, r.output
    by_alias = pd.read_csv(tmp_path / "net.csv")
    model = load_model(DATASET, "champion")
    assert model.version == champion
    tfs = list(model.bundle.meta["tfs"])
    assert set(tfs) == set(synthetic.tfs)
    _check_network(by_alias, model.bundle.genes, tfs)

    r = _cli("predict", "--dataset", DATASET, "--model", champion, "--out", str(tmp_path / "net.parquet"))
    assert r.exit_code == 0, r.output
    by_version = pd.read_parquet(tmp_path / "net.parquet")
    pd.testing.assert_frame_equal(by_alias[["tf", "target"]], by_version[["tf", "target"]])
    np.testing.assert_allclose(by_alias["score"], by_version["score"], rtol=1e-5, atol=1e-7)

    other = "2" if champion == "1" else "1"
    r = _cli("predict", "--dataset", DATASET, "--model", other, "--out", str(tmp_path / "other.csv"), "--top", "25")
    assert r.exit_code == 0 and f"version {other}" in r.output, r.output
    top = pd.read_csv(tmp_path / "other.csv")
    assert len(top) == 25 and top["rank"].tolist() == list(range(1, 26))

    tf_file = tmp_path / "tfs.txt"
    tf_file.write_text("\n".join(tfs[:2]) + "\n")
    r = _cli("predict", "--dataset", DATASET, "--tfs", str(tf_file), "--out", str(tmp_path / "net.graphml"))
    assert r.exit_code == 0, r.output
    import networkx as nx

    g = nx.read_graphml(tmp_path / "net.graphml")
    assert g.is_directed() and g.number_of_edges() == 2 * (len(model.bundle.genes) - 1)

    r = _cli("predict", "--dataset", "no-such-dataset", "--out", str(tmp_path / "x.csv"))
    assert r.exit_code == 1


def test_registered_model_is_a_pyfunc_scoring_pairs(trained, tmp_path):
    import mlflow

    from scregnet.predict import load_model

    r = _cli("predict", "--dataset", DATASET, "--out", str(tmp_path / "net.csv"))
    assert r.exit_code == 0, r.output
    net = pd.read_csv(tmp_path / "net.csv")
    sample = net.sample(50, random_state=0).reset_index(drop=True)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    out = pyfunc.predict(pd.DataFrame({"tf": sample["tf"].str.lower(), "target": sample["target"]}))
    assert list(out.columns) == ["tf", "target", "score"] and len(out) == 50
    np.testing.assert_allclose(out["score"].to_numpy(), sample["score"].to_numpy(), rtol=1e-5, atol=1e-6)
    assert all(0 <= s <= 1 and not math.isnan(s) for s in out["score"])
    assert load_model(DATASET, "champion").version == _champion()
