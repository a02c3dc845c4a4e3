"""What a person reads about a run: its name, the headline metrics, the experiment's description
and saved view, the model-vs-baselines figure, the command-line summary and hints, plain logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from scregnet.config import RunConfig
from scregnet.tracking import records, tracker

REPO = Path(__file__).resolve().parents[1]
MODEL = {"auroc": 0.71234567, "auprc": 0.30111, "per_tf_auroc": 0.69, "auprc_lift": 3.1, "n": 100.0, "prevalence": 0.1}
BASELINES = {
    "label_count": {"auroc": 0.69, "auprc": 0.25, "per_tf_auroc": 0.66, "auprc_lift": 2.5, "n": 100.0},
    "tf_prior": {"auroc": 0.60, "auprc": 0.27, "per_tf_auroc": 0.5, "auprc_lift": 2.7, "n": 100.0},
    "target_popularity": {"auroc": 0.65, "auprc": 0.22, "per_tf_auroc": 0.66, "auprc_lift": 2.2, "n": 100.0},
}


def test_summary_is_the_model_beside_the_best_baseline_per_metric_rounded():
    s = records.summary_metrics(MODEL, BASELINES)
    assert s["summary/model_auroc"] == 0.7123  # rounded for reading
    assert s["summary/baseline_auroc"] == 0.69 and s["summary/auroc_gain"] == pytest.approx(0.0223)
    # The best baseline is chosen per metric: tf_prior has the best AUPRC here.
    assert s["summary/baseline_auprc"] == 0.27 and s["summary/auprc_gain"] == pytest.approx(0.0311)
    assert s["summary/baseline_per_tf_auroc"] == 0.66
    # Without peers scored, the peer columns stay empty (no zeros that would read as results).
    peer_names = {n for n in records.summary_names() if "peer" in n}
    assert peer_names and set(s) | {"summary/train_seconds"} == set(records.summary_names()) - peer_names
    tags = records.best_scorer_tags(BASELINES)  # ties (per-TF AUROC) go to the scorer listed first
    assert tags == {"best_baseline": "auroc=label_count auprc=tf_prior per_tf_auroc=label_count"}


def test_peers_extend_the_summary_as_a_second_group():
    """The peer scorers (GENIE3, co-expression) are COMPARATORS' second group."""
    others = {**BASELINES, "genie3": {"auroc": 0.75, "auprc": 0.2, "per_tf_auroc": 0.7}}
    s = records.summary_metrics(MODEL, others)
    assert s["summary/peer_auroc"] == 0.75 and s["summary/auroc_gain_vs_peer"] == pytest.approx(-0.0377)
    assert s["summary/auroc_gain"] == pytest.approx(0.0223)  # the baseline gain keeps its name
    assert "summary/auroc_gain_vs_peer" in records.summary_names()
    assert "| genie3 | 0.750 |" in records.run_note(MODEL, others)


def test_full_metrics_are_grouped_by_part_and_pair_facts_logged_once():
    flat = records.flat_metrics({"test": MODEL, "val": MODEL}, {"test": BASELINES, "val": BASELINES})
    assert flat["test/model_auroc"] == MODEL["auroc"]  # full precision
    assert flat["val/label_count_auprc"] == 0.25 and flat["test/target_popularity_auprc_lift"] == 2.2
    assert "test/model_n" in flat and "test/label_count_n" not in flat
    assert all(k.split("/")[0] in ("test", "val") for k in flat)


def test_run_names_carry_dataset_protocol_embedder_and_seed():
    cfg = RunConfig()
    cfg.embedder.kind, cfg.train.seed, cfg.split.protocol = "pca", 3, "heldout_tf"
    assert records.run_label(cfg, "mHSC-L/TFs500") == "mHSC-L-TFs500 heldout_tf pca s3"
    assert records.run_label(cfg, "mHSC-L/TFs500", None, "tuned") == "mHSC-L-TFs500 heldout_tf pca s3 tuned"
    from pipelines.training import pipeline_run_name, training_pipeline
    from pipelines.tuning import tuning_pipeline

    cfg.data.name = "mDC/TFs500"
    assert pipeline_run_name(training_pipeline, cfg) == "mDC-TFs500 heldout_tf pca s3 {date} {time}"
    assert pipeline_run_name(tuning_pipeline, cfg) == "mDC-TFs500 heldout_tf pca s3 tuning {date} {time}"


@pytest.fixture
def store(tmp_path):
    cfg = RunConfig()
    cfg.tracking.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg.tracking.experiment = "records-test"
    records._described.clear()
    return cfg


def test_the_experiment_describes_itself_and_saves_the_model_vs_baselines_view(store):
    t = tracker(store)
    exp_id = records.describe_experiment(t)
    tags = t.client.get_experiment(exp_id).tags
    text = tags[records.DESCRIPTION_TAG]
    assert text.startswith(records.DESCRIPTION_MARK) and "summary/auroc_gain" in text
    envelope = json.loads(tags[records.VIEW_TAG])  # MLflow's saved-view envelope, listed under "Views"
    assert envelope["name"] == records.VIEW_NAME and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    columns = [f"metrics.`{n}`" for n in records.summary_names()]
    assert state["selectedColumns"][: len(columns)] == columns and state["columnOrder"] == state["selectedColumns"]
    assert records.view_url("http://127.0.0.1:5000", exp_id).endswith(
        f"/#/experiments/{exp_id}/runs?viewStateShareKey={records.VIEW_ID}"
    )

    # A description a person wrote is theirs; a stale view of ours is replaced, keeping its creation time.
    t.client.set_experiment_tag(exp_id, records.DESCRIPTION_TAG, "our lab's notes")
    stale = json.dumps({**envelope, "state": json.dumps({"selectedColumns": []})})
    t.client.set_experiment_tag(exp_id, records.VIEW_TAG, stale)
    records._described.clear()
    records.describe_experiment(t)
    tags = t.client.get_experiment(exp_id).tags
    assert tags[records.DESCRIPTION_TAG] == "our lab's notes"
    renewed = json.loads(tags[records.VIEW_TAG])
    assert json.loads(renewed["state"]) == records.view_state() and renewed["createdAt"] == envelope["createdAt"]


def test_model_vs_baselines_figure_draws_each_scorer_on_each_metric():
    from scregnet.plots import BAR_METRICS, model_vs_baselines_figure

    fig = model_vs_baselines_figure(MODEL, BASELINES, "synthetic (genelink, seed 0)")
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["model", *BASELINES]
    heights = {
        (label, i): bar.get_height()
        for container, label in zip(ax.containers, labels)
        for i, bar in enumerate(container)
    }
    assert len(heights) == len(labels) * len(BAR_METRICS)
    assert heights[("model", 0)] == pytest.approx(MODEL["auroc"])
    assert heights[("tf_prior", 1)] == pytest.approx(BASELINES["tf_prior"]["auprc"])
    assert any(t.get_text() == "0.712" for t in ax.texts)  # values written on the bars


def test_mlflow_hint_names_this_environments_executable_and_the_view(store):
    from scregnet.cli._common import mlflow_ui_hint

    hint = mlflow_ui_hint(store)
    mlflow_exe = Path(sys.executable).parent / "mlflow"
    assert mlflow_exe.exists()
    assert hint.startswith(f"{mlflow_exe} ui --backend-store-uri {store.tracking.tracking_uri} ")
    assert f"viewStateShareKey={records.VIEW_ID}" in hint


def test_schedule_hint_on_the_local_stack_names_this_environments_scregnet():
    from click.testing import CliRunner

    from scregnet.cli import main

    res = CliRunner().invoke(main, ["schedule", "--cron", "0 3 * * 1"])
    assert res.exit_code == 2
    exe = Path(sys.executable).parent / "scregnet"
    assert exe.exists()
    assert f"0 3 * * 1 cd {Path.cwd()} && {exe} watch " in res.output


def test_train_summary_names_the_dataset_taken_from_the_path(synthetic_dir, monkeypatch):
    """No --name: the dataset's name comes from the directory, and the summary says it."""
    from click.testing import CliRunner

    import pipelines.training
    from scregnet.cli import main
    from scregnet.cli import run as run_cli
    from scregnet.data import dataset_name

    seen = {}

    def fake_run_training(config, zenml_config=None):
        seen["name"] = config.data.name
        return "run"

    part = {"auroc": 0.7, "auprc": 0.3, "per_tf_auroc": 0.6}
    outputs = {
        "metrics": {"test": part, "baselines": {"test": {"label_count": part}}},
        "promotion": {"name": "m", "version": "1", "promoted": True, "reason": "no champion yet"},
    }
    monkeypatch.setattr(pipelines.training, "run_training", fake_run_training)
    monkeypatch.setattr(run_cli, "pipeline_output", lambda run, step, name: outputs[name])
    res = CliRunner().invoke(main, ["train", "--data", str(synthetic_dir), "--embedder", "pca"])
    assert res.exit_code == 0, res.output
    name = dataset_name(synthetic_dir)
    assert name and seen["name"] == name
    assert f"dataset {name}  protocol genelink  embedder pca" in res.output


def test_redirected_output_has_no_colour_codes(tmp_path):
    """ZenML's coloured log lines and MLflow's coloured warnings, written to a file."""
    code = (
        "from scregnet.home import configure; configure()\n"
        "import warnings, logging\n"
        "from zenml.logger import get_logger\n"
        "get_logger('zenml.test').warning('zenml says `hello`')\n"
        "from mlflow.utils.warnings_utils import color_warning\n"
        "color_warning('mlflow says hello', stacklevel=1, color='yellow_bold')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "NO_COLOR"))}
    env["SCREGNET_HOME"] = str(tmp_path / "home")
    with open(tmp_path / "log.txt", "w") as log:
        r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, stdout=log, stderr=log, timeout=120)
    text = (tmp_path / "log.txt").read_text()
    assert r.returncode == 0, text
    assert "zenml says" in text and "mlflow says hello" in text
    assert "\x1b[" not in text


def test_strip_ansi():
    from scregnet.home import strip_ansi

    assert strip_ansi("\x1b[1;33mwarn\x1b[0m \x1b[38;5;105mstep\x1b[37m") == "warn step"


def test_dashboard_refuses_a_port_in_use():
    import socket

    from click.testing import CliRunner

    from scregnet.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = CliRunner().invoke(main, ["dashboard", "--port", str(port)])
    assert res.exit_code == 2
    assert f"port {port} on 127.0.0.1 is in use" in res.output and "--port" in res.output
