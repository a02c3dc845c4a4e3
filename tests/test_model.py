import numpy as np
import pytest
import torch

from scregnet.config import ModelConfig
from scregnet.models import GNNEncoder, ScRegNet, training_graph
from scregnet.serialize import ModelBundle


@pytest.mark.parametrize("kind", ["gcn", "sage", "gat"])
def test_encoder_output_shape(kind):
    x = torch.randn(30, 12)
    ei = training_graph(torch.tensor([[0, 5], [1, 6], [2, 7]]), 30)
    enc = GNNEncoder(12, [16, 8], kind)
    assert enc(x, ei).shape == (30, 8)


def test_training_graph_is_undirected_without_self_loops():
    ei = training_graph(torch.tensor([[0, 1], [1, 2], [3, 3]]), 4)
    edges = set(map(tuple, ei.t().tolist()))
    assert edges == {(0, 1), (1, 0), (1, 2), (2, 1)}


def test_joint_representation_and_frozen_embedding():
    emb = torch.randn(30, 5)
    model = ScRegNet(12, emb, gnn_dims=[16, 8], mlp_dims=[6])
    x, ei = torch.randn(30, 12), training_graph(torch.tensor([[0, 5], [1, 6]]), 30)
    assert model.node_representation(x, ei).shape == (30, 5 + 8)
    logits = model(x, ei, torch.tensor([[0, 1], [2, 3], [4, 5]]))
    assert logits.shape == (3, 2)
    assert model.head.in_features == 12  # Linear(2h, 2)
    assert all(p is not model.embedding for p in model.parameters())  # frozen: a buffer
    assert model.target_tower is model.tf_tower  # paper default: shared towers
    assert ScRegNet(12, emb, shared_towers=False).target_tower is not ScRegNet(12, emb).tf_tower


def test_scores_are_deterministic_in_eval_mode():
    model = ScRegNet(12, None, dropout=0.5).eval()
    x, ei, pairs = torch.randn(20, 12), training_graph(torch.tensor([[0, 5]]), 20), torch.tensor([[0, 1], [2, 3]])
    torch.testing.assert_close(model.score(x, ei, pairs), model.score(x, ei, pairs))


def test_bundle_round_trip_and_tamper_refusal(tmp_path):
    cfg = ModelConfig(gnn_dims=[8], mlp_dims=[4])
    model = ScRegNet(6, torch.randn(10, 3), gnn_dims=cfg.gnn_dims, mlp_dims=cfg.mlp_dims)
    bundle = ModelBundle(model, torch.randn(10, 6), training_graph(torch.tensor([[0, 1], [2, 3]]), 10),
                         {"model": cfg.model_dump(mode="json"), "genes": [f"G{i}" for i in range(10)]})
    pairs = np.array([[0, 1], [2, 9], [4, 5]])
    bundle.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl"))
    again = ModelBundle.load(tmp_path / "m")
    np.testing.assert_allclose(again.score_indices(pairs), bundle.score_indices(pairs), rtol=1e-6)
    np.testing.assert_allclose(again.score_symbols(["G0", "g2"], ["G1", "G9"]), bundle.score_indices(pairs[:2]), rtol=1e-6)
    with pytest.raises(KeyError, match="NOPE"):
        again.score_symbols(["NOPE"], ["G1"])
    raw = bytearray((tmp_path / "m" / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "m" / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum mismatch"):
        ModelBundle.load(tmp_path / "m")
