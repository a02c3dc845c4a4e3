"""Peer scorers (scregnet/peers.py): correctness against scipy/scikit-learn, missing scores, cache."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import spearmanr

from scregnet.config import PeerConfig
from scregnet.embeddings.base import GeneEmbedding
from scregnet.peers import (
    PeerMatrix,
    cache_dir,
    compute_peer,
    compute_peers,
    dataset_peers,
    embedding_cosine,
    evaluate_peers,
    expression_content_hash,
    fill_missing,
)


def _adata(x, genes=None):
    genes = genes or [f"G{i}" for i in range(x.shape[1])]
    return ad.AnnData(X=x, var=pd.DataFrame(index=pd.Index(genes)))


@pytest.fixture
def messy():
    """Cells x genes with zeros, negatives, ties and one constant gene (G7)."""
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(60, 12)), 1)
    x[rng.uniform(size=x.shape) < 0.4] = 0.0
    x[:, 7] = 0.0
    return x


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("name", ["pearson", "spearman"])
def test_correlation_peers_equal_scipy(messy, sparse, name):
    x = sp.csr_matrix(messy) if sparse else messy
    regs = ["G0", "G3", "G7"]
    m = compute_peer(name, _adata(x), regs, PeerConfig(cache=False))
    assert m.scores.shape == (3, 12) and m.scores.dtype == np.float32
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = np.abs(np.corrcoef(messy.T) if name == "pearson" else spearmanr(messy).statistic)[[0, 3, 7]]
    ref[[0, 1], [0, 3]] = np.nan  # a regulator's own column is no pair
    ref[2, 7] = np.nan
    assert np.array_equal(np.isnan(m.scores), np.isnan(ref))  # constant G7: NaN row and column
    np.testing.assert_allclose(m.scores[np.isfinite(ref)], ref[np.isfinite(ref)], atol=1e-6)


def test_missing_scores_rank_lowest_and_non_regulators_are_missing():
    m = PeerMatrix("p", ["A"], ["A", "B", "C", "D"], np.array([[np.nan, 0.2, np.nan, -3.0]], dtype=np.float32))
    pairs = np.array([[0, 1], [0, 2], [0, 3], [1, 2]])  # (A,B) (A,C) (A,D) and B, which is no regulator
    raw = m.lookup(pairs)
    assert np.isnan(raw[[1, 3]]).all() and raw[0] == pytest.approx(0.2)
    s = m.score(pairs)
    assert s[1] == s[3] < s[2] < s[0]  # missing below every scored pair, tied with each other
    assert np.array_equal(fill_missing(np.array([np.nan, np.nan])), [0.0, 0.0])
    # Pairs indexed in another gene order are matched by symbol.
    other = ["D", "A", "B"]
    assert np.allclose(m.lookup(np.array([[1, 2], [1, 0]]), other), [0.2, -3.0])


def _planted(n_cells=300, seed=0):
    """T0 drives G5 and T1 drives G6 (nonlinearly); the other genes are noise."""
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 1.0, size=(n_cells, 10))
    x[:, 5] = np.tanh(x[:, 0] - 2.0) + 0.05 * rng.normal(size=n_cells)
    x[:, 6] = (x[:, 1] > 2.0) * 2.0 + 0.05 * rng.normal(size=n_cells)
    x[:, 9] = 1.0  # constant: nothing to explain
    return _adata(x.astype(np.float32), ["T0", "T1", "T2"] + [f"G{i}" for i in range(3, 10)])


@pytest.mark.parametrize("name", ["grnboost2", "genie3"])
def test_tree_peers_find_planted_regulators(name):
    cfg = PeerConfig(cache=False, rf_n_estimators=50)
    m = compute_peer(name, _planted(), ["T0", "T1", "T2"], cfg)
    assert m.scores.shape == (3, 10)
    assert np.isnan(m.scores[[0, 1, 2], [0, 1, 2]]).all()  # a gene never explains itself
    assert np.argmax(m.scores[:, 5]) == 0 and np.argmax(m.scores[:, 6]) == 1
    assert np.all(m.scores[:, 9] == 0)  # constant target
    if name == "genie3":  # GENIE3 normalises importances per target
        np.testing.assert_allclose(np.nansum(m.scores[:, 5]), 1.0, rtol=1e-5)
    else:  # GRNBoost2 keeps importance x trees: a strong link weighs more than 1
        assert m.scores[0, 5] > 1.0


def test_grnboost2_same_with_more_workers_and_cells_subsample_is_seeded():
    data = _planted(n_cells=200)
    one = compute_peer("grnboost2", data, ["T0", "T1"], PeerConfig(cache=False, n_jobs=1))
    two = compute_peer("grnboost2", data, ["T0", "T1"], PeerConfig(cache=False, n_jobs=2))
    np.testing.assert_array_equal(one.scores, two.scores)
    a = compute_peer("grnboost2", data, ["T0", "T1"], PeerConfig(cache=False, max_cells=120))
    b = compute_peer("grnboost2", data, ["T0", "T1"], PeerConfig(cache=False, max_cells=120))
    np.testing.assert_array_equal(a.scores, b.scores)
    assert not np.array_equal(a.scores, one.scores, equal_nan=True)


def test_cache_hit_recompute_on_change_and_on_corrupt_file(messy):
    cfg = PeerConfig()
    data = _adata(messy)
    first = compute_peer("spearman", data, ["G0", "G1"], cfg)
    files = list(cache_dir().glob("spearman-*.npz"))
    assert first.meta["cached"] is False and len(files) >= 1
    assert not list(cache_dir().glob(".*.tmp"))  # atomic write leaves no temp file
    again = compute_peer("spearman", data, ["G0", "G1"], cfg)
    assert again.meta["cached"] is True
    np.testing.assert_array_equal(again.scores, first.scores)
    # No pickle in the file: it loads with allow_pickle=False.
    with np.load(cache_dir() / f"spearman-{first.meta['key'][:32]}.npz", allow_pickle=False) as z:
        assert list(z["regulators"]) == ["G0", "G1"]
    changed = messy.copy()
    changed[0, 0] += 1.0
    assert compute_peer("spearman", _adata(changed), ["G0", "G1"], cfg).meta["cached"] is False
    assert compute_peer("spearman", data, ["G0", "G2"], cfg).meta["cached"] is False  # other regulators
    path = cache_dir() / f"spearman-{first.meta['key'][:32]}.npz"
    path.write_bytes(b"not a zip")
    fresh = compute_peer("spearman", data, ["G0", "G1"], cfg)
    assert fresh.meta["cached"] is False
    np.testing.assert_array_equal(fresh.scores, first.scores)


def test_expression_hash_ignores_storage_details_not_values(messy):
    dense = expression_content_hash(_adata(messy.astype(np.float32)))
    assert dense == expression_content_hash(_adata(messy.astype(np.float64)))
    csr = sp.csr_matrix(messy)
    coo = sp.coo_matrix(messy)
    dup = sp.coo_matrix(
        (np.r_[coo.data, 0.0], (np.r_[coo.row, coo.row[0]], np.r_[coo.col, coo.col[0]])), shape=messy.shape
    )  # a duplicate entry: summed, same content
    assert expression_content_hash(_adata(csr)) == expression_content_hash(_adata(dup.tocsr()))
    # The same CSR with a stored duplicate (an explicit 0.0 beside an entry): not canonical, same content.
    end = csr.indptr[1]
    assert end > 0, "row 0 of the fixture has a non-zero"
    noncanonical = sp.csr_matrix(
        (np.r_[csr.data[:end], 0.0, csr.data[end:]], np.r_[csr.indices[:end], csr.indices[0], csr.indices[end:]],
         np.r_[0, csr.indptr[1:] + 1]),
        shape=csr.shape,
    )  # fmt: skip
    assert not noncanonical.has_canonical_format
    assert expression_content_hash(_adata(noncanonical)) == expression_content_hash(_adata(csr))
    other = messy.copy()
    other[5, 5] += 0.5
    assert expression_content_hash(_adata(other)) != dense
    assert expression_content_hash(_adata(messy, [f"X{i}" for i in range(12)])) != dense


def test_embedding_cosine_missing_vectors_are_lowest():
    emb = GeneEmbedding(["A", "B", "C"], np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))  # C: zero vector
    m = embedding_cosine(emb, ["A", "B"], ["A", "B", "C", "D"])  # D: no vector
    assert m.scores[0, 1] == pytest.approx(1 / np.sqrt(2)) and m.scores[1, 0] == pytest.approx(1 / np.sqrt(2))
    assert np.isnan(m.scores[:, 2:]).all()
    s = m.score(np.array([[0, 1], [0, 2], [0, 3]]))
    assert s[1] == s[2] < s[0]
    assert "embedding_cosine" not in compute_peers(_adata(np.eye(4)), ["G0"], PeerConfig(cache=False), None)


def test_peers_on_synthetic_data(synthetic):
    """Targets in the synthetic data are sums of their regulators' activities: co-expression ranks them."""
    from scregnet.embeddings.simple import PCAEmbedder
    from scregnet.splits import candidate_pairs

    emb = PCAEmbedder(dim=8).embed(synthetic.adata)
    mats = dataset_peers(synthetic, PeerConfig(cache=False), emb)
    assert set(mats) == {"grnboost2", "pearson", "spearman", "embedding_cosine"}
    pairs = candidate_pairs(synthetic.label_graph())
    metrics = evaluate_peers(mats, pairs, synthetic.genes)
    for name in ("grnboost2", "pearson", "spearman"):
        assert metrics[name]["auroc"] > 0.6, (name, metrics[name])
        assert metrics[name]["coverage"] > 0.99  # only constant genes lack a score
    assert metrics["embedding_cosine"]["coverage"] > 0.99
