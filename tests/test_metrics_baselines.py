import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from scregnet.baselines import baseline_scores, evaluate_baselines
from scregnet.metrics import evaluate_scores


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    pairs = np.stack([rng.integers(0, 4, 300), rng.integers(4, 50, 300), rng.integers(0, 2, 300)], axis=1)
    scores = rng.normal(size=300) + pairs[:, 2]
    m = evaluate_scores(pairs, scores)
    assert m["auroc"] == pytest.approx(roc_auc_score(pairs[:, 2], scores))
    assert m["auprc"] == pytest.approx(average_precision_score(pairs[:, 2], scores))
    assert m["auprc_lift"] == pytest.approx(m["auprc"] / pairs[:, 2].mean())
    per_tf = [roc_auc_score(pairs[pairs[:, 0] == t, 2], scores[pairs[:, 0] == t]) for t in range(4)]
    assert m["per_tf_auroc"] == pytest.approx(np.mean(per_tf))
    assert m["n_tfs_scored"] == 4


def test_fast_auc_and_ap_equal_scikit_learn_with_ties():
    import sklearn.metrics as skm

    from scregnet.metrics import average_precision_score as ap
    from scregnet.metrics import roc_auc_score as auc

    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.integers(0, 2, 200)
        y[:2] = [0, 1]
        s = rng.integers(0, 6, 200).astype(float)  # heavy ties
        assert auc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
        assert ap(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)


def test_per_tf_macro_skips_single_class_tfs_and_single_class_is_nan():
    pairs = np.array([[0, 1, 1], [0, 2, 0], [1, 3, 0], [1, 4, 0]])
    m = evaluate_scores(pairs, np.array([0.9, 0.1, 0.5, 0.4]))
    assert m["n_tfs_scored"] == 1 and m["per_tf_auroc"] == 1.0
    assert np.isnan(evaluate_scores(pairs[2:], np.array([0.5, 0.4]))["auroc"])


def test_baselines_follow_their_definitions():
    # TF 0: 2 of 4 training pairs positive; TF 1: 1 of 4. Target 10 has 2 training positives.
    train = np.array([[0, 10, 1], [0, 11, 1], [0, 12, 0], [0, 13, 0], [1, 10, 1], [1, 11, 0], [1, 12, 0], [1, 13, 0]])
    pairs = np.array([[0, 10], [1, 13], [0, 14]])
    np.testing.assert_allclose(baseline_scores("tf_prior", train, pairs, 20), [0.5, 0.25, 0.5])
    np.testing.assert_allclose(baseline_scores("target_popularity", train, pairs, 20), [2, 0, 0])
    expected = np.log([0.5 + 1e-6, 0.25 + 1e-6, 0.5 + 1e-6]) + np.log1p([2, 0, 0])
    np.testing.assert_allclose(baseline_scores("label_count", train, pairs, 20), expected)
    assert set(evaluate_baselines(train, np.array([[0, 10, 1], [1, 13, 0]]), 20)) == {
        "label_count",
        "tf_prior",
        "target_popularity",
    }
