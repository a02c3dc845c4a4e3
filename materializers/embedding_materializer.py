"""GeneEmbedding <-> vectors.npy + genes.txt + metadata.json (checksum verified on load)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.io import fileio

from materializers._io import DirectoryMaterializer
from scregnet.embeddings.base import GeneEmbedding


class GeneEmbeddingMaterializer(DirectoryMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (GeneEmbedding,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def read(self, directory: str, data_type: type[Any]) -> GeneEmbedding:
        return GeneEmbedding.load(directory)  # verifies the stored checksum

    def write(self, data: GeneEmbedding, directory: str) -> None:
        data.save(directory)

    def compute_content_hash(self, data: GeneEmbedding) -> str:
        return data.content_hash()

    def extract_metadata(self, data: GeneEmbedding) -> dict[str, Any]:
        keep = ("embedder", "model", "layer", "transform", "coverage", "format")
        meta = {k: data.metadata[k] for k in keep if k in data.metadata and data.metadata[k] is not None}
        return {
            "n_genes": len(data.genes),
            "dims": data.dim,
            **{k: v if isinstance(v, (int, float)) else str(v) for k, v in meta.items()},
        }

    def save_visualizations(self, data: GeneEmbedding) -> dict[str, VisualizationType]:
        path = os.path.join(self.uri, "summary.md")
        lines = [
            f"# Gene embedding ({data.metadata.get('embedder', '?')})",
            "",
            f"- genes with a vector: {len(data.genes)}",
            f"- dimensions: {data.dim}",
        ]
        lines += [f"- {k}: {v}" for k, v in sorted(data.metadata.items()) if not isinstance(v, (dict, list))]
        with fileio.open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return {path: VisualizationType.MARKDOWN}
