"""scanpy preprocessing between validate and embed (scregnet/preprocess.py): QC, normalisation,
BEELINE-style gene selection, metacell node features. BEELINE directories pass through."""

from __future__ import annotations

from typing import Annotated

import anndata as ad
import pandas as pd
from zenml import step

from materializers import AnnDataMaterializer
from scregnet.config import RunConfig
from scregnet.preprocess import preprocess as run_preprocess
from steps.common import measured, record


# Not cached, like ingest and validate; embed caches on the content of what this returns.
@step(enable_cache=False, output_materializers={"preprocessed_expression": AnnDataMaterializer})
def preprocess(
    expression: ad.AnnData, priors: pd.DataFrame, config: RunConfig
) -> Annotated[ad.AnnData, "preprocessed_expression"]:
    with measured("preprocess"):
        source = "beeline" if config.data.path is not None else "h5ad"
        out = run_preprocess(expression, priors, config.preprocess, source=source)
        record(dict(out.uns["preprocess"]))
        return out
