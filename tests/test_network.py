"""Genome-wide networks: the streamed network equals the in-memory ranking, filters act per TF
block, `known` marks training positives, and the `tf` order really streams."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from scregnet import predict
from scregnet.predict import NetworkSpec, network_chunks, score_all_pairs, write_network


@pytest.fixture(scope="module")
def trained(synthetic):
    from scregnet.config import RunConfig
    from scregnet.experiment import run_experiment

    cfg = RunConfig()
    cfg.model.gnn_dims, cfg.model.mlp_dims = [32, 16], [16]
    cfg.train.max_epochs, cfg.train.patience = 20, 3
    res = run_experiment(synthetic, cfg, None, seed=0)
    res.model.meta["tfs"] = list(synthetic.tfs)
    return res


def _brute_force(bundle, tfs) -> pd.DataFrame:
    """Every pair scored one symbol list at a time and sorted by pandas: the reference ranking."""
    rows = [(tf, g) for tf in tfs for g in bundle.genes if g != tf]
    frame = pd.DataFrame(rows, columns=["tf", "target"])
    frame["score"] = bundle.score_symbols(frame["tf"].tolist(), frame["target"].tolist()).astype(np.float32)
    frame = frame.sort_values(["score", "tf", "target"], ascending=[False, True, True], kind="mergesort")
    return frame.reset_index(drop=True)


def _all(bundle, **kw) -> pd.DataFrame:
    return pd.concat(list(network_chunks(bundle, NetworkSpec(**kw))), ignore_index=True)


def test_streamed_network_equals_the_in_memory_ranking(trained, monkeypatch):
    bundle, tfs = trained.model, list(trained.model.meta["tfs"])
    reference = _brute_force(bundle, tfs)
    in_memory = score_all_pairs(bundle)
    # Small blocks and chunks: many model calls and many written pieces, same network.
    monkeypatch.setattr(predict, "ROWS_PER_CHUNK", 97)
    streamed = _all(bundle, pairs_per_block=3 * len(bundle.genes) + 5)
    for frame in (in_memory, streamed):
        assert frame["rank"].tolist() == list(range(1, len(reference) + 1))
        pd.testing.assert_frame_equal(frame[["tf", "target"]], reference[["tf", "target"]])
        np.testing.assert_allclose(frame["score"], reference["score"], rtol=1e-6, atol=1e-7)


def test_known_marks_exactly_the_training_positives(trained):
    bundle, split = trained.model, trained.split
    frame = _all(bundle)
    genes = np.asarray(bundle.genes)
    positives = {(genes[a], genes[b]) for a, b in split.train_positive_edges()}
    marked = set(zip(frame.loc[frame["known"], "tf"], frame.loc[frame["known"], "target"]))
    assert marked == positives and len(positives) > 0


def test_filters_equal_filtering_the_full_ranking(trained):
    bundle = trained.model
    full = _all(bundle)
    top = _all(bundle, top=25)
    pd.testing.assert_frame_equal(top.drop(columns="rank"), full.head(25).drop(columns="rank"))
    threshold = float(full["score"].quantile(0.9))
    above = _all(bundle, min_score=threshold)
    pd.testing.assert_frame_equal(
        above.drop(columns="rank"), full[full["score"] >= threshold].reset_index(drop=True).drop(columns="rank")
    )
    per_tf = _all(bundle, top_k_per_tf=3, order="tf")
    expected = full.groupby("tf", sort=False).head(3)
    assert len(per_tf) == 3 * full["tf"].nunique()
    assert set(zip(per_tf["tf"], per_tf["target"])) == set(zip(expected["tf"], expected["target"]))


def test_tf_order_ranks_within_each_tf_and_streams_block_by_block(trained, monkeypatch):
    bundle = trained.model
    n = len(bundle.genes)
    calls = []
    real = bundle.score_indices
    monkeypatch.setattr(bundle, "score_indices", lambda pairs: calls.append(len(pairs)) or real(pairs))
    chunks = network_chunks(bundle, NetworkSpec(order="tf", pairs_per_block=n))  # one TF per block
    first = next(chunks)
    assert len(calls) == 1, "the first chunk must come before the other TFs are scored"
    frame = pd.concat([first, *chunks], ignore_index=True)
    assert len(calls) == len(bundle.meta["tfs"])
    for _, group in frame.groupby("tf"):
        assert group["tf_rank"].tolist() == list(range(1, len(group) + 1))
        assert (np.diff(group["score"].to_numpy()) <= 0).all()
    full = _all(bundle)
    assert set(zip(frame["tf"], frame["target"])) == set(zip(full["tf"], full["target"]))


def test_tfs_without_training_positives_are_named(trained, caplog):
    bundle = trained.model
    with_positive = {bundle.genes[i] for i in trained.split.train_positive_edges()[:, 0]}
    lonely = next(g for g in bundle.genes if g not in with_positive)
    with caplog.at_level(logging.WARNING, logger="scregnet.predict"):
        _all(bundle, tfs=[lonely, *sorted(with_positive)[:1]])
    assert "had no training positive" in caplog.text and lonely in caplog.text


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".tsv", ".graphml"])
def test_written_files_hold_the_same_network(trained, tmp_path, suffix, monkeypatch):
    bundle = trained.model
    monkeypatch.setattr(predict, "ROWS_PER_CHUNK", 50)
    path, summary = write_network(network_chunks(bundle, NetworkSpec(top_k_per_tf=5)), tmp_path / f"net{suffix}")
    expected = _all(bundle, top_k_per_tf=5)
    assert summary["pairs"] == len(expected) and summary["known"] == int(expected["known"].sum())
    if suffix == ".graphml":
        import networkx as nx

        g = nx.read_graphml(path)
        assert g.number_of_edges() == len(expected)
        return
    back = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    pd.testing.assert_frame_equal(back[["tf", "target", "rank"]], expected[["tf", "target", "rank"]])
    assert back["known"].astype(bool).tolist() == expected["known"].tolist()
    assert not list(tmp_path.glob(".*.tmp")), "the temporary file must be renamed or removed"


def test_large_gene_sets_use_correlation_rows_with_the_same_scores(trained, monkeypatch):
    from scregnet import models

    bundle = trained.model
    pairs = np.array([[i, j] for i in range(5) for j in range(len(bundle.genes)) if i != j])
    full = bundle.score_indices(pairs)
    monkeypatch.setattr(models, "FULL_CORRELATION_MAX_GENES", 0)  # as if the gene set were genome-wide
    rows = bundle.score_indices(pairs)
    np.testing.assert_allclose(rows, full, rtol=1e-5, atol=1e-6)
