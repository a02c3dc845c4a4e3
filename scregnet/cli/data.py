"""Data commands: `validate` (the input checks alone) and `embed` (Geneformer gene embeddings)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from scregnet.cli._common import check_out, choices, data_option, fail, prior_options, with_default
from scregnet.config import DataConfig, GeneformerConfig
from scregnet.home import home


@click.command()
@data_option()
@click.option("--h5ad", type=click.Path(path_type=Path), help="AnnData file (cells x genes).")
@prior_options
@click.option(
    "--min-cells", type=click.IntRange(min=1), default=None, help=with_default("Fewest cells.", DataConfig, "min_cells")
)
@click.option(
    "--min-genes", type=click.IntRange(min=1), default=None, help=with_default("Fewest genes.", DataConfig, "min_genes")
)
def validate(data, h5ad, priors, prior_format, tf, min_score, gene_symbols, min_cells, min_genes) -> None:
    """Run the input checks alone: exit 0 on good input, non-zero with one line per problem."""
    from scregnet.cli._common import load

    if data is None and h5ad is None:
        fail("give --data DIR, or --h5ad FILE --priors FILE", 2)
    cfg = load(  # the same checks as a run config: a bad value exits 2 naming the key
        None,
        **{
            "data.path": str(data) if data else None,
            "data.h5ad": str(h5ad) if h5ad else None,
            "data.priors": [str(p) for p in priors] or None,
            "data.min_cells": min_cells,
            "data.min_genes": min_genes,
            "data.prior_format": prior_format,
            "data.prior_tf": tf,
            "data.prior_min_score": min_score,
            "data.gene_symbols": gene_symbols,
        },
    ).data
    from scregnet.data import check_inputs, load_dataset
    from scregnet.errors import ScregnetError
    from scregnet.registry import model_name
    from scregnet.validation import validate_dataset

    try:
        check_inputs(cfg)
        dataset = load_dataset(cfg)
        report = validate_dataset(
            dataset,
            cfg.min_cells,
            cfg.min_genes,
            report_dir=home() / "validation" / model_name("report", dataset.name),
            max_empty_cell_frac=cfg.max_empty_cell_frac,
            max_empty_gene_frac=cfg.max_empty_gene_frac,
        )
    except (ScregnetError, ValueError) as exc:
        fail(f"invalid input: {exc}", 1)
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


@click.command()
@data_option()
@click.option("--h5ad", type=click.Path(path_type=Path), help="AnnData file (cells x genes).")
@click.option("--model", "model", required=True, help="Geneformer checkpoint: local directory or hub id.")
@click.option(
    "--dictionaries", type=click.Path(path_type=Path), required=True, help="Directory of Geneformer dictionaries."
)
@click.option(
    "--layer", type=int, default=None, help=with_default("-1 last layer, -2 penultimate.", GeneformerConfig, "layer")
)
@click.option(
    "--transform",
    type=choices(GeneformerConfig, "transform"),
    default=None,
    help=with_default("Ranking values.", GeneformerConfig, "transform"),
)
@click.option(
    "--device",
    type=choices(GeneformerConfig, "device"),
    default=None,
    help=with_default("Device.", GeneformerConfig, "device"),
)
@click.option(
    "--precision",
    type=choices(GeneformerConfig, "precision"),
    default=None,
    help=with_default("Autocast dtype: auto = bf16 on CUDA, fp32 on CPU.", GeneformerConfig, "precision"),
)
@click.option(
    "--attention",
    type=choices(GeneformerConfig, "attention"),
    default=None,
    help=with_default(
        "packed: cells without padding (flash varlen on CUDA, per-cell SDPA on CPU); sdpa/eager: padded "
        "batches; auto: packed on CPU, and on CUDA when flash varlen runs, else sdpa.",
        GeneformerConfig,
        "attention",
    ),
)
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Default: chosen from free memory.")
@click.option(
    "--shards",
    type=click.IntRange(min=1),
    default=None,
    help=with_default("Embed cells in this many shards (merged exactly).", GeneformerConfig, "n_shards"),
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output table: .csv or .parquet.")
def embed(
    data, h5ad, model, dictionaries, layer, transform, device, precision, attention, batch_size, shards, out
) -> None:
    """Geneformer gene embeddings -> a table indexed by gene symbol (genes that received a vector)."""
    from scregnet.cli._common import overrides
    from scregnet.config import EmbedderConfig
    from scregnet.data import load_beeline, read_h5ad
    from scregnet.embeddings import build_embedder

    if (data is None) == (h5ad is None):
        fail("give exactly one of --data DIR or --h5ad FILE", 2)
    if out.suffix.lower() not in (".csv", ".parquet"):
        fail("--out: use a .csv or .parquet file", 2)
    check_out(out)
    adata = load_beeline(data).adata if data is not None else read_h5ad(h5ad)  # names harmonised
    geneformer = GeneformerConfig(
        model=model,
        dictionaries=dictionaries,
        **overrides(
            layer=layer,
            transform=transform,
            device=device,
            precision=precision,
            attention=attention,
            batch_size=batch_size,
            n_shards=shards,
        ),
    )
    emb = build_embedder(EmbedderConfig(kind="geneformer", geneformer=geneformer)).embed(adata)
    frame = emb.to_frame()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        frame.to_parquet(out)
    else:
        frame.to_csv(out)
    missing = len(adata.var_names) - len(emb.genes)
    click.echo(f"wrote {len(emb.genes)} genes x {emb.dim} dims to {out}; {missing} genes received no vector")
    click.echo(json.dumps({k: v for k, v in emb.metadata.items() if not isinstance(v, (dict, list))}, indent=1))


COMMANDS = (validate, embed)
