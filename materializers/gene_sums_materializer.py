"""GeneSums (one Geneformer shard) <-> sums.npy + counts.npy + genes.txt + metadata.json."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, ClassVar

import numpy as np
from zenml.enums import ArtifactType

from materializers._io import DirectoryMaterializer
from scregnet.embeddings.geneformer import GeneSums


class GeneSumsMaterializer(DirectoryMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (GeneSums,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def read(self, directory: str, data_type: type[Any]) -> GeneSums:
        meta = json.loads(open(os.path.join(directory, "metadata.json")).read())
        genes = [g for g in open(os.path.join(directory, "genes.txt")).read().split("\n") if g]
        return GeneSums(
            genes,
            np.load(os.path.join(directory, "sums.npy"), allow_pickle=False),
            np.load(os.path.join(directory, "counts.npy"), allow_pickle=False),
            int(meta.pop("n_cells_shard")),
            meta,
        )

    def write(self, data: GeneSums, directory: str) -> None:
        np.save(os.path.join(directory, "sums.npy"), data.sums, allow_pickle=False)
        np.save(os.path.join(directory, "counts.npy"), data.counts, allow_pickle=False)
        with open(os.path.join(directory, "genes.txt"), "w") as f:
            f.write("\n".join(data.genes) + "\n")
        with open(os.path.join(directory, "metadata.json"), "w") as f:
            json.dump({**data.metadata, "n_cells_shard": data.n_cells}, f, default=str)

    def compute_content_hash(self, data: GeneSums) -> str:
        h = hashlib.sha256("\n".join(data.genes).encode())
        h.update(np.ascontiguousarray(data.sums).tobytes() + np.ascontiguousarray(data.counts).tobytes())
        return h.hexdigest()
