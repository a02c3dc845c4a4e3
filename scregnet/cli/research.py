"""Research commands: `benchmark`, `study`, `tune` (core library; `tune --pipeline` runs ZenML)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from scregnet.cli._common import (
    FiniteRange,
    check_out,
    choices,
    command_line,
    config_option,
    data_option,
    fail,
    load,
    mlflow_ui_hint,
    with_default,
    write_text,
)
from scregnet.config import SplitConfig, TuneConfig

EMBEDDERS_WITHOUT_A_MODEL = click.Choice(["none", "pca", "precomputed"])  # no foundation model in these loops


def _levels(value: str) -> list[float]:
    try:
        levels = [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected comma-separated fractions, e.g. 0,0.01,0.05") from None
    bad = [x for x in levels if not 0 <= x < 1]
    if not levels or bad:
        raise click.BadParameter(f"{value!r}: expected fractions in [0, 1), e.g. 0,0.01,0.05")
    return levels


@click.command()
@data_option("BEELINE-layout directory (repeatable); one without expression is skipped.", multiple=True)
@click.option("--seeds", type=click.IntRange(1, 50), default=5, show_default=True, help="Independent seeds.")
@click.option("--protocol", type=choices(SplitConfig, "protocol"), default="genelink", show_default=True)
@click.option(
    "--embedder",
    "embedders",
    multiple=True,
    type=EMBEDDERS_WITHOUT_A_MODEL,
    default=("none",),
    show_default=True,
    help="Repeatable.",
)
@click.option("--degree-aware", is_flag=True, default=False, help="Degree-aware negative sampling (every part).")
@click.option(
    "--peers/--no-peers",
    default=True,
    show_default=True,
    help="Also score the peers of the config's `peers` section (GRNBoost2, co-expression, embedding cosine).",
)
@config_option()
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="JSON file; a .md table is written beside it."
)
def benchmark(data, seeds, protocol, embedders, degree_aware, peers, config_file, out) -> None:
    """Accuracy and speed over datasets x seeds with the trivial baselines (core library, no ZenML)."""
    missing = [str(d) for d in data if not Path(d).is_dir()]
    if missing:
        fail(f"--data: not a directory: {', '.join(missing)}", 2)
    check_out(out)
    config = load(config_file, **{"split.degree_aware_negatives": True if degree_aware else None})
    from scregnet.benchmark import BenchmarkSpec, run_benchmark, write_report

    spec = BenchmarkSpec(list(data), seeds, protocol, tuple(embedders), config, peers=peers)
    report = run_benchmark(spec, log=click.echo)
    json_path, md_path = write_report(report, out, command_line())
    click.echo(md_path.read_text())
    click.echo(f"wrote {json_path} and {md_path}")


@click.command()
@click.argument("kind", type=click.Choice(["ablation", "gnn", "noise"]))
@data_option("BEELINE-layout dataset directory (repeatable).", multiple=True)
@click.option("--seeds", type=click.IntRange(1, 50), default=5, show_default=True, help="ablation/gnn: seeds.")
@click.option("--protocol", type=choices(SplitConfig, "protocol"), default="genelink", show_default=True)
@click.option("--levels", default="0,0.01,0.02,0.03,0.04,0.05", show_default=True, help="noise: label-flip fractions.")
@click.option("--corruptions", type=click.IntRange(min=1), default=10, show_default=True, help="noise: per level.")
@config_option()
@click.option(
    "--mlflow/--no-mlflow", "to_mlflow", default=False, help="Log the table (and the noise box plot) to MLflow."
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSON; .md (and noise .png) beside it.")
def study(kind, data, seeds, protocol, levels, corruptions, config_file, to_mlflow, out) -> None:
    """Paper studies: ablation (no GNN / no embedding), gnn (GCN/SAGE/GAT), noise (label-flip robustness)."""
    fractions = _levels(levels)
    missing = [str(d) for d in data if not Path(d).is_dir()]
    if missing:
        fail(f"--data: not a directory: {', '.join(missing)}", 2)
    check_out(out)
    config = load(config_file, **{"split.protocol": protocol})
    from scregnet import studies

    report = studies.run_study_kind(
        kind, list(data), config, seeds=seeds, levels=fractions, corruptions=corruptions, log=click.echo
    )
    paths = studies.write_study(report, out, command_line(), to_mlflow=to_mlflow, config=config)
    click.echo(Path(paths["md"]).read_text())
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


@click.command()
@data_option("BEELINE-layout dataset directory (repeatable: one study per dataset).", multiple=True)
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=None,
    help=with_default("Target number of finished trials in the study.", TuneConfig, "n_trials"),
)
@click.option("--timeout", type=FiniteRange(min=0, min_open=True), default=None, help="Seconds per dataset.")
@click.option(
    "--storage", default=None, help="Optuna RDB URL [$OPTUNA_STORAGE_URL, else sqlite $SCREGNET_HOME/optuna.db]."
)
@click.option("--study-name", default=None, help="Default: <dataset>-<protocol>-<embedder>-seed<k>-<metric>.")
@click.option("--protocol", type=choices(SplitConfig, "protocol"), default=None)
@click.option("--degree-aware", is_flag=True, default=False, help="Degree-aware negative sampling.")
@click.option("--embedder", type=EMBEDDERS_WITHOUT_A_MODEL, default=None)
@click.option("--embedding", type=click.Path(path_type=Path), default=None, help="File for --embedder precomputed.")
@click.option(
    "--pruner",
    type=choices(TuneConfig, "pruner"),
    default=None,
    help=with_default("Optuna pruner.", TuneConfig, "pruner"),
)
@click.option(
    "--metric",
    type=choices(TuneConfig, "metric"),
    default=None,
    help=with_default("Validation metric to maximise.", TuneConfig, "metric"),
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Split + sampler seed.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads per trial.")
@click.option("--no-retrain", is_flag=True, default=False, help="Search only; no final model.")
@click.option(
    "--compare-seeds",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Afterwards, default vs tuned params over this many fresh split seeds (test once each).",
)
@click.option(
    "--pipeline",
    "as_pipeline",
    is_flag=True,
    default=False,
    help="Run the ZenML tuning pipeline (tune -> train -> evaluate -> register) for one --data.",
)
@config_option()
@click.option("--out", type=click.Path(path_type=Path), default=None, help="JSON report; a .md table beside it.")
def tune(
    data,
    trials,
    timeout,
    storage,
    study_name,
    protocol,
    degree_aware,
    embedder,
    embedding,
    pruner,
    metric,
    seed,
    threads,
    no_retrain,
    compare_seeds,
    as_pipeline,
    config_file,
    out,
) -> None:
    """Optuna search on validation (TPE + pruning, resumable RDB study), then retrain the best once on test."""
    config = load(
        config_file,
        **{
            "tune.n_trials": trials,
            "tune.timeout": timeout,
            "tune.storage": storage,
            "tune.pruner": pruner,
            "tune.metric": metric,
            "tune.sampler_seed": seed,
            "split.seed": seed,
            "train.seed": seed,
            "split.protocol": protocol,
            "split.degree_aware_negatives": True if degree_aware else None,
            "embedder.kind": embedder,
            "embedder.path": str(embedding) if embedding else None,
            "train.threads": threads,
            "tune.retrain": False if no_retrain else None,
            "tune.study_name": study_name,
        },
    )
    if study_name and len(data) > 1:
        fail("--study-name names one study: give a single --data", 2)
    missing = [str(d) for d in data if not Path(d).is_dir()]
    if missing:
        fail(f"--data: not a directory: {', '.join(missing)}", 2)
    check_out(out)
    if as_pipeline:
        if len(data) != 1:
            fail("--pipeline runs one dataset: give a single --data", 2)
        _tune_pipeline(config, data[0], config_file)
        return
    from scregnet.cli.errors import hide_library_tracebacks

    hide_library_tracebacks()  # a failed trial is one line (its error), not a traceback
    rows = [_tune_one(directory, config, study_name, compare_seeds) for directory in data]
    if out is not None:
        write_text(out, json.dumps(rows, indent=2, default=str))
        if compare_seeds:
            from scregnet.tune import tuning_markdown

            md = write_text(out.with_suffix(".md"), f"Command: `{command_line()}`\n\n" + tuning_markdown(rows))
            click.echo(md.read_text())
        click.echo(f"wrote {out}")


def _tune_pipeline(config, directory: Path, config_file: Path | None) -> None:
    from scregnet.cli.errors import hide_library_tracebacks
    from scregnet.cli.run import pipeline_output, report_failure

    config.data.path = directory
    config = config.model_validate(config.model_dump())  # every field "set" for ZenML's parameter copy
    try:
        from pipelines.tuning import run_tuning

        hide_library_tracebacks()
        run = run_tuning(config, zenml_config=config_file)
    except Exception as exc:
        report_failure(exc, config)
    best = pipeline_output(run, "tune", "best_params")
    metrics = pipeline_output(run, "evaluate", "metrics")
    click.echo(
        f"study {best['study_name']}: trials {best['trials']}, best validation {best['metric']} {best['best_value']:.4f}"
    )
    click.echo(json.dumps(best["config_overrides"], indent=1))
    click.echo(
        f"tuned model (test, once): AUROC {metrics['test']['auroc']:.3f} AUPRC {metrics['test']['auprc']:.3f}  |  "
        + "  ".join(f"{k} {v['auroc']:.3f}/{v['auprc']:.3f}" for k, v in metrics["baselines"]["test"].items())
    )
    click.echo(f"MLflow UI: {mlflow_ui_hint(config)}")


def _tune_one(directory: Path, config, study_name: str | None, compare_seeds: int) -> dict:
    from scregnet import tune as tuning
    from scregnet.data import load_beeline
    from scregnet.embeddings import build_embedder

    dataset = load_beeline(directory)
    emb = build_embedder(config.embedder).embed(dataset.adata)
    res = tuning.tune(dataset, config, emb, study_name=study_name)
    click.secho(
        f"{dataset.name}: study {res.study_name} ({tuning.redact(res.storage)}), trials {res.counts}, "
        f"search {res.study_seconds:.0f}s",
        bold=True,
    )
    click.echo(f"best validation {res.metric} {res.best_value:.4f}; params as config overrides:")
    click.echo(json.dumps(res.overrides, indent=1))
    if res.final:
        t, b = res.final["model"]["test"], res.final["baselines"]["test"]
        click.echo(
            f"final model (test, once): AUROC {t['auroc']:.3f} AUPRC {t['auprc']:.3f}  |  "
            + "  ".join(f"{k} {v['auroc']:.3f}/{v['auprc']:.3f}" for k, v in b.items())
        )
    row = {"tune": res.as_dict()}
    if compare_seeds:
        row["compare"] = tuning.tuned_vs_default(dataset, config, res.best_params, emb, compare_seeds, click.echo)
    return row


COMMANDS = (benchmark, study, tune)
