"""Running pipelines: `demo`, `train`, `schedule`."""

from __future__ import annotations

import time
from pathlib import Path

import click

from scregnet.cli._common import (
    choices,
    config_option,
    data_option,
    executable,
    fail,
    load,
    mlflow_ui_hint,
    preprocess_options,
    preprocess_overrides,
    prior_options,
    with_default,
)
from scregnet.cli.errors import hide_library_tracebacks
from scregnet.config import EmbedderConfig, ModelConfig, SplitConfig
from scregnet.home import home


def pipeline_output(run, step: str, name: str):
    """The loaded artifact `name` of `step` in a finished ZenML pipeline run."""
    outs = run.steps[step].outputs[name]
    return (outs[0] if isinstance(outs, list) else outs).load()


def _project_cause(exc: BaseException) -> BaseException | None:
    from scregnet.errors import ScregnetError

    seen = exc
    while seen is not None:
        if isinstance(seen, ScregnetError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _user_error_names() -> set[str]:
    from scregnet import errors

    return {n for n, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, errors.ScregnetError)}


def failed_steps() -> list[tuple[str, str, str]]:
    """(step, exception class path, message) of the failed steps of the newest pipeline run."""
    from zenml.client import Client

    runs = Client().list_pipeline_runs(sort_by="desc:created", size=1)
    out = []
    for run in runs.items:
        for name, step_run in run.steps.items():
            info = getattr(step_run, "exception_info", None)
            if str(step_run.status).lower().endswith("failed"):  # no info: it failed outside its own code
                out.append((name, info.source or "", info.message or "") if info is not None else (name, "", ""))
    return out


def close_open_runs(config) -> list[str]:
    """MLflow runs of the newest pipeline run, if it failed, that are still RUNNING -> FAILED.

    A step that fails outside the block holding its run (loading its inputs, writing its outputs)
    cannot close the run itself; every run a pipeline opens carries the pipeline run's name
    (`records.PIPELINE_RUN_TAG`). Returns the ids of the runs closed.
    """
    from zenml.client import Client

    from scregnet.tracking import records, tracker

    try:
        runs = Client().list_pipeline_runs(sort_by="desc:created", size=1).items
        if not runs or not str(runs[0].status).lower().endswith("failed"):
            return []  # a newer run is still going (another user's): not ours to close
        mlflow = tracker(config)
        query = f"tags.{records.PIPELINE_RUN_TAG} = '{runs[0].name}' and attributes.status = 'RUNNING'"
        exp = mlflow.experiment_id()
        left = mlflow.call(lambda: mlflow.client.search_runs([exp], filter_string=query), "find runs left RUNNING")
        for run in left:
            mlflow.end_run(run.info.run_id, "FAILED")
        return [run.info.run_id for run in left]
    except Exception as exc:  # the report below matters more than this clean-up
        click.secho(f"warning: could not check for MLflow runs left RUNNING: {exc}", fg="yellow", err=True)
        return []


def report_failure(exc: Exception, config=None) -> None:
    """Exit with the failed step's own message (ZenML's local orchestrator wraps it in a RuntimeError).

    With `config`, MLflow runs the failed pipeline left RUNNING are marked FAILED first.
    """
    closed = close_open_runs(config) if config is not None else []
    if closed:
        click.echo(f"marked MLflow run(s) {', '.join(closed)} FAILED (left RUNNING by the failed step)", err=True)
    cause = _project_cause(exc)
    if cause is not None:
        fail(f"run stopped: {cause}\nNothing was trained or registered.", 1)
    failed = failed_steps()
    # Sources are module paths relative to ZenML's source root ("errors.X" or "scregnet.errors.X").
    user_errors = [(n, m) for n, src, m in failed if src.rsplit(".", 1)[-1] in _user_error_names()]
    if user_errors:
        lines = "\n".join(f"[{n}] {m}" for n, m in user_errors)
        registered = any(n == "register" for n, _, _ in failed) or not failed
        fail(f"run stopped:\n{lines}\n" + ("" if registered else "Nothing was trained or registered."), 1)
    if failed:
        lines = "\n".join(
            f"[{n}] {src}: {m}" if src or m else f"[{n}] failed reading its inputs or writing its outputs (error above)"
            for n, src, m in failed
        )
        fail(f"run failed:\n{lines}\nSee the step logs; no model was promoted.", 1)
    raise exc


def run_training_pipeline(config, config_file: Path | None) -> None:
    """Check the inputs, run the training pipeline, print model vs baselines and the registry decision."""
    from scregnet.data import check_inputs, dataset_name_of

    check_inputs(config.data)  # a missing file is reported now, not after the orchestrator's start-up
    config.data.name = dataset_name_of(config.data)
    t0 = time.perf_counter()
    try:
        from pipelines.training import run_training

        hide_library_tracebacks()
        run = run_training(config, zenml_config=config_file)
    except Exception as exc:  # show the user-facing cause, not a ZenML traceback
        report_failure(exc, config)
    metrics = pipeline_output(run, "evaluate", "metrics")
    decision = pipeline_output(run, "register", "promotion")
    print_summary(config, metrics, decision, time.perf_counter() - t0)


def print_summary(config, metrics: dict, decision: dict, seconds: float) -> None:
    """Test metrics of the model beside its baselines and peers, and what the registry did with it."""
    test, base = metrics["test"], metrics["baselines"]["test"]
    click.echo("")
    click.secho(
        f"dataset {config.data.name}  protocol {config.split.protocol}  embedder {config.embedder.kind}  "
        f"({seconds:.0f}s)",
        bold=True,
    )
    click.echo(f"{'':<20}{'AUROC':>8}{'AUPRC':>8}{'per-TF AUROC':>14}")
    click.echo(f"{'model (test)':<20}{test['auroc']:>8.3f}{test['auprc']:>8.3f}{test['per_tf_auroc']:>14.3f}")
    for name, m in {**base, **metrics.get("peers", {}).get("test", {})}.items():
        click.echo(f"{name:<20}{m['auroc']:>8.3f}{m['auprc']:>8.3f}{m['per_tf_auroc']:>14.3f}")
    if decision.get("version"):
        state = "promoted to champion" if decision["promoted"] else "not promoted"
        click.echo(f"registered {decision['name']} version {decision['version']}: {state} ({decision['reason']})")
    click.echo(f"MLflow UI: {mlflow_ui_hint(config)}")
    click.echo(f"ZenML dashboard: {executable('scregnet')} dashboard")


@click.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the synthetic dataset (default $SCREGNET_HOME/demo/synthetic).",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of the synthetic network and split."
)
@config_option()
def demo(out_dir, seed, config_file) -> None:
    """Generate a SYNTHETIC dataset and run the whole training pipeline on it."""
    from scregnet.synthetic import make_synthetic_dataset

    out_dir = out_dir or home() / "demo" / "synthetic"
    make_synthetic_dataset(out_dir, seed=seed)
    click.echo(f"synthetic dataset (random network + simulated expression, not biological data) -> {out_dir}")
    config = load(
        config_file,
        **{
            "data.path": str(out_dir),
            "data.name": "synthetic",
            "split.seed": seed,
            "train.seed": seed,
            "embedder.kind": "pca" if config_file is None else None,
        },
    )
    run_training_pipeline(config, config_file)


@click.command()
@data_option()
@click.option("--h5ad", type=click.Path(path_type=Path), help="AnnData file (cells x genes).")
@prior_options
@config_option()
@click.option(
    "--embedder",
    type=choices(EmbedderConfig, "kind"),
    default=None,
    help=with_default("Gene embedder.", EmbedderConfig, "kind"),
)
@click.option("--embedding", type=click.Path(path_type=Path), default=None, help="File for --embedder precomputed.")
@click.option("--fm-model", default=None, help="Geneformer checkpoint (local dir or hub id) for --embedder geneformer.")
@click.option(
    "--dictionaries", type=click.Path(path_type=Path), default=None, help="Geneformer dictionaries directory."
)
@click.option(
    "--protocol",
    type=choices(SplitConfig, "protocol"),
    default=None,
    help=with_default("Split protocol.", SplitConfig, "protocol"),
)
@click.option(
    "--gnn", type=choices(ModelConfig, "gnn"), default=None, help=with_default("GNN layer type.", ModelConfig, "gnn")
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of the split and the initialisation.")
@click.option("--name", default=None, help="Dataset name in the registry (default: from the path).")
@preprocess_options
def train(
    data,
    h5ad,
    priors,
    prior_format,
    tf,
    min_score,
    gene_symbols,
    config_file,
    embedder,
    embedding,
    fm_model,
    dictionaries,
    protocol,
    gnn,
    seed,
    name,
    **preprocess,
):
    """Train, evaluate and register a model through the ZenML pipeline."""
    if data is None and h5ad is None and config_file is None:
        fail("give --data DIR, or --h5ad FILE --priors FILE, or a --config with data set", 2)
    config = load(
        config_file,
        **{
            "data.path": str(data) if data else None,
            "data.h5ad": str(h5ad) if h5ad else None,
            "data.priors": [str(p) for p in priors] or None,
            "data.prior_format": prior_format,
            "data.prior_tf": tf,
            "data.prior_min_score": min_score,
            "data.gene_symbols": gene_symbols,
            "data.name": name,
            "embedder.kind": embedder,
            "embedder.path": str(embedding) if embedding else None,
            "embedder.geneformer.model": fm_model,
            "embedder.geneformer.dictionaries": str(dictionaries) if dictionaries else None,
            "split.protocol": protocol,
            "model.gnn": gnn,
            "split.seed": seed,
            "train.seed": seed,
            **preprocess_overrides(preprocess),
        },
    )
    run_training_pipeline(config, config_file)


@click.command()
@click.option("--cron", "cron", required=True, help='Cron expression, e.g. "0 3 * * 1".')
@config_option("Run config (configs/k8s.yaml).", envvar="SCREGNET_RUN_CONFIG")
@click.option("--name", "schedule_name", default=None, help="Schedule name (default: chosen by ZenML).")
def schedule(cron, config_file, schedule_name) -> None:
    """Run the training pipeline on a cron schedule (orchestrators that support schedules only)."""
    if len(cron.split()) != 5:
        fail(f"--cron {cron!r}: expected 5 fields (minute hour day-of-month month day-of-week)", 2)
    config = load(config_file)
    from zenml.client import Client

    stack = Client().active_stack
    orchestrator = stack.orchestrator
    if not orchestrator.config.is_schedulable:
        fail(
            f"the active ZenML stack {stack.name!r} uses the {orchestrator.flavor!r} orchestrator, which does not "
            "run schedules (ZenML's local orchestrator refuses them).\n"
            "Either: run the watcher or a training run from cron, e.g.\n"
            f"  {cron} cd {Path.cwd()} && {_scregnet()} watch --bucket B --prefix P --expression-root DIR --once\n"
            "or activate a stack whose orchestrator schedules (Kubernetes: `zenml stack set scregnet-k8s`, then "
            "`scregnet schedule --config configs/k8s.yaml --cron ...` creates a CronJob).",
            2,
        )
    from zenml.config.schedule import Schedule

    from pipelines.training import run_training

    run_training(config, zenml_config=config_file, schedule=Schedule(name=schedule_name, cron_expression=cron))
    click.echo(f"scheduled the training pipeline on stack {stack.name!r} ({orchestrator.flavor}): cron {cron!r}")


def _scregnet() -> str:
    return executable("scregnet")


COMMANDS = (demo, train, schedule)
