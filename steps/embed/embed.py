"""Gene embeddings from the configured embedder.

The cache key is the expression's content hash + the embedder config (+ this code): a
retrain with new priors but the same expression reuses the embedding.
"""

from __future__ import annotations

from typing import Annotated

import anndata as ad
from zenml import step
from zenml.config import CachePolicy

from materializers import GeneEmbeddingMaterializer
from scregnet.config import EmbedderConfig
from scregnet.embeddings import GeneEmbedding, build_embedder
from steps.common import measured, record


@step(
    cache_policy=CachePolicy(include_artifact_ids=False),
    output_materializers={"gene_embedding": GeneEmbeddingMaterializer},
)
def embed(expression: ad.AnnData, embedder: EmbedderConfig) -> Annotated[GeneEmbedding, "gene_embedding"]:
    with measured("embed"):
        embedding = build_embedder(embedder).embed(expression)
        _, found = embedding.align(list(expression.var_names)) if embedding.dim else (None, None)
        record(
            {
                "genes_with_vector": len(embedding.genes),
                "dims": embedding.dim,
                "coverage": float(found.mean()) if found is not None else 0.0,
            }
        )
        return embedding
