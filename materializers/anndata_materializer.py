"""AnnData <-> .h5ad in the artifact store, with a content hash for value-based caching."""

from __future__ import annotations

import hashlib
import os
from typing import Any, ClassVar

import anndata as ad
from zenml.enums import ArtifactType

from materializers._io import DirectoryMaterializer
from scregnet.data import hash_matrix

FILENAME = "data.h5ad"


class AnnDataMaterializer(DirectoryMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ad.AnnData,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def read(self, directory: str, data_type: type[Any]) -> ad.AnnData:
        return ad.read_h5ad(os.path.join(directory, FILENAME))

    def write(self, data: ad.AnnData, directory: str) -> None:
        data.write_h5ad(os.path.join(directory, FILENAME))

    def compute_content_hash(self, data: ad.AnnData) -> str:
        """Matrix values + cell and gene names + var/obs columns (not `uns`: provenance only),
        then layers and varm when present (preprocessing's counts and metacell profiles).
        Sparse matrices are hashed on their CSR arrays in chunks, never densified; an AnnData
        without layers or varm (a BEELINE input) hashes as it always did."""
        h = hashlib.sha256()
        hash_matrix(h, data.X)
        for frame in (data.obs, data.var):
            h.update("\x1f".join(map(str, frame.index)).encode())
            h.update(frame.to_csv().encode())
        for kind, mapping in (("layer", data.layers), ("varm", data.varm)):
            for key in sorted(mapping.keys()):
                h.update(f"{kind}:{key}".encode())
                hash_matrix(h, mapping[key])
        return h.hexdigest()

    def extract_metadata(self, data: ad.AnnData) -> dict[str, Any]:
        meta = {"n_cells": int(data.n_obs), "n_genes": int(data.n_vars), "dataset": str(data.uns.get("dataset", ""))}
        x = data.X
        meta["sparse"] = bool(hasattr(x, "nnz"))
        if meta["sparse"]:
            meta["nnz"] = int(x.nnz)
        return meta
