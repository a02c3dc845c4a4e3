"""Per-TF AUROC and the paired bootstrap over TFs (scregnet/uncertainty.py)."""

from __future__ import annotations

import numpy as np
import pytest

from scregnet.metrics import per_tf_table
from scregnet.uncertainty import bootstrap_mean, compare_per_tf, paired_bootstrap, paired_per_tf, per_tf_auroc


def _pairs(n=4000, n_tfs=25, seed=0):
    rng = np.random.default_rng(seed)
    p = np.stack([rng.integers(0, n_tfs, n), rng.integers(0, 400, n), rng.integers(0, 2, n)], axis=1)
    p[p[:, 0] == 2, 2] = 1  # a one-class TF: left out
    return p


def test_per_tf_auroc_equals_the_reference_loop_with_ties():
    p = _pairs()
    rng = np.random.default_rng(1)
    s = np.round(rng.normal(size=len(p)) + 0.7 * p[:, 2], 1)  # many ties
    tfs, auc = per_tf_auroc(p, s)
    ref = per_tf_table(p, s)
    assert 2 not in tfs and len(tfs) == len(ref)
    np.testing.assert_array_equal(tfs, ref["tf"].to_numpy())
    np.testing.assert_allclose(auc, ref["auroc"].to_numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="NaN"):
        per_tf_auroc(p, np.where(p[:, 2] == 1, np.nan, 0.0))


def test_paired_differences_and_interval():
    p = _pairs()
    rng = np.random.default_rng(2)
    good = p[:, 2] + rng.normal(size=len(p))
    noise = rng.normal(size=len(p))
    paired = paired_per_tf(p, good, noise)
    assert np.allclose(paired.diff, paired.a - paired.b)
    iv = paired_bootstrap(p, good, noise, n_boot=2000, seed=0)
    assert iv.n == len(paired.tfs) and iv.lo < iv.mean < iv.hi
    assert iv.lo > 0.1  # a real signal: the whole interval is above zero
    same = paired_bootstrap(p, noise, noise)
    assert same.mean == same.lo == same.hi == 0.0
    assert paired_bootstrap(p, good, noise, seed=0) == iv  # seeded
    both = compare_per_tf(p, good, {"noise": noise, "self": good})
    assert both["self"].mean == 0.0 and both["noise"] == iv


def test_bootstrap_interval_matches_the_normal_approximation_and_handles_tiny_inputs():
    rng = np.random.default_rng(4)
    v = rng.normal(0.05, 0.1, size=200)
    iv = bootstrap_mean(v, n_boot=4000, seed=1, max_cells=10_000)  # forces chunked resampling
    half = 1.96 * v.std() / np.sqrt(len(v))
    assert iv.hi - iv.lo == pytest.approx(2 * half, rel=0.1)
    one = bootstrap_mean(np.array([0.3]))
    assert one.mean == 0.3 and np.isnan(one.lo) and one.n == 1
    assert bootstrap_mean(np.array([np.nan])).n == 0
