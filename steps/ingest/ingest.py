"""Read the expression and the priors named by the run config."""

from __future__ import annotations

from typing import Annotated

import anndata as ad
import pandas as pd
from zenml import step

from materializers import AnnDataMaterializer
from scregnet.config import RunConfig
from scregnet.data import load_dataset
from steps.common import measured


# Not cached: files may change in place. The embed step caches on the expression's content instead.
@step(enable_cache=False, output_materializers={"expression": AnnDataMaterializer})
def ingest(config: RunConfig) -> tuple[Annotated[ad.AnnData, "expression"], Annotated[pd.DataFrame, "priors"]]:
    with measured("ingest"):
        dataset = load_dataset(config.data)
        return dataset.expression(), dataset.priors
