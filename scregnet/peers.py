"""Peer scores: what a lab would run instead of the model, scored on exactly the model's pairs.

Every peer is unsupervised (no labels, no split): a score for each (regulator, gene) pair,
computed once per dataset as a matrix [regulators x genes] (float32) and then looked up for any
pairs array. Peers:

- `grnboost2`: SCENIC's GRNBoost2 recipe (arboreto 0.1.6): for each target gene, stochastic
  gradient boosting (learning rate 0.01, 10 % of regulators per split, 90 % of cells per tree)
  on the regulators' expression, stopped once the mean out-of-bag improvement over the last 25
  trees turns negative; score = feature importance x number of trees (arboreto's "denormalised"
  importance). Re-implemented on scikit-learn's GradientBoostingRegressor with arboreto's
  settings: arboreto itself needs dask.dataframe and fails with every current dask release
  (see README); with the same seed the importances are arboreto's.
- `genie3`: GENIE3 (Huynh-Thu et al. 2010): a random forest per target gene, importance
  normalised per target (off by default: slower than GRNBoost2 for a similar ranking).
- `pearson`, `spearman`: |Pearson r| and |Spearman rho| between the regulator's and the gene's
  expression across cells. Computed from the sparse matrix (cost grows with its non-zeros).
- `embedding_cosine`: cosine between the regulator's and the gene's vectors of a gene embedding
  (a zero-shot foundation-model score); only when the run has an embedding.

Missing scores (a gene without an embedding vector, a constant gene's correlation, the
regulator itself as its own target) are NaN in the matrix and rank BELOW every scored pair
when pairs are scored (`PeerMatrix.score`): no evidence = lowest score, ties among themselves.

Regulators default to the TFs the model scores (TFs with at least one prior positive). The
expression peers are cached under `$SCREGNET_HOME/peers/`, keyed by the expression content,
the regulators and the peer's settings, so retrains do not recompute them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from scregnet.config import PeerConfig
from scregnet.data import expression_content_hash
from scregnet.embeddings.base import GeneEmbedding

log = logging.getLogger(__name__)

EXPRESSION_PEERS = ("grnboost2", "genie3", "pearson", "spearman")
TREE_PEERS = ("grnboost2", "genie3")
# Bump when a peer's algorithm changes: cached matrices of older versions are then ignored.
ALGORITHM_VERSION = 1


@dataclass
class PeerMatrix:
    """One peer's score of every (regulator, gene) pair.

    Attributes:
        name: the peer.
        regulators: row symbols, length T.
        genes: column symbols, length G (the dataset's gene order).
        scores: float32 [T, G]; NaN = no score.
        meta: settings, seconds (compute time), cached (True if read from the cache), key.
    """

    name: str
    regulators: list[str]
    genes: list[str]
    scores: np.ndarray
    meta: dict = field(default_factory=dict)

    def lookup(self, pairs: np.ndarray, genes: list[str] | None = None) -> np.ndarray:
        """Raw scores (NaN where missing) of int pairs [n, >=2] (tf, target).

        Indices refer to `genes` (default: this matrix's own gene order); a TF that is not a
        regulator, or a gene outside the matrix, gets NaN.
        """
        import pandas as pd

        pairs = np.asarray(pairs)
        if len(pairs) == 0:
            return np.zeros(0)
        row_of = pd.Index(self.regulators).get_indexer(self.genes if genes is None else genes)
        col_of = np.arange(len(self.genes)) if genes is None else pd.Index(self.genes).get_indexer(genes)
        rows, cols = row_of[pairs[:, 0]], col_of[pairs[:, 1]]
        ok = (rows >= 0) & (cols >= 0)
        out = np.full(len(pairs), np.nan)
        out[ok] = self.scores[rows[ok], cols[ok]]
        return out

    def score(self, pairs: np.ndarray, genes: list[str] | None = None) -> np.ndarray:
        """Scores of int pairs [n, >=2] for ranking: float64 [n], missing scores below every scored pair."""
        return fill_missing(self.lookup(pairs, genes))


def fill_missing(scores: np.ndarray) -> np.ndarray:
    """NaN -> one below the lowest finite score (all-NaN -> zeros): missing ranks last, tied."""
    s = np.asarray(scores, dtype=np.float64).copy()
    bad = ~np.isfinite(s)
    if bad.any():
        s[bad] = (s[~bad].min() - 1.0) if (~bad).any() else 0.0
    return s


# ----------------------------------------------------------------------------- hashing / cache


def _settings(name: str, cfg: PeerConfig) -> dict:
    """The settings a peer's result depends on (n_jobs and cache do not change results)."""
    if name == "grnboost2":
        import sklearn

        keys = ("gb_learning_rate", "gb_max_estimators", "gb_max_features", "gb_subsample", "gb_early_stop_window")
        return {
            **{k: getattr(cfg, k) for k in keys},
            "max_cells": cfg.max_cells,
            "seed": cfg.seed,
            "sklearn": sklearn.__version__,
        }
    if name == "genie3":
        import sklearn

        keys = ("rf_n_estimators", "rf_max_features")
        return {
            **{k: getattr(cfg, k) for k in keys},
            "max_cells": cfg.max_cells,
            "seed": cfg.seed,
            "sklearn": sklearn.__version__,
        }
    return {}


def cache_key(name: str, expression_hash: str, regulators: list[str], cfg: PeerConfig) -> str:
    """Cache file stem of a peer matrix: sha256 of the peer, expression, regulators and settings."""
    payload = {
        "algorithm_version": ALGORITHM_VERSION,
        "peer": name,
        "expression": expression_hash,
        "regulators": hashlib.sha256("\n".join(regulators).encode()).hexdigest(),
        "settings": _settings(name, cfg),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_dir() -> Path:
    """Where peer matrices are cached ($SCREGNET_HOME/peers)."""
    from scregnet.home import home

    return home() / "peers"


def _cache_path(name: str, key: str) -> Path:
    return cache_dir() / f"{name}-{key[:32]}.npz"


def _save(matrix: PeerMatrix, path: Path) -> None:
    """Atomic write (temp file in the same directory, then rename); no pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                scores=np.ascontiguousarray(matrix.scores, dtype=np.float32),
                regulators=np.array(matrix.regulators, dtype=str),
                genes=np.array(matrix.genes, dtype=str),
                meta=np.array(json.dumps(matrix.meta, sort_keys=True, default=str)),
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a cache file is as readable as the rest of $SCREGNET_HOME
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: Path, name: str, regulators: list[str], genes: list[str]) -> PeerMatrix | None:
    """A cached matrix, or None when absent, unreadable or not for these genes/regulators."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            scores, regs, gns, meta = z["scores"], list(z["regulators"]), list(z["genes"]), json.loads(str(z["meta"]))
    except Exception as exc:  # truncated or foreign file: recompute rather than fail the run
        log.warning("peer cache %s unreadable (%s); recomputing", path, exc)
        return None
    if regs != list(regulators) or gns != list(genes) or scores.shape != (len(regulators), len(genes)):
        log.warning("peer cache %s does not match this dataset; recomputing", path)
        return None
    meta["cached"] = True
    return PeerMatrix(name, list(regulators), list(genes), scores, meta)


# ----------------------------------------------------------------------------- correlation peers


def _as_csc(x) -> sp.csc_matrix:
    """Float64 CSC copy without explicit zeros (the sparse form of a dense matrix too)."""
    a = sp.csc_matrix(x, dtype=np.float64, copy=True)
    a.sum_duplicates()
    a.eliminate_zeros()
    return a


def _rank_columns(a: sp.csc_matrix) -> sp.csc_matrix:
    """Average ranks within each column, shifted so that a zero's rank becomes 0 (stays sparse).

    For a column with n0 zeros and n_neg negative values, a zero's rank is n_neg + (n0 + 1) / 2;
    a non-zero value's rank is its rank among the non-zeros, plus n0 when it is positive.
    Spearman's rho is Pearson's r of the ranks, and r does not change under a shift per column.
    """
    from scipy.stats import rankdata

    n = a.shape[0]
    out = a.copy()
    for j in range(a.shape[1]):
        lo, hi = a.indptr[j], a.indptr[j + 1]
        v = a.data[lo:hi]
        if len(v) == 0:
            continue
        n0 = n - len(v)
        n_neg = int((v < 0).sum())
        full = rankdata(v) + np.where(v > 0, n0, 0)
        # Shifted ranks are >= (n0 + 1) / 2 for positives and <= -(n0 + 1) / 2 for negatives: never 0.
        out.data[lo:hi] = full - (n_neg + (n0 + 1) / 2.0)
    return out


def _abs_correlation(a: sp.csc_matrix, rows: np.ndarray, block: int = 256) -> np.ndarray:
    """|Pearson r| of columns `rows` (int [T]) against every column of a ([cells, G]): float32 [T, G].

    NaN where either column is constant, and on each regulator's own column.
    """
    n = a.shape[0]
    mean = np.asarray(a.sum(axis=0)).ravel() / n
    # Variance from the non-zeros plus the zeros' share: no E[x^2] - E[x]^2 cancellation.
    nnz = np.diff(a.indptr)
    col = np.repeat(np.arange(a.shape[1]), nnz)
    ss = np.bincount(col, weights=(a.data - mean[col]) ** 2, minlength=a.shape[1]) + (n - nnz) * mean**2
    std = np.sqrt(ss / n)
    out = np.empty((len(rows), a.shape[1]), dtype=np.float32)
    for lo in range(0, len(rows), block):  # blocks of regulators bound the float64 temporaries
        r_idx = rows[lo : lo + block]
        cross = (a[:, r_idx].T @ a).toarray() / n  # [b, G], cost ~ non-zeros
        cov = cross - mean[r_idx][:, None] * mean[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = cov / (std[r_idx][:, None] * std[None, :])
        r[:, std == 0] = np.nan
        r[std[r_idx] == 0, :] = np.nan
        r[np.arange(len(r_idx)), r_idx] = np.nan
        out[lo : lo + block] = np.abs(np.clip(r, -1.0, 1.0))
    return out


# ----------------------------------------------------------------------------- tree peers


class _EarlyStop:
    """arboreto's EarlyStopMonitor: stop once the mean OOB improvement of the last `window` trees is < 0."""

    def __init__(self, window: int):
        self.window = window

    def __call__(self, i: int, regressor, _locals) -> bool:
        if i < self.window - 1:
            return False
        return bool(np.mean(regressor.oob_improvement_[max(0, i - self.window + 1) : i + 1]) < 0)


def _fit_targets(
    kind: str, params: dict, x_reg: np.ndarray, reg_genes: np.ndarray, y: np.ndarray, targets: np.ndarray
) -> tuple[np.ndarray, float]:
    """Importances of the regulators for each target: float32 [T, len(targets)], NaN for the regulator
    itself; and the CPU seconds spent (wall time on a shared machine says little).

    Args:
        x_reg: float32 [cells, T] regulator expression; reg_genes: int [T] their gene indices.
        y: float32 [cells, c] target expression; targets: int [c] their gene indices.
    """
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

    cpu0 = time.process_time()
    out = np.zeros((x_reg.shape[1], len(targets)), dtype=np.float32)
    for k, gene in enumerate(targets):
        keep = reg_genes != gene  # a gene never explains itself
        out[~keep, k] = np.nan
        yk = np.asarray(y[:, k], dtype=np.float64)
        if keep.sum() == 0 or np.ptp(yk) == 0:
            continue  # constant target: nothing to explain, every regulator scores 0
        x = x_reg[:, keep]
        if kind == "grnboost2":
            reg = GradientBoostingRegressor(
                learning_rate=params["gb_learning_rate"],
                n_estimators=params["gb_max_estimators"],
                max_features=params["gb_max_features"],
                subsample=params["gb_subsample"],
                random_state=params["seed"],
            )
            reg.fit(x, yk, monitor=_EarlyStop(params["gb_early_stop_window"]))
            imp = reg.feature_importances_ * len(reg.estimators_)
        else:
            reg = RandomForestRegressor(
                n_estimators=params["rf_n_estimators"],
                max_features="sqrt" if params["rf_max_features"] == "sqrt" else 1.0,
                random_state=params["seed"],
                n_jobs=1,
            )
            reg.fit(x, yk)
            imp = reg.feature_importances_  # sums to 1 per target (GENIE3's normalisation)
        out[keep, k] = imp
    return out, time.process_time() - cpu0


def _tree_matrix(kind: str, x, reg_idx: np.ndarray, cfg: PeerConfig) -> tuple[np.ndarray, float]:
    """Tree importances [T, G] for a cells x genes matrix `x` (dense or sparse), and CPU seconds."""
    from joblib import Parallel, delayed

    n_cells, n_genes = x.shape
    rows = np.arange(n_cells)
    if cfg.max_cells is not None and n_cells > cfg.max_cells:
        rows = np.sort(np.random.default_rng(cfg.seed).choice(n_cells, cfg.max_cells, replace=False))
    xc = sp.csc_matrix(x[rows]) if sp.issparse(x) else np.asarray(x)[rows]

    def columns(idx: np.ndarray) -> np.ndarray:  # dense [cells, len(idx)] float32, one chunk at a time
        c = xc[:, idx]
        return np.asarray(c.toarray() if sp.issparse(c) else c, dtype=np.float32)

    x_reg = columns(reg_idx)
    params = cfg.model_dump()
    n_chunks = max(1, min(n_genes, 8 * cfg.n_jobs))
    chunks = [c for c in np.array_split(np.arange(n_genes), n_chunks) if len(c)]
    parts = Parallel(n_jobs=cfg.n_jobs, backend="loky" if cfg.n_jobs > 1 else "sequential")(
        delayed(_fit_targets)(kind, params, x_reg, reg_idx, columns(c), c) for c in chunks
    )
    return np.concatenate([p[0] for p in parts], axis=1), float(sum(p[1] for p in parts))


# ----------------------------------------------------------------------------- public API


def embedding_cosine(embedding: GeneEmbedding, regulators: list[str], genes: list[str]) -> PeerMatrix:
    """Cosine of gene-embedding vectors: float32 [T, G]; NaN where either gene has no (or a zero) vector."""
    t0 = time.perf_counter()
    vec, found = embedding.align(list(genes))
    norm = np.linalg.norm(vec, axis=1)
    ok = found & (norm > 0)
    unit = np.zeros_like(vec, dtype=np.float32)
    unit[ok] = vec[ok] / norm[ok, None]
    gene_pos = {g: i for i, g in enumerate(genes)}
    reg_idx = np.array([gene_pos[r] for r in regulators], dtype=np.int64)
    scores = (unit[reg_idx] @ unit.T).astype(np.float32)
    scores[:, ~ok] = np.nan
    scores[~ok[reg_idx], :] = np.nan
    meta = {
        "settings": {"embedder": embedding.metadata.get("embedder", ""), "dim": embedding.dim},
        "embedding_sha256": embedding.content_hash(),
        "genes_with_vector": int(ok.sum()),
        "seconds": time.perf_counter() - t0,
        "cached": False,
    }
    return PeerMatrix("embedding_cosine", list(regulators), list(genes), scores, meta)


def compute_peer(name: str, adata, regulators: list[str], cfg: PeerConfig | None = None) -> PeerMatrix:
    """One expression peer's matrix for a cells x genes AnnData (read from / written to the cache)."""
    cfg = cfg or PeerConfig()
    if name not in EXPRESSION_PEERS:
        raise ValueError(f"unknown expression peer {name!r}; expected one of {EXPRESSION_PEERS}")
    genes = [str(g) for g in adata.var_names]
    gene_pos = {g: i for i, g in enumerate(genes)}
    missing = [r for r in regulators if r not in gene_pos]
    if missing:
        raise ValueError(f"regulators not among the expression's genes: {missing[:10]}")
    if not regulators:
        raise ValueError("no regulators: a peer scores (regulator, gene) pairs")
    key = cache_key(name, expression_content_hash(adata), list(regulators), cfg)
    path = _cache_path(name, key)
    if cfg.cache:
        cached = _load(path, name, list(regulators), genes)
        if cached is not None:
            return cached
    reg_idx = np.array([gene_pos[r] for r in regulators], dtype=np.int64)
    t0, cpu0 = time.perf_counter(), time.process_time()
    if name in ("pearson", "spearman"):
        a = _as_csc(adata.X)
        if name == "spearman":
            a = _rank_columns(a)
        scores = _abs_correlation(a, reg_idx)
        cpu = time.process_time() - cpu0
    else:
        scores, cpu = _tree_matrix(name, adata.X, reg_idx, cfg)
    meta = {
        "settings": _settings(name, cfg),
        "n_jobs": cfg.n_jobs,
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": cpu,
        "shape": [int(adata.shape[0]), int(adata.shape[1])],
        "cached": False,
        "key": key,
    }
    matrix = PeerMatrix(name, list(regulators), genes, scores, meta)
    if cfg.cache:
        _save(matrix, path)
    log.info("peer %s: %d regulators x %d genes in %.1fs", name, len(regulators), len(genes), meta["seconds"])
    return matrix


def skip_reason(name: str, adata, embedding: GeneEmbedding | None, cfg: PeerConfig) -> str | None:
    """Why peer `name` is left out of this run (None: it is computed)."""
    if name == "embedding_cosine" and (embedding is None or embedding.dim == 0):
        return "this run has no gene embedding"
    if name in TREE_PEERS and adata.n_vars > cfg.tree_max_genes:
        return (
            f"{adata.n_vars:,} genes > peers.tree_max_genes ({cfg.tree_max_genes:,}): one regression per gene "
            "would take hours; raise the limit to include it"
        )
    return None


def compute_peers(
    adata,
    regulators: list[str],
    cfg: PeerConfig | None = None,
    embedding: GeneEmbedding | None = None,
    names: list[str] | tuple[str, ...] | None = None,
    skipped: dict[str, str] | None = None,
) -> dict[str, PeerMatrix]:
    """Every configured peer's matrix; peers that cannot run here are left out (`skip_reason`), with
    the reason logged and, if given, put into `skipped`."""
    cfg = cfg or PeerConfig()
    out = {}
    for name in names or cfg.peers:
        why = skip_reason(name, adata, embedding, cfg)
        if why is not None:
            log.info("peer %s left out: %s", name, why)
            if skipped is not None:
                skipped[name] = why
            continue
        if name == "embedding_cosine":
            out[name] = embedding_cosine(embedding, list(regulators), [str(g) for g in adata.var_names])
        else:
            out[name] = compute_peer(name, adata, regulators, cfg)
    return out


@dataclass
class PeerScores:
    """A run's peer matrices (name -> PeerMatrix) and the peers left out with their reasons."""

    matrices: dict[str, PeerMatrix] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, dataset, cfg: PeerConfig, embedding: GeneEmbedding | None = None) -> PeerScores:
        """Every configured peer of a GRNDataset (regulators: its TFs with a prior positive)."""
        skipped: dict[str, str] = {}
        matrices = compute_peers(dataset.adata, dataset.tfs, cfg, embedding, skipped=skipped)
        return cls(matrices, skipped)

    def save(self, directory: str | Path) -> None:
        """One `<name>.npz` per peer (scores, regulators, genes, meta as JSON) plus `skipped.json`; no pickle."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name, m in self.matrices.items():
            _save(m, directory / f"{name}.npz")
        (directory / "skipped.json").write_text(json.dumps(self.skipped, indent=1))

    @classmethod
    def load(cls, directory: str | Path) -> PeerScores:
        """Read what `save` wrote."""
        directory = Path(directory)
        matrices = {}
        for path in sorted(directory.glob("*.npz")):
            with np.load(path, allow_pickle=False) as z:
                matrices[path.stem] = PeerMatrix(
                    path.stem,
                    [str(r) for r in z["regulators"]],
                    [str(g) for g in z["genes"]],
                    z["scores"],
                    json.loads(str(z["meta"])),
                )
        skipped_file = directory / "skipped.json"
        skipped = json.loads(skipped_file.read_text()) if skipped_file.is_file() else {}
        return cls(matrices, skipped)


def dataset_peers(
    dataset, cfg: PeerConfig | None = None, embedding: GeneEmbedding | None = None, regulators: list[str] | None = None
) -> dict[str, PeerMatrix]:
    """Peers of a GRNDataset; regulators default to its TFs with a prior positive (those the model scores)."""
    return compute_peers(dataset.adata, list(regulators) if regulators is not None else dataset.tfs, cfg, embedding)


def score_pairs(
    matrices: dict[str, PeerMatrix], pairs: np.ndarray, genes: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Each peer's ranking scores (missing = lowest) for int pairs [n, >=2] indexing `genes`."""
    return {name: m.score(pairs, genes) for name, m in matrices.items()}


def evaluate_peers(
    matrices: dict[str, PeerMatrix], pairs: np.ndarray, genes: list[str] | None = None
) -> dict[str, dict[str, float]]:
    """`evaluate_scores` metrics of each peer on labelled pairs [n, 3], plus `coverage` (share with a score)."""
    from scregnet.metrics import evaluate_scores

    out = {}
    for name, m in matrices.items():
        raw = m.lookup(pairs, genes)
        metrics = evaluate_scores(pairs, fill_missing(raw))
        metrics["coverage"] = float(np.isfinite(raw).mean()) if len(raw) else float("nan")
        out[name] = metrics
    return out
