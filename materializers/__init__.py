"""ZenML materializers for the pipeline's artifacts: no pickle, content-hashed where caching needs it."""

from materializers.anndata_materializer import AnnDataMaterializer
from materializers.embedding_materializer import GeneEmbeddingMaterializer
from materializers.gene_sums_materializer import GeneSumsMaterializer
from materializers.model_materializer import ModelBundleMaterializer
from materializers.peer_materializer import PeerScoresMaterializer
from materializers.split_materializer import SplitMaterializer

__all__ = [
    "AnnDataMaterializer",
    "GeneEmbeddingMaterializer",
    "GeneSumsMaterializer",
    "ModelBundleMaterializer",
    "PeerScoresMaterializer",
    "SplitMaterializer",
]
