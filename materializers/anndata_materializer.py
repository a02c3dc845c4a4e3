"""AnnData <-> .h5ad in the artifact store, with a content hash for value-based caching."""

from __future__ import annotations

import hashlib
import os
from typing import Any, ClassVar

import anndata as ad
import numpy as np
from zenml.enums import ArtifactType
from zenml.materializers.base_materializer import BaseMaterializer

from materializers._io import download_dir, upload_dir

FILENAME = "data.h5ad"


class AnnDataMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ad.AnnData,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def load(self, data_type: type[Any]) -> ad.AnnData:
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            download_dir(self.uri, tmp)
            return ad.read_h5ad(os.path.join(tmp, FILENAME))

    def save(self, data: ad.AnnData) -> None:
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            data.write_h5ad(os.path.join(tmp, FILENAME))
            upload_dir(tmp, self.uri)

    def compute_content_hash(self, data: ad.AnnData) -> str:
        """Matrix values + cell and gene names + var/obs columns (not `uns`: provenance only)."""
        h = hashlib.sha256()
        x = data.X.toarray() if hasattr(data.X, "toarray") else np.asarray(data.X)
        h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
        for frame in (data.obs, data.var):
            h.update("\x1f".join(map(str, frame.index)).encode())
            h.update(frame.to_csv().encode())
        return h.hexdigest()

    def extract_metadata(self, data: ad.AnnData) -> dict[str, Any]:
        return {"n_cells": int(data.n_obs), "n_genes": int(data.n_vars), "dataset": str(data.uns.get("dataset", ""))}
