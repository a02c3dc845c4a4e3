"""Model vs trivial baselines on validation and, once, on test; metrics and figures to MLflow."""

from __future__ import annotations

from typing import Annotated

from zenml import step
from zenml.types import HTMLString

from scregnet.config import RunConfig
from scregnet.experiment import evaluate as evaluate_model
from scregnet.peers import PeerScores
from scregnet.plots import html_report
from scregnet.serialize import ModelBundle
from scregnet.splits import Split
from scregnet.tracking import records, tracker
from steps.common import measured, record


@step(enable_cache=False)
def evaluate(
    model: ModelBundle, split: Split, config: RunConfig, mlflow_run_id: str, peer_scores: PeerScores | None = None
) -> tuple[Annotated[dict, "metrics"], Annotated[HTMLString, "evaluation_report"]]:
    with measured("evaluate"):
        mlflow = tracker(config)
        with mlflow.holding(mlflow_run_id):  # exception: FAILED; SIGTERM/SIGINT: KILLED
            ev = evaluate_model(model, split, peer_scores, config.registry.bootstrap())
            if peer_scores is not None and peer_scores.skipped:
                mlflow.set_tags(mlflow_run_id, {f"peer_{n}_skipped": why for n, why in peer_scores.skipped.items()})
            title = f"{model.meta.get('dataset', '')} ({split.protocol}, seed {split.seed})"
            figures = records.log_evaluation(mlflow, mlflow_run_id, ev, model.genes, title)
            record(records.summary_metrics(ev.model["test"], ev.others("test")))  # the headline, as in MLflow
            # Shown as the step's visualisation in the ZenML dashboard (the same figures as in MLflow).
            report = HTMLString(
                html_report(f"test: {title}", {"model": ev.model["test"], **ev.others("test")}, figures)
            )
        metrics = {
            "val": ev.model.get("val", {}),
            "test": ev.model["test"],
            "baselines": ev.baselines,
            "peers": ev.peers,
        }
        return metrics, report
