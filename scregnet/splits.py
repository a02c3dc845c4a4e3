"""Train / validation / test splits of (TF, target) pairs.

Protocols:
- `genelink`: GENELink's per-TF split (paper-comparable). For each TF with at least one
  positive, its positives and its negatives (every other gene except the TF) are shuffled
  and cut 67 / 10 / 23 %. A TF with one positive sends it to train with probability 0.5,
  else to test; a TF with two sends one to train and one to test.
- `heldout_tf`: all pairs of some TFs are validation-only or test-only.
- `heldout_target`: all pairs whose target is one of some genes are validation/test-only.
- `heldout_both`: test pairs have a test TF AND a test target; pairs that mix a held-out
  side with a training side are dropped, so neither gene of a test pair is seen in training.

Candidate pairs are always the TFs with a positive x every gene except the TF itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scregnet.data import LabelGraph, find_file, read_table
from scregnet.errors import DataError

PARTS = ("train", "val", "test")
SPLIT_FILES = {"train": "Train_set.csv", "val": "Validation_set.csv", "test": "Test_set.csv"}


@dataclass
class Split:
    """Labelled pairs per part, each an int64 array [n, 3] of (tf, target, label)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    protocol: str = "genelink"
    seed: int | None = None

    def part(self, name: str) -> np.ndarray:
        """The labelled pairs of `name` (train, val or test)."""
        return getattr(self, name)

    def sizes(self) -> dict[str, int]:
        """Number of pairs per part."""
        return {p: int(len(self.part(p))) for p in PARTS}

    def train_positive_edges(self) -> np.ndarray:
        """[E, 2] (tf, target) training positives: the only edges the GNN may see."""
        return self.train[self.train[:, 2] == 1, :2]

    def hash(self) -> str:
        """sha256 of the labelled pairs of every part: equal hashes = the same evaluation split."""
        import hashlib

        h = hashlib.sha256()
        for p in PARTS:
            h.update(np.ascontiguousarray(self.part(p), dtype=np.int64).tobytes() + b"|")
        return h.hexdigest()

    def save(self, directory: str | Path) -> None:
        """Write the parts as GENELink-format CSVs (Train_set.csv, ...)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for part, fname in SPLIT_FILES.items():
            pd.DataFrame(self.part(part), columns=["TF", "Target", "Label"]).to_csv(directory / fname)


def _cut(items: np.ndarray, train_frac: float, val_frac: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = len(items)
    a, b = int(n * train_frac), int(n * (train_frac + val_frac))
    return items[:a], items[a:b], items[b:]


def _pairs(tf: int, targets: np.ndarray, label: int) -> np.ndarray:
    out = np.empty((len(targets), 3), dtype=np.int64)
    out[:, 0], out[:, 1], out[:, 2] = tf, targets, label
    return out


def _stack(chunks: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(chunks, axis=0) if chunks else np.zeros((0, 3), dtype=np.int64)


def positives_by_tf(graph: LabelGraph) -> dict[int, np.ndarray]:
    """Sorted positive targets of each TF with at least one."""
    edges = graph.edges
    return {int(t): np.sort(edges[edges[:, 0] == t, 1]) for t in graph.tf_index}


def genelink_split(
    graph: LabelGraph,
    seed: int = 0,
    train_frac: float = 0.67,
    val_frac: float = 0.10,
    single_positive_train_prob: float = 0.5,
) -> Split:
    """GENELink's per-TF split; deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    all_genes = np.arange(graph.n_genes)
    parts: dict[str, list[np.ndarray]] = {p: [] for p in PARTS}
    for tf, pos in positives_by_tf(graph).items():
        neg = np.setdiff1d(all_genes, np.append(pos, tf))
        pos = rng.permutation(pos)
        if len(pos) == 1:
            dest = "train" if rng.uniform() <= single_positive_train_prob else "test"
            parts[dest].append(_pairs(tf, pos, 1))
        elif len(pos) == 2:
            parts["train"].append(_pairs(tf, pos[:1], 1))
            parts["test"].append(_pairs(tf, pos[1:], 1))
        else:
            for name, chunk in zip(PARTS, _cut(pos, train_frac, val_frac)):
                parts[name].append(_pairs(tf, chunk, 1))
        for name, chunk in zip(PARTS, _cut(rng.permutation(neg), train_frac, val_frac)):
            parts[name].append(_pairs(tf, chunk, 0))
    return Split(*(_stack(parts[p]) for p in PARTS), protocol="genelink", seed=seed)


def candidate_pairs(graph: LabelGraph) -> np.ndarray:
    """Every (TF with a positive, gene != TF) pair with its label: int64 [n, 3] (TF-major, genes ascending)."""
    n, tfs = graph.n_genes, graph.tf_index.astype(np.int64)
    if len(tfs) == 0:
        return np.zeros((0, 3), dtype=np.int64)
    tf = np.repeat(tfs, n)
    target = np.tile(np.arange(n, dtype=np.int64), len(tfs))
    keep = tf != target
    tf, target = tf[keep], target[keep]
    positive = np.unique(graph.edges[:, 0] * n + graph.edges[:, 1])
    labels = np.isin(tf * n + target, positive).astype(np.int64)  # no Python object per pair
    return np.stack([tf, target, labels], axis=1)


def _group_assignment(
    ids: np.ndarray, rng: np.random.Generator, heldout_frac: float, val_frac: float, what: str
) -> dict[int, str]:
    ids = rng.permutation(ids)
    n = len(ids)
    n_test = max(1, int(round(n * heldout_frac)))
    n_val = max(1, int(round(n * val_frac)))
    if n - n_test - n_val < 1:
        raise DataError(
            f"too few {what}s ({n}) for a held-out split: need at least 3 (one each for train, validation and test)"
        )
    out = {int(i): "test" for i in ids[:n_test]}
    out.update({int(i): "val" for i in ids[n_test : n_test + n_val]})
    out.update({int(i): "train" for i in ids[n_test + n_val :]})
    return out


def heldout_split(
    graph: LabelGraph,
    protocol: str,
    seed: int = 0,
    heldout_frac: float = 0.2,
    val_frac: float = 0.1,
) -> Split:
    """Held-out TFs, targets, or both; see the module docstring."""
    rng = np.random.default_rng(seed)
    pairs = candidate_pairs(graph)
    tf_part = target_part = None
    if protocol in ("heldout_tf", "heldout_both"):
        groups = _group_assignment(graph.tf_index, rng, heldout_frac, val_frac, "TF")
        tf_part = np.array([groups[int(t)] for t in pairs[:, 0]])
    if protocol in ("heldout_target", "heldout_both"):
        # Targets are drawn from non-TF genes so a held-out target never appears as a training TF.
        non_tf = np.setdiff1d(np.arange(graph.n_genes), graph.tf_index)
        groups = _group_assignment(non_tf, rng, heldout_frac, val_frac, "target gene")
        target_part = np.array([groups.get(int(t), "tf") for t in pairs[:, 1]])
    if protocol == "heldout_tf":
        assign = tf_part
    elif protocol == "heldout_target":
        # Pairs whose target is itself a TF stay in training (they carry TF-TF edges).
        assign = np.where(target_part == "tf", "train", target_part)
    elif protocol == "heldout_both":
        tp = np.where(target_part == "tf", "train", target_part)
        assign = np.where(tf_part == tp, tf_part, "drop")
    else:
        raise ValueError(f"unknown protocol {protocol!r}")
    split = Split(*(pairs[assign == p] for p in PARTS), protocol=protocol, seed=seed)
    for part in PARTS:
        labels = split.part(part)[:, 2]
        if len(labels) == 0 or labels.min() == labels.max():
            raise DataError(
                f"{protocol} split (seed {seed}) leaves the {part} part with "
                f"{'no pairs' if len(labels) == 0 else 'a single class'}; the gene set is too small to split"
            )
    return split


def make_split(graph: LabelGraph, config) -> Split:
    """From a `SplitConfig`: pre-made split files, or one of the protocols."""
    if config.split_dir is not None:
        split = read_split_dir(config.split_dir, n_genes=graph.n_genes)
    elif len(graph.tf_index) == 0:
        raise DataError("no TF has a known positive target in the priors; nothing to split")
    elif config.protocol == "genelink":
        split = genelink_split(
            graph, config.seed, config.train_frac, config.val_frac, config.single_positive_train_prob
        )
    else:
        split = heldout_split(graph, config.protocol, config.seed, config.heldout_frac, config.val_frac)
    if config.degree_aware_negatives and config.split_dir is None:  # pre-made files are used as they are
        split = degree_aware_negatives(split, config.seed)
    # Checked before any run opens: an empty part would fail only at evaluation, after training.
    empty = [p for p in ("train", "test") if len(split.part(p)) == 0]
    if empty:
        if config.split_dir is not None:
            where = f"the split files in {config.split_dir}"
        else:
            first = "train_frac" if config.protocol == "genelink" else "heldout_frac"
            where = (
                f"the {config.protocol} split (split.{first} {getattr(config, first):g}, "
                f"split.val_frac {config.val_frac:g}, seed {config.seed})"
            )
        raise DataError(f"{where} leaves the {' and '.join(empty)} part(s) with no pairs; too few labelled pairs")
    return split


def degree_aware_negatives(split: Split, seed: int = 0) -> Split:
    """Resample every part's negatives so each target gene has as many negatives as positives.

    Under the default protocol a target's share of positives tracks its popularity, which a
    no-learning score exploits; balancing negatives per target removes that shortcut
    (Stock, Ratajczak et al. 2025).
    """
    rng = np.random.default_rng(seed + 7919)
    parts = {}
    for name in PARTS:
        pairs = split.part(name)
        pos, neg = pairs[pairs[:, 2] == 1], pairs[pairs[:, 2] == 0]
        keep = []
        counts = pd.Series(pos[:, 1]).value_counts()
        for target, k in counts.items():
            cand = np.flatnonzero(neg[:, 1] == target)
            if len(cand):
                keep.append(rng.choice(cand, size=min(int(k), len(cand)), replace=False))
        chosen = neg[np.concatenate(keep)] if keep else neg[:0]
        parts[name] = np.concatenate([pos, chosen])
    return Split(
        parts["train"], parts["val"], parts["test"], protocol=split.protocol + "+degree_aware", seed=split.seed
    )


def read_split_dir(directory: str | Path, n_genes: int | None = None) -> Split:
    """Pre-made `Train_set.csv`, `Validation_set.csv` (optional), `Test_set.csv` (plain or .gz)."""
    directory = Path(directory)
    parts = {}
    for part, fname in SPLIT_FILES.items():
        path = find_file(directory, fname)
        if path is None:
            if part == "val":  # the scRegNet split files have no validation part
                parts[part] = np.zeros((0, 3), dtype=np.int64)
                continue
            raise DataError(f"missing {fname} (or {fname}.gz)", directory)
        df = read_table(path, expect=("TF", "Target", "Label"))
        if df.empty:  # a part with no pairs (header only)
            parts[part] = np.zeros((0, 3), dtype=np.int64)
            continue
        arr = df[["TF", "Target", "Label"]].to_numpy()
        if not np.issubdtype(arr.dtype, np.integer):
            raise DataError("columns TF, Target, Label must hold integers", path)
        if n_genes is not None:
            bad = (arr[:, :2] < 0) | (arr[:, :2] >= n_genes)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise DataError(f"row {row + 2}: node index out of range; expected 0..{n_genes - 1}", path)
        parts[part] = arr.astype(np.int64)
    return Split(parts["train"], parts["val"], parts["test"], protocol=f"files:{directory.name}")
