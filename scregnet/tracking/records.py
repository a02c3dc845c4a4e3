"""What a training run records in MLflow, defined once: its tags, its metric names, the training
log and the evaluation log.

The train and evaluate steps and the tuning retrain all write through these functions, so runs
from either path read the same in the MLflow UI and in `scregnet compare`.
"""

from __future__ import annotations

import tempfile
from typing import Any

from scregnet.tracking.client import Tracker

CURVE_PREFIX = "curve_"  # per-epoch series (train loss, validation metrics), grouped in the UI
# The ZenML pipeline run a run belongs to: after a failed pipeline the CLI closes the runs with
# this tag that were left RUNNING (a step that failed loading its inputs could not close them).
PIPELINE_RUN_TAG = "zenml_pipeline_run"


def run_tags(config, dataset_name: str, priors_sha256: str, split=None, **extra: str) -> dict[str, str]:
    """Tags of a training run: dataset, protocol, embedder, gnn, seed, priors and split hashes, prior manifest."""
    from scregnet.priors_store import prior_manifest_tags

    protocol = (
        split.protocol
        if split is not None
        else config.split.protocol + ("+degree_aware" if config.split.degree_aware_negatives else "")
    )
    tags = {
        "dataset": dataset_name,
        "protocol": protocol,
        "embedder": config.embedder.kind,
        "gnn": config.model.gnn,
        "seed": str(config.train.seed),
        "priors_sha256": priors_sha256,
        **prior_manifest_tags(config.data.prior_manifest),
    }
    if split is not None:
        tags["split_sha256"] = split.hash()
    return {**tags, **extra}


def start_training_run(tracker: Tracker, config, dataset, split, run_name: str | None = None, **extra: str) -> str:
    """Open the MLflow run of one trained model: tags (`run_tags`) and the full config as params."""
    tags = run_tags(config, dataset.name, dataset.priors_hash(), split, **extra)
    return tracker.start_run(tags, config.flat(), run_name=run_name)


def flat_metrics(model: dict, baselines: dict, peers: dict | None = None) -> dict[str, float]:
    """`{part}_{model|baseline|peer}_{metric}`: distinct names, since one MLflow run holds every step."""
    out = {}
    for part, metrics in model.items():
        out.update({f"{part}_model_{k}": v for k, v in metrics.items()})
        for group in (baselines, peers or {}):
            for name, bm in group.get(part, {}).items():
                out.update({f"{part}_{name}_{k}": v for k, v in bm.items()})
    return out


def difference_metrics(per_tf_differences: dict) -> dict[str, float]:
    """`test_model_minus_{scorer}_per_tf_auroc` with `_lo`, `_hi` (bootstrap interval) and `_n_tfs`."""
    out = {}
    for name, iv in per_tf_differences.items():
        key = f"test_model_minus_{name}_per_tf_auroc"
        out.update({key: iv.mean, f"{key}_lo": iv.lo, f"{key}_hi": iv.hi, f"{key}_n_tfs": iv.n})
    return out


def evaluation_metrics(evaluation) -> dict[str, float]:
    """Everything an evaluation logs: model, baseline and peer metrics, and the per-TF differences."""
    ev = evaluation
    return flat_metrics(ev.model, ev.baselines, ev.peers) | difference_metrics(ev.per_tf_differences)


def log_inputs(tracker: Tracker, run_id: str, embedding, prior_manifest=None) -> None:
    """The gene embedding (`embedding/`) and, for watcher runs, the prior manifest (`priors/`)."""
    with tempfile.TemporaryDirectory() as tmp:
        embedding.save(tmp)
        tracker.log_artifacts(run_id, tmp, "embedding")
    if prior_manifest is not None:
        tracker.log_artifact(run_id, prior_manifest, "priors")


def log_training(tracker: Tracker, run_id: str, result, split, inputs, select_metric: str) -> None:
    """Training curves (series + figure), the selected epoch, time, split sizes, embedding coverage."""
    from scregnet.plots import training_curves_figure

    series: dict[str, list[tuple[int, float]]] = {}
    for rec in result.history:
        for k, v in rec.items():
            if k != "epoch":
                series.setdefault(f"{CURVE_PREFIX}{k}", []).append((int(rec["epoch"]), v))
    tracker.log_series(run_id, series)
    tracker.log_figure(
        run_id, training_curves_figure(result.history, select_metric, result.best_epoch), "training_curves.png"
    )
    metrics: dict[str, Any] = {
        "best_epoch": result.best_epoch,
        "train_seconds": result.seconds,
        **{f"split_n_{k}": v for k, v in split.sizes().items()},
    }
    if inputs.embedding_found is not None:  # no embedding: no coverage to report (0 would read as a failure)
        metrics["embedding_coverage"] = float(inputs.embedding_found.mean())
    tracker.log_metrics(run_id, metrics)


def log_evaluation(tracker: Tracker, run_id: str, evaluation, genes: list[str], title: str) -> list:
    """Model, baseline and peer metrics (`evaluation_metrics`) and the test figures; returns the figures."""
    from scregnet.metrics import per_tf_table
    from scregnet.plots import per_tf_figure, roc_pr_figure

    tracker.log_metrics(run_id, evaluation_metrics(evaluation))
    ev = evaluation
    figures = [roc_pr_figure(ev.test_pairs, ev.test_scores, ev.baseline_test_scores, title, ev.peer_test_scores)]
    tracker.log_figure(run_id, figures[0], "roc_pr_test.png")
    table = per_tf_table(ev.test_pairs, ev.test_scores, genes)
    base_tables = {b: per_tf_table(ev.test_pairs, s, genes) for b, s in ev.other_test_scores().items()}
    if len(table):
        figures.append(per_tf_figure(table, base_tables))
        tracker.log_figure(run_id, figures[-1], "per_tf_auroc_test.png")
    return figures
