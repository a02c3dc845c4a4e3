"""Model vs trivial baselines on validation and, once, on test; curves to MLflow."""

from __future__ import annotations

from typing import Annotated

from zenml import step
from zenml.types import HTMLString

from scregnet import tracking
from scregnet.config import RunConfig
from scregnet.experiment import evaluate as evaluate_model
from scregnet.metrics import per_tf_table
from scregnet.plots import html_report, per_tf_figure, roc_pr_figure
from scregnet.serialize import ModelBundle
from scregnet.splits import Split
from steps.common import record


def flat_metrics(model: dict, baselines: dict) -> dict[str, float]:
    """`{part}_{model|baseline}_{metric}`: distinct names, since one MLflow run holds every step."""
    out = {}
    for part, metrics in model.items():
        out.update({f"{part}_model_{k}": v for k, v in metrics.items()})
        for name, bm in baselines[part].items():
            out.update({f"{part}_{name}_{k}": v for k, v in bm.items()})
    return out


@step(enable_cache=False)
def evaluate(
    model: ModelBundle, split: Split, config: RunConfig, mlflow_run_id: str
) -> tuple[Annotated[dict, "metrics"], Annotated[HTMLString, "evaluation_report"]]:
    with tracking.holding_run(mlflow_run_id, config):  # exception: FAILED; SIGTERM/SIGINT: KILLED
        ev = evaluate_model(model, split)
        flat = flat_metrics(ev.model, ev.baselines)
        tracking.log_metrics(mlflow_run_id, flat, config)
        title = f"{model.meta.get('dataset', '')} ({split.protocol}, seed {split.seed})"
        figures = [roc_pr_figure(ev.test_pairs, ev.test_scores, ev.baseline_test_scores, title)]
        tracking.log_figure(mlflow_run_id, figures[0], "roc_pr_test.png", config)
        table = per_tf_table(ev.test_pairs, ev.test_scores, model.genes)
        base_tables = {b: per_tf_table(ev.test_pairs, s, model.genes) for b, s in ev.baseline_test_scores.items()}
        if len(table):
            figures.append(per_tf_figure(table, base_tables))
            tracking.log_figure(mlflow_run_id, figures[-1], "per_tf_auroc_test.png", config)
        record({k: v for k, v in flat.items() if k.startswith("test_") and k.endswith(("auroc", "auprc"))})
        # Shown as the step's visualisation in the ZenML dashboard (the same figures as in MLflow).
        report = HTMLString(html_report(f"test: {title}", {"model": ev.model["test"], **ev.baselines["test"]}, figures))
    return {"val": ev.model.get("val", {}), "test": ev.model["test"], "baselines": ev.baselines}, report
