from collections import Counter

import numpy as np
import pytest

from scregnet.config import SplitConfig
from scregnet.errors import DataError
from scregnet.splits import PARTS, candidate_pairs, genelink_split, heldout_split, make_split, read_split_dir
from tests.conftest import beeline_label_graph
from tests.conftest import pair_set as _pairs


@pytest.fixture(scope="module")
def hesc_graph():
    return beeline_label_graph("hESC")


def test_genelink_split_reproduces_the_published_hesc_counts(hesc_graph):
    # 34 TFs x 909 candidates = 30,906 pairs. Only the three single-positive TFs are random
    # (train with p=0.5, else test): exactly one of them in train gives 20,677 / 3,087 / 7,142.
    singles = [t for t in hesc_graph.tf_index if (hesc_graph.edges[:, 0] == t).sum() == 1]
    assert len(singles) == 3
    seen = {}
    for seed in range(12):
        sizes = genelink_split(hesc_graph, seed).sizes()
        assert sum(sizes.values()) == 30_906 and sizes["val"] == 3_087
        seen[sizes["train"]] = sizes
    assert seen[20_677] == {"train": 20_677, "val": 3_087, "test": 7_142}
    assert set(seen) <= {20_676, 20_677, 20_678, 20_679} and len(seen) >= 2


def test_genelink_split_matches_the_reference_split_files_per_tf(hesc_graph):
    from tests.conftest import shared_path

    ref = read_split_dir(shared_path("beeline", "Specific", "hESC", "TFs500", "splits", "GENELink_Demo"))
    assert ref.sizes() == {"train": 20_677, "val": 3_087, "test": 7_142}
    ours = next(s for s in (genelink_split(hesc_graph, k) for k in range(12)) if s.sizes()["train"] == 20_677)
    for part in ("val",):  # validation has no random single-positive moves: per-TF counts must agree
        for label in (0, 1):
            a = Counter(ours.part(part)[ours.part(part)[:, 2] == label, 0].tolist())
            b = Counter(ref.part(part)[ref.part(part)[:, 2] == label, 0].tolist())
            assert a == b


def test_genelink_split_invariants(hesc_graph):
    split = genelink_split(hesc_graph, seed=3)
    parts = [_pairs(split.part(p)) for p in PARTS]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert all((split.part(p)[:, 0] != split.part(p)[:, 1]).all() for p in PARTS)
    positives = _pairs(hesc_graph.edges)
    for p in PARTS:
        arr = split.part(p)
        assert {tuple(x) for x in arr[arr[:, 2] == 1, :2].tolist()} <= positives
        assert not ({tuple(x) for x in arr[arr[:, 2] == 0, :2].tolist()} & positives)
    # seeded: same seed, same split; another seed, another split
    np.testing.assert_array_equal(genelink_split(hesc_graph, 3).train, split.train)
    assert not np.array_equal(genelink_split(hesc_graph, 4).train, split.train)


@pytest.mark.parametrize("protocol", ["heldout_tf", "heldout_target", "heldout_both"])
def test_heldout_protocols_never_show_heldout_genes_in_training(hesc_graph, protocol):
    split = heldout_split(hesc_graph, protocol, seed=1)
    train, test, val = split.train, split.test, split.val
    assert not (_pairs(train) & _pairs(test) or _pairs(train) & _pairs(val) or _pairs(val) & _pairs(test))
    if protocol in ("heldout_tf", "heldout_both"):
        assert not set(test[:, 0]) & set(train[:, 0])
        assert not set(val[:, 0]) & set(train[:, 0])
    if protocol in ("heldout_target", "heldout_both"):
        assert not set(test[:, 1]) & set(train[:, 1])
        assert not set(test[:, 1]) & set(train[:, 0])  # nor as a training TF
    for p in PARTS:
        assert 0 < split.part(p)[:, 2].mean() < 1
    if protocol != "heldout_both":  # every candidate pair lands somewhere
        assert sum(split.sizes().values()) == len(candidate_pairs(hesc_graph))


def test_too_few_tfs_for_heldout_split_is_a_clear_error(synthetic):
    graph = synthetic.label_graph()
    graph.tf_index = graph.tf_index[:2]
    with pytest.raises(DataError, match="too few TFs"):
        heldout_split(graph, "heldout_tf")


def test_make_split_reads_premade_files_and_degree_aware_negatives(hesc_graph, tmp_path):
    split = genelink_split(hesc_graph, 0)
    split.save(tmp_path)
    again = make_split(hesc_graph, SplitConfig(split_dir=tmp_path))
    np.testing.assert_array_equal(again.test, split.test)
    balanced = make_split(hesc_graph, SplitConfig(degree_aware_negatives=True))
    tr = balanced.train
    pos = Counter(tr[tr[:, 2] == 1, 1].tolist())
    neg = Counter(tr[tr[:, 2] == 0, 1].tolist())
    assert all(neg[t] <= pos[t] for t in neg) and set(neg) <= set(pos)
