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
        raise
    metrics = _output(run, "evaluate", "metrics")
    decision = _output(run, "register", "promotion")
    test, base = metrics["test"], metrics["baselines"]["test"]
    click.echo("")
    click.secho(f"dataset {config.data.name or ''}  protocol {config.split.protocol}  embedder {config.embedder.kind}  "
                f"({time.perf_counter() - t0:.0f}s)", bold=True)
    click.echo(f"{'':<20}{'AUROC':>8}{'AUPRC':>8}{'per-TF AUROC':>14}")
    click.echo(f"{'model (test)':<20}{test['auroc']:>8.3f}{test['auprc']:>8.3f}{test['per_tf_auroc']:>14.3f}")
    for name, m in base.items():
        click.echo(f"{name:<20}{m['auroc']:>8.3f}{m['auprc']:>8.3f}{m['per_tf_auroc']:>14.3f}")
    if decision.get("version"):
        state = "promoted to champion" if decision["promoted"] else "not promoted"
        click.echo(f"registered {decision['name']} version {decision['version']}: {state} ({decision['reason']})")
    click.echo(f"MLflow UI: {MLFLOW_UI_HINT.format(db=home() / 'mlflow.db')}")


@main.command()
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Where to write the synthetic dataset (default $SCREGNET_HOME/demo/synthetic).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the synthetic network and split.")
@click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path), default=None)
def demo(out_dir, seed, config_file) -> None:
    """Generate a SYNTHETIC dataset and run the whole training pipeline on it."""
    from scregnet.synthetic import make_synthetic_dataset

    out_dir = out_dir or home() / "demo" / "synthetic"
    make_synthetic_dataset(out_dir, seed=seed)
    click.echo(f"synthetic dataset (random network + simulated expression, not biological data) -> {out_dir}")
    config = _load(config_file, **{"data.path": str(out_dir), "data.name": "synthetic", "split.seed": seed,
                                   "train.seed": seed, "embedder.kind": "pca" if config_file is None else None})
    _run_pipeline(config, config_file)


@main.command()
@click.option("--data", type=click.Path(path_type=Path), help="BEELINE-layout dataset directory.")
@click.option("--h5ad", type=click.Path(path_type=Path), help="AnnData file (cells x genes).")
@click.option("--priors", multiple=True, type=click.Path(path_type=Path), help="Priors table(s): tf,target (repeatable).")
@click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path), default=None,
              help="Run config YAML (configs/local.yaml, configs/k8s.yaml, ...).")
@click.option("--embedder", type=click.Choice(["none", "pca", "precomputed", "geneformer"]), default=None)
@click.option("--embedding", type=click.Path(path_type=Path), default=None, help="File for --embedder precomputed.")
@click.option("--protocol", type=click.Choice(["genelink", "heldout_tf", "heldout_target", "heldout_both"]), default=None)
@click.option("--gnn", type=click.Choice(["gcn", "sage", "gat"]), default=None)
@click.option("--seed", type=int, default=None, help="Seed of the split and the initialisation.")
@click.option("--name", default=None, help="Dataset name in the registry (default: from the path).")
def train(data, h5ad, priors, config_file, embedder, embedding, protocol, gnn, seed, name) -> None:
    """Train, evaluate and register a model through the ZenML pipeline."""
    if data is None and h5ad is None and config_file is None:
        _fail("give --data DIR, or --h5ad FILE --priors FILE, or a --config with data set", 2)
    config = _load(config_file, **{
        "data.path": str(data) if data else None, "data.h5ad": str(h5ad) if h5ad else None,
        "data.priors": [str(p) for p in priors] or None, "data.name": name,
        "embedder.kind": embedder, "embedder.path": str(embedding) if embedding else None,
        "split.protocol": protocol, "model.gnn": gnn, "split.seed": seed, "train.seed": seed})
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
        report = validate_dataset(dataset, min_cells, min_genes,
                                  report_dir=home() / "validation" / model_name("report", dataset.name))
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
@click.option("--data", "data", multiple=True, required=True, type=click.Path(path_type=Path),
              help="BEELINE-layout directory (repeatable); one without expression is skipped.")
@click.option("--seeds", type=int, default=5, show_default=True, help="Independent split + initialisation seeds.")
@click.option("--protocol", type=click.Choice(["genelink", "heldout_tf", "heldout_target", "heldout_both"]),
              default="genelink", show_default=True)
@click.option("--embedder", "embedders", multiple=True, type=click.Choice(["none", "pca", "precomputed"]),
              default=("none",), show_default=True, help="Repeatable.")
@click.option("--config", "config_file", type=click.Path(exists=True, path_type=Path), default=None)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSON file; a .md table is written beside it.")
def benchmark(data, seeds, protocol, embedders, config_file, out) -> None:
    """Accuracy and speed over datasets x seeds with the trivial baselines (core library, no ZenML)."""
    from scregnet.benchmark import BenchmarkSpec, run_benchmark, write_report

    if not 1 <= seeds <= 50:
        _fail("--seeds must be between 1 and 50", 2)
    config = _load(config_file)
    report = run_benchmark(BenchmarkSpec(list(data), seeds, protocol, tuple(embedders), config), log=click.echo)
    command = "scregnet " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    json_path, md_path = write_report(report, out, command)
    click.echo(md_path.read_text())
    click.echo(f"wrote {json_path} and {md_path}")


@main.command()
@click.option("--data", type=click.Path(path_type=Path), help="BEELINE-layout dataset directory.")
@click.option("--h5ad", type=click.Path(path_type=Path), help="AnnData file (cells x genes).")
@click.option("--model", "model", required=True, help="Geneformer checkpoint: local directory or hub id.")
@click.option("--dictionaries", type=click.Path(path_type=Path), required=True, help="Directory of Geneformer dictionaries.")
@click.option("--layer", type=int, default=-2, show_default=True, help="-1 last layer, -2 penultimate.")
@click.option("--transform", type=click.Choice(["none", "counts"]), default="none", show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--batch-size", type=int, default=None, help="Default: chosen from free memory.")
@click.option("--shards", type=int, default=1, show_default=True, help="Embed cells in this many shards (merged exactly).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output table: .csv or .parquet.")
def embed(data, h5ad, model, dictionaries, layer, transform, device, batch_size, shards, out) -> None:
    """Geneformer gene embeddings -> a table indexed by gene symbol (genes that received a vector)."""
    from scregnet.config import GeneformerConfig
    from scregnet.data import load_beeline, read_table
    from scregnet.embeddings import build_embedder
    from scregnet.config import EmbedderConfig
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
        cfg = EmbedderConfig(kind="geneformer", geneformer=GeneformerConfig(
            model=model, dictionaries=dictionaries, layer=layer, transform=transform, device=device,
            batch_size=batch_size, n_shards=shards))
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


if __name__ == "__main__":
    main()
