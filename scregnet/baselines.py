"""Trivial no-learning scores (docs/evaluation.md). Always reported beside the model.

All three use only the training split's labels: no expression, no learning.
"""

from __future__ import annotations

import numpy as np

BASELINES = ("label_count", "tf_prior", "target_popularity")
_EPS = 1e-6  # keeps log(0) finite for a TF with no training positive


def _tf_rate(train: np.ndarray, n_genes: int) -> np.ndarray:
    pos = np.bincount(train[:, 0], weights=train[:, 2], minlength=n_genes)
    tot = np.bincount(train[:, 0], minlength=n_genes)
    return np.divide(pos, tot, out=np.zeros(n_genes), where=tot > 0)


def _target_count(train: np.ndarray, n_genes: int) -> np.ndarray:
    return np.bincount(train[:, 1], weights=train[:, 2], minlength=n_genes)


def baseline_scores(name: str, train: np.ndarray, pairs: np.ndarray, n_genes: int) -> np.ndarray:
    """Scores of `pairs` ([n, >=2] tf, target) from the training pairs ([m, 3])."""
    if name == "tf_prior":
        return _tf_rate(train, n_genes)[pairs[:, 0]]
    if name == "target_popularity":
        return _target_count(train, n_genes)[pairs[:, 1]]
    if name == "label_count":
        return np.log(_tf_rate(train, n_genes)[pairs[:, 0]] + _EPS) + np.log1p(
            _target_count(train, n_genes)[pairs[:, 1]]
        )
    raise ValueError(f"unknown baseline {name!r}; expected one of {BASELINES}")


def evaluate_baselines(train: np.ndarray, pairs: np.ndarray, n_genes: int) -> dict[str, dict[str, float]]:
    """Metrics of every trivial baseline on labelled `pairs` [n, 3], from the training pairs [m, 3]."""
    from scregnet.metrics import evaluate_scores

    return {b: evaluate_scores(pairs, baseline_scores(b, train, pairs, n_genes)) for b in BASELINES}
