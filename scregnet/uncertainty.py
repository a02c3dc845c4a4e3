"""Paired uncertainty over TFs: per-TF AUROC of two scorers on the same labelled pairs, their
differences, and a paired bootstrap interval that resamples TFs.

Why TFs are the unit: pairs of one TF share its ChIP-seq experiment, its positive rate and its
expression profile, so they are not independent; TFs are (to a first approximation). Pooled
AUROC is dominated by between-TF rate differences that a no-learning TF prior already gets
right; per-TF AUROC asks whether a scorer ranks one TF's targets, which is the biology.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


def per_tf_auroc(pairs: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROC of `scores` within each TF that has both classes (vectorised, average ranks for ties).

    Args:
        pairs: int [n, 3] (tf, target, label).
        scores: float [n], higher = more likely an edge; NaN is not allowed (fill it first).

    Returns: (tfs int64 [k], auroc float64 [k]), TFs in increasing order; TFs with one class are left out.
    """
    pairs = np.asarray(pairs)
    s = np.asarray(scores, dtype=np.float64)
    if len(s) != len(pairs):
        raise ValueError(f"{len(s)} scores for {len(pairs)} pairs")
    if np.isnan(s).any():
        raise ValueError("scores contain NaN; map missing scores to the lowest value before ranking")
    if len(s) == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    tf_ids, group = np.unique(pairs[:, 0], return_inverse=True)
    y = pairs[:, 2].astype(bool)
    order = np.lexsort((s, group))
    g, sv, yv = group[order], s[order], y[order]
    n = len(sv)
    # Ranks within each TF: position in the (tf, score)-sorted order minus the TF's start;
    # a block of equal (tf, score) gets the mean rank of its positions.
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
    start_of = np.repeat(starts, np.diff(np.r_[starts, n]))
    pos = np.arange(n) - start_of + 1.0
    new_block = np.r_[True, (np.diff(g) != 0) | (np.diff(sv) != 0)]
    block = np.cumsum(new_block) - 1
    first = np.flatnonzero(new_block)
    last = np.r_[first[1:] - 1, n - 1]
    ranks = ((pos[first] + pos[last]) / 2.0)[block]
    k = len(tf_ids)
    n_pos = np.bincount(g, weights=yv, minlength=k)
    n_all = np.bincount(g, minlength=k).astype(np.float64)
    n_neg = n_all - n_pos
    rank_sum = np.bincount(g, weights=ranks * yv, minlength=k)
    ok = (n_pos > 0) & (n_neg > 0)
    auc = (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2.0) / (n_pos[ok] * n_neg[ok])
    return tf_ids[ok].astype(np.int64), auc


@dataclass
class PairedPerTF:
    """Per-TF AUROC of scorer a and b on the same pairs, and a - b."""

    tfs: np.ndarray  # int64 [k]
    a: np.ndarray  # float64 [k]
    b: np.ndarray  # float64 [k]

    @property
    def diff(self) -> np.ndarray:
        """Per-TF differences a - b [T]."""
        return self.a - self.b


def paired_per_tf(pairs: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> PairedPerTF:
    """Per-TF AUROC of two scorers on the same labelled pairs ([n, 3]); the TF sets agree by construction."""
    tfs, a = per_tf_auroc(pairs, scores_a)
    tfs_b, b = per_tf_auroc(pairs, scores_b)
    assert np.array_equal(tfs, tfs_b)  # both-class TFs depend on labels only
    return PairedPerTF(tfs, a, b)


@dataclass
class BootstrapInterval:
    """Mean of per-unit values with a percentile bootstrap interval over units."""

    mean: float
    lo: float
    hi: float
    n: int  # units (TFs)
    level: float
    n_boot: int

    def as_dict(self) -> dict:
        """The interval as a JSON-able dict."""
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.lo:+.3f}, {self.hi:+.3f}] ({self.n} TFs)"


def bootstrap_mean(
    values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95, max_cells: int = 20_000_000
) -> BootstrapInterval:
    """Percentile bootstrap interval of the mean of `values` (float [k], one per unit).

    Paired use: pass per-TF differences (a - b); resampling a TF keeps both of its values.
    Seeded and vectorised (chunks of at most `max_cells` resampled indices at a time).
    With fewer than 2 units the interval is NaN (nothing to resample).
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    k = len(v)
    if k == 0:
        return BootstrapInterval(float("nan"), float("nan"), float("nan"), 0, level, n_boot)
    if k < 2:
        return BootstrapInterval(float(v.mean()), float("nan"), float("nan"), k, level, n_boot)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    step = max(1, max_cells // k)
    for lo in range(0, n_boot, step):
        hi = min(n_boot, lo + step)
        means[lo:hi] = v[rng.integers(0, k, size=(hi - lo, k))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    q_lo, q_hi = np.quantile(means, [alpha, 1.0 - alpha])
    return BootstrapInterval(float(v.mean()), float(q_lo), float(q_hi), k, level, n_boot)


def paired_bootstrap(
    pairs: np.ndarray,
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> BootstrapInterval:
    """Mean per-TF AUROC difference (a - b) on the same pairs, with a paired bootstrap interval over TFs."""
    return bootstrap_mean(paired_per_tf(pairs, scores_a, scores_b).diff, n_boot, seed, level)


def compare_per_tf(
    pairs: np.ndarray,
    scores: np.ndarray,
    others: dict[str, np.ndarray],
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, BootstrapInterval]:
    """`scores` minus each of `others` (name -> scores on the same pairs): per-TF AUROC difference intervals."""
    return {name: paired_bootstrap(pairs, scores, s, n_boot, seed, level) for name, s in others.items()}


def mean_std(values) -> tuple[float, float]:
    """Mean and (population) std over seeds, ignoring NaN; (nan, nan) when empty."""
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[np.isfinite(arr)]
    if len(arr) == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std())
