"""PeerScores <-> one .npz per peer + skipped.json (no pickle), content-hashed for step caching."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np
from zenml.enums import ArtifactType

from materializers._io import DirectoryMaterializer
from scregnet.peers import PeerScores


class PeerScoresMaterializer(DirectoryMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (PeerScores,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def read(self, directory: str, data_type: type[Any]) -> PeerScores:
        return PeerScores.load(directory)

    def write(self, data: PeerScores, directory: str) -> None:
        data.save(directory)

    def compute_content_hash(self, data: PeerScores) -> str:
        h = hashlib.sha256()
        for name in sorted(data.matrices):
            m = data.matrices[name]
            h.update(name.encode() + "\n".join(m.regulators).encode() + "\n".join(m.genes).encode())
            h.update(np.ascontiguousarray(m.scores, dtype=np.float32).tobytes())
        h.update(repr(sorted(data.skipped.items())).encode())
        return h.hexdigest()

    def extract_metadata(self, data: PeerScores) -> dict[str, Any]:
        meta: dict[str, Any] = {f"{n}_seconds": float(m.meta.get("seconds", 0.0)) for n, m in data.matrices.items()}
        meta.update({f"{n}_skipped": why for n, why in data.skipped.items()})
        return meta
