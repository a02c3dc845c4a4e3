"""Sharded Geneformer embedding: one step per shard of cells (a GPU pod each on Kubernetes),
an exact pairwise sum of the per-gene (sum, count) tables, then the means."""

from __future__ import annotations

from typing import Annotated

import anndata as ad
from zenml import step
from zenml.config import CachePolicy

from materializers import GeneEmbeddingMaterializer, GeneSumsMaterializer
from scregnet.config import EmbedderConfig
from scregnet.embeddings import GeneEmbedding
from scregnet.embeddings.geneformer import GeneformerEmbedder, GeneSums, gene_sums_to_embedding, sum_gene_sums
from steps.common import measured, record


@step(cache_policy=CachePolicy(include_artifact_ids=False), output_materializers={"gene_sums": GeneSumsMaterializer})
def embed_shard(expression: ad.AnnData, embedder: EmbedderConfig, shard: int) -> Annotated[GeneSums, "gene_sums"]:
    with measured("embed_shard"):
        sums = GeneformerEmbedder(embedder.geneformer).embed_shard(expression, shard, embedder.geneformer.n_shards)
        record({"shard": shard, "cells": sums.n_cells, "genes_ranked": int((sums.counts > 0).sum())})
        return sums


@step(cache_policy=CachePolicy(include_artifact_ids=False), output_materializers={"gene_sums": GeneSumsMaterializer})
def add_gene_sums(a: GeneSums, b: GeneSums) -> Annotated[GeneSums, "gene_sums"]:
    return sum_gene_sums([a, b])


@step(
    cache_policy=CachePolicy(include_artifact_ids=False),
    output_materializers={"gene_embedding": GeneEmbeddingMaterializer},
)
def finalize_embedding(total: GeneSums) -> Annotated[GeneEmbedding, "gene_embedding"]:
    return gene_sums_to_embedding(total)
