"""Per-gene (sum, count) tables of cell shards: merge them exactly, turn them into means; cell selection."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from scregnet.embeddings.base import GeneEmbedding


@dataclass
class GeneSums:
    """Per-gene (sum, count) of one shard of cells; `merge_gene_sums` turns shards into means.

    Attributes:
        genes: input gene symbols that can be tokenised, length G (input order).
        sums: float64 [G, D], sum of the gene's vectors over the shard's cells where it was ranked.
        counts: int64 [G], number of those cells.
        n_cells: cells in the shard; metadata: provenance shared by all shards of one run.
    """

    genes: list[str]
    sums: np.ndarray
    counts: np.ndarray
    n_cells: int
    metadata: dict[str, Any] = field(default_factory=dict)


# Metadata that must agree between shards before they can be merged.
_MERGE_KEYS = (
    "embedder",
    "model",
    "layer",
    "version",
    "transform",
    "precision",
    "attention",
    "dictionary_sha256",
    "input_sha256",
    "dims",
)


def sum_gene_sums(parts: Sequence[GeneSums]) -> GeneSums:
    """Exact sum of shard (sum, count) tables; refuses shards of different runs/models."""
    if not parts:
        raise ValueError("merging Geneformer shards needs at least one shard")
    first = parts[0].metadata
    for p in parts[1:]:
        bad = [k for k in _MERGE_KEYS if p.metadata.get(k) != first.get(k)]
        if bad:
            raise ValueError(f"cannot merge Geneformer shards computed with different {', '.join(bad)}")
    genes: list[str] = []
    pos: dict[str, int] = {}
    for p in parts:
        for g in p.genes:
            if g not in pos:
                pos[g] = len(genes)
                genes.append(g)
    dims = max((p.sums.shape[1] for p in parts), default=0)
    sums = np.zeros((len(genes), dims), dtype=np.float64)
    counts = np.zeros(len(genes), dtype=np.int64)
    for p in parts:
        rows = np.array([pos[g] for g in p.genes], dtype=np.int64)
        np.add.at(sums, rows, p.sums)
        np.add.at(counts, rows, p.counts)
    meta = {k: v for k, v in first.items() if k not in ("shard",)}
    meta["n_shards"] = int(sum(p.metadata.get("n_shards_merged", 1) for p in parts))
    meta["n_shards_merged"] = meta["n_shards"]
    return GeneSums(genes, sums, counts, int(sum(p.n_cells for p in parts)), meta)


def gene_sums_to_embedding(total: GeneSums) -> GeneEmbedding:
    """Means from (sum, count); genes never ranked (count 0) get no vector."""
    has = total.counts > 0
    vectors = (total.sums[has] / total.counts[has, None]).astype(np.float32)
    kept = [g for g, h in zip(total.genes, has) if h]
    meta = {k: v for k, v in total.metadata.items() if k not in ("shard", "n_shards_merged")}
    meta.setdefault("n_shards", 1)
    meta["n_cells"] = int(total.n_cells)
    coverage = dict(meta.get("coverage", {}))
    coverage["genes_with_vector"] = len(kept)
    n = coverage.get("n_genes") or max(len(total.genes), 1)
    coverage["vector_fraction"] = round(len(kept) / n, 6)
    meta["coverage"] = coverage
    return GeneEmbedding(genes=kept, vectors=vectors, metadata=meta)


def merge_gene_sums(parts: Sequence[GeneSums]) -> GeneEmbedding:
    """Exact merge of shard sums: mean = sum of sums / sum of counts; genes with count 0 dropped."""
    return gene_sums_to_embedding(sum_gene_sums(parts))


def expression_matrix(adata, transform: str):
    """The matrix to rank: with transform "counts", the raw counts preprocessing keeps in
    `layers["counts"]` when there (X is then log-normalised); otherwise X."""
    if transform == "counts" and "counts" in getattr(adata, "layers", {}):
        return adata.layers["counts"]
    return adata.X


def input_sha256(X, genes: Sequence[str]) -> str:
    """sha256 of the gene names and the expression matrix (dense bytes or CSR arrays)."""
    h = hashlib.sha256()
    h.update("\n".join(map(str, genes)).encode())
    if sp.issparse(X):
        X = X.tocsr()
        h.update(f"csr{X.shape}{X.dtype}".encode())
        for a in (X.data, X.indices, X.indptr):
            h.update(np.ascontiguousarray(a).data)
    else:
        X = np.ascontiguousarray(np.asarray(X))
        h.update(f"dense{X.shape}{X.dtype}".encode())
        h.update(X.data)
    return h.hexdigest()


def select_cells(n_cells: int, max_cells: int | None) -> np.ndarray:
    """All cells, or `max_cells` evenly spaced ones (deterministic; keeps pseudotime coverage)."""
    if max_cells is None or max_cells >= n_cells:
        return np.arange(n_cells)
    if max_cells < 1:
        raise ValueError(f"max_cells must be >= 1, got {max_cells}")
    return np.unique(np.round(np.linspace(0, n_cells - 1, max_cells)).astype(np.int64))


def shard_cells(cells: np.ndarray, shard: int, n_shards: int) -> np.ndarray:
    """Contiguous block `shard` of `n_shards` (np.array_split): every cell in exactly one shard."""
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise ValueError(f"shard must be in 0..n_shards-1 with n_shards >= 1, got shard={shard}, n_shards={n_shards}")
    return np.array_split(cells, n_shards)[shard]
