"""Split invariants of every protocol (with and without degree-aware negatives), and the trivial
baselines computed beside the model on every protocol through `scregnet.benchmark`."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from scregnet.config import SplitConfig
from scregnet.splits import PARTS, candidate_pairs, degree_aware_negatives, make_split
from tests.conftest import beeline_label_graph
from tests.conftest import pair_set as _pairs

PROTOCOLS = ["genelink", "heldout_tf", "heldout_target", "heldout_both"]


@pytest.fixture(scope="module")
def graph():
    return beeline_label_graph("mDC")


def _check_common(split, graph):
    parts = {p: _pairs(split.part(p)) for p in PARTS}
    # no (TF, target) pair in two parts, and no duplicates within a part
    assert not (parts["train"] & parts["val"] or parts["train"] & parts["test"] or parts["val"] & parts["test"])
    assert all(len(parts[p]) == len(split.part(p)) for p in PARTS)
    positives = _pairs(graph.edges)
    for p in PARTS:
        arr = split.part(p)
        assert (arr[:, 0] != arr[:, 1]).all()  # no self pairs
        assert _pairs(arr[arr[:, 2] == 1]) <= positives  # labels agree with the priors
        assert not (_pairs(arr[arr[:, 2] == 0]) & positives)
        assert 0 < arr[:, 2].mean() < 1
    # the GNN's graph holds training positives only
    assert _pairs(split.train_positive_edges()) <= parts["train"]


def _check_heldout(split, protocol):
    train, val, test = split.train, split.val, split.test
    if protocol in ("heldout_tf", "heldout_both"):
        for part in (val, test):
            assert not set(part[:, 0]) & set(train[:, 0])  # held-out TFs never in training
    if protocol in ("heldout_target", "heldout_both"):
        seen = set(train[:, 1]) | set(train[:, 0])
        for part in (val, test):
            assert not set(part[:, 1]) & seen  # held-out targets never in training, as target or TF
    if protocol == "heldout_both":
        assert not set(test[:, 0]) & set(val[:, 0]) and not set(test[:, 1]) & set(val[:, 1])


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("degree_aware", [False, True])
def test_split_invariants(graph, protocol, degree_aware):
    split = make_split(graph, SplitConfig(protocol=protocol, seed=2, degree_aware_negatives=degree_aware))
    _check_common(split, graph)
    _check_heldout(split, protocol)
    assert split.protocol == protocol + ("+degree_aware" if degree_aware else "")
    if protocol == "genelink":  # every TF is in training; test TFs are training TFs
        assert set(split.test[:, 0]) <= set(split.train[:, 0])
        if not degree_aware:
            assert sum(split.sizes().values()) == len(candidate_pairs(graph))
    # seeded
    again = make_split(graph, SplitConfig(protocol=protocol, seed=2, degree_aware_negatives=degree_aware))
    assert again.hash() == split.hash()
    assert (
        make_split(graph, SplitConfig(protocol=protocol, seed=3, degree_aware_negatives=degree_aware)).hash()
        != split.hash()
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_degree_aware_negatives_balance_each_target(graph, protocol):
    plain = make_split(graph, SplitConfig(protocol=protocol, seed=1))
    balanced = degree_aware_negatives(plain, seed=1)
    for p in PARTS:
        before, after = plain.part(p), balanced.part(p)
        # positives untouched, negatives a subset of the original negatives of the same part
        assert _pairs(after[after[:, 2] == 1]) == _pairs(before[before[:, 2] == 1])
        assert _pairs(after[after[:, 2] == 0]) <= _pairs(before[before[:, 2] == 0])
        pos = Counter(after[after[:, 2] == 1, 1].tolist())
        neg = Counter(after[after[:, 2] == 0, 1].tolist())
        avail = Counter(before[before[:, 2] == 0, 1].tolist())
        for target, k in pos.items():
            assert neg[target] == min(k, avail[target])
        assert set(neg) <= set(pos)  # a target with no positive gets no negative
    # target popularity carries no signal when every target has as many negatives as positives
    from scregnet.baselines import evaluate_baselines

    test = balanced.test
    pos_t = Counter(test[test[:, 2] == 1, 1].tolist())
    if all(Counter(test[test[:, 2] == 0, 1].tolist())[t] == k for t, k in pos_t.items()):
        assert evaluate_baselines(balanced.train, test, graph.n_genes)["target_popularity"]["auroc"] == pytest.approx(
            0.5
        )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_benchmark_reports_baselines_on_every_protocol(synthetic_dir, fast_config, protocol, tmp_path):
    from scregnet.baselines import BASELINES
    from scregnet.benchmark import BenchmarkSpec, run_benchmark, write_report

    cfg = fast_config.model_copy(deep=True)
    cfg.train.max_epochs, cfg.train.threads = 10, 1
    report = run_benchmark(BenchmarkSpec([synthetic_dir], seeds=2, protocol=protocol, config=cfg), log=lambda _: None)
    (r,) = report["results"]
    assert r["protocol"] == protocol and r["seeds"] == 2 and len(r["per_seed"]) == 2
    for key in ("auroc", "auroc_std", "auprc", "auprc_std", "auprc_lift", "per_tf_auroc"):
        assert np.isfinite(r["model"][key])
    assert set(r["baselines"]) == set(BASELINES)
    for b in BASELINES:
        assert 0 <= r["baselines"][b]["auroc"] <= 1 and np.isfinite(r["baselines"][b]["auroc_std"])
    for s in r["per_seed"]:
        assert set(s["baselines"]) == set(BASELINES)
    if protocol in ("heldout_tf", "heldout_both"):  # unseen TFs: the TF prior cannot rank them
        assert all(s["baselines"]["tf_prior"]["per_tf_auroc"] == pytest.approx(0.5) for s in r["per_seed"])
    _, md = write_report(report, tmp_path / "b.json", "scregnet benchmark ...")
    assert protocol in md.read_text()
