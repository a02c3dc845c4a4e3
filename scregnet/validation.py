"""Input checks with Great Expectations 1.x, run before anything is trained.

Checks (each failure becomes one line naming the file, the column/row/gene, and what was
expected):
- expression: finite, non-negative, gene names unique, enough cells and genes;
- priors: TF and target columns present, both genes measured, no self loops, at least one
  TF with a positive; duplicated edges are reported as warnings (they are merged).

GX runs on small pandas frames derived from the data (one row per gene / per prior edge),
so a failing expectation's unexpected values are the offending genes or rows.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scregnet.data import GRNDataset
from scregnet.errors import ValidationFailed

log = logging.getLogger(__name__)


@dataclass
class ValidationReport:
    """Problems (failures), warnings, statistics and the HTML report path."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    report_path: str | None = None
    statistics: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when there is no problem."""
        return not self.problems

    def raise_if_failed(self) -> None:
        """Raise ValidationFailed listing the problems, if any."""
        if self.problems:
            raise ValidationFailed(self.problems, self.report_path)


def _stored_chunks(x, size: int = 1 << 22):
    """(column index, value) arrays of a CSR/CSC matrix's stored values, `size` at a time."""
    if x.format == "csr":
        for lo in range(0, x.nnz, size):
            yield x.indices[lo : lo + size], x.data[lo : lo + size]
    else:  # CSC: a block of columns at a time, column ids from the indptr runs
        step = max(1, x.shape[1] * size // max(x.nnz, 1))
        for j0 in range(0, x.shape[1], step):
            j1 = min(j0 + step, x.shape[1])
            runs = np.diff(x.indptr[j0 : j1 + 1])
            yield np.repeat(np.arange(j0, j1), runs), x.data[x.indptr[j0] : x.indptr[j1]]


def _gene_frame(dataset: GRNDataset) -> pd.DataFrame:
    """One row per gene: counts of non-finite and negative values and the smallest finite value,
    from the stored values of a sparse matrix (implicit zeros count as 0) or from row blocks of
    a dense one; never a dense or float64 copy of the whole matrix."""
    x = dataset.adata.X  # cells x genes
    n_cells, n_genes = x.shape
    nonfinite = np.zeros(n_genes, dtype=np.int64)
    negative = np.zeros(n_genes, dtype=np.int64)
    minimum = np.full(n_genes, np.inf)
    if sp.issparse(x):
        x = x.tocsr() if x.format not in ("csr", "csc") else x
        stored = np.zeros(n_genes, dtype=np.int64)
        # Chunks of stored values: bounded temporaries (bincount would copy all indices to int64).
        for cols, data in _stored_chunks(x):
            finite = np.isfinite(data)
            stored += np.bincount(cols, minlength=n_genes)
            if not finite.all():
                nonfinite += np.bincount(cols[~finite], minlength=n_genes)
            with np.errstate(invalid="ignore"):
                neg = data < 0  # NaN compares False
            if neg.any():
                negative += np.bincount(cols[neg], minlength=n_genes)
                np.minimum.at(minimum, cols[neg], data[neg])
        # Smallest value: 0 where a column has implicit zeros, unless a stored value is lower;
        # only columns with every cell stored need all their values looked at.
        minimum[stored < n_cells] = np.minimum(minimum[stored < n_cells], 0.0)
        full = stored == n_cells
        if full.any():
            for cols, data in _stored_chunks(x):
                pick = full[cols] & np.isfinite(data)
                np.minimum.at(minimum, cols[pick], data[pick])
    else:
        x = np.asarray(x)
        rows = max(1, (1 << 22) // max(1, n_genes))
        for lo in range(0, n_cells, rows):
            block = x[lo : lo + rows].astype(np.float64)
            finite = np.isfinite(block)
            nonfinite += (~finite).sum(axis=0)
            with np.errstate(invalid="ignore"):
                negative += np.where(finite, block < 0, False).sum(axis=0)
            minimum = np.minimum(minimum, np.where(finite, block, np.inf).min(axis=0))
    if n_cells == 0:
        minimum = np.zeros(n_genes)
    return pd.DataFrame(
        {
            "gene": [str(g) for g in dataset.adata.var_names],
            "n_nonfinite": nonfinite.astype(int),
            "n_negative": negative.astype(int),
            "min_value": minimum,
        }
    )


def _prior_frame(dataset: GRNDataset) -> pd.DataFrame:
    genes = set(map(str, dataset.adata.var_names))
    p = dataset.priors.reset_index(drop=True)
    source = p["source"].astype(str) if "source" in p else pd.Series(["priors"] * len(p))
    row = source.groupby(source).cumcount() + 2  # line in its own file (header = 1)
    if "line" in p:  # readers record each pair's line (GMT lines hold many pairs; filters skip rows)
        row = pd.to_numeric(p["line"], errors="coerce").fillna(row)
    return pd.DataFrame(
        {
            "row": row.astype(np.int64).to_numpy(),
            "edge": p["tf"].astype(str) + "->" + p["target"].astype(str),
            "tf": p["tf"].astype(str),
            "target": p["target"].astype(str),
            "source": source,
            "tf_measured": p["tf"].isin(genes),
            "target_measured": p["target"].isin(genes),
            "self_loop": p["tf"] == p["target"],
        }
    )


def _run_suite(context, name: str, frame: pd.DataFrame, expectations: list):
    import great_expectations as gx

    source = context.data_sources.add_pandas(f"{name}_source")
    asset = source.add_dataframe_asset(name=f"{name}_asset")
    batch_def = asset.add_batch_definition_whole_dataframe(f"{name}_batch")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{name}_suite"))
    for exp in expectations:
        suite.add_expectation(exp)
    vd = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{name}_validation", data=batch_def, suite=suite)
    )
    result = vd.run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": [frame.columns[0]]},
    )
    return vd, result


def _failures(result):
    """(expectation type, column, result) of each failed expectation."""
    for res in result.results:
        if not res.success:
            yield res.expectation_config.type, res.expectation_config.kwargs.get("column"), res


def _unexpected(res, limit: int = 5) -> tuple[list, int]:
    r = res.result or {}
    values = r.get("partial_unexpected_list") or r.get("unexpected_list") or []
    count = int(r.get("unexpected_count") or len(values))
    return list(values)[:limit], count


def _gx_context(report_dir: Path | None):
    """A Great Expectations context: file-backed (HTML data docs) under `report_dir`, else ephemeral."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # GX draws a progress bar per expectation
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    if report_dir is None:
        context = gx.get_context(mode="ephemeral")
    else:
        report_dir.mkdir(parents=True, exist_ok=True)
        context = gx.get_context(mode="file", project_root_dir=str(report_dir))
        for n in ("expression", "priors"):  # a previous report of the same name is replaced
            for coll, key in ((context.validation_definitions, f"{n}_validation"), (context.suites, f"{n}_suite")):
                try:
                    coll.delete(key)
                except Exception:
                    pass
            try:
                context.data_sources.delete(f"{n}_source")
            except Exception:
                pass
    context.variables.progress_bars = ProgressBarsConfig(globally=False)  # one bar per expectation is noise
    return context


def check_expression(context, dataset: GRNDataset, report: ValidationReport, min_cells: int, min_genes: int) -> None:
    """Expression suite: unique genes, finite and non-negative values, enough cells and genes."""
    from great_expectations import expectations as E

    expr_file = dataset.sources.get("expression", "expression")
    n_cells, n_genes = dataset.adata.shape
    genes = _gene_frame(dataset)
    expectations = [
        E.ExpectColumnValuesToBeUnique(column="gene"),
        E.ExpectColumnValuesToBeBetween(column="n_nonfinite", min_value=0, max_value=0),
        E.ExpectColumnValuesToBeBetween(column="n_negative", min_value=0, max_value=0),
        E.ExpectTableRowCountToBeBetween(min_value=min_genes),
    ]
    _, result = _run_suite(context, "expression", genes, expectations)
    for kind, col, res in _failures(result):
        if kind == "expect_column_values_to_be_unique":
            vals, count = _unexpected(res)
            report.problems.append(
                f"{expr_file}: duplicated gene names ({count} rows), e.g. {sorted(set(vals))}; expected unique gene names"
            )
        elif kind == "expect_table_row_count_to_be_between":
            report.problems.append(f"{expr_file}: only {n_genes} genes; expected at least {min_genes}")
        else:
            bad = genes[genes[col] > 0]
            what = "NaN or infinite" if col == "n_nonfinite" else "negative"
            examples = ", ".join(f"{g} ({c} cells)" for g, c in zip(bad["gene"][:5], bad[col][:5]))
            report.problems.append(
                f"{expr_file}: {len(bad)} gene(s) have {what} expression values, e.g. {examples}; "
                "expected finite, non-negative values"
            )
    _harmonization_warnings(dataset, report, expr_file)
    cells = pd.Series([str(c) for c in dataset.adata.obs_names])
    if cells.duplicated().any():
        report.problems.append(
            f"{expr_file}: duplicated cell names, e.g. {sorted(set(cells[cells.duplicated()]))[:5]}; "
            "expected unique cell names"
        )
    if n_cells < min_cells:
        report.problems.append(f"{expr_file}: only {n_cells} cells; expected at least {min_cells}")


def _nonzero_counts(x) -> tuple[np.ndarray, np.ndarray]:
    """Non-zero values per cell [cells] and per gene [genes] of a cells x genes matrix, dense or sparse.

    Sparse: from the stored values (no dense copy; stored zeros do not count). Dense: in row blocks,
    so the boolean mask never spans the whole matrix.
    """
    if sp.issparse(x):
        x = x if x.format in ("csr", "csc") else x.tocsr()
        stored = x.data != 0  # [nnz]: explicitly stored zeros do not count
        ends = np.concatenate(([0], np.cumsum(stored)))[x.indptr]
        major = np.diff(ends)  # per row of CSR / column of CSC
        minor = np.bincount(x.indices[stored], minlength=x.shape[1 if x.format == "csr" else 0])
        return (major, minor) if x.format == "csr" else (minor, major)
    x = np.asarray(x)
    per_cell = np.zeros(x.shape[0], dtype=np.int64)
    per_gene = np.zeros(x.shape[1], dtype=np.int64)
    rows = max(1, (1 << 24) // max(x.shape[1], 1))
    for start in range(0, x.shape[0], rows):
        nz = x[start : start + rows] != 0
        per_cell[start : start + rows] = nz.sum(axis=1)
        per_gene += nz.sum(axis=0)
    return per_cell, per_gene


# A cell barcode as a token: 10x (AAACCTGAGAAACCAT-1), with a sample prefix or suffix; gene symbols
# are never 10+ letters of A, C, G, T, N alone.
_BARCODE = re.compile(r"(?:^|[^A-Za-z])[ACGTN]{10,}(?:$|[^A-Za-z])")


def _examples(names, mask: np.ndarray, limit: int = 3) -> list[str]:
    return [str(n) for n in np.asarray(names)[np.flatnonzero(mask)[:limit]]]


def check_expression_content(
    dataset: GRNDataset, report: ValidationReport, max_empty_cell_frac: float, max_empty_gene_frac: float
) -> None:
    """Expression sanity: not all zeros, not mostly empty cells or genes, not transposed (genes as cells).

    Errors above `max_empty_cell_frac` / `max_empty_gene_frac` (`DataConfig`), warnings below them.
    Computed from per-cell and per-gene non-zero counts (sparse-friendly, no dense copy).
    """
    expr_file = dataset.sources.get("expression", "expression")
    adata = dataset.adata
    n_cells, n_genes = adata.shape
    if n_cells == 0 or n_genes == 0:
        return  # reported by the cell / gene counts
    _check_transposed(dataset, report, expr_file)
    per_cell, per_gene = _nonzero_counts(adata.X)
    empty_cells, empty_genes = per_cell == 0, per_gene == 0
    report.statistics.update(empty_cells=int(empty_cells.sum()), empty_genes=int(empty_genes.sum()))
    if not per_cell.any():
        report.problems.append(
            f"{expr_file}: every expression value is 0 ({n_cells} cells x {n_genes} genes); "
            "expected raw counts or log-expression with non-zero values"
        )
        return
    for what, empty, names, limit, key in (
        ("cells", empty_cells, adata.obs_names, max_empty_cell_frac, "data.max_empty_cell_frac"),
        ("genes", empty_genes, adata.var_names, max_empty_gene_frac, "data.max_empty_gene_frac"),
    ):
        k, n = int(empty.sum()), len(empty)
        if not k:
            continue
        text = f"{expr_file}: {k} of {n} {what} ({k / n:.1%}) have no non-zero value, e.g. {_examples(names, empty)}"
        if k / n > limit:
            hint = " (an unfiltered droplet matrix? use the filtered one)" if what == "cells" else ""
            report.problems.append(f"{text}; expected at most {limit:.0%} ({key}){hint}")
        else:
            report.warnings.append(f"{text}; they carry no information")


def _check_transposed(dataset: GRNDataset, report: ValidationReport, expr_file: str) -> None:
    """Genes as observations: obs names that are prior genes, var names that look like cell barcodes."""
    adata, priors = dataset.adata, dataset.priors
    prior_genes = set(priors["tf"].astype(str).str.upper()) | set(priors["target"].astype(str).str.upper())
    obs = pd.Index(adata.obs_names.astype(str))
    obs_hits = obs.str.upper().isin(prior_genes)
    var_hits = pd.Index(adata.var_names.astype(str)).str.upper().isin(prior_genes)
    barcodes = np.array([bool(_BARCODE.search(str(v))) for v in adata.var_names[:1000]])
    many_genes_as_cells = obs_hits.sum() > var_hits.sum() and obs_hits.sum() >= 0.5 * min(len(prior_genes), len(obs))
    if not (many_genes_as_cells or (len(barcodes) and barcodes.mean() >= 0.5)):
        return
    said = []
    if obs_hits.any():
        said.append(f"{int(obs_hits.sum())} observation (cell) names are prior genes, e.g. {_examples(obs, obs_hits)}")
    if barcodes.any():
        said.append(
            f"variable (gene) names look like cell barcodes, e.g. {_examples(adata.var_names[:1000], barcodes)}"
        )
    report.problems.append(
        f"{expr_file}: the matrix looks transposed: {'; '.join(said)}; expected cells as observations (rows) and "
        "genes as variables (columns): save adata.T instead"
    )


def _harmonization_warnings(dataset: GRNDataset, report: ValidationReport, expr_file: str) -> None:
    genes_report = dataset.adata.uns.get("gene_harmonization", {})  # written by load_h5ad (scregnet.genes)
    if genes_report.get("merged_genes", 0):
        report.warnings.append(
            f"{expr_file}: {genes_report['merged_genes']} gene(s) were duplicated after mapping identifiers "
            f"({genes_report['merged_columns']} columns) and are merged by rule '{genes_report['merge_rule']}', "
            f"e.g. {list(genes_report.get('merged_examples', []))[:3]}"
        )
    if genes_report.get("unmapped", 0):
        report.warnings.append(
            f"{expr_file}: {genes_report['unmapped']} gene(s) have no symbol in var['{genes_report['symbols_column']}'] "
            f"and keep their Ensembl ID, e.g. {list(genes_report.get('unmapped_examples', []))[:3]}"
        )


def check_priors(context, dataset: GRNDataset, report: ValidationReport) -> None:
    """Priors suite: at least one edge, both genes measured, no self loops; duplicates are warnings."""
    from great_expectations import expectations as E

    expr_file = dataset.sources.get("expression", "expression")
    prior_file = dataset.sources.get("labels") or dataset.sources.get("priors") or "priors"
    priors = _prior_frame(dataset)
    expectations = [
        E.ExpectTableRowCountToBeBetween(min_value=1),
        E.ExpectColumnValuesToBeInSet(column="tf_measured", value_set=[True]),
        E.ExpectColumnValuesToBeInSet(column="target_measured", value_set=[True]),
        E.ExpectColumnValuesToBeInSet(column="self_loop", value_set=[False]),
    ]
    _, result = _run_suite(context, "priors", priors, expectations)
    for kind, col, _ in _failures(result):
        if kind == "expect_table_row_count_to_be_between":
            report.problems.append(f"{prior_file}: no prior edges; expected at least one TF -> target pair")
            continue
        bad = priors[~priors[col]] if col != "self_loop" else priors[priors[col]]
        first = bad.iloc[0]
        src = first["source"] if first["source"] not in ("", "nan") else prior_file
        if col == "self_loop":
            report.problems.append(
                f"{src}: row {first['row']}: self loop {first['edge']} ({len(bad)} in total); expected TF != target"
            )
        else:
            role = "TF" if col == "tf_measured" else "target"
            missing = sorted(set(bad["tf" if role == "TF" else "target"]))
            report.problems.append(
                f"{src}: row {first['row']}, column '{'tf' if role == 'TF' else 'target'}': {role} gene "
                f"{first[role.lower()]!r} is not in the expression ({expr_file}); {len(missing)} {role} gene(s) "
                f"absent, e.g. {missing[:5]}; expected every prior gene to be measured"
            )
    dups = priors[priors.duplicated(["tf", "target"], keep="first")]
    if len(dups):
        first = dups.iloc[0]
        report.warnings.append(
            f"{first['source']}: {len(dups)} duplicated edge(s), e.g. row {first['row']} {first['edge']}; merged"
        )


def _check_positives(dataset: GRNDataset, report: ValidationReport) -> None:
    """At least one TF with a measured positive (only meaningful once the suites passed)."""
    prior_file = dataset.sources.get("labels") or dataset.sources.get("priors") or "priors"
    graph = dataset.label_graph()
    if len(graph.tf_index) == 0:
        report.problems.append(f"{prior_file}: no TF has a measured positive target; expected at least one")
    else:
        counts = np.bincount(graph.edges[:, 0], minlength=graph.n_genes)[graph.tf_index]
        report.statistics.update(tfs_with_positive=int(len(graph.tf_index)), min_positives_per_tf=int(counts.min()))


def _write_data_docs(context, report_dir: Path, report: ValidationReport) -> None:
    try:
        context.build_data_docs()
        index = next(Path(report_dir).rglob("data_docs/local_site/index.html"), None)
        report.report_path = str(index) if index else None
    except Exception as exc:  # the report is a convenience; the gate above is what matters
        log.warning("could not build the Great Expectations data docs: %s", exc)


def validate_dataset(
    dataset: GRNDataset,
    min_cells: int = 10,
    min_genes: int = 20,
    report_dir: str | Path | None = None,
    *,
    max_empty_cell_frac: float | None = None,
    max_empty_gene_frac: float | None = None,
) -> ValidationReport:
    """Run the expression and priors suites; returns a report (does not raise).

    `max_empty_*_frac`: None = the `DataConfig` default.
    """
    from scregnet.config import DataConfig

    limits = DataConfig.model_fields
    report_dir = Path(report_dir) if report_dir is not None else None
    report = ValidationReport()
    n_cells, n_genes = dataset.adata.shape
    report.statistics = {"cells": n_cells, "genes": n_genes, "prior_edges": len(dataset.priors)}
    context = _gx_context(report_dir)
    check_expression(context, dataset, report, min_cells, min_genes)
    check_expression_content(
        dataset,
        report,
        limits["max_empty_cell_frac"].default if max_empty_cell_frac is None else max_empty_cell_frac,
        limits["max_empty_gene_frac"].default if max_empty_gene_frac is None else max_empty_gene_frac,
    )
    check_priors(context, dataset, report)
    if not report.problems:
        _check_positives(dataset, report)
    if report_dir is not None:
        _write_data_docs(context, report_dir, report)
    for w in report.warnings:
        log.warning(w)
    return report
