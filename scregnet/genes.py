"""Gene identifiers: one canonical name per gene, for expression and priors alike.

Canonical names are upper-cased, stripped symbols (`Pou5f1` and `POU5F1` are one gene: mouse
and human match the same way) or, where no symbol is known, Ensembl IDs without their version
(`ENSG00000141510.17` -> `ENSG00000141510`; `ENSMUSG...` likewise).

`harmonize_genes` runs at load time, before validation (scanpy preprocessing comes after it):
1. names: `var_names` canonicalised; when most `var_names` are Ensembl IDs and `var` has a symbol
   column (`symbols_column`, else the first of `SYMBOL_COLUMNS` present), the symbols are used and
   genes without one keep their Ensembl ID (counted as unmapped);
2. made-unique copies: `X-1`, `X-2` (anndata's `var_names_make_unique`, run by scanpy's 10x
   readers) are the gene `X` when `X` itself occurs earlier in `var`; real hyphenated symbols
   (`NKX2-1`, `HLA-A`) are left alone because their base (`NKX2`) is not a gene of the file;
3. duplicates after 1-2 are merged, by one rule for `X` and every layer: raw counts (non-negative
   integers) are summed; anything else (log-normalised values) keeps the duplicate with the highest
   total over cells and drops the others. Merging is one sparse product `X @ A` with the
   aggregation matrix `A` [genes_in, genes_out], so it costs O(non-zeros) and never densifies.

The original identifier(s) of each gene stay in `var["original_id"]` (merged genes: joined by `;`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scregnet.errors import DataError

log = logging.getLogger(__name__)

# Columns of `var` that hold gene symbols in common pipelines (Cell Ranger/scanpy, CELLxGENE, ...).
SYMBOL_COLUMNS = ("gene_symbols", "feature_name", "gene_name", "gene_names", "gene_symbol", "symbol", "symbols")
ORIGINAL_ID_COLUMN = "original_id"
ENSEMBL_PATTERN = r"^ENS[A-Z]*\d{11}"  # ENSG, ENSMUSG, ENSDARG, ... gene/transcript IDs
_VERSION_PATTERN = r"^(ENS[A-Z]*\d{11})\.\d+"  # the version suffix; `_PAR_Y` tails are kept
_MADE_UNIQUE = re.compile(r"^(.+)-(\d+)$")
_MISSING = {"", "NAN", "NONE", "NA", "<NA>"}
_CHUNK = 1 << 24  # non-zeros per chunk when scanning X (bounds temporaries to ~128 MiB)


def canonical_gene_names(names: Iterable) -> np.ndarray:
    """Strip, upper-case and drop Ensembl version suffixes: object array [n]."""
    s = pd.Series(list(names) if not isinstance(names, pd.Series) else names, dtype=object)
    s = s.astype(str).str.strip().str.upper()
    return s.str.replace(_VERSION_PATTERN, r"\1", regex=True).to_numpy(dtype=object)


def is_ensembl(names: Iterable) -> np.ndarray:
    """Bool array [n]: which (canonical) names are Ensembl IDs."""
    return pd.Series(list(names), dtype=object).astype(str).str.upper().str.match(ENSEMBL_PATTERN).to_numpy(bool)


def canonicalize_priors(priors: pd.DataFrame, aliases: dict[str, str] | None = None) -> pd.DataFrame:
    """tf/target canonicalised like expression genes; `aliases` (e.g. Ensembl ID -> symbol) applied after."""
    out = priors.copy()
    for col in ("tf", "target"):
        codes, uniques = pd.factorize(out[col].astype(str))  # per distinct name: tables hold millions of pairs
        names = pd.Series(canonical_gene_names(uniques))
        if aliases:
            names = names.map(aliases).fillna(names)
        out[col] = names.to_numpy(dtype=object)[codes]
    return out


def gene_aliases(adata) -> dict[str, str]:
    """Ensembl ID (no version) -> canonical gene name, from `var["original_id"]` and `var["gene_ids"]`.

    Lets priors that name Ensembl IDs meet expression named by symbols (Cell Ranger keeps the IDs in
    `var["gene_ids"]`).
    """
    var = adata.var
    aliases: dict[str, str] = {}
    for col in (ORIGINAL_ID_COLUMN, "gene_ids", "gene_id"):
        if col not in var.columns:
            continue
        ids = var[col].astype(str).str.split(";")  # merged genes list all their originals
        flat = ids.explode()
        canon = canonical_gene_names(flat)
        target = np.asarray(var.index.astype(str), dtype=object)[
            np.repeat(np.arange(len(var)), ids.str.len().to_numpy())
        ]
        keep = is_ensembl(canon) & (canon != target)
        aliases.update(zip(canon[keep], target[keep]))
    return aliases


def _find_column(var: pd.DataFrame, name: str) -> str | None:
    lower = {str(c).lower(): c for c in var.columns}
    return lower.get(name.lower())


def _symbol_names(var: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Canonical symbols of `var[column]` and a mask [n] of genes that have one."""
    raw = var[column]
    sym = canonical_gene_names(raw.astype(object).where(raw.notna(), ""))
    has = ~pd.Series(sym).isin(_MISSING).to_numpy() & ~is_ensembl(sym)
    return sym, has


def _resolve_made_unique(names: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """`X-1` -> `X` where `X` occurs at an earlier position; returns new names and examples."""
    first_pos: dict[str, int] = {}
    for i, n in enumerate(names):
        first_pos.setdefault(n, i)
    out = names.copy()
    examples = []
    for i, n in enumerate(names):
        m = _MADE_UNIQUE.match(n)
        if m is None:
            continue
        base_pos = first_pos.get(m.group(1))
        if base_pos is not None and base_pos < i:
            out[i] = m.group(1)
            examples.append(n)
    return out, examples


def _is_counts(x) -> bool:
    """Non-negative integers only (raw counts)? Scans the stored values in chunks."""
    values = x.data if sp.issparse(x) else np.asarray(x).ravel()
    for start in range(0, values.size, _CHUNK):
        chunk = values[start : start + _CHUNK]
        if (chunk < 0).any() or (np.mod(chunk, 1) != 0).any():
            return False
    return True


def _column_totals(x) -> np.ndarray:
    return np.asarray(x.sum(axis=0), dtype=np.float64).ravel()


def _aggregation(codes: np.ndarray, n_out: int, totals: np.ndarray | None, dtype) -> tuple[sp.csr_matrix, np.ndarray]:
    """Aggregation matrix A [genes_in, genes_out] and the representative input column of each output.

    totals None: sum every member (A has one 1 per input row). Otherwise: keep the member with the
    highest total (A has one 1 per output column).
    """
    n_in = len(codes)
    if totals is None:
        rep = np.full(n_out, n_in, dtype=np.int64)
        np.minimum.at(rep, codes, np.arange(n_in))  # first member represents the group
        a = sp.csr_matrix((np.ones(n_in, dtype=dtype), (np.arange(n_in), codes)), shape=(n_in, n_out))
        return a, rep
    order = np.lexsort((-totals, codes))  # by group, highest total first
    starts = np.r_[0, np.flatnonzero(np.diff(codes[order])) + 1]
    rep = order[starts]
    a = sp.csr_matrix((np.ones(n_out, dtype=dtype), (rep, np.arange(n_out))), shape=(n_in, n_out))
    return a, rep


def _merge_matrix(x, a: sp.csr_matrix):
    """x [cells, genes_in] @ a [genes_in, genes_out], sparse in -> CSR out."""
    if sp.issparse(x):
        out = sp.csr_matrix(x @ a.astype(x.dtype))
        out.sort_indices()
        return out
    return np.asarray(x @ a.astype(np.asarray(x).dtype))


def _joined_originals(original: np.ndarray, codes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Per output gene, its input identifiers joined by ';' (a loop over merged groups only)."""
    out = np.empty(len(sizes), dtype=object)
    single = sizes[codes] == 1
    out[codes[single]] = original[single]
    multi = np.flatnonzero(~single)
    multi = multi[np.argsort(codes[multi], kind="stable")]
    bounds = np.flatnonzero(np.diff(codes[multi])) + 1
    for group in np.split(multi, bounds) if len(multi) else []:
        out[codes[group[0]]] = ";".join(original[group])
    return out


def _merge(adata, names: np.ndarray):
    """AnnData with columns of equal `names` merged (rule in the module docstring); (adata, info)."""
    import anndata as ad

    codes, uniques = pd.factorize(pd.Series(names, dtype=object))
    n_out = len(uniques)
    original = np.asarray(adata.var_names.astype(str), dtype=object)
    info = {"merge_rule": None, "merged_genes": 0, "merged_columns": 0, "merged_examples": []}
    if n_out == len(names):
        var = adata.var.copy()
        var[ORIGINAL_ID_COLUMN] = original
        var.index = pd.Index(names.astype(str), name=adata.var.index.name)
        return None, var, info
    counts = _is_counts(adata.X)
    totals = None if counts else _column_totals(adata.X)
    a, rep = _aggregation(codes, n_out, totals, np.float64)
    sizes = np.bincount(codes, minlength=n_out)
    grouped = _joined_originals(original, codes, sizes)
    var = adata.var.iloc[rep].copy()
    var[ORIGINAL_ID_COLUMN] = grouped
    var.index = pd.Index(np.asarray(uniques, dtype=str), name=adata.var.index.name)
    multi = np.flatnonzero(sizes > 1)
    info.update(
        merge_rule="sum (raw counts)" if counts else "keep highest total (not counts)",
        merged_genes=int(len(multi)),
        merged_columns=int(sizes[multi].sum()),
        merged_examples=[f"{uniques[i]} <- {grouped[i]}" for i in multi[:5]],
    )
    new = ad.AnnData(
        X=_merge_matrix(adata.X, a),
        obs=adata.obs,
        var=var,
        uns=adata.uns,
        obsm=adata.obsm,
        obsp=adata.obsp,
        layers={k: _merge_matrix(v, a) for k, v in adata.layers.items()},
        varm={k: (v.iloc[rep] if isinstance(v, pd.DataFrame) else v[rep]) for k, v in adata.varm.items()},
    )
    return new, var, info


def harmonize_genes(adata, *, symbols_column: str | None = None, source=None, log: logging.Logger = log):
    """Canonical gene names and merged duplicates (see module docstring) -> (AnnData, report dict).

    Args:
        adata: AnnData cells x genes (X sparse or dense). When nothing is merged, `adata` itself is
            returned with new `var_names`/`var` (no copy of X); otherwise a new AnnData.
        symbols_column: `var` column holding gene symbols (`--gene-symbols`); must exist.
        source: file the AnnData came from, named in errors.
    """
    var = adata.var
    original = np.asarray(adata.var_names.astype(str), dtype=object)
    ids = canonical_gene_names(original)
    report: dict = {
        "genes_in": int(len(ids)),
        "versions_stripped": int(pd.Series(original).str.upper().str.match(_VERSION_PATTERN).sum()),
        "symbols_column": None,
        "unmapped": 0,
        "unmapped_examples": [],
    }
    column = _symbols_column(var, ids, symbols_column, source, log)
    names = ids
    if column is not None:
        sym, has = _symbol_names(var, column)
        names = np.where(has, sym, ids)
        missing = ~has
        report.update(
            symbols_column=str(column),
            unmapped=int(missing.sum()),
            unmapped_examples=[str(x) for x in original[missing][:5]],
        )
    report["id_type"] = "ensembl" if len(names) and is_ensembl(names).mean() > 0.5 else "symbol"
    names, suffixed = _resolve_made_unique(np.asarray(names, dtype=object))
    report.update(made_unique=len(suffixed), made_unique_examples=suffixed[:5])

    merged, new_var, info = _merge(adata, names)
    report.update(info)
    if merged is None:
        adata.var = new_var
        merged = adata
    if adata.raw is not None:
        merged.raw = _harmonize_raw(adata, dict(zip(original, names)))
    report["genes_out"] = int(merged.n_vars)
    _log_report(report, source or "expression", log)
    return merged, report


def _symbols_column(var: pd.DataFrame, ids: np.ndarray, symbols_column: str | None, source, log: logging.Logger):
    """The `var` column to take symbols from: the one asked for (an error if absent), or, when most
    genes are Ensembl IDs, the first of `SYMBOL_COLUMNS` present (a warning if none); else None."""
    if symbols_column is not None:
        column = _find_column(var, symbols_column)
        if column is None:
            raise DataError(
                f"no var column {symbols_column!r} for gene symbols (--gene-symbols); "
                f"var has columns {[str(c) for c in var.columns]}",
                source,
            )
        return column
    if not len(ids) or is_ensembl(ids).mean() <= 0.5:
        return None
    column = next((c for c in (_find_column(var, n) for n in SYMBOL_COLUMNS) if c is not None), None)
    if column is None:
        log.warning(
            "%s: var_names are Ensembl IDs and var has no symbol column (looked for %s); genes keep their "
            "Ensembl IDs, so priors must name Ensembl IDs too (or pass --gene-symbols COLUMN)",
            source or "expression",
            ", ".join(SYMBOL_COLUMNS),
        )
    return column


def _log_report(report: dict, source: str, log: logging.Logger) -> None:
    """Say what harmonising did: genes left without a symbol (warning), duplicates merged (info)."""
    if report["unmapped"]:
        log.warning(
            "%s: %d gene(s) have no symbol in var[%r] and keep their Ensembl ID, e.g. %s",
            source,
            report["unmapped"],
            report["symbols_column"],
            report["unmapped_examples"],
        )
    if report["merged_genes"]:
        log.info(
            "%s: %d duplicated gene(s) after mapping (%d columns) merged by rule '%s', e.g. %s",
            source,
            report["merged_genes"],
            report["merged_columns"],
            report["merge_rule"],
            report["merged_examples"],
        )


def _harmonize_raw(adata, mapping: dict[str, str]):
    """`adata.raw` renamed with X's mapping (other genes canonicalised) and merged by the same rule."""
    raw = adata.raw.to_adata()
    raw_names = np.asarray(raw.var_names.astype(str), dtype=object)
    canon = canonical_gene_names(raw_names)
    names = np.array([mapping.get(n, c) for n, c in zip(raw_names, canon)], dtype=object)
    names, _ = _resolve_made_unique(names)
    merged, var, _ = _merge(raw, names)
    if merged is None:
        raw.var = var
        merged = raw
    return merged
