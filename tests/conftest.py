"""Shared fixtures. Every test runs with $SCREGNET_HOME in a temporary directory, so no test
touches the user's ZenML or MLflow state (set before ZenML/MLflow are imported)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_SESSION_HOME = tempfile.mkdtemp(prefix="scregnet-test-home-")
os.environ["SCREGNET_HOME"] = _SESSION_HOME
for var in ("ZENML_CONFIG_PATH", "MLFLOW_TRACKING_URI", "SCREGNET_ARTIFACTS"):
    os.environ.pop(var, None)
from scregnet.home import configure  # noqa: E402

configure()
os.environ["ZENML_LOGGING_VERBOSITY"] = "WARN"

# The service fixtures (real MLflow server, moto S3 server on 127.0.0.1), visible to every module.
from services import mlflow_server, moto_s3  # noqa: E402, F401

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SCREGNET_SHARED", REPO.parent / "shared"))
BEELINE = SHARED / "beeline" / "Specific"


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test saying what is missing."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (clone the repo with ../shared beside it)")
    return path


def beeline_label_graph(cell_type: str, size: str = "TFs500"):
    """The label graph of a shared BEELINE dataset (skips without ../shared)."""
    from scregnet.data import label_graph_from_symbols, load_beeline_labels

    genes, _, priors = load_beeline_labels(shared_path("beeline", "Specific", cell_type, size))
    return label_graph_from_symbols(genes, priors)


def pair_set(arr) -> set[tuple[int, int]]:
    """(tf, target) index pairs of a split part array [N, >=2] as a set."""
    return set(map(tuple, arr[:, :2].tolist()))


@pytest.fixture
def beeline():
    return lambda cell: shared_path("beeline", "Specific", cell, "TFs500")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    from scregnet.synthetic import make_synthetic_dataset

    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), seed=0, n_cells=120, n_genes=80, n_tfs=8)


@pytest.fixture(scope="session")
def synthetic(synthetic_dir):
    from scregnet.data import load_beeline

    return load_beeline(synthetic_dir)


@pytest.fixture
def fast_config():
    """A RunConfig that trains in about a second on the synthetic fixture."""
    from scregnet.config import RunConfig

    cfg = RunConfig()
    cfg.model.gnn_dims = [32, 16]
    cfg.model.mlp_dims = [16]
    cfg.train.max_epochs = 40
    cfg.train.patience = 4
    return cfg


_ISOLATED_PREFIXES = ("MLFLOW_", "ZENML_", "SCREGNET_", "AWS_", "OPTUNA_")


def _snapshot() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(_ISOLATED_PREFIXES)}


def _restore(saved: dict[str, str]) -> None:
    for key in [k for k in os.environ if k.startswith(_ISOLATED_PREFIXES)]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)
    import mlflow

    uri = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    while mlflow.active_run() is not None:
        mlflow.end_run()


_SESSION_ENV = _snapshot()


@pytest.fixture(autouse=True, scope="module")
def _isolate_module_state():
    """Back to the session's environment after each module. A module-scoped fixture runs before
    the per-test snapshot below, so what it sets (`mlflow.set_tracking_uri` also writes
    MLFLOW_TRACKING_URI) would otherwise become every later test's baseline: a stopped server's
    URI then leaks into the next modules."""
    yield
    _restore(_SESSION_ENV)


@pytest.fixture(autouse=True)
def _isolate_global_state():
    """Each test gets back the module's MLflow/ZenML/AWS environment and MLflow's global URIs,
    so a test that pointed MLflow at a (since stopped) server cannot leak into the next one."""
    saved = _snapshot()
    yield
    _restore(saved)
