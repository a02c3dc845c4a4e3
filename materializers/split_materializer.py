"""Split <-> GENELink-format CSVs (Train_set.csv, Validation_set.csv, Test_set.csv)."""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType

from materializers._io import DirectoryMaterializer
from scregnet.splits import Split, read_split_dir


class SplitMaterializer(DirectoryMaterializer):
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (Split,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def read(self, directory: str, data_type: type[Any]) -> Split:
        split = read_split_dir(directory)
        meta = json.loads(open(os.path.join(directory, "split.json")).read())
        split.protocol, split.seed = meta["protocol"], meta["seed"]
        return split

    def write(self, data: Split, directory: str) -> None:
        data.save(directory)
        with open(os.path.join(directory, "split.json"), "w") as f:
            json.dump({"protocol": data.protocol, "seed": data.seed}, f)

    def extract_metadata(self, data: Split) -> dict[str, Any]:
        return {"protocol": data.protocol, **{f"n_{k}": v for k, v in data.sizes().items()}}
