"""Default model vs `model.coexpression_init: true`, side by side, from committed benchmark outputs.

Reads benchmarks/results/coexpression_init_<protocol>.json (run_coexpression_init.sh) and the
default model's numbers on the same datasets, protocols and seeds: accuracy.json (genelink) and
peers.json (heldout_tf, heldout_target). Test metrics, mean over 5 seeds; label_count and the best
peer (by AUROC) of the same runs beside them. Writes benchmarks/results/coexpression_init.md.

    python benchmarks/compare_coexpression_init.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
PROTOCOLS = ("genelink", "heldout_tf", "heldout_target")
METRICS = ("auroc", "auprc", "per_tf_auroc")


def _mean(v) -> float:
    return float(v[0] if isinstance(v, list) else v)  # peers.json keeps [mean, std]


def default_numbers(protocol: str) -> dict[str, dict[str, float]]:
    """dataset -> the default model's test means (embedder none)."""
    if protocol == "genelink":
        rows = json.loads((RESULTS / "accuracy.json").read_text())["results"]
        return {
            r["dataset"]: {m: r["model"][m] for m in METRICS}
            for r in rows
            if "model" in r and r["embedder"] == "none" and r["protocol"] == protocol
        }
    rows = json.loads((RESULTS / "peers.json").read_text())["results"]
    return {
        r["dataset"]: {m: _mean(r["protocols"][protocol]["stats"]["model"][m]) for m in METRICS}
        for r in rows
        if protocol in r.get("protocols", {})
    }


def main() -> None:
    head = "| protocol | dataset | default AUROC / AUPRC / per-TF | coexpression_init AUROC / AUPRC / per-TF | label_count | best peer (AUROC) |"
    lines = [head, "|---|---|---|---|---|---|"]
    gains = {m: [] for m in METRICS}
    for protocol in PROTOCOLS:
        default = default_numbers(protocol)
        for r in json.loads((RESULTS / f"coexpression_init_{protocol}.json").read_text())["results"]:
            if "model" not in r:
                continue
            d, m, lc = default[r["dataset"]], r["model"], r["baselines"]["label_count"]
            peer = max(r["peers"].items(), key=lambda kv: kv[1]["auroc"]) if r["peers"] else None
            for k in METRICS:
                gains[k].append(m[k] - d[k])

            def trio(x: dict) -> str:
                return " / ".join(f"{x[k]:.3f}" for k in METRICS)

            peer_text = f"{peer[0]} {peer[1]['auroc']:.3f}" if peer else "-"
            lines.append(f"| {protocol} | {r['dataset']} | {trio(d)} | **{trio(m)}** | {trio(lc)} | {peer_text} |")
    n = len(gains["auroc"])
    summary = ", ".join(
        f"{k}: mean {sum(v) / n:+.4f}, better in {sum(g > 0.0005 for g in v)}, worse in {sum(g < -0.0005 for g in v)} of {n}"
        for k, v in gains.items()
    )
    text = (
        "# Default model vs `model.coexpression_init: true` (BEELINE TFs+500, 5 seeds, embedder none)\n\n"
        "    benchmarks/run_coexpression_init.sh && python benchmarks/compare_coexpression_init.py\n\n"
        "`coexpression_init` starts the zero-initialised link head's r and |r| weights and bias at a logistic "
        "regression of the training labels on the pair's co-expression, with the label_count prior as offset "
        "(training pairs only), so the untrained model is label_count + co-expression; checkpoint selection on "
        "validation is unchanged. Default numbers: accuracy.json (genelink) and peers.json (held-out "
        "protocols), same datasets, protocols and seeds. Test means; per-TF = per-TF AUROC.\n\n"
        + "\n".join(lines)
        + f"\n\nChange (coexpression_init - default) over the {n} dataset x protocol rows: {summary} "
        "(a difference within 0.0005 counts as equal).\n"
    )
    print(text)
    (RESULTS / "coexpression_init.md").write_text(text)


if __name__ == "__main__":
    main()
