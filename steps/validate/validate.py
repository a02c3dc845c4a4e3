"""Great Expectations checks; a failure stops the run before anything is trained."""

from __future__ import annotations

from typing import Annotated

import anndata as ad
import pandas as pd
from zenml import step

from scregnet.config import RunConfig
from scregnet.data import GRNDataset
from scregnet.home import home
from scregnet.registry import model_name
from scregnet.validation import validate_dataset
from steps.common import measured, record


@step(enable_cache=False)
def validate(expression: ad.AnnData, priors: pd.DataFrame, config: RunConfig) -> Annotated[dict, "validation_report"]:
    with measured("validate"):
        dataset = GRNDataset.from_parts(expression, priors)
        report_dir = home() / "validation" / model_name("report", dataset.name)
        report = validate_dataset(
            dataset,
            config.data.min_cells,
            config.data.min_genes,
            report_dir=report_dir,
            max_empty_cell_frac=config.data.max_empty_cell_frac,
            max_empty_gene_frac=config.data.max_empty_gene_frac,
        )
        record({"problems": len(report.problems), "warnings": len(report.warnings), "report": report.report_path or ""})
        report.raise_if_failed()
        return {
            "problems": report.problems,
            "warnings": report.warnings,
            "report": report.report_path,
            "statistics": report.statistics,
        }
