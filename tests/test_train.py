import numpy as np
import pytest
import torch

from scregnet.experiment import run_experiment
from scregnet.splits import Split, make_split
from scregnet.train import ModelInputs, fit


def test_selection_never_looks_at_test_labels(synthetic, fast_config):
    split = make_split(synthetic.label_graph(), fast_config.split)
    inputs = ModelInputs.build(synthetic, None)
    a = fit(inputs, split, fast_config.model, fast_config.train)
    flipped = Split(split.train, split.val, split.test.copy())
    flipped.test[:, 2] = 1 - flipped.test[:, 2]
    b = fit(inputs, flipped, fast_config.model, fast_config.train)
    assert a.best_epoch == b.best_epoch and a.best_val == b.best_val
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        torch.testing.assert_close(va, vb, msg=k)


def test_validation_split_is_required(synthetic, fast_config):
    split = make_split(synthetic.label_graph(), fast_config.split)
    with pytest.raises(ValueError, match="no validation pairs"):
        fit(
            ModelInputs.build(synthetic, None),
            Split(split.train, split.val[:0], split.test),
            fast_config.model,
            fast_config.train,
        )


def test_early_stopping_keeps_the_best_validation_checkpoint(synthetic, fast_config):
    fast_config.train.max_epochs, fast_config.train.patience = 200, 2
    res = run_experiment(synthetic, fast_config, None, seed=0)
    evals = [h for h in res.train.history if "val_auprc" in h]
    metric = fast_config.train.select_metric
    best = max(evals, key=lambda h: h[f"val_{metric}"])
    assert res.train.best_epoch == best["epoch"]
    assert res.train.val_metrics[metric] == pytest.approx(best[f"val_{metric}"], abs=1e-6)
    assert res.evaluation.model["val"]["auprc"] == pytest.approx(best["val_auprc"], abs=1e-6)
    assert res.train.stopped_early and res.train.history[-1]["epoch"] < 200


def test_interaction_head_learns_coexpression_beyond_label_counts(synthetic, fast_config):
    # In the synthetic data a target's expression follows its (mostly activating) TFs, so
    # co-expression is informative; the interaction head must use it to beat label_count.
    fast_config.model.head = "interaction"
    fast_config.train.max_epochs = 150
    gains = []
    for seed in (0, 1):
        res = run_experiment(synthetic, fast_config, None, seed=seed)
        test = res.evaluation.model["test"]
        assert test["auprc"] > 2 * test["prevalence"]
        gains.append(test["auroc"] - res.evaluation.baselines["test"]["label_count"]["auroc"])
    assert sum(gains) / len(gains) > 0.02, gains
    assert set(res.evaluation.baselines["test"]) == {"label_count", "tf_prior", "target_popularity"}
    assert len(res.evaluation.test_scores) == len(res.split.test)


@pytest.mark.parametrize("gnn", ["sage", "gat"])
def test_other_gnns_and_ablations_train(synthetic, fast_config, gnn):
    fast_config.model.gnn = gnn
    fast_config.train.max_epochs = 10
    res = run_experiment(synthetic, fast_config, None, seed=0)
    assert np.isfinite(res.evaluation.model["test"]["auroc"])
    # ablation "no GNN": expression features straight into the towers
    fast_config.model.use_gnn = False
    assert np.isfinite(run_experiment(synthetic, fast_config, None, seed=0).evaluation.model["test"]["auroc"])


def test_prior_model_is_never_selected_below_the_prior_on_validation(synthetic, fast_config):
    # eval_at_start: epoch 0 (= the label_count prior, head zero-initialised) is a candidate.
    fast_config.model.prior = "label_count"
    res = run_experiment(synthetic, fast_config, None, seed=0)
    assert res.train.history[0]["epoch"] == 0
    metric = fast_config.train.select_metric
    lc = res.evaluation.baselines["val"]["label_count"]
    assert (
        res.train.best_val >= (lc["auroc"] + lc["auprc"]) / 2 - 1e-9 if metric == "auroc_auprc" else lc[metric] - 1e-9
    )


def test_edge_masking_and_head_weight_decay_train(synthetic, fast_config):
    fast_config.train.edge_mask_frac = 0.3
    fast_config.train.head_weight_decay = 1e-3
    fast_config.train.max_epochs = 10
    res = run_experiment(synthetic, fast_config, None, seed=0)
    assert np.isfinite(res.evaluation.model["test"]["auroc"])


@pytest.fixture(scope="module")
def lab_like(tmp_path_factory):
    """Raw counts driven by a hidden TF -> target network, preprocessed as a lab's AnnData is."""
    from scregnet.config import PreprocessConfig
    from scregnet.data import GRNDataset, load_h5ad
    from scregnet.preprocess import preprocess
    from scregnet.synthetic import write_counts_h5ad

    d = tmp_path_factory.mktemp("lab")
    write_counts_h5ad(d / "cells.h5ad", 2500, 4000, priors_path=d / "priors.csv", seed=1)
    raw = load_h5ad(d / "cells.h5ad", [d / "priors.csv"])
    adata = preprocess(raw.adata, raw.priors, PreprocessConfig(), source="h5ad")
    return GRNDataset.from_parts(adata, raw.priors)


def test_coexpression_init_starts_the_model_above_its_prior(lab_like, fast_config):
    """Co-expression carries signal the label_count prior lacks: started from a fit of it on the
    training pairs, the untrained model already ranks validation pairs better than the prior."""
    from scregnet.train import build_model, init_coexpression_head

    split = make_split(lab_like.label_graph(), fast_config.split)
    inputs = ModelInputs.build(lab_like, None)
    model = build_model(inputs, fast_config.model)
    model.set_degrees(torch.from_numpy(split.train))
    coef = init_coexpression_head(model, torch.from_numpy(inputs.features), torch.from_numpy(split.train))
    assert coef["w_abs_r"] > 0  # more co-expressed pairs are more often edges
    assert model.head.weight[1, -1].item() == pytest.approx(coef["w_abs_r"])
    assert model.head.weight[0].abs().sum().item() == 0 and model.head.weight[1, :-2].abs().sum().item() == 0

    fast_config.train.max_epochs = 5
    default = fit(inputs, split, fast_config.model, fast_config.train)
    fast_config.model.coexpression_init = True
    started = fit(inputs, split, fast_config.model, fast_config.train)
    epoch0 = [h for h in default.history if h["epoch"] == 0][0], [h for h in started.history if h["epoch"] == 0][0]
    assert epoch0[1]["val_auroc"] > epoch0[0]["val_auroc"] + 0.02, epoch0
    assert started.best_val >= default.best_val


def test_coexpression_init_needs_the_prior_and_the_coexpression_inputs():
    from scregnet.config import ModelConfig

    with pytest.raises(ValueError, match="coexpression_init needs coexpression: true and prior: label_count"):
        ModelConfig(coexpression_init=True, prior="none")
    with pytest.raises(ValueError, match="coexpression_init needs"):
        ModelConfig(coexpression_init=True, coexpression=False)
