"""AnnData <-> .h5ad in the artifact store, with a content hash for value-based caching."""

from __future__ import annotations

import hashlib
import os
from typing import Any, ClassVar

import anndata as ad
import numpy as np
from zenml.enums import ArtifactType

from materializers._io import DirectoryMaterializer

FILENAME = "data.h5ad"


class AnnDataMaterializer(DirectoryMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ad.AnnData,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def read(self, directory: str, data_type: type[Any]) -> ad.AnnData:
        return ad.read_h5ad(os.path.join(directory, FILENAME))

    def write(self, data: ad.AnnData, directory: str) -> None:
        data.write_h5ad(os.path.join(directory, FILENAME))

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
