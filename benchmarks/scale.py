"""A lab's raw-count AnnData at real scale through the whole pipeline: wall time and peak RSS.

For each size (cells x genes) of SYNTHETIC raw UMI counts (`scregnet.synthetic.write_counts_h5ad`:
library sizes vary ~5-fold across cells, ~6 % non-zero, 150 TFs with a ChIP-seq-like prior), this
runs `scregnet train --h5ad ... --priors ... --embedder pca` end to end on a fresh local stack
(ZenML local orchestrator, MLflow sqlite) in its own process and records:
- the run's wall time and peak RSS (the process tree's largest, from wait4's ru_maxrss);
- every step's own wall time and peak RSS (the step metadata `seconds`, `peak_rss_mib` that
  `steps.common.measured` records; VmHWM is reset per step);
- optionally `scregnet predict` over all TFs x all kept genes (`--predict-tfs N` genes as TFs).

    OMP_NUM_THREADS=2 python benchmarks/scale.py --workdir /tmp/scale \
        --sizes 1000x2000 10000x15000 50000x30000 --all-genes 10000x30000 --predict-tfs 1500

Writes benchmarks/results/scale.md (+ .json) with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
STEP_METADATA = """
import json, sys
from scregnet.home import configure
configure()
from zenml.client import Client
run = Client().list_pipeline_runs(sort_by="desc:created", size=1).items[0]
out = {"status": str(run.status), "steps": {}}
for name, step in run.steps.items():
    meta = step.run_metadata or {}
    out["steps"][name] = {k: meta.get(k) for k in ("seconds", "peak_rss_mib")}
print(json.dumps(out))
"""


def timed(cmd: list[str], env: dict, log: Path) -> dict:
    """Run `cmd` (own process tree), its output to `log`; wall seconds, peak RSS (GiB), exit code."""
    t0 = time.perf_counter()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
    return {
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),  # KiB on Linux
        "exit_code": os.waitstatus_to_exitcode(status),
        "log": str(log),
    }


def data(workdir: Path, cells: int, genes: int) -> tuple[Path, Path, dict]:
    """The synthetic h5ad and priors of a size (generated once, then reused)."""
    h5ad = workdir / f"counts_{cells}x{genes}.h5ad"
    priors = h5ad.with_suffix(".priors.csv")
    info_path = h5ad.with_suffix(".json")
    if not (h5ad.is_file() and priors.is_file() and info_path.is_file()):
        sys.path.insert(0, str(REPO))
        from scregnet.synthetic import write_counts_h5ad

        info = write_counts_h5ad(h5ad, cells, genes, priors_path=priors, seed=0)
        info_path.write_text(json.dumps({k: v for k, v in info.items() if isinstance(v, (int, float, str))}))
    return h5ad, priors, json.loads(info_path.read_text())


def one(workdir: Path, cells: int, genes: int, all_genes: bool, predict_tfs: int | None) -> dict:
    """Train (and predict) one size on a fresh $SCREGNET_HOME."""
    h5ad, priors, info = data(workdir, cells, genes)
    tag = f"{cells}x{genes}" + ("-all" if all_genes else "")
    home = workdir / f"home-{tag}"
    subprocess.run(["rm", "-rf", str(home)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZENML_", "MLFLOW_", "SCREGNET_"))}
    env.update(SCREGNET_HOME=str(home), ZENML_LOGGING_VERBOSITY="INFO")
    cmd = [sys.executable, "-m", "scregnet.cli", "train", "--h5ad", str(h5ad), "--priors", str(priors)]
    cmd += ["--embedder", "pca", "--name", f"scale-{tag}"] + (["--n-top-genes", "all"] if all_genes else [])
    row = {"size": tag, "cells": cells, "genes": genes, "nnz": info.get("nnz"), "all_genes": all_genes}
    row["train"] = timed(cmd, env, workdir / f"train-{tag}.log")
    meta = subprocess.run([sys.executable, "-c", STEP_METADATA], env=env, cwd=REPO, capture_output=True, text=True)
    row["steps"] = json.loads(meta.stdout.strip().splitlines()[-1])["steps"] if meta.returncode == 0 else {}
    # Each step resets the kernel's peak-RSS counter (VmHWM) to measure its own peak, which also
    # resets what wait4 reports: the run's peak is the larger of that and every step's peak.
    step_peaks = [m["peak_rss_mib"] / 1024 for m in row["steps"].values() if m and m.get("peak_rss_mib")]
    row["train"]["peak_rss_gib"] = round(max([row["train"]["peak_rss_gib"], *step_peaks]), 2)
    if predict_tfs and row["train"]["exit_code"] == 0:
        import anndata as ad
        import numpy as np

        counts = ad.read_h5ad(h5ad)  # the most expressed genes surely pass QC: they stand in for 1,500 TFs
        totals = np.asarray(counts.X.sum(axis=0)).ravel()
        top = [str(counts.var_names[i]).upper() for i in np.argsort(-totals)[:predict_tfs]]
        del counts
        tfs = workdir / f"tfs-{predict_tfs}.txt"
        tfs.write_text("\n".join(top) + "\n")
        out = workdir / f"network-{tag}.parquet"
        # The newest version: the gate may have kept it from champion (synthetic data, few TFs).
        pred = [sys.executable, "-m", "scregnet.cli", "predict", "--dataset", f"scale-{tag}", "--tfs", str(tfs)]
        pred += ["--model", "challenger"]
        row["predict"] = timed([*pred, "--out", str(out), "--order", "tf"], env, workdir / f"predict-{tag}.log")
        row["predict"]["tfs"] = predict_tfs
        row["predict"]["output_mib"] = round(out.stat().st_size / 2**20, 1) if out.is_file() else None
        text = Path(row["predict"]["log"]).read_text(errors="replace")
        row["predict"]["summary"] = next((ln for ln in text.splitlines() if " pairs (" in ln), "")
    return row


def markdown(rows: list[dict], command: str) -> str:
    """The table: run wall/peak per size, each step's seconds and peak, predict."""
    sys.path.insert(0, str(REPO))
    from scregnet.resources import machine

    steps = list(dict.fromkeys(s for r in rows for s in r.get("steps", {})))
    lines = [
        "# Lab-scale raw counts through the whole pipeline (SYNTHETIC data)",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {machine()}.",
        "",
        "| size (cells x genes) | non-zeros | genes kept | train wall s | train peak RSS GiB | exit | "
        + " | ".join(f"{s} s / MiB" for s in steps)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(steps),
    ]
    for r in rows:
        t = r["train"]
        cells = [
            f"{r['cells']:,} x {r['genes']:,}",
            f"{r['nnz']:,}" if r.get("nnz") else "-",
            "all" if r["all_genes"] else "TFs + 1,000 HVGs",
            f"{t['seconds']:.0f}",
            f"{t['peak_rss_gib']:.2f}",
            str(t["exit_code"]),
        ]
        for s in steps:
            m = r.get("steps", {}).get(s) or {}
            sec, mib = m.get("seconds"), m.get("peak_rss_mib")
            cells.append(f"{sec:.0f} / {mib:.0f}" if sec is not None and mib is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    preds = [r for r in rows if r.get("predict")]
    if preds:
        lines += [
            "",
            "| model | TFs | predict wall s | peak RSS GiB | output MiB | exit | summary |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in preds:
            p = r["predict"]
            lines.append(
                f"| scale-{r['size']} | {p['tfs']:,} | {p['seconds']:.0f} | {p['peak_rss_gib']:.2f} | "
                f"{p['output_mib']} | {p['exit_code']} | {p['summary']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the sizes given on the command line and write the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True, help="Generated data, run homes and logs (large).")
    ap.add_argument("--sizes", nargs="*", default=["1000x2000"], help="CELLSxGENES, default preprocessing.")
    ap.add_argument("--all-genes", nargs="*", default=[], help="CELLSxGENES trained with --n-top-genes all.")
    ap.add_argument(
        "--predict-tfs", type=int, default=None, help="After each --all-genes run, predict N TFs x all genes."
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "scale.md")
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for spec, all_genes in [(s, False) for s in args.sizes] + [(s, True) for s in args.all_genes]:
        cells, genes = (int(x) for x in spec.lower().split("x"))
        row = one(args.workdir, cells, genes, all_genes, args.predict_tfs if all_genes else None)
        print(json.dumps({k: v for k, v in row.items() if k != "steps"}), flush=True)
        rows.append(row)
        args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
        command = "python benchmarks/scale.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        args.out.write_text(markdown(rows, command))
    print(args.out.read_text())


if __name__ == "__main__":
    main()
