"""ModelBundle <-> safetensors weights + JSON config. Never pickle."""

from __future__ import annotations

from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.materializers.base_materializer import BaseMaterializer

from materializers._io import download_dir, upload_dir
from scregnet.serialize import ModelBundle


class ModelBundleMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ModelBundle,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def load(self, data_type: type[Any]) -> ModelBundle:
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            download_dir(self.uri, tmp)
            return ModelBundle.load(tmp)  # verifies the stored sha256 of every file

    def save(self, data: ModelBundle) -> None:
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            data.save(tmp)
            upload_dir(tmp, self.uri)

    def extract_metadata(self, data: ModelBundle) -> dict[str, Any]:
        cfg = data.config
        return {"gnn": cfg.gnn, "n_genes": len(data.genes), "best_epoch": int(data.meta.get("best_epoch", 0)),
                "parameters": int(sum(p.numel() for p in data.model.parameters()))}
