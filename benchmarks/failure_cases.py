#!/usr/bin/env python
"""Issue 14's failure cases through the real command line, in a fresh $SCREGNET_HOME: for each, the
exit code, whether the message names the file / key / value (expected pieces all present), model
versions registered by it, MLflow runs left RUNNING, whether a Python traceback was printed, and
the wall time. Inputs are generated in a temp dir; one good run at the end shows the store works.

    OMP_NUM_THREADS=1 python benchmarks/failure_cases.py --out benchmarks/results/failure_cases.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing
GOOD = REPO / "tests" / "data" / "good"
SMALL = {"model": {"gnn_dims": [16], "mlp_dims": [8]}, "train": {"max_epochs": 5, "patience": 2}}

# A fault the plain CLI cannot produce: injected, then the real `main()` runs.
INJECT = {
    "evaluate_input": (
        "import materializers\nfrom scregnet.errors import DataError\n"
        "def unreadable(self, d, t):\n    raise DataError('test split unreadable (injected)', d)\n"
        "materializers.SplitMaterializer.read = unreadable\n"
    ),
    "trials_fail": (
        "import scregnet.tune.study as s\n"
        "def boom(*a, **k):\n    raise RuntimeError('trial blew up (injected)')\n"
        "s.fit = boom\n"
    ),
}
RUNNER = (
    "import sys\nfrom zenml.utils import source_utils\nsource_utils.set_custom_source_root('.')\n{inject}"
    "from scregnet.cli import main\nsys.argv = ['scregnet', *sys.argv[1:]]\nmain()\n"
)


def write_inputs(tmp: Path) -> dict[str, str]:
    """Every generated input; returns name -> path."""
    import anndata as ad
    import scipy.sparse as sp

    from scregnet.synthetic import make_synthetic_dataset

    rng = np.random.default_rng(0)
    paths: dict[str, str] = {}

    def yaml_file(name: str, text: str) -> None:
        (tmp / f"{name}.yaml").write_text(text)
        paths[name] = str(tmp / f"{name}.yaml")

    for name, text in {
        "max_epochs": "train: {max_epochs: -5}",
        "lr_zero": "train: {lr: 0}",
        "train_frac": "split: {train_frac: -0.2}",
        "eval_every": "train: {eval_every: 0}",
        "dropout": "model: {dropout: 1.5}",
        "lr_negative": "train: {lr: -0.01}",
        "config_empty": "parameters:\n  config:\n",
        "lr_nan": "train: {lr: .nan}",
        "gnn_dims": "model: {gnn_dims: []}",
        "embedder_dim": "embedder: {dim: 0}",
        "empty_test": "split: {train_frac: 0.9, val_frac: 0.5}",
        "unknown_key": "train: {lrr: 0.1}",
        "heldout": "split: {protocol: heldout_tf, heldout_frac: 0.95}",
        "small": yaml.safe_dump(SMALL),
        "small_tune": yaml.safe_dump({**SMALL, "tune": {"max_epochs": 5, "startup_trials": 1}}),
    }.items():
        yaml_file(name, text)

    genes = [f"GENE{i}" for i in range(30)]
    priors = pd.DataFrame({"tf": genes[:3] * 2, "target": genes[3:6] + genes[3:6][::-1]})
    priors.to_csv(tmp / "priors.csv", index=False)
    paths["priors"] = str(tmp / "priors.csv")
    counts = rng.poisson(2.0, size=(40, 30)).astype(np.float32)

    def h5ad(name: str, x, obs=None, var=None) -> None:
        obs = obs or [f"cell{i}" for i in range(x.shape[0])]
        var = var or genes[: x.shape[1]]
        ad.AnnData(x, obs=pd.DataFrame(index=obs), var=pd.DataFrame(index=var)).write_h5ad(tmp / f"{name}.h5ad")
        paths[name] = str(tmp / f"{name}.h5ad")

    h5ad("zeros", sp.csr_matrix((40, 30), dtype=np.float32))
    h5ad("good_h5ad", counts)
    barcodes = ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(40)]
    h5ad("transposed", counts.T.copy(), obs=genes, var=barcodes)
    empty = counts.copy()
    empty[:30] = 0
    h5ad("empty_cells", sp.csr_matrix(empty))
    wide = np.zeros((40, 400), dtype=np.float32)
    wide[:, :6] = counts[:, :6]
    h5ad("empty_genes", wide, var=[f"GENE{i}" for i in range(400)])
    pd.DataFrame({"tf": genes[:3], "target": genes[3:6], "score": ["high", "low", "mid"]}).to_csv(
        tmp / "text_score.csv", index=False
    )
    paths["text_score"] = str(tmp / "text_score.csv")
    (tmp / "semicolon.csv").write_text("tf;target\nGENE0;GENE3\nGENE1;GENE4\n")
    paths["semicolon"] = str(tmp / "semicolon.csv")
    (tmp / "afile").write_text("x")
    paths["afile"] = str(tmp / "afile")
    paths["synthetic"] = str(make_synthetic_dataset(tmp / "synthetic", seed=0, n_cells=120, n_genes=80, n_tfs=8))
    paths["tmp"] = str(tmp)
    return paths


def cases(p: dict[str, str]) -> list[tuple[str, str, list[str], list[str], str | None]]:
    """(group, case, CLI args, expected message pieces, injected fault or None)."""
    good, t = str(GOOD), p["tmp"]

    def cfg(name: str) -> list[str]:
        return ["train", "--data", good, "--config", p[name]]

    return [
        ("config", "train.max_epochs: -5", cfg("max_epochs"), ["train.max_epochs = -5", ">= 1"], None),
        ("config", "train.lr: 0", cfg("lr_zero"), ["train.lr = 0", "> 0 (finite)"], None),
        ("config", "split.train_frac: -0.2", cfg("train_frac"), ["split.train_frac = -0.2", "(0, 1)"], None),
        ("config", "train.eval_every: 0", cfg("eval_every"), ["train.eval_every = 0"], None),
        ("config", "model.dropout: 1.5", cfg("dropout"), ["model.dropout = 1.5", "[0, 1)"], None),
        ("config", "train.lr: -0.01", cfg("lr_negative"), ["train.lr = -0.01"], None),
        ("config", "parameters: config: (empty)", cfg("config_empty"), ["parameters.config is empty"], None),
        ("config", "train.lr: .nan", cfg("lr_nan"), ["train.lr = nan", "finite"], None),
        ("config", "model.gnn_dims: []", cfg("gnn_dims"), ["model.gnn_dims = []"], None),
        ("config", "embedder.dim: 0", cfg("embedder_dim"), ["embedder.dim = 0"], None),
        ("config", "train.lrr (unknown key)", cfg("unknown_key"), ["train.lrr: unknown key"], None),
        ("config", "heldout_frac 0.95 + val_frac", cfg("heldout"), ["split.heldout_frac + split.val_frac"], None),
        ("data", "all-zero matrix (train)", ["train", "--h5ad", p["zeros"], "--priors", p["priors"]],
         ["zeros.h5ad: every expression value is 0"], None),
        ("data", "all-zero matrix (validate)", ["validate", "--h5ad", p["zeros"], "--priors", p["priors"]],
         ["zeros.h5ad: every expression value is 0"], None),
        ("data", "75% cells empty", ["validate", "--h5ad", p["empty_cells"], "--priors", p["priors"]],
         ["empty_cells.h5ad: 30 of 40 cells", "max_empty_cell_frac"], None),
        ("data", "98.5% genes empty", ["validate", "--h5ad", p["empty_genes"], "--priors", p["priors"]],
         ["empty_genes.h5ad: 394 of 400 genes", "max_empty_gene_frac"], None),
        ("data", "transposed AnnData", ["validate", "--h5ad", p["transposed"], "--priors", p["priors"]],
         ["transposed.h5ad: the matrix looks transposed", "adata.T"], None),
        ("data", "priors score column text (warning)",
         ["validate", "--h5ad", p["good_h5ad"], "--priors", p["text_score"]],
         ["text_score.csv", "these scores are ignored"], None),
        ("data", "... with --min-score 0.5",
         ["validate", "--h5ad", p["good_h5ad"], "--priors", p["text_score"], "--min-score", "0.5"],
         ["text_score.csv", "--min-score needs a numeric score"], None),
        ("data", "';'-separated priors", ["validate", "--h5ad", p["good_h5ad"], "--priors", p["semicolon"]],
         ["semicolon.csv", "delimiter"], None),
        ("data", "self loop in Label.csv (train)", ["train", "--data", str(REPO / "tests/data/bad/self_loop")],
         ["Label.csv: row 25: self loop", "Nothing was trained or registered"], None),
        ("running", "train_frac 0.9 + val_frac 0.5", cfg("empty_test"),
         ["split.train_frac + split.val_frac = 0.9 + 0.5 = 1.4"], None),
        ("running", "tune --trials -1", ["tune", "--data", good, "--trials", "-1"], ["--trials", "-1"], None),
        ("running", "tune --trials 0", ["tune", "--data", good, "--trials", "0"], ["--trials", "0"], None),
        ("running", "tune --timeout -5", ["tune", "--data", good, "--timeout", "-5"], ["--timeout", "-5"], None),
        ("running", "tune: every trial fails (injected)",
         ["tune", "--data", p["synthetic"], "--trials", "2", "--config", p["small_tune"],
          "--storage", f"sqlite:///{t}/optuna.db"], ["no trial completed"], "trials_fail"),
        ("running", "evaluate fails reading its split (injected)",
         ["train", "--data", p["synthetic"], "--config", p["small"]],
         ["test split unreadable (injected)", "FAILED (left RUNNING by the failed step)"], "evaluate_input"),
        ("traceback", "rollback, no registered model", ["rollback", "--dataset", "nothing"],
         ["scregnet-nothing: no registered model"], None),
        ("traceback", "benchmark --data /nonexistent",
         ["benchmark", "--data", "/nonexistent", "--out", f"{t}/b.json"], ["/nonexistent"], None),
        ("traceback", "study noise --levels abc",
         ["study", "noise", "--data", good, "--levels", "abc", "--out", f"{t}/s.json"], ["'abc'"], None),
        ("traceback", "predict --out EXISTING_FILE/x.csv",
         ["predict", "--dataset", "x", "--out", f"{p['afile']}/x.csv"], ["afile is a file, not a directory"], None),
        ("traceback", "predict --top -5", ["predict", "--dataset", "x", "--top", "-5", "--out", f"{t}/n.csv"],
         ["--top", "-5"], None),
        ("traceback", "validate --min-cells -1", ["validate", "--data", good, "--min-cells", "-1"],
         ["--min-cells", "-1"], None),
        ("traceback", "predict --min-score nan",
         ["predict", "--dataset", "x", "--min-score", "nan", "--out", f"{t}/n.csv"], ["--min-score", "nan"], None),
        ("slow", "train --data /nonexistent", ["train", "--data", "/nonexistent"],
         ["/nonexistent: dataset directory not found"], None),
        ("control", "good run (registers v1)", ["train", "--data", p["synthetic"], "--config", p["small"]],
         ["registered scregnet-synthetic"], None),
    ]  # fmt: skip


def store_state(home: Path) -> tuple[int, int]:
    """(registered model versions, runs RUNNING) in the home's MLflow store."""
    db = home / "mlflow.db"
    if not db.exists():
        return 0, 0
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    uri = f"sqlite:///{db}"
    client = MlflowClient(uri, registry_uri=uri)
    versions = sum(len(client.search_model_versions(f"name='{m.name}'")) for m in client.search_registered_models())
    exps = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    runs = client.search_runs(exps, run_view_type=ViewType.ALL, max_results=5000) if exps else []
    return versions, sum(r.info.status == "RUNNING" for r in runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="Markdown table (printed too).")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="failure-cases-") as tmp_dir:
        tmp = Path(tmp_dir)
        home = tmp / "home"
        paths = write_inputs(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "SCREGNET_"))}
        env.update(SCREGNET_HOME=str(home), OMP_NUM_THREADS="1")
        rows = []
        for group, name, cli, expected, inject in cases(paths):
            before = store_state(home)[0]
            cmd = [sys.executable, "-m", "scregnet.cli", *cli]
            if inject:
                cmd = [sys.executable, "-c", RUNNER.format(inject=INJECT[inject]), *cli]
            t0 = time.perf_counter()
            out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
            seconds = time.perf_counter() - t0
            text = out.stdout + out.stderr
            versions, running = store_state(home)
            row = {
                "group": group,
                "case": name,
                "exit": out.returncode,
                "clear message": "yes" if all(e in text for e in expected) else "NO",
                "registered": versions - before,
                "RUNNING": running,
                "traceback": "YES" if "Traceback (most recent call last)" in text else "no",
                "seconds": f"{seconds:.1f}",
            }
            rows.append(row)
            print(" | ".join(str(v) for v in row.values()), flush=True)
            if row["clear message"] == "NO" or row["traceback"] == "YES":
                print(text[-3000:], flush=True)
    cols = list(rows[0])
    table = "\n".join(
        ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        + ["| " + " | ".join(str(r[c]).replace("|", "\\|") for c in cols) + " |" for r in rows]
    )
    failures = [r for r in rows if r["group"] != "control"]
    summary = (
        f"{len(failures)} failure cases: "
        f"{sum(r['clear message'] == 'yes' and (r['exit'] != 0) != ('(warning)' in r['case']) for r in failures)} "
        f"end in a clear error or stated warning naming the file / key / value, "
        f"{sum(r['registered'] > 0 for r in failures)} registered anything, "
        f"{sum(r['RUNNING'] > 0 for r in failures)} left a run RUNNING, "
        f"{sum(r['traceback'] == 'YES' for r in failures)} printed a traceback."
    )
    head = (
        f"# Failure cases (issue 14)\n\n{dt.date.today()} on {platform.node()} ({os.cpu_count()} CPUs, shared); "
        f"`OMP_NUM_THREADS=1 python benchmarks/failure_cases.py --out benchmarks/results/failure_cases.md`\n\n"
        "exit: the command's status (2 = bad configuration or usage, 1 = the input or the work failed; the "
        "text-score warning case exits 0 by design). registered: model versions the case added. RUNNING: runs "
        "RUNNING in the store after the case. seconds: wall time of the whole command, machine under load.\n\n"
    )
    text = f"{head}{summary}\n\n{table}\n"
    print("\n" + text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)


if __name__ == "__main__":
    main()
