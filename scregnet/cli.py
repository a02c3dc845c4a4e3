"""`scregnet` command line: demo, train, validate, embed, benchmark, and registry commands."""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

import click

from scregnet.home import configure, home

MLFLOW_UI_HINT = "mlflow ui --backend-store-uri sqlite:///{db} --port 5000  (then open http://127.0.0.1:5000)"


def _fail(message: str, code: int = 1) -> None:
    click.secho(message, fg="red", err=True)
    sys.exit(code)


def _overrides(**kw) -> dict:
    return {k: v for k, v in kw.items() if v is not None and v != ()}


def _load(config_file, **overrides):
    from scregnet.config import load_config

    try:
        return load_config(config_file, _overrides(**overrides))
    except (ValueError, FileNotFoundError) as exc:
        _fail(str(exc), 2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scregnet")
def main() -> None:
    """scRegNet gene regulatory link prediction: foundation-model gene embeddings + GNN + MLP.

    State (ZenML store, MLflow database, artifacts) lives under $SCREGNET_HOME (default ./.scregnet).
    """
    configure()


def _output(run, step: str, name: str):
    outs = run.steps[step].outputs[name]
    return (outs[0] if isinstance(outs, list) else outs).load()


def _cause(exc: BaseException) -> BaseException:
    from scregnet.errors import ScregnetError

    seen = exc
    while seen is not None:
        if isinstance(seen, ScregnetError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def _user_error_names() -> set[str]:
    from scregnet import errors

    return {
        name for name, obj in vars(errors).items() if isinstance(obj, type) and issubclass(obj, errors.ScregnetError)
    }


def _failed_steps() -> list[tuple[str, str, str]]:
    """(step, exception class path, message) of the failed steps of the newest pipeline run."""
    from zenml.client import Client

    runs = Client().list_pipeline_runs(sort_by="desc:created", size=1)
    out = []
    for run in runs.items:
        for name, step_run in run.steps.items():
            info = getattr(step_run, "exception_info", None)
            if str(step_run.status).lower().endswith("failed") and info is not None:
                out.append((name, info.source or "", info.message or ""))
    return out


def _run_pipeline(config, config_file) -> None:
    from scregnet.errors import ScregnetError

    t0 = time.perf_counter()
    try:
        from pipelines.training import run_training

        run = run_training(config, zenml_config=config_file)
    except Exception as exc:  # show the user-facing cause, not a ZenML traceback
        cause = _cause(exc)
        if isinstance(cause, ScregnetError):
            _fail(f"run stopped: {cause}\nNothing was trained or registered.", 1)
        failed = _failed_steps()
        # Sources are module paths relative to ZenML's source root ("errors.X" or "scregnet.errors.X").
        user_errors = [(n, m) for n, src, m in failed if src.rsplit(".", 1)[-1] in _user_error_names()]
        if user_errors:
            lines = "\n".join(f"[{n}] {m}" for n, m in user_errors)
            registered = any(n == "register" for n, _, _ in failed) or not failed
            _fail(f"run stopped:\n{lines}\n" + ("" if registered else "Nothing was trained or registered."), 1)
        if failed:
            lines = "\n".join(f"[{n}] {src}: {m}" for n, src, m in failed)
            _fail(f"run failed:\n{lines}\nSee the step logs above; no model was promoted.", 1)
        raise
    metrics = _output(run, "evaluate", "metrics")
    decision = _output(run, "register", "promotion")
    test, base = metrics["test"], metrics["baselines"]["test"]
    click.echo("")
    click.secho(
        f"dataset {config.data.name or ''}  protocol {config.split.protocol}  embedder {config.embedder.kind}  "
        f"({time.perf_counter() - t0:.0f}s)",
        bold=True,
    )
    click.echo(f"{'':<20}{'AUROC':>8}{'AUPRC':>8}{'per-TF AUROC':>14}")
    click.echo(f"{'model (test)':<20}{test['auroc']:>8.3f}{test['auprc']:>8.3f}{test['per_tf_auroc']:>14.3f}")
    for name, m in base.items():
        click.echo(f"{name:<20}{m['auroc']:>8.3f}{m['auprc']:>8.3f}{m['per_tf_auroc']:>14.3f}")
    if decision.get("version"):
        state = "promoted to champion" if decision["promoted"] else "not promoted"
        click.echo(f"registered {decision['name']} version {decision['version']}: {state} ({decision['reason']})")
    click.echo(f"MLflow UI: {MLFLOW_UI_HINT.format(db=home() / 'mlflow.db')}")


@main.command()
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where to write the synthetic dataset (default $SCREGNET_HOME/demo/synthetic).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic network and split.")
@click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path), default=None)
def demo(out_dir, seed, config_file) -> None:
    """Generate a SYNTHETIC dataset and run the whole training pipeline on it."""
    from scregnet.synthetic import make_synthetic_dataset

    out_dir = out_dir or home() / "demo" / "synthetic"
    make_synthetic_dataset(out_dir, seed=seed)
    click.echo(f"synthetic dataset (random network + simulated expression, not biological data) -> {out_dir}")
    config = _load(
        config_file,
        **{
            "data.path": str(out_dir),
            "data.name": "synthetic",
            "split.seed": seed,
            "train.seed": seed,
            "embedder.kind": "pca" if config_file is None else None,
        },
    )
    _run_pipeline(config, config_file)


@main.command()
@click.option("--data", type=click.Path(path_type=Path), help="BEELINE-layout dataset directory.")
@click.option("--h5ad", type=click.Path(path_type=Path), help="AnnData file (cells x genes).")
@click.option(
    "--priors", multiple=True, type=click.Path(path_type=Path), help="Priors table(s): tf,target (repeatable)."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Run config YAML (configs/local.yaml, configs/k8s.yaml, ...).",
)
@click.option("--embedder", type=click.Choice(["none", "pca", "precomputed", "geneformer"]), default=None)
@click.option("--embedding", type=click.Path(path_type=Path), default=None, help="File for --embedder precomputed.")
@click.option("--fm-model", default=None, help="Geneformer checkpoint (local dir or hub id) for --embedder geneformer.")
@click.option(
    "--dictionaries", type=click.Path(path_type=Path), default=None, help="Geneformer dictionaries directory."
)
@click.option(
    "--protocol", type=click.Choice(["genelink", "heldout_tf", "heldout_target", "heldout_both"]), default=None
)
@click.option("--gnn", type=click.Choice(["gcn", "sage", "gat"]), default=None)
@click.option("--seed", type=int, default=None, help="Seed of the split and the initialisation.")
@click.option("--name", default=None, help="Dataset name in the registry (default: from the path).")
def train(
    data, h5ad, priors, config_file, embedder, embedding, fm_model, dictionaries, protocol, gnn, seed, name
) -> None:
    """Train, evaluate and register a model through the ZenML pipeline."""
    if data is None and h5ad is None and config_file is None:
        _fail("give --data DIR, or --h5ad FILE --priors FILE, or a --config with data set", 2)
    config = _load(
        config_file,
        **{
            "data.path": str(data) if data else None,
            "data.h5ad": str(h5ad) if h5ad else None,
            "data.priors": [str(p) for p in priors] or None,
            "data.name": name,
            "embedder.kind": embedder,
            "embedder.path": str(embedding) if embedding else None,
            "embedder.geneformer.model": fm_model,
            "embedder.geneformer.dictionaries": str(dictionaries) if dictionaries else None,
            "split.protocol": protocol,
            "model.gnn": gnn,
            "split.seed": seed,
            "train.seed": seed,
        },
    )
    _run_pipeline(config, config_file)


@main.command()
@click.option("--data", type=click.Path(path_type=Path), help="BEELINE-layout dataset directory.")
@click.option("--h5ad", type=click.Path(path_type=Path), help="AnnData file (cells x genes).")
@click.option("--priors", multiple=True, type=click.Path(path_type=Path), help="Priors table(s) (repeatable).")
@click.option("--min-cells", type=int, default=10, show_default=True)
@click.option("--min-genes", type=int, default=20, show_default=True)
def validate(data, h5ad, priors, min_cells, min_genes) -> None:
    """Run the input checks alone: exit 0 on good input, non-zero with one line per problem."""
    from scregnet.config import DataConfig
    from scregnet.data import load_dataset
    from scregnet.errors import ScregnetError
    from scregnet.registry import model_name
    from scregnet.validation import validate_dataset

    try:
        cfg = DataConfig(path=data, h5ad=h5ad, priors=list(priors))
        dataset = load_dataset(cfg)
        report = validate_dataset(
            dataset, min_cells, min_genes, report_dir=home() / "validation" / model_name("report", dataset.name)
        )
    except (ScregnetError, ValueError) as exc:
        _fail(f"invalid input: {exc}", 1)
    for w in report.warnings:
        click.secho(f"warning: {w}", fg="yellow")
    for p in report.problems:
        click.secho(p, fg="red", err=True)
    if report.report_path:
        click.echo(f"report: {report.report_path}")
    if not report.ok:
        sys.exit(1)
    s = report.statistics
    click.echo(f"ok: {dataset.name}: {s['cells']} cells, {s['genes']} genes, {s['prior_edges']} prior edges")


@main.command()
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="BEELINE-layout directory (repeatable); one without expression is skipped.",
)
@click.option("--seeds", type=int, default=5, show_default=True, help="Independent split + initialisation seeds.")
@click.option(
    "--protocol",
    type=click.Choice(["genelink", "heldout_tf", "heldout_target", "heldout_both"]),
    default="genelink",
    show_default=True,
)
@click.option(
    "--embedder",
    "embedders",
    multiple=True,
    type=click.Choice(["none", "pca", "precomputed"]),
    default=("none",),
    show_default=True,
    help="Repeatable.",
)
@click.option("--degree-aware", is_flag=True, default=False, help="Degree-aware negative sampling (every part).")
@click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path), default=None)
@click.option(
    "--out", type=click.Path(path_type=Path), required=True, help="JSON file; a .md table is written beside it."
)
def benchmark(data, seeds, protocol, embedders, degree_aware, config_file, out) -> None:
    """Accuracy and speed over datasets x seeds with the trivial baselines (core library, no ZenML)."""
    from scregnet.benchmark import BenchmarkSpec, run_benchmark, write_report

    if not 1 <= seeds <= 50:
        _fail("--seeds must be between 1 and 50", 2)
    config = _load(config_file, **{"split.degree_aware_negatives": True if degree_aware else None})
    report = run_benchmark(BenchmarkSpec(list(data), seeds, protocol, tuple(embedders), config), log=click.echo)
    command = "scregnet " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    json_path, md_path = write_report(report, out, command)
    click.echo(md_path.read_text())
    click.echo(f"wrote {json_path} and {md_path}")


@main.command()
@click.option("--data", type=click.Path(path_type=Path), help="BEELINE-layout dataset directory.")
@click.option("--h5ad", type=click.Path(path_type=Path), help="AnnData file (cells x genes).")
@click.option("--model", "model", required=True, help="Geneformer checkpoint: local directory or hub id.")
@click.option(
    "--dictionaries", type=click.Path(path_type=Path), required=True, help="Directory of Geneformer dictionaries."
)
@click.option("--layer", type=int, default=-2, show_default=True, help="-1 last layer, -2 penultimate.")
@click.option("--transform", type=click.Choice(["none", "counts"]), default="none", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="Autocast dtype: auto = bf16 on CUDA, fp32 on CPU.",
)
@click.option("--batch-size", type=int, default=None, help="Default: chosen from free memory.")
@click.option(
    "--shards", type=int, default=1, show_default=True, help="Embed cells in this many shards (merged exactly)."
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output table: .csv or .parquet.")
def embed(data, h5ad, model, dictionaries, layer, transform, device, precision, batch_size, shards, out) -> None:
    """Geneformer gene embeddings -> a table indexed by gene symbol (genes that received a vector)."""
    from scregnet.config import EmbedderConfig, GeneformerConfig
    from scregnet.data import load_beeline
    from scregnet.embeddings import build_embedder
    from scregnet.errors import ScregnetError

    if (data is None) == (h5ad is None):
        _fail("give exactly one of --data DIR or --h5ad FILE", 2)
    try:
        if data is not None:
            adata = load_beeline(data).adata
        else:
            import anndata as ad

            adata = ad.read_h5ad(h5ad)
            adata.var_names = [str(g).upper() for g in adata.var_names]
        cfg = EmbedderConfig(
            kind="geneformer",
            geneformer=GeneformerConfig(
                model=model,
                dictionaries=dictionaries,
                layer=layer,
                transform=transform,
                device=device,
                precision=precision,
                batch_size=batch_size,
                n_shards=shards,
            ),
        )
        emb = build_embedder(cfg).embed(adata)
    except (ScregnetError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc), 1)
    frame = emb.to_frame()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        frame.to_parquet(out)
    else:
        frame.to_csv(out)
    missing = len(adata.var_names) - len(emb.genes)
    click.echo(f"wrote {len(emb.genes)} genes x {emb.dim} dims to {out}; {missing} genes received no vector")
    click.echo(json.dumps({k: v for k, v in emb.metadata.items() if not isinstance(v, (dict, list))}, indent=1))


@main.command()
@click.option("--dataset", required=True, help="Dataset name, e.g. hESC/TFs500 or synthetic.")
@click.option("--version", required=True, help="Registered version to make champion.")
def promote(dataset, version) -> None:
    """Make a registered version the champion (MLflow alias and ZenML stage together)."""
    from pipelines.promotion import manual_promote
    from scregnet import registry
    from scregnet.config import RegistryConfig

    name = registry.model_name(RegistryConfig().model_prefix, dataset)
    try:
        manual_promote(name, str(version))
    except Exception as exc:
        _fail(f"{name} version {version}: {exc}", 1)
    click.echo(f"{name}: champion -> version {version}")


@main.command()
@click.option("--dataset", required=True, help="Dataset name, e.g. hESC/TFs500 or synthetic.")
def rollback(dataset) -> None:
    """Move champion back to the previous champion (MLflow alias and ZenML stage together)."""
    from pipelines.promotion import manual_rollback
    from scregnet import registry
    from scregnet.config import RegistryConfig

    name = registry.model_name(RegistryConfig().model_prefix, dataset)
    try:
        version = manual_rollback(name)
    except ValueError as exc:
        _fail(str(exc), 1)
    click.echo(f"{name}: champion -> version {version}")


# --------------------------------------------------------------------------------------
# New-priors watcher, batch inference, schedules.


@main.command()
@click.option(
    "--bucket", envvar="WATCH_BUCKET", required=True, help="S3 bucket with the prior files [env WATCH_BUCKET]."
)
@click.option(
    "--prefix",
    envvar="WATCH_PREFIX",
    default="",
    show_default=True,
    help="Prefix holding <dataset>/<priors>.csv|.tsv [env WATCH_PREFIX].",
)
@click.option(
    "--endpoint-url",
    envvar="AWS_ENDPOINT_URL_S3",
    default=None,
    help="S3-compatible endpoint (MinIO, moto) [env AWS_ENDPOINT_URL_S3].",
)
@click.option(
    "--expression-root",
    envvar="SCREGNET_DATA_DIR",
    type=click.Path(path_type=Path),
    required=True,
    help="DIR/<dataset>/ holds the expression: a BEELINE directory or one .h5ad [env SCREGNET_DATA_DIR].",
)
@click.option(
    "--config",
    "config_file",
    envvar="SCREGNET_RUN_CONFIG",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Base run config for the triggered runs [env SCREGNET_RUN_CONFIG].",
)
@click.option(
    "--priors-dir",
    envvar="SCREGNET_PRIORS_DIR",
    type=click.Path(path_type=Path),
    default=None,
    help="Where prior files are downloaded; must be readable by the pipeline's steps "
    "(default $SCREGNET_HOME/priors) [env SCREGNET_PRIORS_DIR].",
)
@click.option("--once", is_flag=True, help="One pass, then exit (exit 1 if a triggered run failed).")
@click.option("--interval", type=float, default=None, help="Seconds between passes (runs until stopped).")
@click.option(
    "--settle",
    "settle_seconds",
    type=float,
    default=15.0,
    show_default=True,
    help="Quiet period: a dataset's newest upload must be this old (S3 server clock) and a second "
    "listing unchanged before it is trained on; fresh uploads are waited for within the pass.",
)
@click.option(
    "--lease",
    "lease_seconds",
    type=float,
    default=300.0,
    show_default=True,
    help="Per-dataset lock lease; renewed while a run is going, taken over when a watcher died.",
)
@click.option(
    "--run-timeout", type=float, default=6 * 3600.0, show_default=True, help="Seconds before a run is killed."
)
@click.option(
    "--retry-base",
    "retry_base_seconds",
    type=float,
    default=15 * 60.0,
    show_default=True,
    help="After a dataset's run failed, wait this long before retrying the same priors; doubles with "
    "each consecutive failure (0: retry on every pass). New priors are trained at once.",
)
@click.option(
    "--retry-max",
    "retry_max_seconds",
    type=float,
    default=6 * 3600.0,
    show_default=True,
    help="Upper bound of the retry wait.",
)
@click.option(
    "--max-failures",
    type=int,
    default=8,
    show_default=True,
    help="Give up on a dataset's priors after this many consecutive failed runs, until they change "
    "or --retry-failed (0: never give up).",
)
@click.option(
    "--retry-failed",
    is_flag=True,
    help="Retry datasets in backoff or given up on now (the first pass only), as if their priors were new.",
)
def watch(
    bucket,
    prefix,
    endpoint_url,
    expression_root,
    config_file,
    priors_dir,
    once,
    interval,
    settle_seconds,
    lease_seconds,
    run_timeout,
    retry_base_seconds,
    retry_max_seconds,
    max_failures,
    retry_failed,
) -> None:
    """Train one run per dataset whose priors under s3://BUCKET/PREFIX/<dataset>/ are new or changed."""
    import os
    import signal
    from collections import Counter

    from scregnet.priors_store import UnsafeKeyError, normalize_prefix
    from scregnet.watch import WatchConfig
    from scregnet.watch import watch as watch_loop

    if once == (interval is not None):
        _fail("give exactly one of --once or --interval SECONDS", 2)
    if interval is not None and interval <= 0:
        _fail("--interval must be positive", 2)
    if retry_base_seconds < 0 or retry_max_seconds < 0 or max_failures < 0:
        _fail("--retry-base, --retry-max and --max-failures must not be negative", 2)
    try:
        normalize_prefix(prefix)
    except UnsafeKeyError as exc:
        _fail(str(exc), 2)
    cfg = WatchConfig(
        bucket=bucket,
        prefix=prefix,
        endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL"),
        expression_root=expression_root.resolve(),
        priors_dir=(priors_dir or home() / "priors").resolve(),
        run_config=config_file.resolve() if config_file else None,
        settle_seconds=settle_seconds,
        lease_seconds=lease_seconds,
        run_timeout=run_timeout,
        workdir=home() / "watch",
        retry_base_seconds=retry_base_seconds,
        retry_max_seconds=retry_max_seconds,
        max_failures=max_failures or None,
    )

    def _term(signum, frame):  # let the finally blocks stop the child run and release the lease
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, _term)
    outcomes = watch_loop(
        cfg, once=once, interval=interval or 0.0, log=lambda m: click.echo(m), retry_failed=retry_failed
    )
    n = Counter(o.status for o in outcomes)
    click.echo(
        f"pass done: {n['trained']} trained, {n['failed']} failed, {n['backoff']} backing off, "
        f"{n['gave-up']} given up on, {len(outcomes)} dataset(s) seen"
    )
    # Backing off / given up is not a failure of this pass: no failing CronJob every 15 min.
    if n["failed"]:
        sys.exit(1)


@main.command()
@click.option("--dataset", required=True, help="Dataset name, e.g. hESC/TFs500 or synthetic.")
@click.option(
    "--model",
    "model",
    default="champion",
    show_default=True,
    help="Registry alias (champion, challenger) or a version number.",
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
@click.option("--top", type=int, default=None, help="Keep only the N best-scored pairs.")
@click.option("--min-score", type=float, default=None, help="Keep only pairs scoring at least this.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Run config (its tracking URI and registry prefix are used).",
)
@click.option("--tracking-uri", default=None, help="MLflow tracking server (default: config, env, $SCREGNET_HOME).")
def predict(dataset, model, out, tfs_file, top, min_score, config_file, tracking_uri) -> None:
    """Score every TF x gene pair with a registered model and write a ranked network."""
    from scregnet.predict import OUTPUT_SUFFIXES, read_tf_list
    from scregnet.predict import predict as run_predict

    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        _fail(f"--out: use one of {', '.join(OUTPUT_SUFFIXES)}", 2)
    config = _load(config_file, **{"tracking.tracking_uri": tracking_uri})
    try:
        tfs = read_tf_list(tfs_file) if tfs_file else None
        path, frame, loaded = run_predict(dataset, out, model, config, tfs=tfs, top=top, min_score=min_score)
    except KeyError as exc:
        _fail(f"{dataset}: {exc}", 1)
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            _fail(f"{dataset}: no registered model {model!r} ({exc})", 1)
        raise
    n_tfs = frame["tf"].nunique() if len(frame) else 0
    click.echo(f"{loaded.name} version {loaded.version}: {len(frame)} pairs ({n_tfs} TFs) -> {path}")


@main.command()
@click.option("--cron", "cron", required=True, help='Cron expression, e.g. "0 3 * * 1".')
@click.option(
    "--config",
    "config_file",
    envvar="SCREGNET_RUN_CONFIG",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Run config (configs/k8s.yaml) [env SCREGNET_RUN_CONFIG].",
)
@click.option("--name", "schedule_name", default=None, help="Schedule name (default: chosen by ZenML).")
def schedule(cron, config_file, schedule_name) -> None:
    """Run the training pipeline on a cron schedule (orchestrators that support schedules only)."""
    if len(cron.split()) != 5:
        _fail(f"--cron {cron!r}: expected 5 fields (minute hour day-of-month month day-of-week)", 2)
    config = _load(config_file)
    from zenml.client import Client

    stack = Client().active_stack
    orchestrator = stack.orchestrator
    if not orchestrator.config.is_schedulable:
        _fail(
            f"the active ZenML stack {stack.name!r} uses the {orchestrator.flavor!r} orchestrator, which does not "
            "run schedules (ZenML's local orchestrator refuses them).\n"
            "Either: run the watcher or a training run from cron, e.g.\n"
            f"  {cron} cd {Path.cwd()} && scregnet watch --bucket B --prefix P --expression-root DIR --once\n"
            "or activate a stack whose orchestrator schedules (Kubernetes: `zenml stack set scregnet-k8s`, then "
            "`scregnet schedule --config configs/k8s.yaml --cron ...` creates a CronJob).",
            2,
        )
    from zenml.config.schedule import Schedule

    from pipelines.training import run_training

    run_training(config, zenml_config=config_file, schedule=Schedule(name=schedule_name, cron_expression=cron))
    click.echo(f"scheduled the training pipeline on stack {stack.name!r} ({orchestrator.flavor}): cron {cron!r}")


# ---------------------------------------------------------------------------------------------
# Tuning, comparison and paper studies (scregnet/tune.py, scregnet/compare.py, scregnet/studies.py)

_PROTOCOLS = ["genelink", "heldout_tf", "heldout_target", "heldout_both"]


@main.command()
@click.option(
    "--data",
    "data",
    multiple=True,
    required=True,
    type=click.Path(path_type=Path),
    help="BEELINE-layout dataset directory (repeatable: one study per dataset).",
)
@click.option(
    "--trials", type=int, default=None, help="Target number of finished trials in the study [tune.n_trials: 50]."
)
@click.option("--timeout", type=float, default=None, help="Seconds for this worker's search (per dataset).")
@click.option(
    "--storage", default=None, help="Optuna RDB URL [$OPTUNA_STORAGE_URL, else sqlite $SCREGNET_HOME/optuna.db]."
)
@click.option("--study-name", default=None, help="Default: <dataset>-<protocol>-<embedder>-seed<k>-<metric>.")
@click.option("--protocol", type=click.Choice(_PROTOCOLS), default=None)
@click.option("--degree-aware", is_flag=True, default=False, help="Degree-aware negative sampling.")
@click.option("--embedder", type=click.Choice(["none", "pca", "precomputed"]), default=None)
@click.option("--embedding", type=click.Path(path_type=Path), default=None, help="File for --embedder precomputed.")
@click.option("--pruner", type=click.Choice(["median", "hyperband", "none"]), default=None)
@click.option("--metric", type=click.Choice(["auroc", "auprc"]), default=None, help="Validation metric to maximise.")
@click.option("--seed", type=int, default=None, help="Split + sampler seed.")
@click.option("--threads", type=int, default=None, help="torch threads per trial.")
@click.option("--no-retrain", is_flag=True, default=False, help="Search only; no final model.")
@click.option(
    "--compare-seeds",
    type=int,
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
@click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path), default=None)
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
    from scregnet import tune as tuning
    from scregnet.data import load_beeline
    from scregnet.embeddings import build_embedder
    from scregnet.errors import ScregnetError

    config = _load(
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
        },
    )
    if study_name and len(data) > 1:
        _fail("--study-name names one study: give a single --data", 2)
    if study_name:
        config.tune.study_name = study_name
    if as_pipeline:
        if len(data) != 1:
            _fail("--pipeline runs one dataset: give a single --data", 2)
        config.data.path = data[0]
        config = config.model_validate(config.model_dump())  # every field "set" for ZenML's parameter copy
        from pipelines.tuning import run_tuning

        run = run_tuning(config, zenml_config=config_file)
        best = _output(run, "tune", "best_params")
        metrics = _output(run, "evaluate", "metrics")
        click.echo(
            f"study {best['study_name']}: trials {best['trials']}, best validation {best['metric']} "
            f"{best['best_value']:.4f}"
        )
        click.echo(json.dumps(best["config_overrides"], indent=1))
        click.echo(
            f"tuned model (test, once): AUROC {metrics['test']['auroc']:.3f} AUPRC {metrics['test']['auprc']:.3f}"
            "  |  "
            + "  ".join(f"{k} {v['auroc']:.3f}/{v['auprc']:.3f}" for k, v in metrics["baselines"]["test"].items())
        )
        click.echo(f"MLflow UI: {MLFLOW_UI_HINT.format(db=home() / 'mlflow.db')}")
        return
    rows = []
    for directory in data:
        try:
            dataset = load_beeline(directory)
            emb = build_embedder(config.embedder).embed(dataset.adata)
            res = tuning.tune(dataset, config, emb, study_name=study_name)
        except (ScregnetError, RuntimeError, ValueError) as exc:
            _fail(f"{directory}: {exc}", 1)
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
        rows.append(row)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2, default=str))
        if compare_seeds:
            command = "scregnet " + " ".join(shlex.quote(a) for a in sys.argv[1:])
            out.with_suffix(".md").write_text(f"Command: `{command}`\n\n" + tuning.tuning_markdown(rows))
            click.echo(out.with_suffix(".md").read_text())
        click.echo(f"wrote {out}")


@main.command()
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
    from scregnet.compare import UI_HELP
    from scregnet.compare import compare as run_compare

    extra = {}
    for t in tags:
        if "=" not in t:
            _fail(f"--tag {t!r}: expected KEY=VALUE", 2)
        k, v = t.split("=", 1)
        extra[k] = v
    groups, table = run_compare(
        experiment=experiment,
        dataset=dataset,
        protocol=protocol,
        tags=extra,
        by=tuple(b.strip() for b in by.split(",") if b.strip()),
    )
    if not groups:
        click.echo("no finished runs with test metrics match")
    else:
        click.echo(table)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(table)
        click.echo(f"wrote {out}")
    if ui_help:
        click.echo(UI_HELP)


@main.command()
@click.argument("kind", type=click.Choice(["ablation", "gnn", "noise"]))
@click.option("--data", "data", multiple=True, required=True, type=click.Path(path_type=Path), help="Repeatable.")
@click.option("--seeds", type=int, default=5, show_default=True, help="ablation/gnn: independent seeds.")
@click.option("--protocol", type=click.Choice(_PROTOCOLS), default="genelink", show_default=True)
@click.option("--levels", default="0,0.01,0.02,0.03,0.04,0.05", show_default=True, help="noise: label-flip fractions.")
@click.option("--corruptions", type=int, default=10, show_default=True, help="noise: corruptions per level.")
@click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path), default=None)
@click.option(
    "--mlflow/--no-mlflow", "to_mlflow", default=False, help="Log the table (and the noise box plot) to MLflow."
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSON; .md (and noise .png) beside it.")
def study(kind, data, seeds, protocol, levels, corruptions, config_file, to_mlflow, out) -> None:
    """Paper studies: ablation (no GNN / no embedding), gnn (GCN/SAGE/GAT), noise (label-flip robustness)."""
    from scregnet import studies

    config = _load(config_file, **{"split.protocol": protocol})
    command = "scregnet " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    report = studies.run_study_kind(
        kind,
        list(data),
        config,
        seeds=seeds,
        levels=[float(x) for x in levels.split(",")],
        corruptions=corruptions,
        log=click.echo,
    )
    paths = studies.write_study(report, out, command, to_mlflow=to_mlflow, config=config)
    click.echo(Path(paths["md"]).read_text())
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
