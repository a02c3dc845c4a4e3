"""The promotion gate (scregnet/promotion.py): fair champion comparison and the baseline check."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import pair_set, shared_path

from scregnet.baselines import BASELINES, baseline_scores
from scregnet.config import RegistryConfig, RunConfig
from scregnet.promotion import (
    FairSet,
    SeenPairs,
    check_baselines,
    compare_with_champion,
    decide,
    fair_evaluation_set,
    forced,
    gate,
    no_champion,
    to_model_indices,
    unknown_champion,
)
from scregnet.uncertainty import paired_bootstrap


def _labelled(tfs, targets, labels):
    return np.stack([tfs, targets, labels], axis=1).astype(np.int64)


def test_fair_set_drops_seen_pairs_and_missing_genes_by_symbol():
    genes = ["A", "B", "C", "D", "E"]
    cand = _labelled([0, 0, 0, 1, 1, 1], [1, 2, 3, 2, 3, 4], [1, 0, 1, 1, 0, 0])
    # Champion: another gene order, no gene E, trained on (A,C) and (B,D) (labels do not matter).
    champ_genes = ["D", "C", "B", "A"]
    champ = SeenPairs(champ_genes, np.array([[3, 1], [2, 0]]))
    challenger = SeenPairs(genes, np.array([[0, 4]]))  # not among the candidates: changes nothing
    fair = fair_evaluation_set(cand, genes, [challenger, champ])
    assert pair_set(fair.pairs) == {(0, 1), (0, 3), (1, 2)}
    assert (fair.n_candidates, fair.n_seen, fair.n_missing_genes) == (6, 2, 1)
    assert fair.n_pairs + fair.n_seen + fair.n_missing_genes == fair.n_candidates
    assert fair.n_positives == 3 and fair.n_tfs == 0  # no TF has both classes left
    np.testing.assert_array_equal(to_model_indices(fair.pairs, genes, champ_genes), [[3, 2], [3, 0], [2, 1]])


def test_seen_pairs_roundtrip(tmp_path):
    from scregnet.splits import Split

    split = Split(_labelled([0, 1], [1, 2], [1, 0]), _labelled([2], [0], [1]), _labelled([0], [2], [0]))
    seen = SeenPairs.from_split(split, ["X", "Y", "Z"])
    back = SeenPairs.load(seen.save(tmp_path / "seen.npz"))
    assert back.genes == ["X", "Y", "Z"] and pair_set(back.pairs) == {(0, 1), (1, 2), (2, 0)}


def _fair(n_tfs=6, per_tf=40, seed=0):
    rng = np.random.default_rng(seed)
    tfs = np.repeat(np.arange(n_tfs), per_tf)
    targets = np.tile(np.arange(per_tf) + n_tfs, n_tfs)
    y = (rng.uniform(size=len(tfs)) < 0.4).astype(int)
    return FairSet(_labelled(tfs, targets, y), len(tfs), 0, 0), y, rng


def test_champion_comparison_margin_and_minimum_size():
    fair, y, rng = _fair()
    strong, weak = y + 0.5 * rng.normal(size=len(y)), y + 2.0 * rng.normal(size=len(y))
    win = compare_with_champion(fair, strong, weak, "auprc", margin=0.0)
    assert win.status == "better" and win.passed and win.challenger_value > win.champion_value
    assert win.fair["n_pairs"] == 240 and win.per_tf.n == 6 and win.per_tf.lo > 0
    huge_margin = compare_with_champion(fair, strong, weak, "auprc", margin=1.0)
    assert huge_margin.status == "not_better" and not huge_margin.passed
    lose = compare_with_champion(fair, weak, strong, "auroc")
    assert lose.status == "not_better" and "<=" in lose.reason
    small, _, _ = _fair(n_tfs=2, per_tf=40)
    too_small = compare_with_champion(small, np.zeros(80), np.zeros(80), min_pairs=100, min_tfs=3)
    assert too_small.status == "too_small" and not too_small.passed
    assert "pairs 80 < 100" in too_small.reason and "TFs with both classes 2 < 3" in too_small.reason
    with pytest.raises(ValueError, match="fair pairs"):
        compare_with_champion(fair, strong[:10], weak)


def test_baseline_check_never_crowns_a_trivial_model():
    fair, y, rng = _fair(n_tfs=12, per_tf=60)
    pairs = fair.pairs
    train = _labelled(pairs[:, 0], pairs[:, 1], (rng.uniform(size=len(pairs)) < 0.4).astype(int))
    n = int(pairs[:, :2].max()) + 1
    base = {b: baseline_scores(b, train, pairs, n) for b in BASELINES}
    trivial = check_baselines(pairs, base["label_count"].copy(), base)
    assert trivial.status == "failed" and not trivial.passed  # identical to a baseline: lower bound 0
    assert trivial.intervals["label_count"].lo == 0.0
    good = check_baselines(pairs, y + 0.5 * rng.normal(size=len(y)), base)
    assert good.status == "passed" and all(iv.lo > 0 for iv in good.intervals.values())
    assert good.binding in BASELINES
    assert check_baselines(pairs, y + 0.5 * rng.normal(size=len(y)), base, margin=0.99).status == "failed"
    assert check_baselines(pairs, base["tf_prior"], base, enabled=False).status == "disabled"
    few = pairs[pairs[:, 0] < 2]
    few_check = check_baselines(few, few[:, 2].astype(float), {b: s[pairs[:, 0] < 2] for b, s in base.items()})
    assert few_check.status == "too_few_tfs" and not few_check.passed


def test_decision_needs_both_checks_and_records_every_number():
    fair, y, rng = _fair(n_tfs=8)
    pairs = fair.pairs
    base = {"flat": np.zeros(len(y))}
    good = y + 0.5 * rng.normal(size=len(y))
    cfg = RegistryConfig()
    first = gate(cfg, pairs, good, base)  # no champion
    assert first.promoted and first.champion.status == "no_champion"
    assert gate(cfg, pairs, np.zeros(len(y)), base).promoted is False  # no better than no learning
    beaten = gate(cfg, pairs, good, base, fair, good, good + 2 * y)  # the champion separates the classes better
    assert not beaten.promoted and beaten.champion.status == "not_better" and beaten.baselines.passed
    tags = beaten.tags()
    assert tags["promotion_decision"] == "rejected" and tags["gate_fair_n_pairs"] == str(fair.n_pairs)
    assert all(isinstance(v, str) for v in tags.values()) and "gate_vs_flat" in tags
    f = forced(beaten, "alice")
    assert f.promoted and f.forced and f.tags()["promotion_decision"] == "forced" and "alice" in f.reason
    assert decide(no_champion(), beaten.baselines).promoted
    legacy = decide(unknown_champion("champion has no seen_pairs.npz"), beaten.baselines)
    assert not legacy.promoted and "seen_pairs.npz" in legacy.reason


def test_learnable_synthetic_demo_still_promotes(tmp_path):
    """The demo (synthetic seed 0, pca embedder, default config) passes the gate when first registered."""
    from scregnet.data import load_beeline
    from scregnet.embeddings import build_embedder
    from scregnet.experiment import run_experiment
    from scregnet.synthetic import make_synthetic_dataset

    d = load_beeline(make_synthetic_dataset(tmp_path / "demo", seed=0))
    cfg = RunConfig()
    cfg.embedder.kind = "pca"
    res = run_experiment(d, cfg, build_embedder(cfg.embedder).embed(d.adata), seed=0)
    ev = res.evaluation
    decision = gate(cfg.registry, ev.test_pairs, ev.test_scores, ev.baseline_test_scores)
    assert decision.promoted, decision.reason
    assert decision.baselines.intervals["label_count"].lo > cfg.registry.baseline_margin


def test_mhscl_seed1_challenger_is_no_longer_penalised_by_the_champions_training_pairs():
    """Issue 15: seed-0 champion vs seed-1 challenger on mHSC-L/TFs500 (GENELink protocol)."""
    from scregnet.data import load_beeline
    from scregnet.experiment import run_experiment
    from scregnet.metrics import evaluate_scores

    data = load_beeline(shared_path("beeline", "Specific", "mHSC-L", "TFs500"))
    cfg = RunConfig()
    champion, challenger = run_experiment(data, cfg, None, seed=0), run_experiment(data, cfg, None, seed=1)
    s0, s1 = champion.split, challenger.split
    test = s1.test

    # Independent per-TF cuts put each positive in training with probability ~train_frac (0.67);
    # with ~1,000 test positives the binomial sd is ~0.015, so 0.05 is > 3 sd.
    test_pos = pair_set(test[test[:, 2] == 1])
    overlap = len(test_pos & pair_set(s0.train[s0.train[:, 2] == 1])) / len(test_pos)
    assert abs(overlap - cfg.split.train_frac) < 0.05

    # The old comparison: the champion re-scored on the challenger's whole test part.
    ch_all, cp_all = challenger.model.score_indices(test), champion.model.score_indices(test)
    assert evaluate_scores(test, cp_all)["auprc"] > evaluate_scores(test, ch_all)["auprc"]
    biased = paired_bootstrap(test, cp_all, ch_all)  # champion - challenger, per-TF AUROC
    assert biased.lo > 0  # a "significant" champion advantage...
    n = len(data.genes)
    champion_seen = np.concatenate([s0.train, s0.val])
    seen_mask = np.isin(test[:, 0] * n + test[:, 1], champion_seen[:, 0] * n + champion_seen[:, 1])
    on_seen = test[seen_mask]
    gap_seen = (
        evaluate_scores(on_seen, champion.model.score_indices(on_seen))["auprc"]
        - evaluate_scores(on_seen, challenger.model.score_indices(on_seen))["auprc"]
    )

    # The fair comparison: pairs neither model trained on or selected a checkpoint on.
    fair = fair_evaluation_set(
        test, data.genes, [SeenPairs.from_split(s1, data.genes), SeenPairs.from_split(s0, data.genes)]
    )
    assert not pair_set(fair.pairs) & pair_set(champion_seen)
    assert fair.n_seen == int(seen_mask.sum()) and fair.n_missing_genes == 0
    ch_fair, cp_fair = challenger.model.score_indices(fair.pairs), champion.model.score_indices(fair.pairs)
    unbiased = paired_bootstrap(fair.pairs, cp_fair, ch_fair)
    assert unbiased.lo < 0 < unbiased.hi  # ...that vanishes on the fair set: no evidence either way
    gap_fair = evaluate_scores(fair.pairs, cp_fair)["auprc"] - evaluate_scores(fair.pairs, ch_fair)["auprc"]
    gap_all = evaluate_scores(test, cp_all)["auprc"] - evaluate_scores(test, ch_all)["auprc"]
    assert gap_seen > gap_all > gap_fair  # the advantage lives on the champion's own training pairs

    decision = gate(
        cfg.registry,
        test,
        ch_all,
        {b: baseline_scores(b, s1.train, test, len(data.genes)) for b in BASELINES},
        fair,
        ch_fair,
        cp_fair,
    )
    assert decision.champion.status in ("better", "not_better")  # large enough to decide
    assert decision.champion.fair["n_pairs"] == fair.n_pairs and f"{fair.n_pairs} pairs" in decision.reason
    assert decision.champion.champion_value == pytest.approx(evaluate_scores(fair.pairs, cp_fair)["auprc"])


def test_hhep_model_that_is_its_label_count_prior_is_not_crowned():
    """hHEP/TFs500 (GENELink protocol): the checkpoint chosen on validation is the label_count prior
    itself (benchmarks/results/peers.md: per-TF Δ -0.001 [-0.002, +0.000]), so no champion."""
    from scregnet.data import load_beeline
    from scregnet.experiment import run_experiment

    data = load_beeline(shared_path("beeline", "Specific", "hHEP", "TFs500"))
    cfg = RunConfig()
    ev = run_experiment(data, cfg, None, seed=0).evaluation
    decision = gate(cfg.registry, ev.test_pairs, ev.test_scores, ev.baseline_test_scores)
    assert not decision.promoted and decision.baselines.status == "failed"
    assert decision.baselines.binding in ("label_count", "target_popularity")
    iv = decision.baselines.intervals["label_count"]
    assert iv.lo <= 0 and abs(iv.mean) < 0.01 and iv.n == 30
