"""Issue 14: no input, config or flag ends in a traceback, trains a broken model, or leaves an MLflow
run RUNNING. Each bad case is generated here, run through the real command line (click's runner,
or a subprocess for the one pipeline run), and checked for its exit code, a message naming the
file / key / value, no run left RUNNING and nothing registered (a real sqlite MLflow store in tmp)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from click.testing import CliRunner

from scregnet.cli import main

REPO = Path(__file__).resolve().parents[1]
GOOD = REPO / "tests" / "data" / "good"


def _invoke(*args: str):
    result = CliRunner().invoke(main, list(args))
    text = result.output + (result.stderr if result.stderr_bytes is not None else "")
    assert "Traceback" not in text, text
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, text


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh sqlite MLflow store for the test; yields its URI."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SCREGNET_ARTIFACTS", str(tmp_path / "mlartifacts"))
    return uri


def _statuses(uri: str) -> dict[str, str]:
    """run id -> status of every run in every experiment of the store."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    if not Path(uri.removeprefix("sqlite:///")).exists():
        return {}  # nothing ever opened the store
    client = MlflowClient(uri)
    exps = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(exps, run_view_type=ViewType.ALL, max_results=1000) if exps else []
    return {r.info.run_id: r.info.status for r in runs}


def _registered(uri: str) -> list[str]:
    from mlflow import MlflowClient

    if not Path(uri.removeprefix("sqlite:///")).exists():
        return []
    return [m.name for m in MlflowClient(uri, registry_uri=uri).search_registered_models()]


# --- 2. configuration: validated completely at load time, exit 2, key path + value + range ---------

CONFIG_CASES = {
    "max_epochs_negative": ("train: {max_epochs: -5}", ["train.max_epochs = -5", ">= 1"]),
    "lr_zero": ("train: {lr: 0}", ["train.lr = 0", "> 0 (finite)"]),
    "lr_negative": ("train: {lr: -0.01}", ["train.lr = -0.01", "> 0"]),
    "lr_nan": ("train: {lr: .nan}", ["train.lr = nan", "> 0 (finite)"]),
    "train_frac_negative": ("split: {train_frac: -0.2}", ["split.train_frac = -0.2", "in (0, 1)"]),
    "empty_test_part": (
        "split: {train_frac: 0.9, val_frac: 0.5}",
        ["split.train_frac + split.val_frac = 0.9 + 0.5 = 1.4", "must be < 1", "test part"],
    ),
    "heldout_empty_train": (
        "split: {protocol: heldout_tf, heldout_frac: 0.95}",
        ["split.heldout_frac + split.val_frac", "training part"],
    ),
    "eval_every_zero": ("train: {eval_every: 0}", ["train.eval_every = 0", ">= 1"]),
    "dropout_above_one": ("model: {dropout: 1.5}", ["model.dropout = 1.5", "in [0, 1)"]),
    "gnn_dims_empty": ("model: {gnn_dims: []}", ["model.gnn_dims = []", "at least 1"]),
    "gnn_dims_zero_width": ("model: {gnn_dims: [64, 0]}", ["model.gnn_dims[1] = 0", "> 0"]),
    "embedder_dim_zero": ("embedder: {dim: 0}", ["embedder.dim = 0", ">= 1"]),
    "seed_negative": ("train: {seed: -1}", ["train.seed = -1", ">= 0"]),
    "trials_zero": ("tune: {n_trials: 0}", ["tune.n_trials = 0", ">= 1"]),
    "timeout_negative": ("tune: {timeout: -5}", ["tune.timeout = -5", "> 0"]),
    "widths_crossed": ("tune: {min_width: 300}", ["tune.min_width = 300 > tune.max_width = 256"]),
    "unknown_key": ("train: {lrr: 0.1}", ["train.lrr: unknown key", "lr"]),
    "section_not_mapping": ("train: 5", ["train = 5", "mapping"]),
    "text_for_number": ("data: {min_cells: many}", ["data.min_cells = 'many'", "integer"]),
    "parameters_config_empty": ("parameters:\n  config:\n", ["parameters.config is empty"]),
    "zenml_shape_two_errors": (
        "settings: {}\nparameters:\n  config:\n    train: {lr: .nan}\n    model: {dropout: 1.5}\n",
        ["2 problem(s)", "train.lr = nan", "model.dropout = 1.5"],
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_bad_config_value_is_refused_at_load_naming_the_key(name, tmp_path, store):
    text, expected = CONFIG_CASES[name]
    path = tmp_path / f"{name}.yaml"
    path.write_text(text + "\n")
    code, out = _invoke("train", "--data", str(GOOD), "--config", str(path))
    assert code == 2, out
    assert str(path) in out, out
    for piece in expected:
        assert piece in out, out
    assert not (tmp_path / "mlflow.db").exists()  # refused before anything was tracked


def test_defaults_and_shipped_configs_stay_valid():
    from scregnet.config import RunConfig, load_config

    assert RunConfig().train.max_epochs == 300 and RunConfig().split.train_frac == 0.67  # defaults unchanged
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)


def test_config_sections_built_alone_name_their_full_key_path():
    from pydantic import ValidationError

    from scregnet.config import GeneformerConfig, describe_validation_error

    with pytest.raises(ValidationError) as info:
        GeneformerConfig(n_shards=0)
    assert describe_validation_error(info.value, GeneformerConfig) == [
        "embedder.geneformer.n_shards = 0: must be an integer >= 1"
    ]


# --- flags: click ranges and the same config validation; no traceback anywhere ----------------------

FLAG_CASES = {
    "tune_trials_zero": (["tune", "--data", str(GOOD), "--trials", "0"], 2, "--trials"),
    "tune_trials_negative": (["tune", "--data", str(GOOD), "--trials", "-1"], 2, "--trials"),
    "tune_timeout_negative": (["tune", "--data", str(GOOD), "--timeout", "-5"], 2, "--timeout"),
    "tune_timeout_inf": (["tune", "--data", str(GOOD), "--timeout", "inf"], 2, "not a finite number"),
    "validate_min_cells_negative": (["validate", "--data", str(GOOD), "--min-cells", "-1"], 2, "--min-cells"),
    "validate_min_score_nan": (["validate", "--data", str(GOOD), "--min-score", "nan"], 2, "--min-score"),
    "predict_top_negative": (["predict", "--dataset", "x", "--top", "-5", "--out", "n.csv"], 2, "--top"),
    "study_levels_text": (["study", "noise", "--data", str(GOOD), "--levels", "abc", "--out", "s.json"], 2, "'abc'"),
    "train_seed_negative": (["train", "--data", str(GOOD), "--seed", "-1"], 2, "--seed"),
    "demo_seed_negative": (["demo", "--seed", "-1"], 2, "--seed"),
    "benchmark_missing_data": (["benchmark", "--data", "/nonexistent", "--out", "b.json"], 2, "/nonexistent"),
    "train_missing_data": (["train", "--data", "/nonexistent"], 1, "/nonexistent: dataset directory not found"),
    "train_no_input": (["train"], 2, "give --data DIR"),
    "rollback_unknown_model": (["rollback", "--dataset", "nothing-here"], 1, "no registered model"),
    "promote_unknown_model": (["promote", "--dataset", "nothing-here", "--version", "3"], 1, "has no version 3"),
}


@pytest.mark.parametrize("name", sorted(FLAG_CASES))
def test_bad_flag_is_a_clear_error_without_traceback(name, store, tmp_path, monkeypatch):
    args, code, expected = FLAG_CASES[name]
    monkeypatch.chdir(tmp_path)
    got, out = _invoke(*args)
    assert got == code, out
    assert expected in out, out
    assert not _statuses(store) and not _registered(store)


def test_predict_out_below_a_file_is_refused_before_any_work(tmp_path, store):
    afile = tmp_path / "afile"
    afile.write_text("x")
    code, out = _invoke("predict", "--dataset", "x", "--out", str(afile / "net.csv"))
    assert code == 2, out
    assert f"{afile} is a file, not a directory" in out


# --- 3. expression sanity ----------------------------------------------------------------------------


def _write_case(tmp_path: Path, x, obs=None, var=None, priors=None) -> list[str]:
    """An .h5ad (cells x genes) + a priors CSV; returns the `validate` arguments."""
    import anndata as ad

    n_cells, n_genes = x.shape
    obs = obs if obs is not None else [f"cell{i}" for i in range(n_cells)]
    var = var if var is not None else [f"GENE{i}" for i in range(n_genes)]
    adata = ad.AnnData(x, obs=pd.DataFrame(index=obs), var=pd.DataFrame(index=var))
    h5ad = tmp_path / "cells.h5ad"
    adata.write_h5ad(h5ad)
    genes = [f"GENE{i}" for i in range(6)]
    table = priors if priors is not None else pd.DataFrame({"tf": genes[:3] * 2, "target": genes[3:] + genes[3:][::-1]})
    prior_path = tmp_path / "priors.csv"
    table.to_csv(prior_path, index=False)
    return ["validate", "--h5ad", str(h5ad), "--priors", str(prior_path)]


def _counts(n_cells=40, n_genes=30, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(2.0, size=(n_cells, n_genes)).astype(np.float32)


def test_all_zero_matrix_is_refused(tmp_path):
    code, out = _invoke(*_write_case(tmp_path, np.zeros((40, 30), dtype=np.float32)))
    assert code == 1, out
    assert "cells.h5ad: every expression value is 0 (40 cells x 30 genes)" in out


def test_all_zero_sparse_matrix_is_refused(tmp_path):
    code, out = _invoke(*_write_case(tmp_path, sp.csr_matrix((40, 30), dtype=np.float32)))
    assert code == 1, out
    assert "every expression value is 0" in out


def test_mostly_empty_cells_are_an_error_and_a_few_a_warning(tmp_path):
    x = _counts()
    x[:30] = 0  # 30 of 40 cells without a count: an unfiltered droplet matrix
    code, out = _invoke(*_write_case(tmp_path, sp.csr_matrix(x)))
    assert code == 1, out
    assert "30 of 40 cells (75.0%) have no non-zero value" in out and "data.max_empty_cell_frac" in out
    x = _counts()
    x[:4] = 0
    code, out = _invoke(*_write_case(tmp_path, x))
    assert code == 0, out
    assert "warning:" in out and "4 of 40 cells (10.0%) have no non-zero value" in out


def test_mostly_empty_genes_are_an_error(tmp_path):
    x = np.zeros((40, 400), dtype=np.float32)
    x[:, :6] = _counts(40, 6)  # only the prior genes are ever detected
    code, out = _invoke(*_write_case(tmp_path, x))
    assert code == 1, out
    assert "394 of 400 genes (98.5%) have no non-zero value" in out and "data.max_empty_gene_frac" in out


def test_transposed_anndata_is_named_as_such(tmp_path):
    x = _counts(40, 30).T  # genes as observations, cells as variables
    rng = np.random.default_rng(1)
    barcodes = ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(40)]
    code, out = _invoke(*_write_case(tmp_path, x, obs=[f"GENE{i}" for i in range(30)], var=barcodes))
    assert code == 1, out
    assert "cells.h5ad: the matrix looks transposed" in out and "observation (cell) names are prior genes" in out
    assert "look like cell barcodes" in out and "adata.T" in out


def test_nonzero_counts_agree_dense_and_sparse():
    from scregnet.validation import _nonzero_counts

    x = _counts(50, 20)
    x[x < 2] = 0
    dense = _nonzero_counts(x)
    assert np.array_equal(dense[0], (x != 0).sum(1)) and np.array_equal(dense[1], (x != 0).sum(0))
    stored_zero = sp.csr_matrix(x)
    rows, cols = stored_zero.nonzero()  # row-major, the order of .data
    stored_zero.data[:3] = 0  # explicitly stored zeros are not expression
    x[rows[:3], cols[:3]] = 0
    for matrix in (sp.csr_matrix(x), sp.csc_matrix(x), sp.coo_matrix(x), stored_zero, stored_zero.tocsc()):
        cells, genes = _nonzero_counts(matrix)
        assert np.array_equal(cells, (x != 0).sum(1)) and np.array_equal(genes, (x != 0).sum(0)), matrix.format


def test_text_score_column_is_a_warning_and_an_error_with_min_score(tmp_path):
    genes = [f"GENE{i}" for i in range(6)]
    table = pd.DataFrame({"tf": genes[:3], "target": genes[3:], "score": ["high", "low", "mid"]})
    args = _write_case(tmp_path, _counts(), priors=table)
    # As users run it: the warning is a log line on stderr (in-process, ZenML may own the log handlers).
    seen = subprocess.run(
        [sys.executable, "-m", "scregnet.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert seen.returncode == 0, seen.stdout + seen.stderr
    assert "priors.csv" in seen.stderr and "these scores are ignored" in seen.stderr, seen.stderr
    code, out = _invoke(*args, "--min-score", "0.5")
    assert code == 1, out
    assert "priors.csv" in out and "--min-score needs a numeric score" in out


def test_semicolon_priors_get_a_delimiter_hint(tmp_path):
    args = _write_case(tmp_path, _counts())
    (tmp_path / "priors.csv").write_text("tf;target\nGENE0;GENE3\nGENE1;GENE4\n")
    code, out = _invoke(*args)
    assert code == 1, out
    assert "priors.csv" in out and "delimiter" in out


# --- 4. no run left RUNNING, nothing registered, on the failure paths --------------------------------


def test_split_with_an_empty_part_is_refused_before_any_run(tmp_path, synthetic):
    from scregnet.config import SplitConfig
    from scregnet.errors import DataError
    from scregnet.splits import make_split

    pd.DataFrame({"TF": [0, 0], "Target": [1, 2], "Label": [1, 0]}).to_csv(tmp_path / "Train_set.csv")
    pd.DataFrame(columns=["TF", "Target", "Label"]).to_csv(tmp_path / "Test_set.csv")
    with pytest.raises(DataError, match="leaves the test part"):
        make_split(synthetic.label_graph(), SplitConfig(split_dir=tmp_path))


def test_evaluate_step_with_an_empty_test_part_marks_the_run_failed(synthetic, fast_config, store):
    from scregnet.splits import Split, make_split
    from scregnet.tracking import tracker
    from scregnet.train import ModelInputs, bundle, fit
    from steps.evaluate.evaluate import evaluate

    fast_config.train.max_epochs = 5
    split = make_split(synthetic.label_graph(), fast_config.split)
    inputs = ModelInputs.build(synthetic, None)
    model = bundle(fit(inputs, split, fast_config.model, fast_config.train), inputs, fast_config.model, dataset="s")
    emptied = Split(split.train, split.val, split.test[:0], protocol=split.protocol, seed=split.seed)
    run_id = tracker(fast_config).start_run({"kind": "train"})
    with pytest.raises(ValueError):  # whatever the metrics make of no pairs, inside the held run
        evaluate.entrypoint(model, emptied, fast_config, run_id)
    assert _statuses(store) == {run_id: "FAILED"}


def test_run_whose_params_cannot_be_logged_is_closed(store, monkeypatch):
    from scregnet.tracking import Tracker, tracker

    def broken(self, run_id, params):
        raise RuntimeError("MLflow unreachable while trying to log params")

    monkeypatch.setattr(Tracker, "log_params", broken)
    with pytest.raises(RuntimeError):
        tracker().start_run({"kind": "train"}, {"a": 1})
    assert list(_statuses(store).values()) == ["FAILED"]


def test_tune_where_every_trial_fails_ends_its_runs_failed(tmp_path, store, monkeypatch, synthetic_dir):
    import scregnet.tune.study as study

    def failing_fit(*args, **kwargs):
        raise RuntimeError("trial blew up")

    monkeypatch.setattr(study, "fit", failing_fit)
    cfg = tmp_path / "tune.yaml"
    cfg.write_text(yaml.safe_dump({"tune": {"max_epochs": 5, "startup_trials": 1}}))
    code, out = _invoke(
        "tune", "--data", str(synthetic_dir), "--trials", "2", "--storage", f"sqlite:///{tmp_path / 'optuna.db'}",
        "--config", str(cfg),
    )  # fmt: skip
    assert code == 1, out
    assert "no trial completed" in out
    statuses = _statuses(store)
    assert len(statuses) == 3 and set(statuses.values()) == {"FAILED"}, statuses  # parent + 2 trials
    assert not _registered(store)


FAULTY_EVALUATE_INPUT = """
import sys
import materializers
from zenml.utils import source_utils

source_utils.set_custom_source_root(".")  # run with -c: no main module file to find the root by
from scregnet.errors import DataError

def unreadable(self, directory, data_type):
    raise DataError("test split unreadable (injected)", directory)

materializers.SplitMaterializer.read = unreadable
from scregnet.cli import main
sys.argv = ["scregnet", *sys.argv[1:]]
main()
"""


@pytest.mark.e2e
def test_pipeline_step_failing_on_its_inputs_leaves_no_run_running(tmp_path, synthetic_dir):
    """The evaluate step fails loading its split (before its body holds the run): the CLI closes the run."""
    home = tmp_path / "home"
    cfg = tmp_path / "small.yaml"
    cfg.write_text(
        yaml.safe_dump({"model": {"gnn_dims": [16], "mlp_dims": [8]}, "train": {"max_epochs": 5, "patience": 2}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "SCREGNET_"))}
    env.update(SCREGNET_HOME=str(home), ZENML_LOGGING_VERBOSITY="INFO", OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", FAULTY_EVALUATE_INPUT, "train", "--data", str(synthetic_dir), "--config", str(cfg)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-4000:]
    assert "Traceback" not in text, text[-4000:]  # ZenML's step traceback stays in the step's logs
    assert "test split unreadable (injected)" in text and "--debug" in text
    assert "FAILED (left RUNNING by the failed step)" in text and "[evaluate] failed reading its inputs" in text
    uri = f"sqlite:///{home / 'mlflow.db'}"
    statuses = _statuses(uri)
    assert len(statuses) == 1 and set(statuses.values()) == {"FAILED"}, statuses
    assert not _registered(uri)


def test_library_tracebacks_hidden_on_the_console_unless_debugging(monkeypatch):
    import logging
    import sys as _sys

    from scregnet.cli.errors import _WithoutTraceback

    try:
        raise ValueError("step body failed")
    except ValueError:
        exc_info = _sys.exc_info()
    record = logging.LogRecord("zenml.orchestrators.local", logging.ERROR, "f", 1, "Step %s failed.", ("x",), exc_info)
    formatter = _WithoutTraceback(logging.Formatter("%(message)s"))
    monkeypatch.delenv("SCREGNET_DEBUG", raising=False)
    shown = formatter.format(record)
    assert shown.startswith("Step x failed. (traceback: rerun with --debug") and "Traceback" not in shown
    assert record.exc_info is exc_info  # ZenML's log storage still gets the traceback
    monkeypatch.setenv("SCREGNET_DEBUG", "1")
    assert "Traceback (most recent call last)" in formatter.format(record)
    own = logging.LogRecord("scregnet.x", logging.ERROR, "f", 1, "ours", (), exc_info)
    monkeypatch.delenv("SCREGNET_DEBUG")
    assert "Traceback" in formatter.format(own)  # only the listed libraries are quietened
