"""A raw-count .h5ad through the real CLI and ZenML pipeline: preprocess between validate and embed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
CONFIG = {
    "model": {"gnn_dims": [16, 8], "mlp_dims": [8]},
    "train": {"max_epochs": 10, "patience": 2},
    "embedder": {"kind": "pca", "dim": 8},
    "preprocess": {
        "min_genes_per_cell": 20,
        "n_top_genes": 200,
        "cell_features": "metacells",
        "n_metacells": 60,
        "n_pcs": 20,
    },
}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "SCREGNET_ARTIFACTS"))}
    env.update(SCREGNET_HOME=str(home), ZENML_LOGGING_VERBOSITY="WARN")
    return env


def test_raw_counts_h5ad_is_preprocessed_and_trained_on_metacells(tmp_path):
    from mlflow import MlflowClient

    from scregnet.synthetic import make_counts_dataset

    h5ad, priors = make_counts_dataset(tmp_path / "data", n_cells=600, n_genes=2000, n_tfs=30, seed=0)
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump({"parameters": {"config": CONFIG}}))  # "model" is also a ZenML key
    home = tmp_path / "home"
    out = subprocess.run(
        [sys.executable, "-m", "scregnet.cli", "train", "--h5ad", str(h5ad), "--priors", str(priors)]
        + ["--config", str(config), "--name", "labcounts", "--seed", "0"],
        cwd=REPO,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    uri = f"sqlite:///{home / 'mlflow.db'}"
    c = MlflowClient(tracking_uri=uri, registry_uri=uri)
    (run,) = c.search_runs([c.get_experiment_by_name("scregnet").experiment_id])
    params = run.data.params
    assert run.info.status == "FINISHED"
    assert params["preprocess.n_top_genes"] == "200" and params["preprocess.cell_features"] == "metacells"
    assert params["preprocessed.input"] == "counts" and params["preprocessed.applied"] == "True"
    assert params["preprocessed.cell_features"] == "metacells" and params["preprocessed.n_cell_features"] == "60"
    n_tfs = int(params["preprocessed.tfs_kept"])
    assert params["preprocessed.genes"] == f"2000 -> {n_tfs + 200}" and 0 < n_tfs <= 30

    # The step's output artifact: sparse X, the counts layer, genes x 60 metacell profiles.
    script = tmp_path / "read.py"  # a file, not -c: ZenML needs a source root to load artifacts
    script.write_text(
        "from scregnet.home import configure; configure()\n"
        "import scipy.sparse as sp\n"
        "from zenml.client import Client\n"
        "run = Client().list_pipeline_runs(sort_by='desc:created', size=1).items[0]\n"
        "names = list(run.steps)\n"
        "assert names.index('validate') < names.index('preprocess') < names.index('embed'), names\n"
        "art = run.steps['preprocess'].outputs['preprocessed_expression']\n"
        "a = (art[0] if isinstance(art, list) else art).load()\n"
        "print(sp.issparse(a.X), sp.issparse(a.layers['counts']), a.varm['cell_features'].shape, a.n_vars)\n"
    )
    read = subprocess.run(
        [sys.executable, str(script)], cwd=REPO, env=_env(home), capture_output=True, text=True, timeout=120
    )
    assert read.returncode == 0, read.stderr[-2000:]
    assert read.stdout.strip().splitlines()[-1] == f"True True ({n_tfs + 200}, 60) {n_tfs + 200}"
