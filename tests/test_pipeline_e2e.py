"""Real ZenML runs (local orchestrator, temporary store) through the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest
import yaml

from scregnet.tracking.records import summary_names

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
SMALL = {
    "parameters": {
        "config": {
            "model": {"gnn_dims": [32, 16], "mlp_dims": [16]},
            "train": {"max_epochs": 30, "patience": 3},
            "embedder": {"kind": "pca", "dim": 8},
            # The registry mechanics are under test here; a model on this tiny dataset is not shown
            # to beat the no-learning baselines (tests/test_registry_gate.py tests that gate).
            "registry": {"baseline_gate": False},
        }
    }
}


def _cli(home: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_"))}
    env.update(SCREGNET_HOME=str(home), ZENML_LOGGING_VERBOSITY="WARN", SCREGNET_ARTIFACTS=str(home / "mlartifacts"))
    env.pop("SCREGNET_ARTIFACTS")
    return subprocess.run(
        [sys.executable, "-m", "scregnet.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _zenml_stage(home: Path, name: str, version: str) -> str:
    code = (
        "from scregnet.home import configure; configure();"
        "from zenml.client import Client;"
        f"print(Client().get_model_version('{name}', '{version}').stage)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "SCREGNET_ARTIFACTS"))}
    env["SCREGNET_HOME"] = str(home)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    return path


@pytest.fixture(scope="module")
def first_run(home, config_file, synthetic_dir):
    out = _cli(
        home, "train", "--data", str(synthetic_dir), "--config", str(config_file), "--name", "synth", "--seed", "0"
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _client(home: Path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_run_is_tracked_with_config_metrics_plots_and_tags(first_run, home):
    assert "model (test)" in first_run.stdout and "label_count" in first_run.stdout
    c = _client(home)
    exp = c.get_experiment_by_name("scregnet")
    runs = c.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_epochs"] == "30" and run.data.params["embedder.kind"] == "pca"
    for key in (
        "test/model_auroc",
        "test/model_auprc",
        "val/model_auroc",
        "test/label_count_auroc",
        "test/tf_prior_auprc",
        "test/target_popularity_auroc",
        "test/model_per_tf_auroc",
        "training/best_epoch",
        "training/train_loss",
        *summary_names(),
    ):
        assert key in run.data.metrics, key
    m = run.data.metrics
    assert m["summary/auroc_gain"] == pytest.approx(m["test/model_auroc"] - m["summary/baseline_auroc"], abs=2e-4)
    assert run.info.run_name == "synth genelink pca s0"  # dataset, protocol, embedder, seed
    (dataset_input,) = run.inputs.dataset_inputs  # MLflow's Dataset column
    assert dataset_input.dataset.name == "synth" and len(dataset_input.dataset.digest) == 8
    assert "dataset synth  protocol genelink  embedder pca" in first_run.stdout
    assert "input example was not provided" not in first_run.stdout + first_run.stderr
    assert "\x1b[" not in first_run.stdout + first_run.stderr  # captured output: no colour codes
    tags = run.data.tags
    assert (tags["dataset"], tags["protocol"], tags["embedder"], tags["gnn"], tags["seed"]) == (
        "synth",
        "genelink",
        "pca",
        "gcn",
        "0",
    )
    artifacts = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"plots", "embedding"} <= artifacts
    plots = {a.path for a in c.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/roc_pr_test.png", "plots/training_curves.png", "plots/model_vs_baselines.png"} <= plots
    assert (home / "mlflow.db").is_file() and (home / "zenml").is_dir()


def test_first_model_becomes_champion_in_mlflow_and_zenml(first_run, home):
    c = _client(home)
    mv = c.get_model_version_by_alias("scregnet-synth", "champion")
    assert str(mv.version) == "1"
    assert str(c.get_model_version_by_alias("scregnet-synth", "challenger").version) == "1"
    assert mv.tags["promotion_decision"] == "promoted"
    assert _zenml_stage(home, "scregnet-synth", mv.tags["zenml_model_version"]) == "production"
    # The model carries a 2-pair input example of its own genes (MLflow scored it when logging).
    location = Path(urlparse(c.get_model_version_download_uri("scregnet-synth", "1")).path)
    example = json.loads((location / "input_example.json").read_text())
    assert example["columns"] == ["tf", "target"] and len(example["data"]) == 2


def test_second_model_is_gated_against_the_champion(first_run, home, config_file, synthetic_dir):
    out = _cli(
        home, "train", "--data", str(synthetic_dir), "--config", str(config_file), "--name", "synth", "--seed", "0"
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    c = _client(home)
    v2 = c.get_model_version("scregnet-synth", "2")
    assert str(c.get_model_version_by_alias("scregnet-synth", "challenger").version) == "2"
    champion = str(c.get_model_version_by_alias("scregnet-synth", "champion").version)
    v1 = c.get_model_version("scregnet-synth", "1")
    # Same seed, same split: the fair set is the whole test part (neither model saw it).
    assert v1.tags["split_hash"] == v2.tags["split_hash"]
    assert int(v2.tags["gate_fair_n_pairs"]) == int(v2.tags["gate_fair_n_candidates"]) > 0
    better = float(v2.tags["test_auprc"]) > float(v1.tags["test_auprc"])
    assert champion == ("2" if better else "1")
    assert v2.tags["promotion_decision"] == ("promoted" if better else "rejected")
    stage = _zenml_stage(home, "scregnet-synth", v2.tags["zenml_model_version"])
    assert stage == ("production" if better else "staging")


def test_invalid_input_stops_before_training_and_registers_nothing(
    first_run, home, config_file, synthetic_dir, tmp_path
):
    bad = tmp_path / "bad"
    shutil.copytree(synthetic_dir, bad)
    expr = pd.read_csv(bad / "BL--ExpressionData.csv", index_col=0)
    expr.iloc[2, 3] = -5.0
    expr.to_csv(bad / "BL--ExpressionData.csv")
    before = len(_client(home).search_model_versions("name='scregnet-synth'"))
    runs_before = len(_client(home).search_runs([_client(home).get_experiment_by_name("scregnet").experiment_id]))
    out = _cli(home, "train", "--data", str(bad), "--config", str(config_file), "--name", "synth")
    assert out.returncode != 0
    assert "BL--ExpressionData.csv" in out.stderr and "negative" in out.stderr
    assert "Nothing was trained or registered" in out.stderr
    c = _client(home)
    assert len(c.search_model_versions("name='scregnet-synth'")) == before
    assert len(c.search_runs([c.get_experiment_by_name("scregnet").experiment_id])) == runs_before


def test_evaluation_report_is_a_zenml_html_visualisation(first_run, home, tmp_path):
    script = tmp_path / "read_report.py"  # a file, not -c: ZenML needs a source root to load artifacts
    script.write_text(
        "from scregnet.home import configure; configure()\n"
        "from zenml.client import Client\n"
        "runs = Client().list_pipeline_runs(sort_by='desc:created', size=20).items\n"
        "run = next(r for r in runs if 'evaluate' in r.steps\n"
        "           and str(r.steps['evaluate'].status).lower().endswith('completed'))\n"
        "art = run.steps['evaluate'].outputs['evaluation_report']\n"
        "art = art[0] if isinstance(art, list) else art\n"
        "print(len(art.visualizations), str(art.load())[:2000])\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "SCREGNET_ARTIFACTS"))}
    env["SCREGNET_HOME"] = str(home)
    out = subprocess.run([sys.executable, str(script)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    n_vis, html = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert int(n_vis) >= 1 and html.startswith("<html>") and "label_count" in html


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_serves_the_projects_runs_and_stops(first_run, home):
    """`scregnet dashboard`: ZenML's server on 127.0.0.1 against $SCREGNET_HOME's store; the client
    configuration is left alone, so training keeps working after it stops."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "SCREGNET_ARTIFACTS"))}
    env["SCREGNET_HOME"] = str(home)
    config_before = (home / "zenml" / "config.yaml").read_text()
    proc = subprocess.Popen(
        [sys.executable, "-m", "scregnet.cli", "dashboard", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the test stops server and CLI together
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(1)
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        runs = _get_json(f"{url}/api/v1/runs?sort_by=desc:created&size=50")["items"]
        names = [r["name"] for r in runs]
        assert any(n.startswith("synth genelink pca s0 ") for n in names), names  # readable ZenML run names
        assert all(r["body"]["status"] in ("completed", "failed") for r in runs)
        user = _get_json(f"{url}/api/v1/current-user")
        assert user["body"]["email_opted_in"] is False  # the first-visit survey will not block the runs page
        page = urllib.request.urlopen(f"{url}/projects/default/runs", timeout=10).read().decode()
        assert "<html" in page.lower()  # the dashboard itself is served
    finally:
        proc.terminate()  # SIGTERM to the command alone: it must stop its server itself
        try:
            out = proc.communicate(timeout=60)[0]
        finally:
            try:
                server_left = True
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
            except ProcessLookupError:
                server_left = False
    assert f"ZenML dashboard: {url}" in out and "stopping the ZenML dashboard" in out
    assert not server_left, "the server outlived the dashboard command"
    assert (home / "zenml" / "config.yaml").read_text() == config_before
