"""Link-prediction metrics: pooled AUROC/AUPRC, AUPRC lift, per-TF macro averages."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def _both_classes(y: np.ndarray) -> bool:
    return len(y) > 0 and y.min() != y.max()


def roc_auc_score(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC as the Mann-Whitney statistic with average ranks for ties (equals scikit-learn's)."""
    y = np.asarray(y).astype(bool)
    ranks = rankdata(s)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision_score(y: np.ndarray, s: np.ndarray) -> float:
    """Sum over distinct thresholds of (recall step) x precision, as scikit-learn defines AP."""
    y = np.asarray(y).astype(np.float64)
    order = np.argsort(-np.asarray(s, dtype=np.float64), kind="mergesort")
    s_sorted, y_sorted = np.asarray(s, dtype=np.float64)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(s_sorted) - 1]  # end of each tie block
    tps = np.cumsum(y_sorted)[last]
    precision = tps / (last + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def evaluate_scores(pairs: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Metrics of scores for labelled pairs.

    Args:
        pairs: int [n, 3] (tf, target, label).
        scores: float [n], higher = more likely an edge.

    Returns: auroc, auprc, prevalence, auprc_lift, per_tf_auroc, per_tf_auprc, n_tfs_scored, n.
    NaN where undefined (a single class).
    """
    y = pairs[:, 2].astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(y):
        raise ValueError(f"{len(scores)} scores for {len(y)} pairs")
    out: dict[str, float] = {"n": float(len(y))}
    if _both_classes(y):
        out["auroc"] = float(roc_auc_score(y, scores))
        out["auprc"] = float(average_precision_score(y, scores))
        out["prevalence"] = float(y.mean())
        out["auprc_lift"] = out["auprc"] / out["prevalence"]
    else:
        out.update(
            auroc=float("nan"),
            auprc=float("nan"),
            prevalence=float(y.mean()) if len(y) else float("nan"),
            auprc_lift=float("nan"),
        )
    rocs, prs = [], []
    for tf in np.unique(pairs[:, 0]):
        m = pairs[:, 0] == tf
        if _both_classes(y[m]):
            rocs.append(roc_auc_score(y[m], scores[m]))
            prs.append(average_precision_score(y[m], scores[m]))
    out["per_tf_auroc"] = float(np.mean(rocs)) if rocs else float("nan")
    out["per_tf_auprc"] = float(np.mean(prs)) if prs else float("nan")
    out["n_tfs_scored"] = float(len(rocs))
    return out


def per_tf_table(pairs: np.ndarray, scores: np.ndarray, genes: list[str] | None = None):
    """One row per TF with both classes: tf, n, positives, auroc, auprc (a DataFrame)."""
    import pandas as pd

    rows = []
    y = pairs[:, 2].astype(int)
    for tf in np.unique(pairs[:, 0]):
        m = pairs[:, 0] == tf
        if _both_classes(y[m]):
            rows.append(
                {
                    "tf": genes[int(tf)] if genes else int(tf),
                    "n": int(m.sum()),
                    "positives": int(y[m].sum()),
                    "auroc": roc_auc_score(y[m], scores[m]),
                    "auprc": average_precision_score(y[m], scores[m]),
                }
            )
    return pd.DataFrame(rows, columns=["tf", "n", "positives", "auroc", "auprc"])
