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
    # the stored config must describe the model built here (ScRegNet's own defaults: no prior)
    cfg = ModelConfig(gnn_dims=[8], mlp_dims=[4], prior="none", coexpression=False)
    model = ScRegNet(6, torch.randn(10, 3), gnn_dims=cfg.gnn_dims, mlp_dims=cfg.mlp_dims)
    bundle = ModelBundle(
        model,
        torch.randn(10, 6),
        training_graph(torch.tensor([[0, 1], [2, 3]]), 10),
        {"model": cfg.model_dump(mode="json"), "genes": [f"G{i}" for i in range(10)]},
    )
    pairs = np.array([[0, 1], [2, 9], [4, 5]])
    bundle.save(tmp_path / "m")
    assert not list((tmp_path / "m").glob("*.pkl"))
    again = ModelBundle.load(tmp_path / "m")
    np.testing.assert_allclose(again.score_indices(pairs), bundle.score_indices(pairs), rtol=1e-6)
    np.testing.assert_allclose(
        again.score_symbols(["G0", "g2"], ["G1", "G9"]), bundle.score_indices(pairs[:2]), rtol=1e-6
    )
    with pytest.raises(KeyError, match="NOPE"):
        again.score_symbols(["NOPE"], ["G1"])
    raw = bytearray((tmp_path / "m" / "model.safetensors").read_bytes())
    raw[-1] ^= 0xFF
    (tmp_path / "m" / "model.safetensors").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum mismatch"):
        ModelBundle.load(tmp_path / "m")


def _toy_pairs(n=30, tfs=(0, 1, 2), seed=0):
    rng = np.random.default_rng(seed)
    rows = [(t, g, int(rng.uniform() < 0.2 + 0.2 * t)) for t in tfs for g in range(n) if g != t]
    return torch.tensor(rows, dtype=torch.int64)


def test_untrained_prior_model_scores_like_label_count():
    from scregnet.baselines import baseline_scores

    train = _toy_pairs()
    model = ScRegNet(12, None, gnn_dims=[8], mlp_dims=[4], num_nodes=30, prior="label_count").eval()
    model.set_degrees(train)
    x, ei = torch.randn(30, 12), training_graph(train[train[:, 2] == 1, :2], 30)
    pairs = _toy_pairs(seed=1)
    expected = baseline_scores("label_count", train.numpy(), pairs.numpy(), 30)
    logit = torch.logit(model.score(x, ei, pairs[:, :2]).double())
    np.testing.assert_allclose(logit.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_prior_leave_one_out_removes_the_pairs_own_label():
    train = _toy_pairs()
    model = ScRegNet(12, None, gnn_dims=[8], mlp_dims=[4], num_nodes=30, prior="label_count")
    model.set_degrees(train)
    pos = train[train[:, 2] == 1][:1]
    tf, target = int(pos[0, 0]), int(pos[0, 1])
    m = train[:, 0] == tf
    rate = (train[m, 2].sum() - 1).float() / (m.sum() - 1)
    indeg = train[(train[:, 1] == target), 2].sum().float() - 1
    got = model.prior_logit(pos[:, :2], pos[:, 2])
    torch.testing.assert_close(got, (torch.log(rate + 1e-6) + torch.log1p(indeg)).reshape(1))


def test_coexpression_input_is_pearson_r():
    x = torch.randn(10, 50)
    model = ScRegNet(50, None, gnn_dims=[4], mlp_dims=[4], coexpression=True)
    r = model.correlation(x)
    torch.testing.assert_close(
        r[2, 7], torch.tensor(np.corrcoef(x.numpy())[2, 7], dtype=torch.float32), atol=1e-5, rtol=1e-5
    )
    assert model.head.in_features == 2 * 4 + 2


def test_bundle_round_trip_with_prior_and_coexpression(tmp_path):
    from scregnet.models import build_scregnet

    cfg = ModelConfig(gnn_dims=[8], mlp_dims=[4], prior="label_count", coexpression=True, head="interaction")
    train = _toy_pairs()
    model = build_scregnet(6, None, cfg, num_nodes=30)
    model.set_degrees(train)
    torch.nn.init.normal_(model.head.weight)
    bundle = ModelBundle(
        model,
        torch.randn(30, 6),
        training_graph(train[train[:, 2] == 1, :2], 30),
        {"model": cfg.model_dump(mode="json"), "genes": [f"G{i}" for i in range(30)]},
    )
    bundle.save(tmp_path / "m")
    pairs = np.array([[0, 1], [2, 9], [1, 5]])
    np.testing.assert_allclose(
        ModelBundle.load(tmp_path / "m").score_indices(pairs), bundle.score_indices(pairs), rtol=1e-6
    )
