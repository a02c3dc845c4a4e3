"""The promotion gate as pure functions: a fair champion/challenger comparison and a check
against the no-learning baselines. No MLflow here; the registry feeds in scores and pairs.

Fair comparison: both models are scored only on evaluation pairs (by default the challenger's
test part) that NEITHER model trained on or selected a checkpoint on (train + validation of
each), matched by gene symbol, so models with different gene orders or sets compare on the
same pairs. A pair with a gene one model lacks is left out and counted. Why: a champion trained
with another split seed has typically trained on ~2/3 of the challenger's test positives, and
a model's scores on its own training pairs are inflated (the label_count prior counts the
pair's own label), so re-scoring it on the challenger's whole test part favours the incumbent.

Baseline check: on the challenger's own test part (never used for checkpoint or hyperparameter
selection), the paired bootstrap interval over TFs of per-TF AUROC (model - baseline) must lie
above a margin for EVERY no-learning baseline; the binding one is reported as the best.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from scregnet.uncertainty import BootstrapInterval, bootstrap_mean, paired_per_tf

# ----------------------------------------------------------------------------- fair evaluation set


@dataclass
class SeenPairs:
    """Pairs a model trained on or selected a checkpoint on, in that model's gene order.

    genes: the model's gene symbols, length N; pairs: int [m, >=2] (tf, target) indices into genes.
    """

    genes: list[str]
    pairs: np.ndarray

    @classmethod
    def from_split(cls, split, genes: list[str]) -> SeenPairs:
        """Train + validation pairs of a `Split` (labels are irrelevant: a seen negative is seen too)."""
        return cls(list(genes), np.concatenate([split.train[:, :2], split.val[:, :2]]).astype(np.int64))

    def save(self, path: str | Path) -> Path:
        """`.npz` with genes (str) and pairs (int32 [m, 2]); no pickle."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, genes=np.array(self.genes, dtype=str), pairs=self.pairs[:, :2].astype(np.int32))
        return path

    @classmethod
    def load(cls, path: str | Path) -> SeenPairs:
        """Read pairs saved by `save`."""
        with np.load(path, allow_pickle=False) as z:
            return cls([str(g) for g in z["genes"]], z["pairs"].astype(np.int64))


def to_model_indices(pairs: np.ndarray, genes: list[str], model_genes: list[str]) -> np.ndarray:
    """Pairs [n, >=2] indexing `genes` -> int64 [n, 2] indexing `model_genes`; -1 where the model lacks the gene."""
    import pandas as pd

    pos = pd.Index(list(model_genes)).get_indexer(list(genes))
    return np.stack([pos[pairs[:, 0]], pos[pairs[:, 1]]], axis=1).astype(np.int64)


@dataclass
class FairSet:
    """Evaluation pairs neither model has seen, in the challenger's gene indices.

    pairs: int64 [n, 3] (tf, target, label). The counts say what was left out and why.
    """

    pairs: np.ndarray
    n_candidates: int
    n_seen: int  # trained on or used for selection by one of the models
    n_missing_genes: int  # a gene one of the models lacks

    @property
    def n_pairs(self) -> int:
        """Pairs in the fair set."""
        return int(len(self.pairs))

    @property
    def n_positives(self) -> int:
        """Positive pairs in the fair set."""
        return int(self.pairs[:, 2].sum()) if len(self.pairs) else 0

    @property
    def n_tfs(self) -> int:
        """TFs with both classes in the set (those a per-TF metric can use)."""
        if not len(self.pairs):
            return 0
        y = self.pairs[:, 2]
        tfs = np.unique(self.pairs[:, 0])
        pos = np.isin(tfs, self.pairs[y == 1, 0])
        neg = np.isin(tfs, self.pairs[y == 0, 0])
        return int((pos & neg).sum())

    def summary(self) -> dict[str, int]:
        """Sizes: candidates, seen, missing genes, kept pairs, positives, TFs."""
        return {
            "n_candidates": self.n_candidates,
            "n_seen": self.n_seen,
            "n_missing_genes": self.n_missing_genes,
            "n_pairs": self.n_pairs,
            "n_positives": self.n_positives,
            "n_tfs": self.n_tfs,
        }


def fair_evaluation_set(candidates: np.ndarray, genes: list[str], models: Sequence[SeenPairs]) -> FairSet:
    """The candidate pairs ([n, 3], indexing `genes`) that every model can score and none has seen.

    Typical use: candidates = the challenger's test part; models = the challenger's and the
    champion's train+validation pairs (`SeenPairs.from_split`, or stored with the champion).
    """
    candidates = np.asarray(candidates, dtype=np.int64)
    missing = np.zeros(len(candidates), dtype=bool)
    seen = np.zeros(len(candidates), dtype=bool)
    for m in models:
        idx = to_model_indices(candidates, genes, m.genes)
        lacks = (idx < 0).any(axis=1)
        n = len(m.genes)
        seen_keys = np.unique(m.pairs[:, 0].astype(np.int64) * n + m.pairs[:, 1])
        keys = np.where(lacks, -1, idx[:, 0] * n + idx[:, 1])
        seen |= ~lacks & np.isin(keys, seen_keys)
        missing |= lacks
    seen &= ~missing  # each left-out pair counted once, a missing gene first
    keep = ~(missing | seen)
    return FairSet(candidates[keep], len(candidates), int(seen.sum()), int(missing.sum()))


# ----------------------------------------------------------------------------- champion comparison


def _metric(pairs: np.ndarray, scores: np.ndarray, metric: str) -> float:
    from scregnet.metrics import evaluate_scores

    return float(evaluate_scores(pairs, scores)[metric])


@dataclass
class ChampionComparison:
    """Challenger vs champion on the fair set.

    status: no_champion | too_small | unknown | better | not_better.
    per_tf: challenger - champion per-TF AUROC with a bootstrap interval (information only).
    """

    status: str
    reason: str
    metric: str
    margin: float
    challenger_value: float = float("nan")
    champion_value: float = float("nan")
    fair: dict[str, int] = field(default_factory=dict)
    per_tf: BootstrapInterval | None = None

    @property
    def passed(self) -> bool:
        """True when there is no champion or the challenger beat it."""
        return self.status in ("no_champion", "better")


def no_champion(metric: str = "auprc") -> ChampionComparison:
    """The comparison when no champion exists yet (the challenger may be promoted)."""
    return ChampionComparison("no_champion", "no champion yet", metric, 0.0)


def unknown_champion(why: str, metric: str = "auprc") -> ChampionComparison:
    """No fair set can be built (e.g. a champion registered without its seen pairs): the champion stays."""
    return ChampionComparison("unknown", f"no fair comparison possible ({why}): champion kept", metric, 0.0)


def compare_with_champion(
    fair: FairSet,
    challenger_scores: np.ndarray,
    champion_scores: np.ndarray,
    metric: str = "auprc",
    margin: float = 0.0,
    min_pairs: int = 100,
    min_positives: int = 20,
    min_tfs: int = 3,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> ChampionComparison:
    """Challenger beats champion iff its `metric` on the fair set exceeds the champion's + `margin`.

    Scores are float [fair.n_pairs], aligned with `fair.pairs`. Too small a set (pairs, positives,
    negatives or TFs with both classes below the minimums) decides nothing: the champion stays.
    """
    sizes = fair.summary()
    n_neg = fair.n_pairs - fair.n_positives
    short = [
        f"{what} {have} < {need}"
        for what, have, need in (
            ("pairs", fair.n_pairs, min_pairs),
            ("positives", fair.n_positives, min_positives),
            ("negatives", n_neg, min_positives),
            ("TFs with both classes", fair.n_tfs, min_tfs),
        )
        if have < need
    ]
    left_out = f"{fair.n_seen} seen by a model, {fair.n_missing_genes} with a gene a model lacks"
    if short:
        return ChampionComparison(
            "too_small",
            f"fair set too small to decide ({', '.join(short)}; of {fair.n_candidates} candidate pairs, "
            f"{left_out}): champion kept",
            metric,
            margin,
            fair=sizes,
        )
    ch = np.asarray(challenger_scores, dtype=np.float64)
    cp = np.asarray(champion_scores, dtype=np.float64)
    if len(ch) != fair.n_pairs or len(cp) != fair.n_pairs:
        raise ValueError(f"{len(ch)} challenger / {len(cp)} champion scores for {fair.n_pairs} fair pairs")
    cv, pv = _metric(fair.pairs, ch, metric), _metric(fair.pairs, cp, metric)
    better = cv > pv + margin
    per_tf = bootstrap_mean(paired_per_tf(fair.pairs, ch, cp).diff, n_boot, seed, level)
    reason = (
        f"{metric} {cv:.4f} {'>' if better else '<='} champion {pv:.4f} + margin {margin:g} on the fair set "
        f"({fair.n_pairs} pairs, {fair.n_positives} positives, {fair.n_tfs} TFs; {left_out})"
    )
    return ChampionComparison("better" if better else "not_better", reason, metric, margin, cv, pv, sizes, per_tf)


# ----------------------------------------------------------------------------- baseline check


@dataclass
class BaselineCheck:
    """Model vs each no-learning baseline on the model's own test part (per-TF AUROC differences).

    status: passed | failed | too_few_tfs | disabled. binding: the baseline with the lowest lower bound.
    """

    status: str
    reason: str
    margin: float
    intervals: dict[str, BootstrapInterval] = field(default_factory=dict)
    binding: str | None = None

    @property
    def passed(self) -> bool:
        """True when the baselines check passed or is disabled."""
        return self.status in ("passed", "disabled")


def check_baselines(
    test_pairs: np.ndarray,
    model_scores: np.ndarray,
    baseline_scores: dict[str, np.ndarray],
    margin: float = 0.0,
    min_tfs: int = 3,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    enabled: bool = True,
) -> BaselineCheck:
    """Passes iff, for every baseline, the lower bound of the paired bootstrap interval over TFs of
    per-TF AUROC (model - baseline) exceeds `margin`. test_pairs int [n, 3]; scores float [n] each."""
    if not enabled:
        return BaselineCheck("disabled", "baseline check disabled (registry.baseline_gate: false)", margin)
    intervals = {
        name: bootstrap_mean(paired_per_tf(test_pairs, model_scores, s).diff, n_boot, seed, level)
        for name, s in baseline_scores.items()
    }
    if not intervals:
        raise ValueError("no baseline scores given")
    binding = min(intervals, key=lambda k: (np.nan_to_num(intervals[k].lo, nan=-np.inf), k))
    iv = intervals[binding]
    if iv.n < min_tfs:
        return BaselineCheck(
            "too_few_tfs",
            f"only {iv.n} test TFs with both classes (< {min_tfs}): cannot show the model beats the "
            "no-learning baselines",
            margin,
            intervals,
            binding,
        )
    ok = iv.lo > margin
    reason = (
        f"per-TF AUROC model - {binding} = {iv} at {iv.level:.0%}: lower bound "
        f"{'>' if ok else '<='} margin {margin:g}" + ("" if ok else " (not shown to beat the no-learning baseline)")
    )
    return BaselineCheck("passed" if ok else "failed", reason, margin, intervals, binding)


# ----------------------------------------------------------------------------- decision


@dataclass
class GateDecision:
    """Promote iff the champion comparison and the baseline check both pass; every number kept."""

    promoted: bool
    reason: str
    champion: ChampionComparison
    baselines: BaselineCheck
    forced: bool = False

    def as_dict(self) -> dict:
        """The decision as a JSON-able dict."""
        return asdict(self)

    def tags(self) -> dict[str, str]:
        """Flat string tags for a registered model version (MLflow tag values are strings)."""
        c, b = self.champion, self.baselines
        out = {
            "promotion_decision": "forced" if self.forced else ("promoted" if self.promoted else "rejected"),
            "promotion_reason": self.reason,
            "gate_champion_status": c.status,
            "gate_baseline_status": b.status,
            "gate_metric": c.metric,
            "gate_champion_margin": repr(float(c.margin)),
            "gate_baseline_margin": repr(float(b.margin)),
        }
        if np.isfinite(c.challenger_value):
            out["gate_fair_challenger"] = repr(c.challenger_value)
            out["gate_fair_champion"] = repr(c.champion_value)
        out.update({f"gate_fair_{k}": str(v) for k, v in c.fair.items()})
        if c.per_tf is not None and c.per_tf.n:
            out["gate_fair_per_tf_auroc_diff"] = str(c.per_tf)
        for name, iv in b.intervals.items():
            out[f"gate_vs_{name}"] = str(iv)
        if b.binding:
            out["gate_binding_baseline"] = b.binding
        return out


def decide(champion: ChampionComparison, baselines: BaselineCheck) -> GateDecision:
    """Combine the two checks; the reason says which failed and by how much."""
    promoted = champion.passed and baselines.passed
    parts = []
    if champion.status != "no_champion":
        parts.append(f"vs champion: {champion.reason}")
    else:
        parts.append("no champion yet")
    parts.append(f"vs baselines: {baselines.reason}")
    head = "promoted" if promoted else "not promoted"
    return GateDecision(promoted, f"{head}: " + "; ".join(parts), champion, baselines)


def forced(decision: GateDecision | None, who: str = "") -> GateDecision:
    """`scregnet promote --version N`: promote regardless of the gate, and say so."""
    base_reason = decision.reason if decision is not None else "gate not evaluated"
    champ = decision.champion if decision is not None else no_champion()
    base = decision.baselines if decision is not None else BaselineCheck("disabled", "not evaluated", 0.0)
    return GateDecision(True, f"forced by {who or 'user'} (gate said: {base_reason})", champ, base, forced=True)


def gate(
    registry_cfg,
    test_pairs: np.ndarray,
    model_scores: np.ndarray,
    baseline_scores: dict[str, np.ndarray],
    fair: FairSet | None = None,
    challenger_fair_scores: np.ndarray | None = None,
    champion_fair_scores: np.ndarray | None = None,
    champion_unknown: str | None = None,
) -> GateDecision:
    """The whole gate from a `RegistryConfig`. `fair=None` means there is no champion; with
    `champion_unknown` (why) there is one but no fair set can be built, so it stays."""
    r = registry_cfg
    boot = r.bootstrap()
    if champion_unknown is not None:
        champ = unknown_champion(champion_unknown, r.promotion_metric)
    elif fair is None:
        champ = no_champion(r.promotion_metric)
    else:
        champ = compare_with_champion(
            fair,
            challenger_fair_scores if challenger_fair_scores is not None else np.zeros(0),
            champion_fair_scores if champion_fair_scores is not None else np.zeros(0),
            r.promotion_metric,
            r.promotion_margin,
            r.fair_min_pairs,
            r.fair_min_positives,
            r.fair_min_tfs,
            **boot,
        )
    base = check_baselines(
        test_pairs,
        model_scores,
        baseline_scores,
        r.baseline_margin,
        r.baseline_min_tfs,
        enabled=r.baseline_gate,
        **boot,
    )
    return decide(champ, base)
