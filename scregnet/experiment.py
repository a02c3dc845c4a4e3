"""One experiment = one split + one trained model + its evaluation beside the baselines.

This is the science the ZenML steps and the benchmark share. Test metrics are computed
exactly once per trained model, after selection on validation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from scregnet.baselines import evaluate_baselines
from scregnet.data import GRNDataset
from scregnet.embeddings.base import GeneEmbedding
from scregnet.metrics import evaluate_scores
from scregnet.serialize import ModelBundle
from scregnet.splits import Split, make_split
from scregnet.train import ModelInputs, TrainResult, bundle, fit


@dataclass
class Evaluation:
    """Model, baseline and peer metrics per part ('val', 'test'), test scores for plots, and the
    paired per-TF AUROC differences (model minus each baseline and peer) with bootstrap intervals."""

    model: dict[str, dict[str, float]]
    baselines: dict[str, dict[str, dict[str, float]]]
    test_scores: np.ndarray
    test_pairs: np.ndarray
    baseline_test_scores: dict[str, np.ndarray] = field(default_factory=dict)
    peers: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # part -> peer -> metrics
    peer_test_scores: dict[str, np.ndarray] = field(default_factory=dict)
    per_tf_differences: dict = field(default_factory=dict)  # scorer -> BootstrapInterval (test)

    def others(self, part: str) -> dict[str, dict[str, float]]:
        """Every scorer beside the model on `part`: the baselines, then the peers."""
        return {**self.baselines.get(part, {}), **self.peers.get(part, {})}

    def other_test_scores(self) -> dict[str, np.ndarray]:
        """Test scores of the baselines and the peers, by name."""
        return {**self.baseline_test_scores, **self.peer_test_scores}


def evaluate(model: ModelBundle, split: Split, peers=None, bootstrap: dict | None = None) -> Evaluation:
    """Model, baselines and (given `peers`, a `PeerScores`) peers on validation and, once, on test.

    `bootstrap`: n_boot / seed / level of the paired per-TF intervals (RegistryConfig's by default).
    """
    from scregnet.baselines import BASELINES, baseline_scores
    from scregnet.peers import evaluate_peers, score_pairs
    from scregnet.uncertainty import compare_per_tf

    n = len(model.genes)
    model_metrics, base_metrics, peer_metrics = {}, {}, {}
    matrices = peers.matrices if peers is not None else {}
    test_scores = np.zeros(0)
    for part in ("val", "test"):
        pairs = split.part(part)
        if len(pairs) == 0:
            continue
        scores = model.score_indices(pairs)
        model_metrics[part] = evaluate_scores(pairs, scores)
        base_metrics[part] = evaluate_baselines(split.train, pairs, n)
        if matrices:
            peer_metrics[part] = evaluate_peers(matrices, pairs, model.genes)
        if part == "test":
            test_scores = scores
    ev = Evaluation(
        model=model_metrics,
        baselines=base_metrics,
        test_scores=test_scores,
        test_pairs=split.test,
        baseline_test_scores={b: baseline_scores(b, split.train, split.test, n) for b in BASELINES},
        peers=peer_metrics,
        peer_test_scores=score_pairs(matrices, split.test, model.genes) if matrices else {},
    )
    if len(split.test):
        boot = bootstrap or _default_bootstrap()
        ev.per_tf_differences = compare_per_tf(split.test, test_scores, ev.other_test_scores(), **boot)
    return ev


def _default_bootstrap() -> dict:
    from scregnet.config import RegistryConfig

    return RegistryConfig().bootstrap()


@dataclass
class ExperimentResult:
    """One seed's split, training result, model bundle and evaluation."""

    split: Split
    train: TrainResult
    model: ModelBundle
    evaluation: Evaluation


def run_experiment(
    dataset: GRNDataset,
    config,
    embedding: GeneEmbedding | None,
    seed: int | None = None,
    inputs: ModelInputs | None = None,
    on_eval=None,
    peers=None,
) -> ExperimentResult:
    """Split (seeded), train (seeded), evaluate (with `peers`, a PeerScores, if given).

    `seed` overrides both config seeds.
    """
    split_cfg, train_cfg = config.split, config.train
    if seed is not None:
        split_cfg = split_cfg.model_copy(update={"seed": seed})
        train_cfg = train_cfg.model_copy(update={"seed": seed})
    split = make_split(dataset.label_graph(), split_cfg)
    inputs = inputs or ModelInputs.build(dataset, embedding)
    result = fit(inputs, split, config.model, train_cfg, on_eval=on_eval)
    model = bundle(result, inputs, config.model)
    return ExperimentResult(split, result, model, evaluate(model, split, peers, config.registry.bootstrap()))


def run_seeds(
    dataset: GRNDataset,
    config,
    embedding: GeneEmbedding | None,
    seeds: int,
    inputs: ModelInputs | None = None,
    log: Callable[[str], None] | None = None,
    label: str = "",
    skip_data_errors: bool = False,
    peers=None,
) -> list[dict]:
    """One experiment per seed (its own split and initialisation); a row of test metrics each.

    Rows: seed, seconds (split + train + evaluate), best_epoch, model, baselines, label_count,
    peers (with `peers` given), and per_tf_differences (model minus each scorer, bootstrap intervals).
    With `skip_data_errors`, a seed whose split cannot be made (e.g. a held-out part with one
    class) is logged and left out instead of raising.
    """
    from scregnet.errors import DataError

    inputs = inputs or ModelInputs.build(dataset, embedding)
    rows = []
    for seed in range(seeds):
        t0 = time.perf_counter()
        try:
            res = run_experiment(dataset, config, embedding, seed=seed, inputs=inputs, peers=peers)
        except DataError as exc:
            if not skip_data_errors:
                raise
            if log:
                log(f"skip {dataset.name} {label} seed {seed}: {exc}")
            continue
        ev = res.evaluation
        rows.append(
            {
                "seed": seed,
                "seconds": time.perf_counter() - t0,
                "best_epoch": res.train.best_epoch,
                "model": ev.model["test"],
                "baselines": ev.baselines["test"],
                "label_count": ev.baselines["test"]["label_count"],
                "peers": ev.peers.get("test", {}),
                "per_tf_differences": {k: iv.as_dict() for k, iv in ev.per_tf_differences.items()},
            }
        )
        if log:
            m, lc = ev.model["test"], ev.baselines["test"]["label_count"]
            log(
                f"{dataset.name} {label} seed {seed}: AUROC {m['auroc']:.3f} AUPRC {m['auprc']:.3f} "
                f"(label_count {lc['auroc']:.3f}/{lc['auprc']:.3f}) {rows[-1]['seconds']:.1f}s"
            )
    return rows
