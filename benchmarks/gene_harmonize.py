#!/usr/bin/env python
"""Memory and time of `scregnet.genes.harmonize_genes` on a 10x-sized sparse count matrix.

Cells x genes CSR float32 integer counts, `--density` non-zero, `var_names` versioned Ensembl
IDs with a `gene_symbols` column in which `--dup-frac` of the genes repeat another gene's symbol
(so that many columns are merged by the sum rule: X @ A). Peak memory is what tracemalloc sees
allocated during the call (numpy/scipy buffers are traced), next to the size of X itself and of a
dense float32 copy, which the function must never make.

    OMP_NUM_THREADS=1 python benchmarks/gene_harmonize.py --cells 5000 --genes 30000 \
        --out benchmarks/results/gene_harmonize.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # runnable from a checkout without installing

from scregnet.genes import harmonize_genes  # noqa: E402
from scregnet.resources import machine  # noqa: E402


def make_adata(cells: int, genes: int, density: float, dup_frac: float, seed: int):
    import anndata as ad

    rng = np.random.default_rng(seed)
    k = max(1, int(round(density * genes)))  # non-zeros per cell (before de-duplication)
    indices = np.sort(rng.integers(0, genes, size=(cells, k), dtype=np.int32), axis=1).ravel()
    data = rng.integers(1, 30, size=cells * k, dtype=np.int16).astype(np.float32)
    x = sp.csr_matrix((data, indices, np.arange(0, cells * k + 1, k, dtype=np.int64)), shape=(cells, genes))
    x.sum_duplicates()
    ids = [f"ENSG{i:011d}.{i % 7 + 1}" for i in range(genes)]
    symbols = np.array([f"GENE{i}" for i in range(genes)], dtype=object)
    dup = rng.choice(genes, size=int(dup_frac * genes), replace=False)
    symbols[dup] = symbols[rng.integers(0, genes, size=len(dup))]
    var = pd.DataFrame({"gene_symbols": symbols}, index=ids)
    return ad.AnnData(X=x, obs=pd.DataFrame(index=[f"c{i}" for i in range(cells)]), var=var)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cells", type=int, nargs="+", default=[5000])
    p.add_argument("--genes", type=int, default=30000)
    p.add_argument("--density", type=float, default=0.06)
    p.add_argument("--dup-frac", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()

    rows = []
    for cells in args.cells:
        adata = make_adata(cells, args.genes, args.density, args.dup_frac, args.seed)
        x = adata.X
        x_mib = (x.data.nbytes + x.indices.nbytes + x.indptr.nbytes) / 2**20
        total_before = float(x.sum())
        tracemalloc.start()
        t0 = time.perf_counter()
        out, report = harmonize_genes(adata)
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert sp.issparse(out.X) and abs(float(out.X.sum()) - total_before) < 1e-3 * total_before
        rows.append(
            {
                "cells x genes": f"{cells:,} x {args.genes:,}",
                "non-zeros": f"{x.nnz:,}",
                "X (CSR) MiB": f"{x_mib:,.0f}",
                "dense float32 MiB": f"{cells * args.genes * 4 / 2**20:,.0f}",
                "peak during call MiB": f"{peak / 2**20:,.0f}",
                "seconds": f"{seconds:.2f}",
                "genes out": f"{out.n_vars:,}",
                "merged genes (columns)": f"{report['merged_genes']:,} ({report['merged_columns']:,})",
            }
        )
        print(rows[-1], flush=True)
        del adata, out, x

    header = list(rows[0])
    table = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(r[h] for h in header) + " |" for r in rows]
    )
    text = (
        f"# harmonize_genes: memory and time\n\n{dt.date.today()}, {machine()}, "
        "OMP_NUM_THREADS=1, machine shared with other jobs; "
        f"seconds are measured while tracemalloc traces, which slows Python-level allocation; density {args.density}, "
        f"{args.dup_frac:.0%} of genes share a symbol with another (merged by the sum rule).\n\n"
        f"    python benchmarks/gene_harmonize.py --cells {' '.join(map(str, args.cells))} --genes {args.genes} "
        f"--density {args.density} --dup-frac {args.dup_frac}\n\n{table}\n"
    )
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
