"""Accuracy/speed benchmark over datasets x embedders x seeds, beside the trivial baselines and the
peers a lab would run instead (GRNBoost2, co-expression, embedding cosine: scregnet.peers).

Runs the core library only (no ZenML). Each seed is its own split and initialisation; the JSON
holds means (and stds) over seeds and every seed's row; a markdown table is written beside it
with the paper's scRegNet numbers for comparison. The per-TF AUROC difference of the model and
each scorer comes with its paired bootstrap interval per seed; the table shows the mean over
seeds, the spread (std) over seeds, and in how many seeds the interval lay above / below 0.
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
    peers: bool = True  # also score the peers of config.peers (cached per expression content)


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
            row = _run_one(dataset, base, spec, embedder_kind, log, skipped)
            if row is not None:
                results.append(row)
    return {"results": results, "skipped": skipped}


def _run_one(dataset, base: RunConfig, spec: BenchmarkSpec, embedder_kind: str, log, skipped: list) -> dict | None:
    """One (dataset, embedder): every seed, then means and spreads."""
    from scregnet.peers import PeerScores

    cfg = base.model_copy(deep=True)
    cfg.split.protocol = spec.protocol
    cfg.embedder.kind = embedder_kind
    t0 = time.perf_counter()
    embedding = build_embedder(cfg.embedder).embed(dataset.adata)
    embed_seconds = time.perf_counter() - t0
    peers = PeerScores.of(dataset, cfg.peers, embedding) if spec.peers else None
    label = f"{spec.protocol} {embedder_kind}"
    per_seed = run_seeds(
        dataset,
        cfg,
        embedding,
        spec.seeds,
        inputs=ModelInputs.build(dataset, embedding),
        log=log,
        label=label,
        skip_data_errors=True,
        peers=peers,
    )
    done = {r["seed"] for r in per_seed}
    skipped += [
        {"data": f"{dataset.name} seed {k}", "reason": "split could not be made (see log)"}
        for k in range(spec.seeds)
        if k not in done
    ]
    if not per_seed:
        return None
    return {
        "dataset": dataset.name,
        "protocol": spec.protocol,
        "embedder": embedder_kind,
        "model": _summary(
            [r["model"] for r in per_seed], ("auroc", "auprc", "auprc_lift", "per_tf_auroc", "per_tf_auprc")
        ),
        "baselines": {b: _summary([r["baselines"][b] for r in per_seed]) for b in BASELINES},
        "peers": {p: _summary([r["peers"][p] for r in per_seed]) for p in (peers.matrices if peers else {})},
        "peer_seconds": {n: m.meta.get("seconds") for n, m in (peers.matrices.items() if peers else [])},
        "peers_skipped": dict(peers.skipped) if peers else {},
        "differences": _differences(per_seed),
        "seconds_per_seed": float(np.mean([r["seconds"] for r in per_seed])),
        "embed_seconds": embed_seconds,
        "seeds": spec.seeds,
        "per_seed": per_seed,
    }


def _summary(rows: list[dict], keys=("auroc", "auprc", "per_tf_auroc")) -> dict[str, float]:
    """Means over seeds of `keys`, with `<key>_std` for AUROC and AUPRC."""
    out = {}
    for key in keys:
        m, s = _mean_std([r[key] for r in rows])
        out[key] = m
        if key in ("auroc", "auprc"):
            out[f"{key}_std"] = s
    return out


def _differences(per_seed: list[dict]) -> dict[str, dict[str, float]]:
    """Per scorer: mean and std over seeds of the per-TF AUROC difference (model - scorer), and how
    many seeds' paired bootstrap intervals lay wholly above or below 0."""
    names = list(dict.fromkeys(k for r in per_seed for k in r.get("per_tf_differences", {})))
    out = {}
    for name in names:
        ivs = [r["per_tf_differences"][name] for r in per_seed if name in r.get("per_tf_differences", {})]
        mean, std = _mean_std([iv["mean"] for iv in ivs])
        above = sum(1 for iv in ivs if np.isfinite(iv["lo"]) and iv["lo"] > 0)
        below = sum(1 for iv in ivs if np.isfinite(iv["hi"]) and iv["hi"] < 0)
        out[name] = {"mean": mean, "std": std, "seeds_above": above, "seeds_below": below, "seeds": len(ivs)}
    return out


def _best(row: dict, group: str) -> str | None:
    """The scorer of `group` (baselines or peers) with the highest mean per-TF AUROC."""
    scorers = row.get(group, {})
    # Ties (label_count and target_popularity rank each TF's targets alike) go to the first listed.
    ranked = [(v.get("per_tf_auroc", float("nan")), -i, k) for i, (k, v) in enumerate(scorers.items())]
    ranked = [r for r in ranked if np.isfinite(r[0])]
    return max(ranked)[2] if ranked else None


def _delta(row: dict, name: str | None) -> str:
    d = row.get("differences", {}).get(name) if name else None
    if not d:
        return "-"
    return (
        f"{d['mean']:+.3f} ± {d['std']:.3f} ({name}; CI>0 in {d['seeds_above']}/{d['seeds']}, <0 in {d['seeds_below']})"
    )


def markdown_table(report: dict) -> str:
    """Model vs baselines vs peers vs the paper, one row per (dataset, protocol, embedder)."""
    peer_names = list(dict.fromkeys(p for r in report["results"] for p in r.get("peers", {})))
    head = ["dataset", "protocol", "embedder", "model AUROC", "model AUPRC", "per-TF AUROC"]
    head += [f"{b} AUROC/AUPRC" for b in ("label_count", "tf_prior", "target_pop")]
    head += [f"{p} AUROC/AUPRC" for p in peer_names]
    head += ["per-TF AUROC model - best baseline", "per-TF AUROC model - best peer"]
    head += ["paper scRegNet AUROC/AUPRC", "s/seed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["results"]:
        m, b = r["model"], r["baselines"]
        paper = SCREGNET_GENEFORMER.get(cell_type(r["dataset"]))
        paper_s = f"{paper[0]:.2f}/{paper[1]:.2f}" if paper and r["protocol"] == "genelink" else "-"
        cells = [
            r["dataset"],
            r["protocol"],
            r["embedder"],
            f"{m['auroc']:.3f} ± {m['auroc_std']:.3f}",
            f"{m['auprc']:.3f} ± {m['auprc_std']:.3f}",
            f"{m['per_tf_auroc']:.3f}",
        ]
        cells += [f"{b[k]['auroc']:.3f}/{b[k]['auprc']:.3f}" for k in BASELINES]
        peers = r.get("peers", {})
        cells += [f"{peers[p]['auroc']:.3f}/{peers[p]['auprc']:.3f}" if p in peers else "-" for p in peer_names]
        cells += [_delta(r, _best(r, "baselines")), _delta(r, _best(r, "peers"))]
        cells += [paper_s, f"{r['seconds_per_seed']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
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
