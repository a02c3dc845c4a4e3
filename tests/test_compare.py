"""`scregnet compare`: runs logged like steps/train + steps/evaluate, grouped, mean ± std, markdown."""

from __future__ import annotations

import numpy as np
import pytest

from scregnet.config import RunConfig
from scregnet.tracking import tracker


def _metrics(auroc: float, lc: float) -> tuple[dict, dict]:
    part = lambda a: {"auroc": a, "auprc": a / 2, "per_tf_auroc": a - 0.1, "auprc_lift": 3.0, "n": 100.0}  # noqa: E731
    model = {"val": part(auroc), "test": part(auroc)}
    baselines = {
        p: {"label_count": part(lc), "tf_prior": part(lc - 0.1), "target_popularity": part(0.6)}
        for p in ("val", "test")
    }
    return model, baselines


@pytest.fixture
def store(tmp_path):
    cfg = RunConfig()
    cfg.tracking.tracking_uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg.tracking.experiment = "compare-test"
    from scregnet.tracking.records import flat_metrics  # the names the pipeline logs

    def log(dataset, protocol, seed, auroc, lc, gnn="gcn", status="FINISHED", kind=None, pearson=None):
        c = cfg.model_copy(deep=True)
        c.model.gnn = gnn
        tags = {
            "dataset": dataset,
            "protocol": protocol,
            "embedder": "none",
            "gnn": gnn,
            "seed": str(seed),
            "priors_sha256": "abc",
        }
        if kind:
            tags["kind"] = kind
        run_id = tracker(c).start_run(tags, c.flat())
        if kind != "tune_trial":
            model, baselines = _metrics(auroc, lc)
            peers = {"test": {"pearson": {"auroc": pearson, "auprc": pearson / 2}}} if pearson else None
            tracker(c).log_metrics(run_id, flat_metrics(model, baselines, peers))
        else:
            tracker(c).log_metrics(run_id, {"val_auprc": 0.5})
        tracker(c).end_run(run_id, status)

    for seed, a in enumerate((0.80, 0.82, 0.84)):
        log("mDC/TFs500", "genelink", seed, a, 0.81)
    for seed, a in enumerate((0.70, 0.74)):
        log("mDC/TFs500", "heldout_tf", seed, a, 0.60)
    log("mDC/TFs500", "heldout_tf", 9, 0.99, 0.5, gnn="gat")
    log("hHEP/TFs500", "genelink", 0, 0.90, 0.89)
    log("hESC/TFs500", "genelink", 0, 0.70, 0.60, pearson=0.55)  # a run that also scored a peer
    log("mDC/TFs500", "genelink", 7, 0.10, 0.10, status="FAILED")  # failed runs are left out
    log("mDC/TFs500", "genelink", 8, 0.0, 0.0, kind="tune_trial")  # trials have no test metrics
    return cfg


def test_compare_groups_filters_and_averages(store):
    from scregnet.compare import compare

    c = tracker(store).client
    groups, table = compare(c, experiment="compare-test", dataset="mDC/TFs500")
    keys = [g.key for g in groups]
    assert keys == [
        ("mDC/TFs500", "genelink", "none", "gcn"),
        ("mDC/TFs500", "heldout_tf", "none", "gat"),
        ("mDC/TFs500", "heldout_tf", "none", "gcn"),
    ]
    genelink = groups[0]
    assert genelink.n == 3 and sorted(genelink.seeds) == ["0", "1", "2"]
    mean, std, n = genelink.stat("model", "auroc")
    assert n == 3 and mean == pytest.approx(0.82) and std == pytest.approx(np.std([0.80, 0.82, 0.84]))
    assert genelink.stat("label_count", "auroc")[0] == pytest.approx(0.81)
    lines = table.strip().splitlines()
    assert lines[0].startswith("| dataset | protocol | embedder | gnn | runs | model AUROC")
    assert "label_count AUROC / AUPRC" in lines[0]
    assert len(lines) == 2 + 3
    assert "| mDC/TFs500 | genelink | none | gcn | 3 | 0.820 ± 0.016 |" in lines[2]
    assert "0.810 ± 0.000 / 0.405 ± 0.000" in lines[2] and lines[2].endswith("| +0.010 |")

    groups, table = compare(c, experiment="compare-test", protocol="heldout_tf", tags={"gnn": "gcn"})
    assert [g.key for g in groups] == [("mDC/TFs500", "heldout_tf", "none", "gcn")]
    assert groups[0].stat("model", "auroc")[0] == pytest.approx(0.72)

    assert "pearson" not in table  # no run in these groups scored peers: no empty peer columns

    groups, _ = compare(c, experiment="compare-test", by=("protocol",))
    assert {g.key: g.n for g in groups} == {("genelink",): 5, ("heldout_tf",): 3}


def test_compare_shows_peers_where_runs_scored_them(store):
    from scregnet.compare import compare

    groups, table = compare(tracker(store).client, experiment="compare-test", dataset="hESC/TFs500")
    head, _, row = table.strip().splitlines()
    assert "pearson AUROC / AUPRC" in head and "grnboost2" not in head  # only the peers that were scored
    assert groups[0].stat("pearson", "auroc")[0] == pytest.approx(0.55)
    assert "| 0.550 / 0.275 |" in row


def test_compare_cli_writes_markdown(store, tmp_path, monkeypatch):
    from click.testing import CliRunner

    from scregnet.cli import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.tracking.tracking_uri)
    out = tmp_path / "cmp.md"
    res = CliRunner().invoke(main, ["compare", "--dataset", "hHEP/TFs500", "--out", str(out), "--ui-help"])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "| hHEP/TFs500 | genelink | none | gcn | 1 | 0.900 |" in text
    assert "tags.protocol" in res.output and "summary/auroc_gain" in res.output  # the MLflow UI recipe
