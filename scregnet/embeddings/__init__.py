"""Gene embedders behind one interface: `build_embedder(EmbedderConfig).embed(adata)`."""

from __future__ import annotations

from scregnet.embeddings.base import GeneEmbedder, GeneEmbedding
from scregnet.embeddings.simple import NoEmbedder, PCAEmbedder, PrecomputedEmbedder

__all__ = ["GeneEmbedder", "GeneEmbedding", "build_embedder", "NoEmbedder", "PCAEmbedder", "PrecomputedEmbedder"]


def build_embedder(config) -> GeneEmbedder:
    """From an `EmbedderConfig`."""
    if config.kind == "none":
        return NoEmbedder()
    if config.kind == "pca":
        return PCAEmbedder(config.dim)
    if config.kind == "precomputed":
        if config.path is None:
            raise ValueError("embedder.kind=precomputed needs embedder.path (a CSV, parquet or .pt file)")
        return PrecomputedEmbedder(config.path, config.format, config.gene_index)
    if config.kind == "geneformer":
        from scregnet.embeddings.geneformer import GeneformerEmbedder

        return GeneformerEmbedder(config.geneformer)
    raise ValueError(f"unknown embedder kind {config.kind!r}")
