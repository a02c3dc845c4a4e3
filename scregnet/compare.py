"""Compare training runs in the MLflow store: model vs trivial baselines, mean ± std over runs.

Runs are the ones steps/train + steps/evaluate (or `scregnet tune`'s final retrain) write: tags
`dataset`, `protocol`, `embedder`, `gnn`, `seed`, `priors_sha256`, full-precision metrics
`test/model_auroc`, `test/label_count_auroc`, ... (`records.metric_name`). Tuning trials and study
parents (tag `kind` = tune_trial / tune) carry no test metrics and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scregnet.baselines import BASELINES
from scregnet.tracking.records import MODEL, PEERS, metric_name, summary_names

GROUP_BY = ("dataset", "protocol", "embedder", "gnn")
METRICS = ("auroc", "auprc", "per_tf_auroc", "auprc_lift")
SOURCES = (MODEL,) + BASELINES + PEERS


@dataclass
class Group:
    """Runs sharing the grouping tags, with each scorer's per-run test metrics."""

    key: tuple[str, ...]
    n: int
    seeds: list[str]
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # source -> metric -> per-run

    def stat(self, source: str, metric: str) -> tuple[float, float, int]:
        """(mean, std, n) of `source`'s `metric` over the group's runs (non-finite values left out)."""
        vals = [v for v in self.values.get(source, {}).get(metric, []) if v is not None and np.isfinite(v)]
        if not vals:
            return float("nan"), float("nan"), 0
        return float(np.mean(vals)), float(np.std(vals)), len(vals)


def _filter_string(dataset: str | None, protocol: str | None, extra: dict[str, str] | None) -> str:
    clauses = [f"metrics.`{metric_name('test', MODEL, 'auroc')}` > -1"]
    for k, v in (("dataset", dataset), ("protocol", protocol), *((extra or {}).items())):
        if v:
            clauses.append(f"tags.{k} = '{v}'")
    return " and ".join(clauses)


def fetch_runs(
    client,
    experiment: str | list[str] | None = None,
    dataset: str | None = None,
    protocol: str | None = None,
    tags: dict[str, str] | None = None,
    max_results: int = 5000,
):
    """Finished runs with test metrics, filtered by tags, from every (or the named) experiment."""
    from mlflow.entities import ViewType

    if experiment is None:
        exp_ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    else:
        names = [experiment] if isinstance(experiment, str) else experiment
        exp_ids = [e.experiment_id for e in (client.get_experiment_by_name(n) for n in names) if e is not None]
    if not exp_ids:
        return []
    runs, token = [], None
    while True:
        page = client.search_runs(
            exp_ids,
            _filter_string(dataset, protocol, tags),
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=min(max_results, 1000),
            page_token=token,
        )
        runs += [r for r in page if r.info.status == "FINISHED"]
        token = page.token
        if not token or len(runs) >= max_results:
            return runs


def group_runs(runs, by: tuple[str, ...] = GROUP_BY) -> list[Group]:
    """Runs grouped by the tags in `by`, sorted by group key."""
    groups: dict[tuple[str, ...], Group] = {}
    for r in runs:
        key = tuple(r.data.tags.get(k, "-") for k in by)
        g = groups.setdefault(key, Group(key, 0, []))
        g.n += 1
        g.seeds.append(r.data.tags.get("seed", "?"))
        m = r.data.metrics
        for source in SOURCES:
            for metric in METRICS:
                g.values.setdefault(source, {}).setdefault(metric, []).append(
                    m.get(metric_name("test", source, metric))
                )
    return [groups[k] for k in sorted(groups)]


def _fmt(mean: float, std: float, n: int) -> str:
    if not np.isfinite(mean):
        return "-"
    return f"{mean:.3f} ± {std:.3f}" if n > 1 else f"{mean:.3f}"


def _present(groups: list[Group], sources: tuple[str, ...]) -> list[str]:
    """The scorers of `sources` with at least one test AUROC in some group (peers are optional)."""
    return [s for s in sources if any(g.stat(s, "auroc")[2] for g in groups)]


def markdown(groups: list[Group], by: tuple[str, ...] = GROUP_BY) -> str:
    """One row per group: runs, model AUROC/AUPRC/per-TF AUROC/lift, each baseline's (and each peer's,
    where runs scored peers) AUROC/AUPRC, and the AUROC gain over label_count."""
    others = list(BASELINES) + _present(groups, PEERS)
    head = list(by) + ["runs", "model AUROC", "model AUPRC", "model per-TF AUROC", "model AUPRC lift"]
    head += [f"{b} AUROC / AUPRC" for b in others] + ["AUROC gain vs label_count"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        row = list(g.key) + [str(g.n)]
        row += [_fmt(*g.stat(MODEL, m)) for m in METRICS]
        for b in others:
            a, p = g.stat(b, "auroc"), g.stat(b, "auprc")
            row.append(f"{_fmt(*a)} / {_fmt(*p)}")
        gains = [
            x - y
            for x, y in zip(g.values[MODEL]["auroc"], g.values["label_count"]["auroc"])
            if x is not None and y is not None
        ]
        row.append(f"{np.mean(gains):+.3f}" if gains else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def compare(
    client=None,
    experiment: str | list[str] | None = None,
    dataset: str | None = None,
    protocol: str | None = None,
    tags: dict[str, str] | None = None,
    by: tuple[str, ...] = GROUP_BY,
) -> tuple[list[Group], str]:
    """Query the store and build the table; `client` defaults to the configured tracking URI."""
    if client is None:
        from scregnet.tracking import tracker

        client = tracker().client
    groups = group_runs(fetch_runs(client, experiment, dataset, protocol, tags), by)
    return groups, markdown(groups, by)


def ui_help() -> str:
    """How to see the same comparison in the MLflow UI."""
    from scregnet.tracking.records import VIEW_NAME

    columns = "\n".join(f"    {n}" for n in summary_names())
    test_auroc = metric_name("test", MODEL, "auroc")
    return f"""\
In the MLflow UI (`scregnet`'s printed `mlflow ui ...` command, or
`mlflow ui --backend-store-uri sqlite:///$SCREGNET_HOME/mlflow.db`): open the experiment, then
Views -> {VIEW_NAME!r} (or the link `scregnet train` prints). It shows, per run, the columns
{columns}
    tags.promotion
(`summary/auroc_gain` > 0: better than the best trivial baseline on test AUROC). Filter with e.g.
    tags.dataset = 'mDC/TFs500' and tags.protocol = 'heldout_tf' and metrics.`{test_auroc}` > 0
(add `and tags.kind != 'tune_trial'` to hide tuning trials), then "Group by" tags.dataset,
tags.protocol, tags.embedder, tags.gnn with aggregate "average" (the UI has no std: `scregnet compare`
prints mean ± std). Each scorer's full-precision metrics are `test/<scorer>_<metric>` and
`val/<scorer>_<metric>`; tuning trials are nested under their study's parent run.
"""
