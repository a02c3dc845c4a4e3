"""Embedders that need no foundation model: `none`, `pca`, `precomputed`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from scregnet.embeddings.adapters import load_precomputed
from scregnet.embeddings.base import GeneEmbedding
from scregnet.errors import DataError


class NoEmbedder:
    """No gene embedding: the model uses the GNN alone."""

    name = "none"

    def embed(self, adata) -> GeneEmbedding:
        """The empty embedding."""
        return GeneEmbedding.empty(embedder="none")


# Largest dense input (cells x genes) embedded with the exact full SVD below (BEELINE's are
# <= ~1.1M entries); anything sparse or larger goes through the implicit z-scored operator.
PCA_DENSE_MAX_ENTRIES = 20_000_000


class PCAEmbedder:
    """A non-foundation baseline: gene loadings of the SVD of the z-scored cells x genes matrix.

    Each gene gets its row of V * S / sqrt(n - 1) (the first `dim` right singular vectors
    scaled by the singular values), i.e. its coordinates in the principal axes of expression
    space. Small dense inputs (every BEELINE dataset) take the full dense SVD, exactly as
    always; sparse or large inputs take a truncated SVD (ARPACK) of the same z-scored matrix
    applied implicitly, Z v = X (v / s) - 1 (mu . v / s), so it is never formed: the same
    loadings up to solver tolerance and each component's sign.
    """

    name = "pca"

    def __init__(self, dim: int = 64):
        self.dim = dim

    def embed(self, adata) -> GeneEmbedding:
        """Gene loadings on the first `dim` principal axes of the expression (sparse-aware, see above)."""
        x = adata.X
        if not sp.issparse(x) and np.asarray(x).size <= PCA_DENSE_MAX_ENTRIES:
            vectors, s, k, evr = _dense_pca(np.asarray(x), self.dim)
            solver = "full"
        elif min(x.shape) <= self.dim + 1:  # ARPACK cannot return every component; the matrix is tiny
            vectors, s, k, evr = _dense_pca(x.toarray() if sp.issparse(x) else np.asarray(x), self.dim)
            solver = "full"
        else:
            vectors, s, k, evr = _implicit_pca(x, self.dim)
            solver = "arpack"
        return GeneEmbedding(
            genes=list(adata.var_names),
            vectors=vectors.astype(np.float32),
            metadata={
                "embedder": "pca",
                "dims": int(k),
                "n_cells": int(x.shape[0]),
                "explained_variance_ratio": evr,
                "solver": solver,
            },
        )


def _dense_pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Full SVD of the z-scored dense cells x genes matrix: (loadings [G, k], s, k, explained ratio)."""
    x = x.astype(np.float64)
    std = x.std(axis=0)
    std[std == 0] = 1.0
    z = (x - x.mean(axis=0)) / std  # cells x genes
    k = min(dim, *z.shape)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    vectors = (vt[:k].T * s[:k]) / np.sqrt(max(z.shape[0] - 1, 1))
    return vectors, s[:k], k, float((s[:k] ** 2).sum() / (s**2).sum())


def _implicit_pca(x, dim: int) -> tuple[np.ndarray, np.ndarray, int, float]:
    """Truncated SVD (ARPACK) of the z-scored cells x genes matrix [n, G], sparse or dense,
    without forming it: O(non-zeros) per product. Returns what `_dense_pca` returns."""
    from scipy.sparse.linalg import LinearOperator, svds

    n, g = x.shape
    x = x.tocsr().astype(np.float64) if sp.issparse(x) else np.asarray(x, dtype=np.float64)
    if sp.issparse(x):  # per-gene sums straight from the stored values (scipy's mean copies the matrix)
        mean = np.bincount(x.indices, weights=x.data, minlength=g) / n
        sq = np.bincount(x.indices, weights=x.data * x.data, minlength=g) / n
    else:
        mean, sq = x.mean(axis=0), np.einsum("ij,ij->j", x, x) / n
    var = np.maximum(sq - mean**2, 0.0)
    std = np.sqrt(var)
    constant = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
    std[constant] = 1.0
    inv = np.where(constant, 0.0, 1.0 / std)  # constant genes: an all-zero column, as in the dense path
    ones = np.ones(n)

    def matvec(v: np.ndarray) -> np.ndarray:
        w = inv * np.asarray(v).ravel()
        return np.asarray(x @ w).ravel() - ones * (mean @ w)

    def rmatvec(u: np.ndarray) -> np.ndarray:
        u = np.asarray(u).ravel()
        return inv * (np.asarray(x.T @ u).ravel() - mean * u.sum())

    def matmat(v: np.ndarray) -> np.ndarray:
        w = inv[:, None] * v
        return np.asarray(x @ w) - np.outer(ones, mean @ w)

    def rmatmat(u: np.ndarray) -> np.ndarray:
        return inv[:, None] * (np.asarray(x.T @ u) - np.outer(mean, u.sum(axis=0)))

    op = LinearOperator((n, g), matvec=matvec, rmatvec=rmatvec, matmat=matmat, rmatmat=rmatmat, dtype=np.float64)
    k = min(dim, n - 1, g - 1)
    v0 = np.random.default_rng(0).uniform(-1, 1, size=min(n, g))  # deterministic start vector
    _, s, vt = svds(op, k=k, solver="arpack", v0=v0)
    order = np.argsort(-s)
    s, vt = s[order], vt[order]
    # Fix each component's sign (ARPACK's is arbitrary): largest |loading| positive.
    sign = np.sign(vt[np.arange(k), np.abs(vt).argmax(axis=1)])
    vt *= np.where(sign == 0, 1.0, sign)[:, None]
    vectors = (vt.T * s) / np.sqrt(max(n - 1, 1))
    total = float(n * (~constant).sum())  # each non-constant z-scored column has sum of squares n
    return vectors, s, k, float((s**2).sum() / total) if total else 0.0


class PrecomputedEmbedder:
    """Gene -> vector from a file: a table (csv/tsv/parquet), a torch dict, or a model's native output."""

    name = "precomputed"

    def __init__(self, path: Path | str, format: str = "auto", gene_index: Path | None = None):
        self.path = Path(path)
        self.format = format
        self.gene_index = gene_index

    def embed(self, adata=None) -> GeneEmbedding:
        """Read the file; with `adata`, record how many of its genes received a vector."""
        if not self.path.exists():
            raise DataError("precomputed embedding file not found", self.path)
        fmt = self.format
        if fmt == "auto":
            suffix = self.path.name.lower().removesuffix(".gz")
            fmt = "torch" if suffix.endswith((".pt", ".pth")) else "table"
        emb = load_precomputed(self.path, fmt, self.gene_index)
        emb.metadata.setdefault("embedder", "precomputed")
        emb.metadata["format"] = fmt
        if adata is not None:
            _, found = emb.align([str(g) for g in adata.var_names])
            emb.metadata["coverage"] = float(found.mean()) if len(found) else 0.0
            emb.metadata["genes_without_vector"] = int((~found).sum())
        return emb
