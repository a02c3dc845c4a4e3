"""Preprocessing and the PCA embedder at lab scale on SYNTHETIC raw counts: wall time and peak RSS.

Each measurement runs in its own Python process, so its peak RSS (ru_maxrss) is its own; the
RSS after imports and loading the .h5ad is reported beside it. Writes a markdown table (and the
JSON) to benchmarks/results/preprocess_scale.{md,json}.

    OMP_NUM_THREADS=1 python benchmarks/preprocess_scale.py --workdir /tmp/scale [--sizes 5000x15000 50000x30000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def child(task: str, h5ad: str, priors: str) -> dict:
    """One measurement in this process; returns what it measured."""
    sys.path.insert(0, str(REPO))
    from scregnet.config import PreprocessConfig
    from scregnet.data import load_h5ad

    t0 = time.perf_counter()
    ds = load_h5ad(h5ad, [priors])
    load_s, loaded_rss = time.perf_counter() - t0, _rss_gib()
    out: dict = {"task": task, "cells": ds.adata.n_obs, "genes": ds.adata.n_vars, "nnz": int(ds.adata.X.nnz)}
    out.update(load_seconds=round(load_s, 2), rss_after_load_gib=round(loaded_rss, 3))
    t0 = time.perf_counter()
    if task == "preprocess":
        from scregnet.data import GRNDataset
        from scregnet.preprocess import preprocess

        adata = preprocess(ds.adata, ds.priors, PreprocessConfig())
        features = GRNDataset.from_parts(adata, ds.priors).zscored_features()
        info = adata.uns["preprocess"]
        out.update(
            result=f"{adata.n_obs} cells x {adata.n_vars} genes, features {features.shape[0]} x {features.shape[1]} "
            f"({info['cell_features']})",
            stages={k: v for k, v in info["seconds"].items()},
        )
    elif task == "pca_dense_old":  # the computation before the sparse path: densify + full SVD
        from scregnet.embeddings.simple import _dense_pca

        vectors, *_ = _dense_pca(ds.adata.X.toarray(), 64)
        out["result"] = f"{vectors.shape[0]} x {vectors.shape[1]} loadings (dense float64 full SVD)"
    elif task == "pca_sparse":
        from scregnet.embeddings.simple import PCAEmbedder

        emb = PCAEmbedder(64).embed(ds.adata)
        out["result"] = f"{emb.vectors.shape[0]} x {emb.dim} loadings ({emb.metadata['solver']})"
    elif task == "pca_after_preprocess":
        from scregnet.embeddings.simple import PCAEmbedder
        from scregnet.preprocess import preprocess

        adata = preprocess(ds.adata, ds.priors, PreprocessConfig())
        t0 = time.perf_counter()  # the embedder alone, on what the pipeline now hands it
        emb = PCAEmbedder(64).embed(adata)
        out["result"] = f"{emb.vectors.shape[0]} x {emb.dim} loadings ({emb.metadata['solver']}, selected genes)"
    else:
        raise ValueError(task)
    out.update(seconds=round(time.perf_counter() - t0, 2), peak_rss_gib=round(_rss_gib(), 3))
    return out


def generate(workdir: Path, cells: int, genes: int) -> tuple[Path, Path, dict]:
    path = workdir / f"counts_{cells}x{genes}.h5ad"
    priors = path.with_name(f"{path.stem}.priors.csv")
    meta = path.with_name(f"{path.stem}.json")
    if not meta.is_file():
        code = (
            "import json, resource, sys; sys.path.insert(0, sys.argv[1]);"
            "from scregnet.synthetic import write_counts_h5ad;"
            "info = write_counts_h5ad(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), n_tfs=150, seed=0);"
            "info['peak_rss_gib'] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3);"
            "print(json.dumps(info))"
        )
        run = subprocess.run(
            [sys.executable, "-c", code, str(REPO), str(path), str(cells), str(genes)],
            capture_output=True,
            text=True,
            check=True,
        )
        meta.write_text(run.stdout.strip().splitlines()[-1])
    return path, priors, json.loads(meta.read_text())


def run_pipeline(workdir: Path, h5ad: Path, priors: Path, cells: int, genes: int) -> dict:
    """`scregnet train --h5ad ... --embedder pca` (the whole ZenML pipeline) in a fresh home."""
    import shutil

    home = workdir / f"home_{cells}x{genes}"
    shutil.rmtree(home, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "SCREGNET_"))}
    env.update(SCREGNET_HOME=str(home), ZENML_LOGGING_VERBOSITY="WARN")
    cmd = [sys.executable, "-m", "scregnet.cli", "train", "--h5ad", str(h5ad), "--priors", str(priors)]
    cmd += ["--embedder", "pca", "--name", f"scale{cells}"]
    rss_file = workdir / f"rss_{cells}x{genes}.txt"
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "-o", str(rss_file), *cmd], cwd=REPO, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - t0
    row = {"task": "pipeline (scregnet train --embedder pca)", "cells": cells, "genes": genes}
    if proc.returncode != 0:
        return row | {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1]}
    test = next((line for line in proc.stdout.splitlines() if line.startswith("model (test)")), "")
    return (
        row
        | {
            "seconds": round(seconds, 1),
            "peak_rss_gib": round(int(rss_file.read_text().split()[-1]) / 2**20, 3),  # /usr/bin/time: KiB
            "result": f"test AUROC/AUPRC/per-TF AUROC {' '.join(test.split()[2:])}",
        }
    )


def run_child(task: str, h5ad: Path, priors: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", task, str(h5ad), str(priors)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        return {"task": task, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/scregnet-scale"))
    ap.add_argument("--sizes", nargs="+", default=["5000x15000", "50000x30000"])
    ap.add_argument("--pca-sizes", nargs="*", default=["5000x15000"], help="sizes for the PCA before/after rows")
    ap.add_argument("--pipeline-sizes", nargs="*", default=["5000x15000", "50000x30000"], help="sizes run end to end")
    ap.add_argument("--child", nargs=3, metavar=("TASK", "H5AD", "PRIORS"), help=argparse.SUPPRESS)
    ap.add_argument("--table-only", action="store_true", help="re-render the .md from the committed .json")
    ap.add_argument("--command", default="--workdir /tmp/scale", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if args.table_only:
        write_table(json.loads((RESULTS / "preprocess_scale.json").read_text()), args.command)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in args.sizes:
        cells, genes = map(int, size.split("x"))
        h5ad, priors, gen = generate(args.workdir, cells, genes)
        rows.append({"task": "generate", "cells": cells, "genes": genes, **gen})
        print(json.dumps(rows[-1]), flush=True)
        tasks = ["preprocess"]
        if size in args.pca_sizes:
            tasks += ["pca_dense_old", "pca_sparse", "pca_after_preprocess"]
        for task in tasks:
            rows.append(run_child(task, h5ad, priors))
            print(json.dumps(rows[-1]), flush=True)
        if size in args.pipeline_sizes:
            rows.append(run_pipeline(args.workdir, h5ad, priors, cells, genes))
            print(json.dumps(rows[-1]), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "preprocess_scale.json").write_text(json.dumps(rows, indent=1))
    write_table(rows, " ".join(sys.argv[1:]))


def write_table(rows: list[dict], command: str) -> None:
    nnz = {(r.get("n_cells"), r.get("n_genes")): r.get("nnz") for r in rows if r["task"] == "generate"}
    lines = [
        "# Preprocessing and PCA at lab scale (SYNTHETIC raw counts, scregnet.synthetic.write_counts_h5ad)",
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/preprocess_scale.py {command}`",
        "Each row is its own process; peak RSS includes Python, the imports and the loaded .h5ad "
        "(RSS after loading in its own column). Seconds exclude loading, except for the pipeline rows "
        "(the whole `scregnet train` process: ZenML start-up, every step, MLflow). "
        f"Machine: {os.cpu_count()} CPUs shared with other jobs, so seconds are noisy.",
        "",
        "| task | cells x genes | non-zeros | seconds | peak RSS GiB | RSS after load GiB | result |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['task']} | | | | | | error: {r['error']} |")
            continue
        result = r.get("result", f"density {r.get('density', 0):.3f}")
        if r.get("stages"):
            result += "; stages " + ", ".join(f"{k} {v}s" for k, v in r["stages"].items())
        lines.append(
            f"| {r['task']} | {r.get('cells', r.get('n_cells'))} x {r.get('genes', r.get('n_genes'))} | "
            f"{r.get('nnz') or nnz.get((r.get('cells'), r.get('genes'))) or 0:,} | {r.get('seconds', 0):.1f} | {r.get('peak_rss_gib') or 0:.2f} | "
            f"{r.get('rss_after_load_gib', '')} | {result} |"
        )
    (RESULTS / "preprocess_scale.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
