"""Optuna tuning: pruning prunes, a study resumes from its RDB storage, the objective never sees test."""

from __future__ import annotations

import json

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")
from optuna.trial import TrialState  # noqa: E402

from scregnet.splits import Split, make_split  # noqa: E402
from scregnet.train import ModelInputs  # noqa: E402
from scregnet.tune import apply_params, config_overrides, make_objective, run_study, tune, without_test  # noqa: E402


@pytest.fixture
def tune_config(fast_config):
    cfg = fast_config.model_copy(deep=True)
    cfg.train.threads = 1
    t = cfg.tune
    t.max_epochs, t.patience, t.startup_trials, t.warmup_epochs = 30, 3, 2, 0
    t.gnn_kinds, t.max_gnn_layers, t.max_mlp_layers, t.max_width = ["gcn", "sage"], 2, 1, 32
    return cfg


GOOD = {
    "gnn": "gcn",
    "n_gnn_layers": 1,
    "gnn_dim_0": 32,
    "n_mlp_layers": 1,
    "mlp_dim_0": 16,
    "dropout": 0.1,
    "lr": 1e-2,
    "weight_decay": 1e-6,
    "optimizer": "adam",
    "batch_size": "full",
}


def test_pruner_prunes_trials_that_lag_the_median(synthetic, tune_config):
    cfg = tune_config.model_copy(deep=True)
    cfg.tune.patience = 20  # long enough that only the pruner can stop a hopeless trial
    if "prior" in type(cfg.model).model_fields:
        # A model that starts from the label_count prior scores every trial alike at first; test the
        # pruning mechanics on the plain model, where a hopeless trial lags from the start.
        cfg.model.prior = "none"
    bad = [dict(GOOD, lr=1e-5, optimizer="sgd", dropout=0.8, gnn_dim_0=4, mlp_dim_0=4)] * 3
    study, _ = run_study(
        synthetic, cfg, None, storage=None, study_name="prune", n_trials=6, track=False, enqueue=[GOOD, GOOD] + bad
    )
    states = [t.state for t in study.trials]
    assert TrialState.PRUNED in states, states
    for t in study.trials:
        if t.state == TrialState.PRUNED:  # stopped by the pruner, well before the epoch budget
            assert max(t.intermediate_values) < cfg.tune.max_epochs
            assert len(t.intermediate_values) >= 1


def test_study_resumes_from_sqlite_storage(synthetic, tune_config, tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study, _ = run_study(synthetic, tune_config, None, storage=url, study_name="resume", n_trials=3, track=False)
    assert len(study.trials) == 3
    # A new process / worker: same storage and name -> the study is loaded and only the missing trials run.
    again, _ = run_study(synthetic, tune_config, None, storage=url, study_name="resume", n_trials=5, track=False)
    assert [t.number for t in again.trials] == [0, 1, 2, 3, 4]
    assert again.trials[0].params == study.trials[0].params
    # The target is already reached: nothing more runs.
    third, _ = run_study(synthetic, tune_config, None, storage=url, study_name="resume", n_trials=5, track=False)
    assert len(third.trials) == 5
    loaded = optuna.load_study(study_name="resume", storage=url)
    assert len(loaded.trials) == 5 and loaded.best_value == again.best_value


def test_objective_never_reads_test_labels(synthetic, tune_config):
    split = make_split(synthetic.label_graph(), tune_config.split)
    flipped = Split(
        split.train,
        split.val,
        np.column_stack([split.test[:, :2], 1 - split.test[:, 2]]),
        protocol=split.protocol,
        seed=split.seed,
    )
    inputs = ModelInputs.build(synthetic, None)
    best = []
    for s in (split, flipped):
        study, _ = run_study(
            synthetic, tune_config, None, split=s, inputs=inputs, storage=None, study_name="t", n_trials=4, track=False
        )
        best.append((study.best_value, [t.value for t in study.trials]))
    assert best[0] == best[1]
    # and the objective refuses a split that still has test pairs
    with pytest.raises(ValueError, match="test"):
        make_objective(inputs, split, tune_config)
    assert len(without_test(split).test) == 0


def test_params_map_onto_the_config(tune_config):
    params = dict(
        GOOD,
        gnn="gat",
        n_gnn_layers=2,
        gnn_dim_1=8,
        gat_heads=3,
        gat_concat=True,
        gat_negative_slope=0.1,
        batch_size="64",
    )
    cfg = apply_params(tune_config, params)
    assert cfg.model.gnn == "gat" and cfg.model.gnn_dims == [32, 8] and cfg.model.mlp_dims == [16]
    assert cfg.model.gat_heads == 3 and cfg.train.batch_size == 64 and cfg.train.lr == 1e-2
    assert apply_params(tune_config, GOOD).train.batch_size is None
    assert config_overrides(params, tune_config)["model.gnn_dims"] == [32, 8]


def test_tune_logs_nested_trials_best_params_and_a_final_test_evaluation(synthetic, tune_config, tmp_path):
    from scregnet.tracking import tracker
    from scregnet.tracking.records import dataset_label

    res = tune(
        synthetic,
        tune_config,
        None,
        storage=f"sqlite:///{tmp_path / 'o.db'}",
        study_name="tracked",
        n_trials=3,
        out_dir=tmp_path / "out",
    )
    saved = json.loads((tmp_path / "out" / "best_params.json").read_text())
    assert saved["best_params"] == res.best_params and saved["best_value"] == res.best_value
    assert set(res.final["model"]) == {"val", "test"} and "label_count" in res.final["baselines"]["test"]
    c = tracker(tune_config).client
    parent = c.get_run(res.parent_run_id)
    assert parent.data.tags["kind"] == "tune" and parent.info.status == "FINISHED"
    children = c.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{res.parent_run_id}'")
    assert len(children) == 3 and all(r.data.tags["kind"] == "tune_trial" for r in children)
    assert all(not any(k.startswith(("test/", "summary/")) for k in r.data.metrics) for r in children)
    assert "tuning/best_params.json" in [a.path for a in c.list_artifacts(res.parent_run_id, "tuning")]
    final = c.get_run(res.final_run_id)
    assert final.data.tags["tuned"] == "true" and "test/model_auroc" in final.data.metrics
    assert "test/label_count_auroc" in final.data.metrics and "summary/auroc_gain" in final.data.metrics
    label = f"{dataset_label(final.data.tags['dataset'])} genelink none s{tune_config.train.seed}"  # a readable name
    assert final.info.run_name == f"{label} tuned"
    # Embedder none: no coverage is logged (a 0 would read as a failure); the fit's facts are.
    assert "training/best_epoch" in final.data.metrics and "training/embedding_coverage" not in final.data.metrics
