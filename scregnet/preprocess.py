"""scanpy preprocessing of a lab's AnnData, sparse all the way.

A lab brings raw UMI counts (cells x ~30,000 genes, ~6 % non-zero); BEELINE directories are
already gene-selected and log-normalised. `preprocess` turns the first into the second:

1. input kind: raw counts (the stored values, sampled, are integers) or log-normalised; raw
   counts found in `layers["counts"]` or `.raw` become the counts layer;
2. QC: `sc.pp.filter_cells(min_genes)`, optional maximum mitochondrial fraction
   (`sc.pp.calculate_qc_metrics`, genes `MT-`/`mt-`), `sc.pp.filter_genes(min_cells)`;
3. counts: `normalize_total(target_sum)` + `log1p`, the counts kept in `layers["counts"]`;
4. genes as BEELINE selects them: every expressed TF of the priors plus the N most variable
   other genes (`sc.pp.highly_variable_genes`). Prior targets are not force-kept: BEELINE's
   selection looks at the TF list and the variances only, never at the ground truth, and
   keeping genes because they are labelled targets would tie gene selection to the labels;
5. node features that do not grow with the cells: above `auto_max_cells` cells, each gene's
   mean expression over k-means metacells of the cells' PCA (`varm["cell_features"]`,
   genes x k). Their Pearson r is still a co-expression, which the model's pair input needs.

What was kept and dropped is logged and stored in `adata.uns["preprocess"]`. Nothing builds a
dense cells x genes matrix: scanpy's functions work on the CSR matrix, PCA is arpack on it.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scregnet.data import CELL_FEATURES_KEY
from scregnet.errors import DataError

log = logging.getLogger(__name__)

COUNTS_LAYER = "counts"
UNS_KEY = "preprocess"
MT_PREFIXES = ("MT-", "mt-")
N_EXAMPLES = 10  # gene names listed per kept/dropped group in logs and metadata


@dataclass
class InputKind:
    """What X holds and where raw counts come from.

    kind: "counts" (normalise + log1p) or "log" (used as given); counts_from: "X",
    "layers['counts']", "raw" or "" (no counts available); reason: one sentence for the log.
    """

    kind: str
    counts_from: str
    reason: str


def sample_stored_values(x, n: int, seed: int = 0) -> np.ndarray:
    """Up to `n` stored values of a matrix: a sparse matrix's non-zeros, a dense one's non-zero
    entries among `n` sampled positions. Never densifies."""
    rng = np.random.default_rng(seed)
    if sp.issparse(x):
        data = x.data
        return np.asarray(data[rng.integers(0, data.size, n)] if data.size > n else data)
    x = np.asarray(x)
    if x.size == 0:
        return np.zeros(0, dtype=x.dtype)
    if x.size <= n:
        values = x.ravel()
    else:
        values = x[rng.integers(0, x.shape[0], n), rng.integers(0, x.shape[1], n)]
    return values[values != 0]


def looks_like_counts(values: np.ndarray) -> bool:
    """True when every value is a finite non-negative integer (integer dtype, or floats that are)."""
    if values.dtype.kind in "iu":
        return bool((values >= 0).all()) if values.size else True
    values = values.astype(np.float64, copy=False)
    return bool(np.isfinite(values).all() and (values >= 0).all() and (values == np.round(values)).all())


def _describe(values: np.ndarray) -> str:
    if not values.size:
        return "no stored non-zero values"
    frac = values[values != np.round(values)] if values.dtype.kind == "f" else values[:0]
    example = f", e.g. {float(frac[0]):.4g}" if frac.size else ""
    return f"{values.size:,} sampled stored values, max {float(values.max()):.4g}{example}"


def _raw_columns(adata) -> np.ndarray | None:
    """Column of `adata.raw` for each gene of X (matched by name, case-insensitive; by position
    when the names differ but the gene count is the same), or None when `.raw` cannot supply them."""
    raw = adata.raw
    if raw is None:
        return None
    names = pd.Index([str(g).upper() for g in raw.var_names])
    if names.is_unique:
        pos = names.get_indexer(pd.Index([str(g).upper() for g in adata.var_names]))
        if (pos >= 0).all():
            return pos
    if raw.n_vars == adata.n_vars:  # renamed genes (e.g. IDs -> symbols), same columns
        return np.arange(raw.n_vars)
    log.warning("preprocess: .raw has %d genes that do not cover the %d of X; not used", raw.n_vars, adata.n_vars)
    return None


def _raw_counts(adata):
    """`adata.raw.X` with its genes aligned to `adata.var_names` (a copy of the non-zeros)."""
    pos = _raw_columns(adata)
    x = adata.raw.X
    same = len(pos) == x.shape[1] and bool((pos == np.arange(len(pos))).all())
    return x if same else x[:, pos]


def detect_input(adata, override: str = "auto", n_sample: int = 100_000, seed: int = 0) -> InputKind:
    """Raw counts or log-normalised? Looks at up to `n_sample` stored values of X (and of
    `layers["counts"]` / `.raw` for a counts layer); `override` ("counts" / "log") wins."""
    x_values = sample_stored_values(adata.X, n_sample, seed)
    x_counts = looks_like_counts(x_values)
    others = []  # (name, holds counts) of the other places raw counts may sit
    if COUNTS_LAYER in adata.layers:
        others.append(
            ("layers['counts']", looks_like_counts(sample_stored_values(adata.layers[COUNTS_LAYER], n_sample)))
        )
    if _raw_columns(adata) is not None:  # the values, not their columns, tell counts: sample raw.X as is
        others.append(("raw", looks_like_counts(sample_stored_values(adata.raw.X, n_sample))))
    stored_counts = next((name for name, ok in others if ok), "")
    described = _describe(x_values)
    if override == "counts":
        if x_counts:
            return InputKind("counts", "X", f"input: counts (set); X holds integer counts ({described})")
        if stored_counts:
            return InputKind("counts", stored_counts, f"input: counts (set); raw counts taken from {stored_counts}")
        log.warning("input: counts was set but X is not integer-valued (%s); normalising X as counts", described)
        return InputKind("counts", "X", f"input: counts (set) although X is not integer-valued ({described})")
    if override == "log":
        if x_counts:
            log.warning("input: log was set but X holds integers only (%s): raw counts? used as given", described)
        return InputKind("log", stored_counts, f"input: log (set); X used as given ({described})")
    if x_counts:
        return InputKind("counts", "X", f"raw counts: X holds non-negative integers only ({described})")
    reason = f"log-normalised: X has non-integer values ({described}), so it is not counts"
    if x_values.size and float(x_values.max()) > 50:
        log.warning(
            "X has non-integer values up to %.4g: normalised but perhaps not log-transformed; used as given",
            float(x_values.max()),
        )
    if stored_counts:
        reason += f"; raw counts in {stored_counts}"
    return InputKind("log", stored_counts, reason)


def should_preprocess(mode: str, source: str) -> bool:
    """mode auto: .h5ad inputs are preprocessed, BEELINE directories (already selected and
    normalised) pass through; always / never override."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    return source != "beeline"


@contextmanager
def _stage(info: dict, name: str, detail: str = "") -> Iterator[None]:
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    info.setdefault("seconds", {})[name] = round(seconds, 3)
    log.info("preprocess: %s%s in %.1fs", name, f" ({detail})" if detail else "", seconds)


def _examples(names) -> list[str]:
    return [str(g) for g in list(names)[:N_EXAMPLES]]


def _listed(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) or "none"


def _csr32(x):
    """CSR float32 (sparse input stays sparse; a dense input becomes CSR)."""
    x = x.tocsr() if sp.issparse(x) else sp.csr_matrix(np.asarray(x))
    return x.astype(np.float32) if x.dtype != np.float32 else x


def _source_path(adata) -> str | None:
    sources = adata.uns.get("sources", {})
    return str(sources.get("expression")) if isinstance(sources, dict) and sources.get("expression") else None


def preprocess(adata, priors: pd.DataFrame, cfg, source: str = "h5ad"):
    """The configured preprocessing (`PreprocessConfig`) of cells x genes `adata` -> AnnData.

    `adata` itself is changed (filtered, normalised); pass a copy to keep it. `source` is
    "beeline" or "h5ad" (for mode auto). The returned AnnData carries `uns["preprocess"]`.
    """

    started = time.perf_counter()
    applied = should_preprocess(cfg.mode, source)
    kind = detect_input(adata, cfg.input, cfg.sample_values, cfg.seed)
    info: dict[str, Any] = {
        "mode": cfg.mode,
        "source": source,
        "applied": applied,
        "input": kind.kind,
        "input_reason": kind.reason,
        "counts_from": kind.counts_from,
        "cells_in": int(adata.n_obs),
        "genes_in": int(adata.n_vars),
    }
    log.info(
        "preprocess: %s input, %d cells x %d genes: %s",
        source,
        adata.n_obs,
        adata.n_vars,
        "preprocessing" if applied else f"passed through unchanged (mode {cfg.mode})",
    )
    log.info("preprocess: input kind %s", kind.reason)
    if applied:
        adata = _filter_normalise_select(adata, priors, cfg, kind, info)
    add_cell_features(adata, cfg, info)
    info.update(cells_out=int(adata.n_obs), genes_out=int(adata.n_vars))
    info.setdefault("seconds", {})["total"] = round(time.perf_counter() - started, 3)
    adata.uns[UNS_KEY] = info
    log.info(
        "preprocess: done in %.1fs: %d -> %d cells, %d -> %d genes, node features: %s (%d)",
        info["seconds"]["total"],
        info["cells_in"],
        info["cells_out"],
        info["genes_in"],
        info["genes_out"],
        info["cell_features"],
        info["n_cell_features"],
    )
    return adata


def _filter_normalise_select(adata, priors: pd.DataFrame, cfg, kind: InputKind, info: dict):
    """QC, normalisation and gene selection, subsetting `adata` in place (scanpy's own
    `_inplace_subset_obs/var`): the caller's object shrinks and the full arrays are freed, so
    at most ~3 copies of the (filtered) non-zeros exist at once: X, the counts, scanpy's HVG copy."""
    import scanpy as sc

    raw_counts = _keep_x_and_counts(adata, kind, info)
    with _stage(info, "QC filters"):
        raw_counts = _qc_filter(adata, raw_counts, cfg, kind, info)

    with _stage(info, "counts layer", kind.counts_from or "none"):
        if kind.counts_from == "X":
            adata.layers[COUNTS_LAYER] = adata.X.copy()
        elif raw_counts is not None:
            adata.layers[COUNTS_LAYER] = raw_counts
        del raw_counts

    if kind.kind == "counts":
        with _stage(info, "normalise", f"normalize_total({cfg.target_sum:g}) + log1p, {adata.X.nnz:,} non-zeros"):
            if kind.counts_from != "X":
                adata.X = adata.layers[COUNTS_LAYER].copy()
            sc.pp.normalize_total(adata, target_sum=cfg.target_sum)
            sc.pp.log1p(adata)
        info["normalised"] = f"normalize_total(target_sum={cfg.target_sum:g}) + log1p"
    else:
        info["normalised"] = "no (X is log-normalised)"

    with _stage(info, "gene selection"):
        keep = select_genes(adata, priors, cfg, info)
        if not keep.all():
            adata._inplace_subset_var(keep)
    return adata


def _keep_x_and_counts(adata, kind: InputKind, info: dict):
    """X (and a counts layer) as float32 CSR; every other layer and `.raw` dropped, since they would
    carry every gene along. Returns the raw counts when they come from `.raw`, else None."""
    adata.X = _csr32(adata.X)
    raw_counts = _csr32(_raw_counts(adata)) if kind.counts_from == "raw" else None
    keep_layer = kind.counts_from == "layers['counts']"
    dropped = [k for k in adata.layers if not (keep_layer and k == COUNTS_LAYER)]
    for k in dropped:
        del adata.layers[k]
    if keep_layer:
        adata.layers[COUNTS_LAYER] = _csr32(adata.layers[COUNTS_LAYER])
    info["dropped"] = {"layers": dropped, "raw": adata.raw is not None}
    adata.raw = None
    return raw_counts


def _high_mt_cells(adata, raw_counts, cfg, kind: InputKind, info: dict) -> np.ndarray | None:
    """Cells above `cfg.max_pct_mt` % mitochondrial counts (None: no filter asked for or possible);
    `obs['pct_counts_mt']` is set when computed."""
    import scanpy as sc

    is_mt = adata.var_names.str.startswith(MT_PREFIXES)
    info["mt_genes"] = int(is_mt.sum())
    if cfg.max_pct_mt is None:
        return None
    if not is_mt.any():
        log.warning("preprocess: max_pct_mt is set but no gene starts with MT-/mt-; no mitochondrial filter")
        return None
    if not kind.counts_from:
        log.warning("preprocess: no raw counts; the mitochondrial fraction is computed on X as given")
    qc = _with_counts(adata, raw_counts) if raw_counts is not None else adata
    qc.var["mt"] = is_mt
    layer = COUNTS_LAYER if COUNTS_LAYER in qc.layers else None
    sc.pp.calculate_qc_metrics(qc, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True, layer=layer)
    pct = qc.obs["pct_counts_mt"].to_numpy()
    adata.obs["pct_counts_mt"] = pct
    return pct > cfg.max_pct_mt


def _qc_filter(adata, raw_counts, cfg, kind: InputKind, info: dict):
    """`sc.pp.filter_cells` (min genes, optional MT fraction) then `filter_genes` (min cells), in
    place on `adata` and on `raw_counts` alike; what was dropped goes to `info['qc']`. Returns the
    subset raw counts (or None)."""
    import scanpy as sc

    path = _source_path(adata)
    n_cells, n_genes = adata.n_obs, adata.n_vars
    # X's non-zeros are those of the counts (log1p keeps zeros), so genes per cell come from X.
    keep_cells, n_genes_per_cell = sc.pp.filter_cells(adata, min_genes=cfg.min_genes_per_cell, inplace=False)
    adata.obs["n_genes"] = n_genes_per_cell
    high_mt = _high_mt_cells(adata, raw_counts, cfg, kind, info)
    dropped_mt = 0
    if high_mt is not None:
        dropped_mt = int((keep_cells & high_mt).sum())
        keep_cells &= ~high_mt
    if not keep_cells.any():
        raise DataError(
            f"no cell passes QC: none has at least {cfg.min_genes_per_cell} expressed genes"
            f"{f' and at most {cfg.max_pct_mt}% mitochondrial counts' if cfg.max_pct_mt is not None else ''} "
            f"(median {int(np.median(n_genes_per_cell))} genes per cell); lower preprocess.min_genes_per_cell",
            path,
        )
    if not keep_cells.all():
        adata._inplace_subset_obs(keep_cells)
        raw_counts = raw_counts[keep_cells] if raw_counts is not None else None
    keep_genes, _ = sc.pp.filter_genes(adata, min_cells=cfg.min_cells_per_gene, inplace=False)
    if not keep_genes.any():
        raise DataError(
            f"no gene is expressed in at least {cfg.min_cells_per_gene} of the {adata.n_obs} cells left; "
            "lower preprocess.min_cells_per_gene",
            path,
        )
    unexpressed = adata.var_names[~keep_genes]
    if not keep_genes.all():
        adata._inplace_subset_var(keep_genes)
        raw_counts = raw_counts[:, keep_genes] if raw_counts is not None else None
    info["qc"] = {
        "cells_dropped_min_genes": int(n_cells - keep_cells.sum() - dropped_mt),
        "cells_dropped_mt": dropped_mt,
        "genes_dropped_min_cells": int(len(unexpressed)),
        "genes_dropped_examples": _examples(unexpressed),
    }
    log.info(
        "preprocess: QC kept %d of %d cells (%d with < %d genes, %s), %d of %d genes (%d in < %d cells)",
        adata.n_obs,
        n_cells,
        info["qc"]["cells_dropped_min_genes"],
        cfg.min_genes_per_cell,
        f"{dropped_mt} above {cfg.max_pct_mt}% mitochondrial" if cfg.max_pct_mt is not None else "no MT filter",
        adata.n_vars,
        n_genes,
        len(unexpressed),
        cfg.min_cells_per_gene,
    )
    return raw_counts


def _with_counts(adata, counts):
    """An AnnData with `adata`'s names and `counts` in layers["counts"] (for QC metrics)."""
    import anndata as ad

    out = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    out.layers[COUNTS_LAYER] = counts
    return out


def select_genes(adata, priors: pd.DataFrame, cfg, info: dict) -> np.ndarray:
    """bool [genes]: every expressed prior TF + the `n_top_genes` most variable other genes
    (BEELINE's TFs+N); all genes with n_top_genes="all". Fills info["genes"]."""

    genes = pd.Index([str(g) for g in adata.var_names])
    prior_tfs = pd.Index(sorted(set(priors["tf"].astype(str))))
    is_tf = genes.isin(prior_tfs)
    tfs_unexpressed = [t for t in prior_tfs if t not in genes]
    if cfg.n_top_genes == "all":
        keep = np.ones(len(genes), dtype=bool)
        hvg = np.zeros(len(genes), dtype=bool)
        flavor = "none (all genes kept)"
    else:
        flavor = cfg.hvg_flavor
        score = _variability(adata, flavor)
        score = np.where(np.isfinite(score), score, -np.inf)
        candidates = np.flatnonzero(~is_tf)
        order = candidates[np.argsort(-score[candidates], kind="stable")]
        hvg = np.zeros(len(genes), dtype=bool)
        hvg[order[: cfg.n_top_genes]] = True
        keep = is_tf | hvg
    targets = set(priors["target"].astype(str)) - set(prior_tfs)
    targets_dropped = sorted(t for t in targets if t in genes and not keep[genes.get_loc(t)])
    dropped = genes[~keep]
    info["genes"] = {
        "hvg_flavor": flavor,
        "n_top_genes": str(cfg.n_top_genes),
        "prior_tfs": int(len(prior_tfs)),
        "tfs_kept": int(is_tf.sum()),
        "tfs_kept_examples": _examples(genes[is_tf]),
        "tfs_not_expressed": int(len(tfs_unexpressed)),
        "tfs_not_expressed_examples": _examples(tfs_unexpressed),
        "hvgs_kept": int(hvg.sum()),
        "hvgs_kept_examples": _examples(genes[hvg]),
        "genes_dropped": int(len(dropped)),
        "genes_dropped_examples": _examples(dropped),
        "prior_targets_dropped": int(len(targets_dropped)),
        "prior_targets_dropped_examples": _examples(targets_dropped),
    }
    g = info["genes"]
    log.info(
        "preprocess: kept %d genes = %d expressed prior TFs (e.g. %s) + %d highly variable genes (%s, e.g. %s); "
        "dropped %d (e.g. %s); %d of %d prior TFs not expressed (e.g. %s); %d prior targets not among the "
        "selected genes (not force-kept, as in BEELINE), e.g. %s",
        int(keep.sum()),
        g["tfs_kept"],
        _listed(g["tfs_kept_examples"]),
        g["hvgs_kept"],
        flavor,
        _listed(g["hvgs_kept_examples"]),
        g["genes_dropped"],
        _listed(g["genes_dropped_examples"]),
        g["tfs_not_expressed"],
        g["prior_tfs"],
        _listed(g["tfs_not_expressed_examples"]),
        g["prior_targets_dropped"],
        _listed(g["prior_targets_dropped_examples"]),
    )
    return keep


def _variability(adata, flavor: str) -> np.ndarray:
    """float64 [genes]: scanpy's normalised dispersion (seurat, cell_ranger) or, for seurat_v3, its
    normalised variance of the raw counts; higher = more variable."""
    import scanpy as sc

    if flavor != "seurat_v3":
        table = sc.pp.highly_variable_genes(adata, flavor=flavor, inplace=False)
        return table["dispersions_norm"].to_numpy(np.float64)
    if importlib.util.find_spec("skmisc") is None:
        raise DataError(
            "preprocess.hvg_flavor seurat_v3 needs the scikit-misc package, which is not installed; "
            "use hvg_flavor: seurat (dispersions of the log-normalised data)"
        )
    if COUNTS_LAYER not in adata.layers:
        raise DataError("preprocess.hvg_flavor seurat_v3 ranks raw counts, but no counts were found")
    table = sc.pp.highly_variable_genes(
        adata, flavor="seurat_v3", n_top_genes=adata.n_vars, layer=COUNTS_LAYER, inplace=False
    )
    return table["variances_norm"].to_numpy(np.float64)


def resolve_cell_features(cfg, n_cells: int) -> str:
    """ "cells" or "metacells": auto keeps the cells up to `auto_max_cells`."""
    if cfg.cell_features == "auto":
        return "cells" if n_cells <= cfg.auto_max_cells else "metacells"
    return cfg.cell_features


def metacell_profiles(x, n_metacells: int, n_pcs: int = 50, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean expression per metacell: k-means clusters of the cells' PCA (arpack on the sparse X).

    Args:
        x: cells x genes expression [n, G], CSR or dense (log-normalised).
    Returns:
        profiles float32 [G, k] (k = min(n_metacells, n)); labels int64 [n] (metacell of each cell).
    """
    import scanpy as sc
    from sklearn.cluster import KMeans

    n, g = x.shape
    k = min(n_metacells, n)
    n_comps = min(n_pcs, n - 1, g - 1)
    if n_comps >= 1:
        pcs = sc.pp.pca(x, n_comps=n_comps, svd_solver="arpack", random_state=seed)
    else:  # a single cell or gene: nothing to reduce
        pcs = np.asarray(x.toarray() if sp.issparse(x) else x, dtype=np.float32)
    labels = KMeans(n_clusters=k, n_init=1, max_iter=100, random_state=seed).fit_predict(pcs).astype(np.int64)
    sizes = np.bincount(labels, minlength=k).astype(np.float64)
    mean = sp.csr_matrix((1.0 / sizes[labels], (labels, np.arange(n))), shape=(k, n))  # k x cells
    profiles = mean @ x
    profiles = profiles.toarray() if sp.issparse(profiles) else np.asarray(profiles)
    return np.ascontiguousarray(profiles.T, dtype=np.float32), labels


def add_cell_features(adata, cfg, info: dict) -> None:
    """Decide the node features (cells or metacells) and store metacell profiles in
    `adata.varm["cell_features"]` (genes x k) and the cells' metacell in `obs["metacell"]`."""
    choice = resolve_cell_features(cfg, adata.n_obs)
    if CELL_FEATURES_KEY in adata.varm:  # a stale reduction (e.g. from an earlier run) never wins
        del adata.varm[CELL_FEATURES_KEY]
    if choice == "cells":
        info.update(cell_features="cells", n_cell_features=int(adata.n_obs))
        if adata.n_obs > cfg.auto_max_cells:
            log.warning(
                "preprocess: node features are %d genes x %d cells (%.1f GiB float32) because cell_features=cells",
                adata.n_vars,
                adata.n_obs,
                adata.n_vars * adata.n_obs * 4 / 2**30,
            )
        return
    with _stage(info, "metacells", f"PCA ({cfg.n_pcs}) + k-means ({cfg.n_metacells}) of {adata.n_obs} cells"):
        profiles, labels = metacell_profiles(adata.X, cfg.n_metacells, cfg.n_pcs, cfg.seed)
    adata.varm[CELL_FEATURES_KEY] = profiles
    adata.obs["metacell"] = labels
    sizes = np.bincount(labels)
    info.update(
        cell_features="metacells",
        n_cell_features=int(profiles.shape[1]),
        metacell_size={"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())},
    )


def run_params(info: dict) -> dict[str, str]:
    """The resolved choices of `uns["preprocess"]` as flat run params (`preprocessed.*`)."""
    genes = info.get("genes", {})
    out = {
        "applied": info.get("applied"),
        "input": info.get("input"),
        "counts_from": info.get("counts_from") or "none",
        "cells": f"{info.get('cells_in')} -> {info.get('cells_out')}",
        "genes": f"{info.get('genes_in')} -> {info.get('genes_out')}",
        "tfs_kept": genes.get("tfs_kept", ""),
        "hvgs_kept": genes.get("hvgs_kept", ""),
        "hvg_flavor": genes.get("hvg_flavor", ""),
        "cell_features": info.get("cell_features"),
        "n_cell_features": info.get("n_cell_features"),
    }
    return {f"preprocessed.{k}": str(v) for k, v in out.items()}
