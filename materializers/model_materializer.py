"""ModelBundle <-> safetensors weights + JSON config. Never pickle."""

from __future__ import annotations

from typing import Any, ClassVar

from zenml.enums import ArtifactType

from materializers._io import DirectoryMaterializer
from scregnet.serialize import ModelBundle


class ModelBundleMaterializer(DirectoryMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ModelBundle,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def read(self, directory: str, data_type: type[Any]) -> ModelBundle:
        return ModelBundle.load(directory)  # verifies the stored sha256 of every file

    def write(self, data: ModelBundle, directory: str) -> None:
        data.save(directory)

    def extract_metadata(self, data: ModelBundle) -> dict[str, Any]:
        cfg = data.config
        return {
            "gnn": cfg.gnn,
            "n_genes": len(data.genes),
            "best_epoch": int(data.meta.get("best_epoch", 0)),
            "parameters": int(sum(p.numel() for p in data.model.parameters())),
        }
