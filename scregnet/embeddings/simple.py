"""Embedders that need no foundation model: `none`, `pca`, `precomputed`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scregnet.embeddings.adapters import load_precomputed
from scregnet.embeddings.base import GeneEmbedding
from scregnet.errors import DataError


class NoEmbedder:
    """No gene embedding: the model uses the GNN alone."""

    name = "none"

    def embed(self, adata) -> GeneEmbedding:
        """The empty embedding."""
        return GeneEmbedding.empty(embedder="none")


class PCAEmbedder:
    """A non-foundation baseline: gene loadings of the SVD of the z-scored cells x genes matrix.

    Each gene gets its row of V * S (the first `dim` right singular vectors scaled by the
    singular values), i.e. its coordinates in the principal axes of expression space.
    """

    name = "pca"

    def __init__(self, dim: int = 64):
        self.dim = dim

    def embed(self, adata) -> GeneEmbedding:
        """Gene loadings on the first `dim` principal axes of the expression."""
        x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
        x = x.astype(np.float64)
        std = x.std(axis=0)
        std[std == 0] = 1.0
        z = (x - x.mean(axis=0)) / std  # cells x genes
        k = min(self.dim, *z.shape)
        _, s, vt = np.linalg.svd(z, full_matrices=False)
        vectors = (vt[:k].T * s[:k]) / np.sqrt(max(z.shape[0] - 1, 1))
        return GeneEmbedding(
            genes=list(adata.var_names),
            vectors=vectors.astype(np.float32),
            metadata={
                "embedder": "pca",
                "dims": int(k),
                "n_cells": int(z.shape[0]),
                "explained_variance_ratio": float((s[:k] ** 2).sum() / (s**2).sum()),
            },
        )


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
