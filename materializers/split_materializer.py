"""Split <-> GENELink-format CSVs (Train_set.csv, Validation_set.csv, Test_set.csv)."""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.materializers.base_materializer import BaseMaterializer

from materializers._io import download_dir, upload_dir
from scregnet.splits import Split, read_split_dir


class SplitMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (Split,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def load(self, data_type: type[Any]) -> Split:
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            download_dir(self.uri, tmp)
            split = read_split_dir(tmp)
            meta = json.loads(open(os.path.join(tmp, "split.json")).read())
            split.protocol, split.seed = meta["protocol"], meta["seed"]
            return split

    def save(self, data: Split) -> None:
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            data.save(tmp)
            with open(os.path.join(tmp, "split.json"), "w") as f:
                json.dump({"protocol": data.protocol, "seed": data.seed}, f)
            upload_dir(tmp, self.uri)

    def extract_metadata(self, data: Split) -> dict[str, Any]:
        return {"protocol": data.protocol, **{f"n_{k}": v for k, v in data.sizes().items()}}
