"""Figures people would rather look at than read: model vs baselines, ROC/PR with baselines,
per-TF AUROC, training curves."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: steps run in pods and CI without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402


def roc_pr_figure(
    pairs: np.ndarray,
    model_scores: np.ndarray,
    baseline_scores: dict[str, np.ndarray],
    title: str = "",
    peer_scores: dict[str, np.ndarray] | None = None,
):
    """Two panels (ROC, PR): the model in bold, each trivial baseline dashed, each peer dotted."""
    y = pairs[:, 2].astype(int)
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4.2))
    curves = [("model", model_scores, dict(lw=2.2, color="black"))]
    for i, (name, s) in enumerate(baseline_scores.items()):
        curves.append((name, s, dict(lw=1.2, ls="--", color=f"C{i}")))
    for i, (name, s) in enumerate((peer_scores or {}).items(), start=len(baseline_scores)):
        curves.append((name, s, dict(lw=1.2, ls=":", color=f"C{i}")))
    from sklearn.metrics import average_precision_score, roc_auc_score

    for name, s, style in curves:
        fpr, tpr, _ = roc_curve(y, s)
        prec, rec, _ = precision_recall_curve(y, s)
        ax_roc.plot(fpr, tpr, label=f"{name} ({roc_auc_score(y, s):.3f})", **style)
        ax_pr.plot(rec, prec, label=f"{name} ({average_precision_score(y, s):.3f})", **style)
    ax_roc.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    ax_pr.axhline(y.mean(), color="grey", lw=0.8, ls=":", label=f"prevalence ({y.mean():.3f})")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (test)")
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall (test)")
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=8, loc="lower right" if ax is ax_roc else "upper right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


BAR_METRICS = (("auroc", "AUROC"), ("auprc", "AUPRC"), ("per_tf_auroc", "per-TF AUROC"))


def model_vs_baselines_figure(model: dict[str, float], others: dict[str, dict[str, float]], title: str = ""):
    """Grouped bars, one group per test metric: the model (black) beside each other scorer, values
    written on the bars; AUROC's chance level (0.5) and AUPRC's (the prevalence) dotted."""
    scorers = [("model", model)] + list(others.items())
    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    width = 0.8 / len(scorers)
    for i, (name, m) in enumerate(scorers):
        xs = np.arange(len(BAR_METRICS)) + (i - (len(scorers) - 1) / 2) * width
        vals = [float(m.get(k, np.nan)) for k, _ in BAR_METRICS]
        color = "black" if name == "model" else f"C{i - 1}"
        bars = ax.bar(xs, np.nan_to_num(vals), width * 0.95, label=name, color=color)
        for bar, v in zip(bars, vals):
            if np.isfinite(v):
                ax.text(bar.get_x() + bar.get_width() / 2, v + 0.01, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
    prevalence = model.get("prevalence")
    for j, (key, _) in enumerate(BAR_METRICS):
        chance = 0.5 if key != "auprc" else prevalence
        if chance is not None and np.isfinite(chance):
            ax.plot([j - 0.45, j + 0.45], [chance, chance], color="grey", ls=":", lw=1)
    ax.set_xticks(np.arange(len(BAR_METRICS)), [label for _, label in BAR_METRICS])
    ax.set(ylim=(0, 1.08), ylabel="test", title=(title + "\n" if title else "") + "model vs baselines (dotted: chance)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


def training_curves_figure(
    history: list[dict[str, float]], select_metric: str = "auprc", best_epoch: int | None = None
):
    """Train loss and validation metrics by epoch, with the selected checkpoint marked."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["train_loss"] for h in history], color="black", label="train loss")
    ax.set(xlabel="epoch", ylabel="train loss")
    ax2 = ax.twinx()
    ev = [h for h in history if "val_auroc" in h]  # evaluation epochs
    for i, key in enumerate(("val_auroc", "val_auprc")):
        ax2.plot([h["epoch"] for h in ev], [h[key] for h in ev], marker="o", ms=3, color=f"C{i}", label=key)
    ax2.set_ylabel("validation")
    if best_epoch is not None:  # the checkpoint kept (chosen on validation)
        ax.axvline(best_epoch, color="grey", ls="--", lw=1, label=f"selected (epoch {best_epoch})")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax2.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=8, loc="center right")
    fig.tight_layout()
    return fig


def per_tf_figure(table, baseline_tables: dict | None = None):
    """Distribution of per-TF test AUROC (model vs baselines and peers)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    data = [table["auroc"].to_numpy()]
    labels = ["model"]
    for name, t in (baseline_tables or {}).items():
        data.append(t["auroc"].to_numpy())
        labels.append(name)
    ax.boxplot(data, tick_labels=labels, showmeans=True)
    ax.set(ylabel="per-TF AUROC (test)", title=f"{len(table)} TFs")
    fig.tight_layout()
    return fig


def figure_png_base64(fig) -> str:
    """A figure as base64 PNG (for self-contained HTML); closes the figure."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def html_report(title: str, metrics: dict[str, dict[str, float]], figures: list) -> str:
    """A self-contained HTML page: a metrics table (rows = model and baselines) and the figures
    inlined as PNG, for dashboards that render HTML artifacts (ZenML's)."""
    from html import escape

    cols = ["auroc", "auprc", "auprc_lift", "per_tf_auroc", "per_tf_auprc"]
    head = "".join(f"<th>{c}</th>" for c in ["scorer"] + cols)
    rows = "".join(
        f"<tr><td>{escape(name)}</td>" + "".join(f"<td>{m.get(c, float('nan')):.3f}</td>" for c in cols) + "</tr>"
        for name, m in metrics.items()
    )
    imgs = "".join(f'<img style="max-width:100%" src="data:image/png;base64,{figure_png_base64(f)}"/>' for f in figures)
    return (
        f"<html><body style='font-family:sans-serif'><h3>{escape(title)}</h3>"
        f"<table border='1' cellpadding='4' style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>"
        f"{imgs}</body></html>"
    )
