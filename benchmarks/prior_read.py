#!/usr/bin/env python
"""Time and memory of `scregnet.priors.read_prior_file` on large downloads (generated in a temp dir).

- ChIP-Atlas: `--rows` target genes x `--experiments` experiment columns (+ Average, STRING): only
  two columns are read (usecols), so memory follows the rows, not the file's width.
- GMT: `--sets` gene sets of `--set-size` targets each (a ChEA-sized library), gzipped.

Peak = tracemalloc's peak during the call (numpy/pandas buffers are traced).

    OMP_NUM_THREADS=1 python benchmarks/prior_read.py --out benchmarks/results/prior_read.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

from scregnet.priors import read_prior_file  # noqa: E402
from scregnet.resources import machine  # noqa: E402


def write_chip_atlas(path: Path, rows: int, experiments: int, rng) -> None:
    with open(path, "w") as fh:
        names = [f"SRX{i:07d}|K-562" for i in range(experiments)]
        fh.write("\t".join(["Target_genes", "GATA1|Average", *names, "STRING"]) + "\n")
        for r in range(rows):
            vals = rng.integers(0, 1000, size=experiments)
            fh.write(f"G{r}\t{vals.mean():.1f}\t" + "\t".join(map(str, vals)) + "\t0\n")


def write_gmt(path: Path, sets: int, size: int, rng) -> None:
    with gzip.open(path, "wt") as fh:
        for s in range(sets):
            targets = rng.integers(0, 30000, size=size)
            fh.write(f"TF{s}_{s}_ChIP-Seq_ESC_Human\t\t" + "\t".join(f"G{t}" for t in targets) + "\n")


def measure(path: Path, **options) -> dict:
    tracemalloc.start()
    t0 = time.perf_counter()
    df = read_prior_file(path, **options)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"pairs": f"{len(df):,}", "seconds": f"{seconds:.2f}", "peak MiB": f"{peak / 2**20:,.0f}"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--experiments", type=int, default=2000)
    p.add_argument("--sets", type=int, default=1500)
    p.add_argument("--set-size", type=int, default=1000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        chip = Path(tmp) / "GATA1.10.tsv"
        write_chip_atlas(chip, args.rows, args.experiments, rng)
        size = chip.stat().st_size / 2**20
        rows.append({"file": f"ChIP-Atlas {args.rows:,} x {args.experiments:,} ({size:,.0f} MiB)", **measure(chip)})
        rows.append({"file": "same, --min-score 500", **measure(chip, min_score=500)})
        gmt = Path(tmp) / "library.gmt.gz"
        write_gmt(gmt, args.sets, args.set_size, rng)
        size = gmt.stat().st_size / 2**20
        rows.append(
            {"file": f"GMT {args.sets:,} sets x {args.set_size:,} targets (gz, {size:,.0f} MiB)", **measure(gmt)}
        )
    header = list(rows[0])
    table = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(r[h] for h in header) + " |" for r in rows]
    )
    text = (
        f"# read_prior_file: time and memory\n\n{dt.date.today()}, {machine()}, "
        "OMP_NUM_THREADS=1, machine shared with other jobs; "
        "seconds are measured while tracemalloc traces, which slows Python-level allocation.\n\n"
        f"    python benchmarks/prior_read.py --rows {args.rows} --experiments {args.experiments} "
        f"--sets {args.sets} --set-size {args.set_size}\n\n{table}\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
