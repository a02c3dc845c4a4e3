"""Peer scores: what a lab would run instead (GRNBoost2, co-expression, embedding cosine), computed
once per expression content (step cache, and scregnet.peers' own cache) and scored by evaluate."""

from __future__ import annotations

from typing import Annotated

import anndata as ad
import pandas as pd
from zenml import step
from zenml.config import CachePolicy

from materializers import PeerScoresMaterializer
from scregnet.config import PeerConfig
from scregnet.data import GRNDataset
from scregnet.embeddings import GeneEmbedding
from scregnet.peers import PeerScores
from steps.common import measured, record


@step(
    cache_policy=CachePolicy(include_artifact_ids=False),
    output_materializers={"peer_scores": PeerScoresMaterializer},
)
def peers(
    expression: ad.AnnData, priors: pd.DataFrame, gene_embedding: GeneEmbedding, config: PeerConfig
) -> Annotated[PeerScores, "peer_scores"]:
    with measured("peers"):
        scores = PeerScores.of(GRNDataset.from_parts(expression, priors), config, gene_embedding)
        record({"peers": sorted(scores.matrices), "skipped": scores.skipped})
        return scores
