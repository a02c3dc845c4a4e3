"""The promotion gate and the champion audit log, on a real MLflow registry (sqlite in a temp dir).

A model that is not shown to beat the no-learning baselines is registered but never crowned; a
challenger is compared with the champion only on pairs neither trained or selected on (the
champion's training and validation pairs travel with its registered bundle); every change of
champion, and every refusal, lands in the audit log with who did it.
"""

from __future__ import annotations

import numpy as np
import pytest

from scregnet import audit, registry
from scregnet.config import RunConfig
from scregnet.experiment import run_experiment
from scregnet.tracking import tracker


@pytest.fixture(scope="module")
def learnable(tmp_path_factory):
    """The demo's synthetic data (default size): a model learns something the baselines miss."""
    from scregnet.data import load_beeline
    from scregnet.synthetic import make_synthetic_dataset

    return load_beeline(make_synthetic_dataset(tmp_path_factory.mktemp("demo-data"), seed=0), name="gate")


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SCREGNET_ACTOR", "pytest")
    cfg = RunConfig()
    cfg.tracking.tracking_uri = uri
    return cfg


def _register(cfg: RunConfig, dataset, seed: int, **train):
    cfg = cfg.model_copy(deep=True)
    for k, v in train.items():
        setattr(cfg.train, k, v)
    res = run_experiment(dataset, cfg, None, seed=seed)
    res.model.meta["dataset"] = dataset.name
    t = tracker(cfg)
    run_id = t.start_run({"dataset": dataset.name}, cfg.flat())
    uri = registry.log_model(run_id, res.model, t)
    decision = registry.register_and_gate(run_id, uri, res.model, res.split, cfg.registry, tracking=t)
    t.end_run(run_id)
    return decision, res


def _champion(cfg, name):
    champion = registry.current_champion(name, cfg)
    return None if champion is None else str(champion.version)


def test_a_model_no_better_than_its_prior_is_registered_but_not_crowned(store, learnable):
    # lr ~ 0: the model stays at its label_count prior, so it cannot beat that baseline.
    decision, _ = _register(store, learnable, 0, lr=1e-9, max_epochs=5)
    assert decision.version == "1" and not decision.promoted
    name = decision.name
    assert _champion(store, name) is None
    tags = tracker(store).client.get_model_version(name, "1").tags
    assert tags["promotion_decision"] == "rejected" and tags["gate_baseline_status"] == "failed"
    assert tags["gate_binding_baseline"] in ("label_count", "tf_prior", "target_popularity")
    assert decision.numbers[f"vs_{tags['gate_binding_baseline']}_lo"] <= store.registry.baseline_margin
    events = audit.history(name, store)
    assert events["action"].tolist() == ["kept"] and events["who"].tolist() == ["pytest"]


def test_the_fair_set_leaves_out_what_the_champion_trained_and_selected_on(store, learnable):
    first, res0 = _register(store, learnable, 0)
    assert first.promoted, first.reason  # the demo data is learnable: the gate lets it through
    name = first.name
    seen = {tuple(p) for p in res0.model.seen.tolist()}
    assert seen == {tuple(p) for p in np.concatenate([res0.split.train[:, :2], res0.split.val[:, :2]]).tolist()}
    second, res1 = _register(store, learnable, 1)
    tags = tracker(store).client.get_model_version(name, second.version).tags
    test1 = {tuple(p) for p in res1.split.test[:, :2].tolist()}
    overlap = len(test1 & seen)
    assert overlap > 0, "another seed's test part overlaps the champion's training pairs"
    assert int(tags["gate_fair_n_seen"]) == overlap
    assert int(tags["gate_fair_n_pairs"]) == len(test1) - overlap
    assert _champion(store, name) == (second.version if second.promoted else first.version)
    actions = audit.history(name, store)["action"].tolist()
    assert actions == ["promoted", "promoted" if second.promoted else "kept"]


def test_a_champion_without_its_training_pairs_is_kept_and_the_reason_says_why(store, learnable):
    first, res0 = _register(store, learnable, 0)
    name = first.name
    # A champion registered before training pairs were stored: its bundle has none.
    t = tracker(store)
    res0.model.seen = None
    run_id = t.start_run({"dataset": learnable.name}, store.flat())
    legacy = registry.register(
        run_id, registry.log_model(run_id, res0.model, t), name, res0.model, res0.split, store.registry, t
    )
    registry.apply_promotion(registry.Decision(name, legacy.version, True, "by hand", "manual", float("nan")), None, t)
    t.end_run(run_id)
    challenger, _ = _register(store, learnable, 2)
    assert not challenger.promoted and "without its training pairs" in challenger.reason
    assert _champion(store, name) == legacy.version


def test_forced_promotion_and_rollback_are_audited(store, learnable, monkeypatch):
    from pipelines.promotion import manual_promote, manual_rollback

    first, _ = _register(store, learnable, 0, lr=1e-9, max_epochs=5)  # rejected: no champion
    second, _ = _register(store, learnable, 0)
    name = first.name
    manual_promote(name, first.version, reason="keep the older one")
    tags = tracker(store).client.get_model_version(name, first.version).tags
    assert tags["promotion_decision"] == "forced" and "keep the older one" in tags["promotion_reason"]
    assert _champion(store, name) == first.version
    monkeypatch.delenv("SCREGNET_ACTOR")  # a person at the command line
    if second.promoted:
        assert manual_rollback(name) == second.version
    events = audit.history(name, store)
    expected = ["kept", "promoted" if second.promoted else "kept", "forced"] + (
        ["rolled_back"] if second.promoted else []
    )
    assert events["action"].tolist() == expected
    assert events["champion_after"].tolist()[2] == first.version
    if second.promoted:
        assert events["who"].tolist()[-1].endswith("(cli)")
    # The table also sits next to the registered model: its tag names the newest event run.
    run_id = tracker(store).client.get_registered_model(name).tags[audit.AUDIT_TAG]
    artifacts = [a.path for a in tracker(store).client.list_artifacts(run_id)]
    assert "champion_history.csv" in artifacts
