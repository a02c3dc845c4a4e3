"""GeneSums (one Geneformer shard) <-> sums.npy + counts.npy + genes.txt + metadata.json."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, ClassVar

import numpy as np
from zenml.enums import ArtifactType
from zenml.materializers.base_materializer import BaseMaterializer

from materializers._io import download_dir, upload_dir
from scregnet.embeddings.geneformer import GeneSums


class GeneSumsMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (GeneSums,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def load(self, data_type: type[Any]) -> GeneSums:
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            download_dir(self.uri, tmp)
            meta = json.loads(open(os.path.join(tmp, "metadata.json")).read())
            genes = [g for g in open(os.path.join(tmp, "genes.txt")).read().split("\n") if g]
            return GeneSums(genes, np.load(os.path.join(tmp, "sums.npy"), allow_pickle=False),
                            np.load(os.path.join(tmp, "counts.npy"), allow_pickle=False),
                            int(meta.pop("n_cells_shard")), meta)

    def save(self, data: GeneSums) -> None:
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            np.save(os.path.join(tmp, "sums.npy"), data.sums, allow_pickle=False)
            np.save(os.path.join(tmp, "counts.npy"), data.counts, allow_pickle=False)
            with open(os.path.join(tmp, "genes.txt"), "w") as f:
                f.write("\n".join(data.genes) + "\n")
            with open(os.path.join(tmp, "metadata.json"), "w") as f:
                json.dump({**data.metadata, "n_cells_shard": data.n_cells}, f, default=str)
            upload_dir(tmp, self.uri)

    def compute_content_hash(self, data: GeneSums) -> str:
        h = hashlib.sha256("\n".join(data.genes).encode())
        h.update(np.ascontiguousarray(data.sums).tobytes() + np.ascontiguousarray(data.counts).tobytes())
        return h.hexdigest()
