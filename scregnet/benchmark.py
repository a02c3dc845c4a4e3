"""Accuracy/speed benchmark over datasets x embedders x seeds, with the trivial baselines.

Runs the core library only (no ZenML). Each seed is its own split and initialisation;
the JSON holds means (and stds) over seeds; a markdown table is written beside it with the
paper's scRegNet numbers for comparison.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scregnet.baselines import BASELINES
from scregnet.config import RunConfig
from scregnet.data import load_beeline
from scregnet.embeddings import build_embedder
from scregnet.errors import ExpressionMissingError
from scregnet.experiment import run_seeds
from scregnet.reference import LABEL_COUNT_PUBLISHED, SCREGNET_GENEFORMER, cell_type
from scregnet.train import ModelInputs


@dataclass
class BenchmarkSpec:
    """What to run: datasets x embedders x seeds under one protocol and base config."""

    data: list[Path]
    seeds: int = 5
    protocol: str = "genelink"
    embedders: tuple[str, ...] = ("none",)
    config: RunConfig | None = None


def _mean_std(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    return float(np.nanmean(arr)), float(np.nanstd(arr))


def run_benchmark(spec: BenchmarkSpec, log: Callable[[str], None] = print) -> dict:
    """Train and evaluate every (dataset, embedder, seed); returns results with means, stds and per-seed rows."""
    base = spec.config or RunConfig()
    results, skipped = [], []
    for directory in spec.data:
        try:
            dataset = load_beeline(directory)
        except ExpressionMissingError as exc:
            log(f"skip {directory}: {exc}")
            skipped.append({"data": str(directory), "reason": str(exc)})
            continue
        for embedder_kind in spec.embedders:
            cfg = base.model_copy(deep=True)
            cfg.split.protocol = spec.protocol
            cfg.embedder.kind = embedder_kind
            t0 = time.perf_counter()
            embedding = build_embedder(cfg.embedder).embed(dataset.adata)
            embed_seconds = time.perf_counter() - t0
            inputs = ModelInputs.build(dataset, embedding)
            per_seed = run_seeds(
                dataset,
                cfg,
                embedding,
                spec.seeds,
                inputs=inputs,
                log=log,
                label=f"{spec.protocol} {embedder_kind}",
                skip_data_errors=True,
            )
            done = {r["seed"] for r in per_seed}
            skipped += [
                {"data": f"{dataset.name} seed {k}", "reason": "split could not be made (see log)"}
                for k in range(spec.seeds)
                if k not in done
            ]
            if not per_seed:
                continue
            model = {}
            for key in ("auroc", "auprc", "auprc_lift", "per_tf_auroc", "per_tf_auprc"):
                m, s = _mean_std([r["model"][key] for r in per_seed])
                model[key] = m
                if key in ("auroc", "auprc"):
                    model[f"{key}_std"] = s
            baselines = {}
            for b in BASELINES:
                baselines[b] = {}
                for key in ("auroc", "auprc", "per_tf_auroc"):
                    m, s = _mean_std([r["baselines"][b][key] for r in per_seed])
                    baselines[b][key] = m
                    if key in ("auroc", "auprc"):
                        baselines[b][f"{key}_std"] = s
            results.append(
                {
                    "dataset": dataset.name,
                    "protocol": spec.protocol,
                    "embedder": embedder_kind,
                    "model": model,
                    "baselines": baselines,
                    "seconds_per_seed": float(np.mean([r["seconds"] for r in per_seed])),
                    "embed_seconds": embed_seconds,
                    "seeds": spec.seeds,
                    "per_seed": per_seed,
                }
            )
    return {"results": results, "skipped": skipped}


def markdown_table(report: dict) -> str:
    """Model vs baselines vs the paper, one row per (dataset, protocol, embedder)."""
    lines = [
        "| dataset | protocol | embedder | model AUROC | model AUPRC | per-TF AUROC | label_count AUROC/AUPRC "
        "| tf_prior AUROC/AUPRC | target_pop AUROC/AUPRC | paper scRegNet AUROC/AUPRC | s/seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        m, b = r["model"], r["baselines"]
        paper = SCREGNET_GENEFORMER.get(cell_type(r["dataset"]))
        paper_s = f"{paper[0]:.2f}/{paper[1]:.2f}" if paper and r["protocol"] == "genelink" else "-"
        lines.append(
            f"| {r['dataset']} | {r['protocol']} | {r['embedder']} | {m['auroc']:.3f} ± {m['auroc_std']:.3f} "
            f"| {m['auprc']:.3f} ± {m['auprc_std']:.3f} | {m['per_tf_auroc']:.3f} | "
            + " | ".join(f"{b[k]['auroc']:.3f}/{b[k]['auprc']:.3f}" for k in BASELINES)
            + f" | {paper_s} | {r['seconds_per_seed']:.1f} |"
        )
    for s in report.get("skipped", []):
        lines.append(f"\nSkipped {s['data']}: {s['reason']}")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path, command: str | None = None) -> tuple[Path, Path]:
    """Write the JSON report and a markdown table beside it; returns both paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    md = out.with_suffix(".md")
    header = f"Command: `{command}`\n\n" if command else ""
    md.write_text(
        header
        + markdown_table(report)
        + (
            "\nPaper numbers: scRegNet w/ Geneformer (Kommu et al. 2025), test-set model selection in the reference code. "
            "Published label_count (no learning) for comparison: "
            + ", ".join(f"{k} {v[0]:.3f}/{v[1]:.3f}" for k, v in LABEL_COUNT_PUBLISHED.items())
            + ".\n"
        )
    )
    return out, md
