"""The paper's studies as benchmark modes (core library, no ZenML).

- `ablation`: full model (PCA gene embedding + GNN) vs no GNN (`model.use_gnn=False`) vs no
  embedding (`embedder.kind=none`).
- `gnn`: GCN vs GraphSAGE vs GAT.
- `noise`: label-noise robustness: flip a fraction (1-5 %) of the TRAINING labels (positives and
  negatives alike; the GNN graph is rebuilt from the noisy positives), 10 corruptions per level;
  validation and test labels stay clean. Box plot of test AUROC/AUPRC per level (the paper's
  Figure 3), with label_count computed from the same noisy training labels beside it.

Every run is split + trained + evaluated once on test by `scregnet.experiment`; the spread is
over independent seeds (ablation, gnn) or corruptions (noise).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from scregnet.config import RunConfig
from scregnet.data import GRNDataset, load_beeline
from scregnet.embeddings import build_embedder
from scregnet.errors import ExpressionMissingError
from scregnet.experiment import evaluate, run_seeds
from scregnet.splits import Split, make_split
from scregnet.train import ModelInputs, bundle, fit

KEYS = ("auroc", "auprc", "per_tf_auroc", "auprc_lift")


def ablation_variants(config: RunConfig) -> dict[str, RunConfig]:
    """full (PCA embedding + GNN), no GNN, no embedding. The full model uses PCA when the config
    has no embedder, so that "no embedding" removes something."""
    full = config.model_copy(deep=True)
    if full.embedder.kind == "none":
        full.embedder.kind = "pca"
    no_gnn = full.model_copy(deep=True)
    no_gnn.model.use_gnn = False
    no_emb = full.model_copy(deep=True)
    no_emb.embedder.kind = "none"
    return {"full": full, "no_gnn": no_gnn, "no_embedding": no_emb}


def gnn_variants(config: RunConfig) -> dict[str, RunConfig]:
    """The GNN study: the same model with GCN, GraphSAGE and GAT layers."""
    out = {}
    for kind in ("gcn", "sage", "gat"):
        cfg = config.model_copy(deep=True)
        cfg.model.gnn = kind
        out[kind] = cfg
    return out


def _summary(rows: list[dict], source: str) -> dict[str, float]:
    out = {}
    for k in KEYS:
        vals = np.array([r[source][k] for r in rows], dtype=float)
        out[k], out[f"{k}_std"] = float(np.nanmean(vals)), float(np.nanstd(vals))
    return out


def run_variants(
    dataset: GRNDataset, variants: dict[str, RunConfig], seeds: int, log: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Every variant x dataset x seed, with the trivial baselines."""
    results = []
    embeddings: dict[str, Any] = {}
    for name, cfg in variants.items():
        key = cfg.embedder.model_dump_json()
        if key not in embeddings:
            embeddings[key] = build_embedder(cfg.embedder).embed(dataset.adata)
        emb = embeddings[key]
        inputs = ModelInputs.build(dataset, emb)
        rows = run_seeds(dataset, cfg, emb, seeds, inputs=inputs, log=log, label=name)
        results.append(
            {
                "dataset": dataset.name,
                "protocol": cfg.split.protocol,
                "variant": name,
                "embedder": cfg.embedder.kind,
                "gnn": cfg.model.gnn if cfg.model.use_gnn else "-",
                "model": _summary(rows, "model"),
                "label_count": _summary(rows, "label_count"),
                "seconds": float(np.mean([r["seconds"] for r in rows])),
                "per_seed": rows,
            }
        )
    return results


def flip_labels(split: Split, fraction: float, rng: np.random.Generator) -> Split:
    """A copy of `split` with `fraction` of the training labels flipped (validation and test untouched)."""
    train = split.train.copy()
    k = int(round(fraction * len(train)))
    if k:
        idx = rng.choice(len(train), size=k, replace=False)
        train[idx, 2] = 1 - train[idx, 2]
    return Split(train, split.val, split.test, protocol=split.protocol, seed=split.seed)


def run_noise(
    dataset: GRNDataset,
    config: RunConfig,
    levels: list[float],
    corruptions: int = 10,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """One fixed split (config.split.seed); per level, `corruptions` independent label flips (each
    with its own initialisation seed). Level 0 repeats the clean run with `corruptions` init seeds."""
    emb = build_embedder(config.embedder).embed(dataset.adata)
    inputs = ModelInputs.build(dataset, emb)
    clean = make_split(dataset.label_graph(), config.split)
    rows = []
    for level in levels:
        for k in range(corruptions):
            rng = np.random.default_rng([config.split.seed, int(round(level * 1e4)), k])
            split = flip_labels(clean, level, rng)
            train_cfg = config.train.model_copy(update={"seed": k})
            t0 = time.perf_counter()
            res = fit(inputs, split, config.model, train_cfg)
            ev = evaluate(bundle(res, inputs, config.model), split)
            rows.append(
                {
                    "dataset": dataset.name,
                    "level": level,
                    "corruption": k,
                    "model": ev.model["test"],
                    "label_count": ev.baselines["test"]["label_count"],
                    "seconds": time.perf_counter() - t0,
                }
            )
            log(
                f"{dataset.name} noise {level:.0%} #{k}: AUROC {ev.model['test']['auroc']:.3f} "
                f"AUPRC {ev.model['test']['auprc']:.3f} (label_count {ev.baselines['test']['label_count']['auroc']:.3f})"
            )
    return rows


def run_study_kind(
    kind: str,
    data: list[Path],
    config: RunConfig,
    seeds: int = 5,
    levels: list[float] | None = None,
    corruptions: int = 10,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the ablation, gnn or noise study over `data`."""
    report: dict[str, Any] = {"kind": kind, "protocol": config.split.protocol, "results": [], "skipped": []}
    for directory in data:
        try:
            dataset = load_beeline(directory)
        except ExpressionMissingError as exc:
            log(f"skip {directory}: {exc}")
            report["skipped"].append({"data": str(directory), "reason": str(exc)})
            continue
        if kind == "ablation":
            report["results"] += run_variants(dataset, ablation_variants(config), seeds, log)
        elif kind == "gnn":
            report["results"] += run_variants(dataset, gnn_variants(config), seeds, log)
        elif kind == "noise":
            report["results"] += run_noise(
                dataset, config, levels or [0, 0.01, 0.02, 0.03, 0.04, 0.05], corruptions, log
            )
        else:
            raise ValueError(f"unknown study {kind!r}; expected ablation, gnn or noise")
    return report


# --------------------------------------------------------------------------- output


def variants_markdown(report: dict) -> str:
    """The ablation / gnn table: mean ± std per dataset and variant."""
    lines = [
        "| dataset | protocol | variant | embedder | gnn | model AUROC | model AUPRC | per-TF AUROC "
        "| label_count AUROC/AUPRC | s/seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        m, b = r["model"], r["label_count"]
        lines.append(
            f"| {r['dataset']} | {r['protocol']} | {r['variant']} | {r['embedder']} | {r['gnn']} "
            f"| {m['auroc']:.3f} ± {m['auroc_std']:.3f} | {m['auprc']:.3f} ± {m['auprc_std']:.3f} "
            f"| {m['per_tf_auroc']:.3f} | {b['auroc']:.3f}/{b['auprc']:.3f} | {r['seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def noise_markdown(report: dict) -> str:
    """The noise table: model vs label_count per dataset and flipped fraction."""
    lines = [
        "| dataset | flipped | runs | model AUROC | model AUPRC | label_count AUROC | label_count AUPRC |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = report["results"]
    for ds in dict.fromkeys(r["dataset"] for r in rows):
        for level in dict.fromkeys(r["level"] for r in rows if r["dataset"] == ds):
            sel = [r for r in rows if r["dataset"] == ds and r["level"] == level]

            def f(src: str, k: str, sel=sel) -> str:
                return f"{np.mean([r[src][k] for r in sel]):.3f} ± {np.std([r[src][k] for r in sel]):.3f}"

            lines.append(
                f"| {ds} | {level:.0%} | {len(sel)} | {f('model', 'auroc')} | {f('model', 'auprc')} "
                f"| {f('label_count', 'auroc')} | {f('label_count', 'auprc')} |"
            )
    return "\n".join(lines) + "\n"


def noise_figure(report: dict):
    """Box plots of test AUROC and AUPRC per flipped fraction, one row per dataset (paper Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["results"]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.2 * len(datasets)), squeeze=False)
    for i, ds in enumerate(datasets):
        levels = list(dict.fromkeys(r["level"] for r in rows if r["dataset"] == ds))
        for j, metric in enumerate(("auroc", "auprc")):
            ax = axes[i][j]
            model = [[r["model"][metric] for r in rows if r["dataset"] == ds and r["level"] == lv] for lv in levels]
            base = [
                [r["label_count"][metric] for r in rows if r["dataset"] == ds and r["level"] == lv] for lv in levels
            ]
            pos = np.arange(len(levels))
            b1 = ax.boxplot(model, positions=pos - 0.18, widths=0.3, patch_artist=True)
            b2 = ax.boxplot(base, positions=pos + 0.18, widths=0.3, patch_artist=True)
            for patch in b1["boxes"]:
                patch.set_facecolor("#4C72B0")
            for patch in b2["boxes"]:
                patch.set_facecolor("#DD8452")
            ax.set_xticks(pos, [f"{lv:.0%}" for lv in levels])
            ax.set_xlabel("training labels flipped")
            ax.set_ylabel(f"test {metric.upper()}")
            ax.set_title(f"{ds}: {metric.upper()}")
            ax.legend([b1["boxes"][0], b2["boxes"][0]], ["model", "label_count"], fontsize=8)
    fig.tight_layout()
    return fig


def write_study(
    report: dict, out: Path, command: str | None = None, to_mlflow: bool = False, config: RunConfig | None = None
) -> dict[str, Path]:
    """Write JSON, markdown (and the noise box plot); optionally log them to MLflow."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    paths = {"json": out}
    table = noise_markdown(report) if report["kind"] == "noise" else variants_markdown(report)
    header = f"Command: `{command}`\n\n" if command else ""
    md = out.with_suffix(".md")
    md.write_text(header + table + "".join(f"\nSkipped {s['data']}: {s['reason']}\n" for s in report["skipped"]))
    paths["md"] = md
    if report["kind"] == "noise" and report["results"]:
        fig = noise_figure(report)
        png = out.with_suffix(".png")
        fig.savefig(png, dpi=110, bbox_inches="tight")
        paths["png"] = png
    if to_mlflow:
        from scregnet.tracking import tracker

        cfg = config or RunConfig()
        mlflow = tracker(cfg)
        datasets = sorted({r["dataset"] for r in report["results"]})
        run_id = mlflow.start_run(
            {"kind": f"study_{report['kind']}", "protocol": report["protocol"], "dataset": ",".join(datasets)},
            cfg.flat(),
            run_name=f"study-{report['kind']}",
        )
        with mlflow.holding(run_id):
            with tempfile.TemporaryDirectory() as tmp:
                for p in paths.values():
                    Path(tmp, p.name).write_bytes(p.read_bytes())
                mlflow.log_artifacts(run_id, tmp, "study")
            if "png" in paths:
                mlflow.log_figure(run_id, fig, "noise_boxplot.png")
            mlflow.end_run(run_id, "FINISHED")
        paths["mlflow_run"] = Path(run_id)
    return paths
