"""Tuned vs default parameters over fresh split seeds, and the tuning table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scregnet.config import RunConfig
from scregnet.data import GRNDataset
from scregnet.embeddings.base import GeneEmbedding
from scregnet.train import ModelInputs
from scregnet.tune.space import apply_params


def tuned_vs_default(
    dataset: GRNDataset,
    config: RunConfig,
    params: dict,
    embedding: GeneEmbedding | None = None,
    seeds: int = 3,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Default config vs the tuned params over `seeds` independent splits + initialisations (test once each).

    The study tuned on split seed `config.split.seed`'s validation part; the other seeds are fresh splits.
    """
    from scregnet.experiment import run_seeds

    inputs = ModelInputs.build(dataset, embedding)
    out: dict[str, Any] = {"dataset": dataset.name, "protocol": config.split.protocol, "seeds": seeds, "params": params}
    for name, cfg in (("default", config), ("tuned", apply_params(config, params))):
        rows = run_seeds(dataset, cfg, embedding, seeds, inputs=inputs, log=log, label=name)
        out[name] = {
            k: (float(np.mean([r["model"][k] for r in rows])), float(np.std([r["model"][k] for r in rows])))
            for k in ("auroc", "auprc", "per_tf_auroc")
        }
        out[name]["seconds"] = float(np.mean([r["seconds"] for r in rows]))
        out["label_count"] = {
            k: (float(np.mean([r["label_count"][k] for r in rows])), float(np.std([r["label_count"][k] for r in rows])))
            for k in ("auroc", "auprc")
        }
    return out


def tuning_markdown(rows: list[dict[str, Any]]) -> str:
    """The tuned-vs-default table, with label_count and the paper's numbers."""
    from scregnet.reference import SCREGNET_GENEFORMER, cell_type

    lines = [
        "| dataset | protocol | trials (complete/pruned) | study s | best val | default AUROC | default AUPRC "
        "| tuned AUROC | tuned AUPRC | label_count AUROC/AUPRC | paper AUROC/AUPRC |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c, d, t, lc = r["tune"]["trials"], r["compare"]["default"], r["compare"]["tuned"], r["compare"]["label_count"]
        paper = SCREGNET_GENEFORMER.get(cell_type(r["compare"]["dataset"]))
        ps = f"{paper[0]:.2f}/{paper[1]:.2f}" if paper and r["compare"]["protocol"] == "genelink" else "-"
        lines.append(
            f"| {r['compare']['dataset']} | {r['compare']['protocol']} | {c['COMPLETE']}/{c['PRUNED']} "
            f"| {r['tune']['study_seconds']:.0f} | {r['tune']['best_value']:.3f} "
            f"| {d['auroc'][0]:.3f} ± {d['auroc'][1]:.3f} | {d['auprc'][0]:.3f} ± {d['auprc'][1]:.3f} "
            f"| {t['auroc'][0]:.3f} ± {t['auroc'][1]:.3f} | {t['auprc'][0]:.3f} ± {t['auprc'][1]:.3f} "
            f"| {lc['auroc'][0]:.3f}/{lc['auprc'][0]:.3f} | {ps} |"
        )
    return "\n".join(lines) + "\n"
