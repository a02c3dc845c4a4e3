import numpy as np
import pandas as pd
import pytest

from scregnet.data import GRNDataset
from scregnet.validation import validate_dataset


def _copy(ds: GRNDataset) -> GRNDataset:
    return GRNDataset(ds.name, ds.adata.copy(), ds.priors.copy(), dict(ds.sources))


def test_good_dataset_passes(synthetic):
    report = validate_dataset(synthetic)
    assert report.ok, report.problems
    assert report.statistics["genes"] == 80


def test_bad_expression_values_are_named_by_file_and_gene(synthetic):
    ds = _copy(synthetic)
    ds.adata.X[3, 5] = np.nan
    ds.adata.X[4, 7] = -2.0
    report = validate_dataset(ds)
    assert not report.ok
    genes = list(ds.adata.var_names)
    nan_line = next(p for p in report.problems if "NaN or infinite" in p)
    neg_line = next(p for p in report.problems if "have negative" in p)
    assert nan_line.startswith(ds.sources["expression"]) and genes[5] in nan_line
    assert genes[7] in neg_line and "expected finite, non-negative values" in neg_line


def test_priors_naming_unmeasured_genes_and_self_loops(synthetic, tmp_path):
    ds = _copy(synthetic)
    extra = pd.DataFrame(
        {
            "tf": ["TF000", "NOTAGENE", "TF001"],
            "target": ["GHOST1", "GENE0001", "TF001"],
            "source": str(tmp_path / "extra.csv"),
        }
    )
    ds.priors = pd.concat([ds.priors, extra], ignore_index=True)
    report = validate_dataset(ds)
    text = "\n".join(report.problems)
    assert "extra.csv: row 2, column 'target': target gene 'GHOST1' is not in the expression" in text
    assert "extra.csv: row 3, column 'tf': TF gene 'NOTAGENE'" in text
    assert "extra.csv: row 4: self loop TF001->TF001" in text


def test_duplicates_warn_and_duplicate_gene_names_fail(synthetic):
    ds = _copy(synthetic)
    ds.priors = pd.concat([ds.priors, ds.priors.iloc[:2]], ignore_index=True)
    report = validate_dataset(ds)
    assert report.ok and any("2 duplicated edge(s)" in w for w in report.warnings)
    names = list(ds.adata.var_names)
    names[1] = names[0]
    ds.adata.var_names = names
    report = validate_dataset(ds)
    assert any("duplicated gene names" in p and names[0] in p for p in report.problems)


def test_too_few_cells_and_html_report(synthetic, tmp_path):
    report = validate_dataset(synthetic, min_cells=10_000, report_dir=tmp_path / "gx")
    assert any("only 120 cells; expected at least 10000" in p for p in report.problems)
    assert report.report_path and report.report_path.endswith("index.html")
    from pathlib import Path

    assert Path(report.report_path).is_file()
    with pytest.raises(Exception, match="input validation failed"):
        report.raise_if_failed()
