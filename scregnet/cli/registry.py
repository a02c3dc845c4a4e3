"""Registry commands: `promote`, `rollback`, `predict`, `compare`."""

from __future__ import annotations

from pathlib import Path

import click

from scregnet.cli._common import FiniteRange, check_out, config_option, fail, load, write_text


def _model_name(dataset: str) -> str:
    from scregnet import registry
    from scregnet.config import RegistryConfig

    return registry.model_name(RegistryConfig().model_prefix, dataset)


def _no_such_model(exc: Exception) -> bool:
    text = str(exc)
    return "RESOURCE_DOES_NOT_EXIST" in text or "not found" in text.lower()


@click.command()
@click.option("--dataset", required=True, help="Dataset name, e.g. hESC/TFs500 or synthetic.")
@click.option("--version", required=True, help="Registered version to make champion.")
@click.option("--reason", default="", help="Why (kept in the version's tags and the audit log).")
def promote(dataset, version, reason) -> None:
    """Make a registered version the champion whatever the gate said (recorded as forced).

    The MLflow alias and the ZenML stage move together; `scregnet history` lists it.
    """
    from pipelines.promotion import manual_promote

    name = _model_name(dataset)
    try:
        manual_promote(name, str(version), reason)
    except Exception as exc:
        if _no_such_model(exc):
            fail(f"{name} has no version {version} (see `scregnet compare` or the MLflow UI for its versions)", 1)
        raise
    click.echo(f"{name}: champion -> version {version}")


@click.command()
@click.option("--dataset", required=True, help="Dataset name, e.g. hESC/TFs500 or synthetic.")
def rollback(dataset) -> None:
    """Move champion back to the previous champion (MLflow alias and ZenML stage together)."""
    from pipelines.promotion import manual_rollback

    name = _model_name(dataset)
    try:
        version = manual_rollback(name)
    except ValueError as exc:
        fail(str(exc), 1)
    except Exception as exc:
        if _no_such_model(exc):
            fail(f"{name}: no registered model of that name (train one first: `scregnet train ...`)", 1)
        raise
    click.echo(f"{name}: champion -> version {version}")


@click.command()
@click.option("--dataset", required=True, help="Dataset name, e.g. hESC/TFs500 or synthetic.")
@click.option(
    "--model",
    "model",
    default="champion",
    show_default=True,
    help="Registry alias (champion, challenger) or a version.",
)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="Ranked network: .csv, .tsv, .parquet or .graphml."
)
@click.option(
    "--tfs",
    "tfs_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="TF list (TF.csv, a table with a tf column, or one symbol per line); default: the model's TFs.",
)
@click.option("--top", type=click.IntRange(min=1), default=None, help="Keep only the N best-scored pairs overall.")
@click.option("--top-k-per-tf", type=click.IntRange(min=1), default=None, help="Keep each TF's K best-scored targets.")
@click.option("--min-score", type=FiniteRange(0, 1), default=None, help="Keep only pairs scoring at least this.")
@click.option(
    "--order",
    type=click.Choice(["score", "tf"]),
    default="score",
    show_default=True,
    help="score: the whole network ranked (rank 1..n; ~12 bytes of memory per kept pair); "
    "tf: TF by TF, targets ranked within each TF (tf_rank; memory of one block of TFs).",
)
@config_option("Run config (its tracking URI and registry prefix are used).")
@click.option("--tracking-uri", default=None, help="MLflow tracking server (default: config, env, $SCREGNET_HOME).")
def predict(dataset, model, out, tfs_file, top, top_k_per_tf, min_score, order, config_file, tracking_uri) -> None:
    """Score every TF x gene pair with a registered model and stream the network to a file.

    Each row says whether the pair was a training positive of the model (`known`); TFs without any
    training positive are named in a warning.
    """
    check_out(out)  # before the (slow) imports: a bad path is reported at once
    config = load(config_file, **{"tracking.tracking_uri": tracking_uri})
    from scregnet.predict import OUTPUT_SUFFIXES, NetworkSpec, read_tf_list
    from scregnet.predict import predict as run_predict

    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        fail(f"--out: use one of {', '.join(OUTPUT_SUFFIXES)}", 2)
    tfs = read_tf_list(tfs_file) if tfs_file else None
    spec = NetworkSpec(tfs=tfs, order=order, top=top, top_k_per_tf=top_k_per_tf, min_score=min_score)
    try:
        path, summary, loaded = run_predict(dataset, out, model, config, spec)
    except KeyError as exc:
        fail(f"{dataset}: {exc.args[0] if exc.args else exc}", 1)
    except Exception as exc:
        if _no_such_model(exc):
            hint = (
                " (no version holds that alias: the gate may have kept every version so far; see "
                "`scregnet history`, or use --model challenger or a version number)"
                if not str(model).isdigit()
                else ""
            )
            fail(f"{dataset}: no registered model {model!r}{hint}", 1)
        raise
    click.echo(
        f"{loaded.name} version {loaded.version}: {summary['pairs']} pairs ({summary['tfs']} TFs, "
        f"{summary['known']} known training edges) -> {path} ({summary['seconds']:.1f}s)"
    )


@click.command()
@click.option("--dataset", default=None, help="Filter: tag dataset (e.g. mDC/TFs500).")
@click.option("--protocol", default=None, help="Filter: tag protocol.")
@click.option("--experiment", default=None, help="MLflow experiment (default: all).")
@click.option("--tag", "tags", multiple=True, help="Extra filter KEY=VALUE on run tags (repeatable).")
@click.option(
    "--by", default="dataset,protocol,embedder,gnn", show_default=True, help="Grouping tags, comma-separated."
)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the table as markdown.")
@click.option("--ui-help", is_flag=True, default=False, help="Print how to build the same view in the MLflow UI.")
def compare(dataset, protocol, experiment, tags, by, out, ui_help) -> None:
    """Runs in the MLflow store, grouped by tags: model vs trivial baselines on test, mean ± std."""
    from scregnet.compare import compare as run_compare
    from scregnet.compare import ui_help as ui_help_text

    check_out(out)
    extra = {}
    for t in tags:
        if "=" not in t:
            fail(f"--tag {t!r}: expected KEY=VALUE", 2)
        k, v = t.split("=", 1)
        extra[k] = v
    groups, table = run_compare(
        experiment=experiment,
        dataset=dataset,
        protocol=protocol,
        tags=extra,
        by=tuple(b.strip() for b in by.split(",") if b.strip()),
    )
    click.echo(table if groups else "no finished runs with test metrics match")
    if out is not None:
        click.echo(f"wrote {write_text(out, table)}")
    if ui_help:
        click.echo(ui_help_text())


@click.command()
@click.option("--dataset", required=True, help="Dataset name, e.g. hESC/TFs500 or synthetic.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Also write the table as CSV.")
def history(dataset, out) -> None:
    """Every change of champion (gate promotions and refusals, promote, rollback): when, who, why."""
    from scregnet.audit import history as audit_history

    name = _model_name(dataset)
    table = audit_history(name)
    if table.empty:
        click.echo(f"{name}: no champion events recorded")
    else:
        shown = table.drop(columns=["model", "numbers"])
        click.echo(shown.to_string(index=False, max_colwidth=90))
    if out is not None:
        click.echo(f"wrote {write_text(out, table.to_csv(index=False))}")


COMMANDS = (promote, rollback, predict, compare, history)
