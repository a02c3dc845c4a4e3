"""What a training run records in MLflow, defined once: its name and tags, its metric names, the
training log, the evaluation log, and the experiment's description and saved view.

The train and evaluate steps and the tuning retrain all write through these functions, so runs
from either path read the same in the MLflow UI and in `scregnet compare`.

Metric names (MLflow's chart view makes one section per prefix before the last `/`; sections are
sorted by name, so `summary/` comes first):

- `summary/...`: the short headline set a person reads, rounded (`summary_names()`): the model's
  and the best trivial baseline's (and best peer's) test AUROC, AUPRC and per-TF AUROC, the model's
  gains over them, and the training time.
- `test/<scorer>_<metric>`, `val/<scorer>_<metric>`: every scorer's full-precision metrics
  (`metric_name`; `scregnet compare` reads these). Pair facts (`n`, `prevalence`,
  `n_tfs_scored`) are the same for every scorer and are logged for the model only.
- `test/model_minus_<scorer>_per_tf_auroc` (+ `_lo`, `_hi`, `_n_tfs`): the paired per-TF AUROC
  difference of the model and each baseline and peer, with its bootstrap interval over TFs.
- `training/...`: per-epoch curves (`training/train_loss`, `training/val_auroc`, ...) and facts of
  the fit (`training/best_epoch`, split sizes, embedding coverage).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import tempfile
import time
from typing import Any

from scregnet.baselines import BASELINES
from scregnet.config import PEERS
from scregnet.tracking.client import Tracker

# The ZenML pipeline run a run belongs to: after a failed pipeline the CLI closes the runs with
# this tag that were left RUNNING (a step that failed loading its inputs could not close them).
PIPELINE_RUN_TAG = "zenml_pipeline_run"

PARTS = ("val", "test")
SUMMARY = "summary"
TRAINING = "training"
MODEL = "model"
# Groups of scorers the model is compared with in the summary: the best of each group on each
# metric, and the model's gain over it. The first group's gains are `<metric>_gain`; a later
# group's `<metric>_gain_vs_<group>`.
COMPARATORS: dict[str, tuple[str, ...]] = {"baseline": BASELINES, "peer": PEERS}
SUMMARY_SCORES = ("auroc", "auprc", "per_tf_auroc")  # model and best-of-group, per metric
SUMMARY_GAINS = ("auroc", "auprc")  # model minus best-of-group
PAIR_FACTS = ("n", "prevalence", "n_tfs_scored")  # same for every scorer on one set of pairs
NOTE_COLUMNS = (("auroc", "AUROC"), ("auprc", "AUPRC"), ("per_tf_auroc", "per-TF AUROC"), ("auprc_lift", "AUPRC lift"))
SUMMARY_DIGITS = 4
SECONDS_DIGITS = 1
CURVE_PREFIX = f"{TRAINING}/"  # kept for readers of the old constant

VIEW_ID = "scregnet-model-vs-baselines"  # experiment tag `mlflow.sharedViewState.<VIEW_ID>`
VIEW_NAME = "scregnet: model vs baselines"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_ID}"
DESCRIPTION_TAG = "mlflow.note.content"
DESCRIPTION_MARK = "**scregnet training runs.**"  # a description starting so is ours to update


def metric_name(part: str, scorer: str, metric: str) -> str:
    """Full-precision metric of one scorer on one part, e.g. `test/label_count_auroc`."""
    return f"{part}/{scorer}_{metric}"


def summary_name(name: str) -> str:
    """A headline metric, e.g. `summary/auroc_gain`."""
    return f"{SUMMARY}/{name}"


def gain_name(metric: str, group: str) -> str:
    """Model minus the best of `group` on `metric`: `auroc_gain` (first group), `auroc_gain_vs_<group>`."""
    return f"{metric}_gain" if group == next(iter(COMPARATORS)) else f"{metric}_gain_vs_{group}"


def summary_names() -> list[str]:
    """The headline metric names in reading order (what the saved view shows)."""
    names = []
    for metric in SUMMARY_SCORES:
        names.append(summary_name(f"{MODEL}_{metric}"))
        for group in COMPARATORS:
            names.append(summary_name(f"{group}_{metric}"))
            if metric in SUMMARY_GAINS:
                names.append(summary_name(gain_name(metric, group)))
    return names + [summary_name("train_seconds")]


def _finite(v) -> bool:
    return v is not None and math.isfinite(float(v))


def best_of(scores: dict[str, dict[str, float]], scorers: tuple[str, ...], metric: str) -> tuple[str, float] | None:
    """(scorer, value) of the best of `scorers` on `metric` (finite values only), or None."""
    best = None
    for s in scorers:  # ties go to the scorer listed first
        v = scores.get(s, {}).get(metric)
        if _finite(v) and (best is None or float(v) > best[1]):
            best = (s, float(v))
    return best


def summary_metrics(model_test: dict[str, float], others_test: dict[str, dict[str, float]]) -> dict[str, float]:
    """The headline metrics of one run's test evaluation, rounded for reading.

    `others_test`: scorer name -> its test metrics (the baselines, later peers).
    """
    out: dict[str, float] = {}
    for metric in SUMMARY_SCORES:
        m = model_test.get(metric)
        if _finite(m):
            out[summary_name(f"{MODEL}_{metric}")] = round(float(m), SUMMARY_DIGITS)
        for group, scorers in COMPARATORS.items():
            best = best_of(others_test, scorers, metric)
            if best is None:
                continue
            out[summary_name(f"{group}_{metric}")] = round(best[1], SUMMARY_DIGITS)
            if metric in SUMMARY_GAINS and _finite(m):
                out[summary_name(gain_name(metric, group))] = round(float(m) - best[1], SUMMARY_DIGITS)
    return out


def best_scorer_tags(others_test: dict[str, dict[str, float]]) -> dict[str, str]:
    """Which scorer of each group was best, e.g. `best_baseline` = `label_count` (per metric if they differ)."""
    tags = {}
    for group, scorers in COMPARATORS.items():
        best = {m: b[0] for m in SUMMARY_SCORES if (b := best_of(others_test, scorers, m)) is not None}
        if best:
            names = set(best.values())
            tags[f"best_{group}"] = names.pop() if len(names) == 1 else " ".join(f"{m}={s}" for m, s in best.items())
    return tags


def run_note(model_test: dict[str, float], others_test: dict[str, dict[str, float]]) -> str:
    """The run's description (Markdown, on top of its page in MLflow): test metrics of the model
    and of every other scorer, and the gains over the best of each group."""

    def cell(v) -> str:
        return f"{float(v):.3f}" if _finite(v) else "-"

    head = ["scorer"] + [label for _, label in NOTE_COLUMNS]
    rows = [[f"**{MODEL}**"] + [f"**{cell(model_test.get(k))}**" for k, _ in NOTE_COLUMNS]]
    rows += [[name] + [cell(m.get(k)) for k, _ in NOTE_COLUMNS] for name, m in others_test.items()]
    table = "\n".join("| " + " | ".join(r) + " |" for r in [head, ["---"] * len(head), *rows])
    summary = summary_metrics(model_test, others_test)
    gains = []
    for group in COMPARATORS:
        parts = [
            f"{metric.upper()} {summary[name]:+.3f}"
            for metric in SUMMARY_GAINS
            if (name := summary_name(gain_name(metric, group))) in summary
        ]
        if parts:
            gains.append(f"gain over the best {group}: " + ", ".join(parts))
    return (
        "**Test set: model vs trivial baselines and peers.** "
        + ("; ".join(gains) + " (> 0: the model is better). " if gains else "")
        + "Figures: Artifacts, `plots/`.\n\n"
        + table
    )


def flat_metrics(model: dict, baselines: dict, peers: dict | None = None) -> dict[str, float]:
    """Every scorer's metrics per part, full precision: `{part}/{scorer}_{metric}` (`metric_name`)."""
    out = {}
    for part, metrics in model.items():
        out.update({metric_name(part, MODEL, k): v for k, v in metrics.items()})
        for group in (baselines, peers or {}):
            for name, bm in group.get(part, {}).items():
                out.update({metric_name(part, name, k): v for k, v in bm.items() if k not in PAIR_FACTS})
    return out


def difference_name(scorer: str) -> str:
    """`test/model_minus_<scorer>_per_tf_auroc`: the paired per-TF AUROC difference on test."""
    return metric_name("test", f"{MODEL}_minus_{scorer}", "per_tf_auroc")


def difference_metrics(per_tf_differences: dict) -> dict[str, float]:
    """Per scorer: the mean per-TF AUROC difference (model - scorer), its bootstrap bounds and TF count."""
    out = {}
    for name, iv in per_tf_differences.items():
        key = difference_name(name)
        out.update({key: iv.mean, f"{key}_lo": iv.lo, f"{key}_hi": iv.hi, f"{key}_n_tfs": iv.n})
    return out


def evaluation_metrics(evaluation) -> dict[str, float]:
    """Everything an evaluation logs: the headline, every scorer per part, and the per-TF differences."""
    ev = evaluation
    return {
        **summary_metrics(ev.model.get("test", {}), ev.others("test")),
        **flat_metrics(ev.model, ev.baselines, ev.peers),
        **difference_metrics(ev.per_tf_differences),
    }


def dataset_label(dataset_name: str) -> str:
    """`mHSC-L/TFs500` -> `mHSC-L-TFs500` (as in the registry's model names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", dataset_name).strip("-") or "dataset"


def _protocol(config, split=None) -> str:
    if split is not None:
        return split.protocol
    return config.split.protocol + ("+degree_aware" if config.split.degree_aware_negatives else "")


def run_label(config, dataset_name: str, split=None, *extra: str) -> str:
    """A run name people can read: dataset, protocol, embedder, seed (`mHSC-L-TFs500 genelink pca s0`)."""
    parts = [dataset_label(dataset_name), _protocol(config, split), config.embedder.kind, f"s{config.train.seed}"]
    return " ".join(parts + [e for e in extra if e])


def run_tags(config, dataset_name: str, priors_sha256: str, split=None, **extra: str) -> dict[str, str]:
    """Tags of a training run: dataset, protocol, embedder, gnn, seed, priors and split hashes, prior manifest."""
    from scregnet.priors_store import prior_manifest_tags

    tags = {
        "dataset": dataset_name,
        "protocol": _protocol(config, split),
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
    """Open the MLflow run of one trained model: named by `run_label` (unless `run_name`), tags
    (`run_tags`), the full config as params. Also describes the experiment (`describe_experiment`)."""
    describe_experiment(tracker)
    priors_sha256 = dataset.priors_hash()
    tags = run_tags(config, dataset.name, priors_sha256, split, **extra)
    name = run_name or run_label(config, dataset.name, split)
    run_id = tracker.start_run(tags, config.flat(), run_name=name)
    # The Dataset column (shown by default) and filter: the dataset's name, its files and priors.
    sources = {k: str(v) for k, v in getattr(dataset, "sources", {}).items()}
    digest = hashlib.sha256(json.dumps([dataset.name, sources, priors_sha256]).encode()).hexdigest()[:8]
    tracker.log_dataset(run_id, dataset.name, digest, sources)
    return run_id


def log_inputs(tracker: Tracker, run_id: str, embedding, prior_manifest=None) -> None:
    """The gene embedding (`embedding/`) and, for watcher runs, the prior manifest (`priors/`)."""
    with tempfile.TemporaryDirectory() as tmp:
        embedding.save(tmp)
        tracker.log_artifacts(run_id, tmp, "embedding")
    if prior_manifest is not None:
        tracker.log_artifact(run_id, prior_manifest, "priors")


def log_training(tracker: Tracker, run_id: str, result, split, inputs, select_metric: str) -> None:
    """Training curves (`training/...` by epoch, and a figure), the selected epoch, split sizes,
    embedding coverage, and the training time (`summary/train_seconds`)."""
    from scregnet.plots import training_curves_figure

    series: dict[str, list[tuple[int, float]]] = {}
    for rec in result.history:
        for k, v in rec.items():
            if k != "epoch":
                series.setdefault(f"{TRAINING}/{k}", []).append((int(rec["epoch"]), v))
    tracker.log_series(run_id, series)
    tracker.log_figure(
        run_id, training_curves_figure(result.history, select_metric, result.best_epoch), "training_curves.png"
    )
    metrics: dict[str, Any] = {
        summary_name("train_seconds"): round(float(result.seconds), SECONDS_DIGITS),
        f"{TRAINING}/best_epoch": result.best_epoch,
        **{f"{TRAINING}/n_{k}_pairs": v for k, v in split.sizes().items()},
    }
    if inputs.embedding_found is not None:  # no embedding: no coverage to report (0 would read as a failure)
        metrics[f"{TRAINING}/embedding_coverage"] = float(inputs.embedding_found.mean())
    tracker.log_metrics(run_id, metrics)


def log_evaluation(tracker: Tracker, run_id: str, evaluation, genes: list[str], title: str) -> list:
    """Headline, per-scorer and per-TF difference metrics (`evaluation_metrics`), the best-baseline and
    best-peer tags, and the test figures (model vs baselines and peers bars, ROC/PR, per-TF AUROC)."""
    from scregnet.metrics import per_tf_table
    from scregnet.plots import model_vs_baselines_figure, per_tf_figure, roc_pr_figure

    ev = evaluation
    test_others = ev.others("test")  # the baselines, then the peers
    tracker.log_metrics(run_id, evaluation_metrics(ev))
    tracker.set_tags(
        run_id, {**best_scorer_tags(test_others), DESCRIPTION_TAG: run_note(ev.model.get("test", {}), test_others)}
    )
    figures = [model_vs_baselines_figure(ev.model.get("test", {}), test_others, title)]
    tracker.log_figure(run_id, figures[0], "model_vs_baselines.png")
    figures.append(roc_pr_figure(ev.test_pairs, ev.test_scores, ev.baseline_test_scores, title, ev.peer_test_scores))
    tracker.log_figure(run_id, figures[-1], "roc_pr_test.png")
    table = per_tf_table(ev.test_pairs, ev.test_scores, genes)
    base_tables = {b: per_tf_table(ev.test_pairs, s, genes) for b, s in ev.other_test_scores().items()}
    if len(table):
        figures.append(per_tf_figure(table, base_tables))
        tracker.log_figure(run_id, figures[-1], "per_tf_auroc_test.png")
    return figures


# --- the experiment: its description and a saved view of the runs table ---------------------------


def view_state() -> dict[str, Any]:
    """The runs-table state of MLflow 3's experiment page that shows model vs baselines: the
    headline metric columns and the registry decision, newest runs first."""
    columns = [f"metrics.`{n}`" for n in summary_names()] + ["tags.`promotion`"]
    return {
        # search facets
        "searchFilter": "",
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        # UI state
        "selectedColumns": columns,
        "columnOrder": columns,
        "columnWidths": {c: _header_width(c) for c in columns},
        "runsExpanded": {},
        "runsPinned": [],
        "runsHidden": [],
        "runsVisibilityMap": {},
        "runsHiddenMode": "FIRST_10_RUNS",
        "viewMaximized": False,
        "runListHidden": False,
        "isAccordionReordered": False,
        "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "groupBy": None,
        "groupsExpanded": {},
        "autoRefreshEnabled": True,
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }


def _header_width(column: str) -> int:
    """Pixels for a column whose header shows the whole name (MLflow's default cuts them short)."""
    name = column.split("`")[1]
    return max(110, round(6.9 * len(name)) + 24)


def saved_view_tag_value(created_ms: int | None = None) -> str:
    """The experiment-tag value of the saved view (MLflow's envelope: name, times, state as JSON)."""
    created_ms = created_ms if created_ms is not None else int(time.time() * 1000)
    return json.dumps(
        {"name": VIEW_NAME, "createdAt": created_ms, "updatedAt": created_ms, "state": json.dumps(view_state())}
    )


def description() -> str:
    """The experiment description (Markdown, shown by MLflow's UI): which columns answer
    'better than the baselines?' and where everything else is."""
    metrics = ", ".join(f"`{n}`" for n in summary_names())
    groups = ", ".join(f"{g} = best of {', '.join(s)}" for g, s in COMPARATORS.items())
    return (
        f"{DESCRIPTION_MARK} Is the model better than the trivial baselines? Choose **Views -> {VIEW_NAME}** "
        "(or open the link `scregnet train` prints; there, **Override saved view** makes it what this page "
        f"opens with). It shows the columns {metrics} and `promotion`.\n\n"
        f"`summary/auroc_gain` > 0: the model beats the best trivial baseline on test AUROC ({groups}). "
        "Run names: dataset, protocol, embedder, seed. "
        "Each scorer's full-precision test and validation metrics: `test/*`, `val/*`; "
        "per-epoch curves and fit facts: `training/*`; figures: the run's Artifacts, `plots/` "
        "(`model_vs_baselines.png`, `roc_pr_test.png`, `per_tf_auroc_test.png`, `training_curves.png`)."
    )


_described: set[tuple[str, str]] = set()


def describe_experiment(tracker: Tracker) -> str:
    """Write the experiment's description (unless a person rewrote it) and its saved view; once per
    process and experiment. Returns the experiment id."""
    exp_id = tracker.experiment_id()
    key = (tracker.uri, exp_id)
    if key in _described:
        return exp_id
    exp = tracker.call(lambda: tracker.client.get_experiment(exp_id), "read the experiment")
    tags = exp.tags or {}
    text = description()
    current = tags.get(DESCRIPTION_TAG)
    if current is None or (current.startswith(DESCRIPTION_MARK) and current != text):
        tracker.call(
            lambda: tracker.client.set_experiment_tag(exp_id, DESCRIPTION_TAG, text), "describe the experiment"
        )
    old = tags.get(VIEW_TAG)
    if old is None or _view_state_of(old) != view_state():
        created = _created_of(old)
        tracker.call(
            lambda: tracker.client.set_experiment_tag(exp_id, VIEW_TAG, saved_view_tag_value(created)),
            "save the experiment's view",
        )
    _described.add(key)
    return exp_id


def _view_state_of(tag_value: str) -> dict | None:
    try:
        return json.loads(json.loads(tag_value)["state"])
    except (ValueError, KeyError, TypeError):
        return None


def _created_of(tag_value: str | None) -> int | None:
    try:
        return int(json.loads(tag_value)["createdAt"]) if tag_value else None
    except (ValueError, KeyError, TypeError):
        return None


def view_url(base_url: str, experiment_id: str) -> str:
    """The link that opens the saved view on an MLflow UI at `base_url`."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_ID}"
