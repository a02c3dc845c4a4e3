"""Full-graph training with early stopping on the validation split only.

Each step runs the GNN once over the whole gene graph (~1,000 nodes) and scores a batch of
(TF, target) pairs; with `batch_size=None` the batch is every training pair. Test pairs
are never seen here: `fit` returns the checkpoint chosen on validation, and evaluation
touches test once afterwards.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch.nn import functional as F

from scregnet.data import GRNDataset
from scregnet.embeddings.base import GeneEmbedding
from scregnet.metrics import evaluate_scores
from scregnet.models import ScRegNet, training_graph
from scregnet.serialize import ModelBundle, build_scregnet
from scregnet.splits import Split

log = logging.getLogger(__name__)


@dataclass
class ModelInputs:
    """Tensors the model needs, aligned to the dataset's gene order.

    features: float32 [N, C] z-scored expression (C = cells, or metacells when preprocessing
    reduced them: `GRNDataset.zscored_features`); embedding: float32 [N, D] or None;
    embedding_found: bool [N] (genes that received a vector; others are zero rows).
    """

    genes: list[str]
    features: np.ndarray
    embedding: np.ndarray | None = None
    embedding_found: np.ndarray | None = None

    @classmethod
    def build(cls, dataset: GRNDataset, embedding: GeneEmbedding | None) -> ModelInputs:
        genes = dataset.genes
        if embedding is None or embedding.dim == 0:
            return cls(genes, dataset.zscored_features())
        matrix, found = embedding.align(genes)
        return cls(genes, dataset.zscored_features(), matrix, found)


@dataclass
class TrainResult:
    model: ScRegNet
    edge_index: torch.Tensor
    best_epoch: int
    best_val: float
    val_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False


def build_model(inputs: ModelInputs, model_cfg) -> ScRegNet:
    emb = torch.from_numpy(inputs.embedding) if (inputs.embedding is not None and model_cfg.use_embedding) else None
    return build_scregnet(inputs.features.shape[1], emb, model_cfg, num_nodes=len(inputs.genes))


def _optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=0.9)
    raise ValueError(f"unknown optimizer {name!r}")


def _pooled_metrics(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Pooled validation AUROC / AUPRC (and their mean) for checkpoint selection."""
    if y.min() == y.max():
        return {"auroc": float("nan"), "auprc": float("nan"), "auroc_auprc": float("nan")}
    auroc, auprc = float(roc_auc_score(y, scores)), float(average_precision_score(y, scores))
    return {"auroc": auroc, "auprc": auprc, "auroc_auprc": (auroc + auprc) / 2}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def fit(
    inputs: ModelInputs,
    split: Split,
    model_cfg,
    train_cfg,
    on_eval: Callable[[int, float], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train on `split.train`, select the checkpoint on `split.val`.

    Loss: cross-entropy over the 2-way softmax, i.e. the paper's BCE on one-hot labels up to a
    factor of 2. Evaluates every `eval_every` epochs; stops after `patience` evaluations
    without improvement of the validation `select_metric`.
    """
    if len(split.val) == 0:
        raise ValueError("the split has no validation pairs: model selection needs them (test is never used)")
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    torch.manual_seed(train_cfg.seed)
    np_rng = np.random.default_rng(train_cfg.seed)
    device = _device(train_cfg.device)
    start = time.perf_counter()

    x = torch.from_numpy(inputs.features).to(device)
    edge_index = training_graph(torch.from_numpy(split.train_positive_edges()), x.shape[0]).to(device)
    model = build_model(inputs, model_cfg).to(device)
    model.set_degrees(torch.from_numpy(split.train).to(device))
    params = [
        {"params": [p for name, p in model.named_parameters() if not name.startswith("head.")]},
        {
            "params": list(model.head.parameters()),
            "weight_decay": train_cfg.head_weight_decay
            if train_cfg.head_weight_decay is not None
            else train_cfg.weight_decay,
        },
    ]
    opt = _optimizer(train_cfg.optimizer, params, train_cfg.lr, train_cfg.weight_decay)

    train_pairs = torch.from_numpy(split.train[:, :2]).to(device)
    train_y = torch.from_numpy(split.train[:, 2]).to(device)
    val_pairs = torch.from_numpy(split.val[:, :2]).to(device)
    n = len(train_pairs)
    batch = n if not train_cfg.batch_size else min(train_cfg.batch_size, n)

    best_val, best_epoch, best_state, best_scores = -np.inf, 0, None, None
    val_y = split.val[:, 2].astype(int)
    history: list[dict[str, float]] = []
    stale = 0
    stopped_early = False
    pos_idx = torch.nonzero(train_y == 1).flatten()
    n_mask = int(round(train_cfg.edge_mask_frac * len(pos_idx)))

    def evaluate_now(epoch: int, record: dict) -> bool:
        """Validation metrics into `record`; keeps the best checkpoint; True = stop (patience)."""
        nonlocal best_val, best_epoch, best_scores, best_state, stale
        model.eval()
        scores = model.score(x, edge_index, val_pairs).cpu().numpy()
        metrics = _pooled_metrics(val_y, scores)  # per-TF metrics only for the chosen checkpoint
        value = metrics[train_cfg.select_metric]
        record.update({f"val_{k}": metrics[k] for k in ("auroc", "auprc", train_cfg.select_metric)})
        if value > best_val:
            best_val, best_epoch, best_scores, stale = value, epoch, scores, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        history.append(record)
        log.debug(
            "epoch %d: loss %.4f, val %s %.4f (best %.4f at epoch %d)",
            epoch,
            record["train_loss"],
            train_cfg.select_metric,
            value,
            best_val,
            best_epoch,
        )
        if on_eval is not None:
            on_eval(epoch, value)
        return stale >= train_cfg.patience

    epoch = 0
    if train_cfg.eval_at_start:  # the untrained model is a candidate (with a prior: the baseline itself)
        evaluate_now(0, {"epoch": 0, "train_loss": float("nan")})
    for epoch in range(1, train_cfg.max_epochs + 1):
        model.train()
        order = np_rng.permutation(n) if batch < n else np.arange(n)
        graph, weight = edge_index, None
        if n_mask:
            # Hide a random subset of training positives from message passing and supervise
            # positives only there, so a training positive is never scored through its own edge
            # (held-out positives never are): no train/validation shift in the GNN input.
            perm = pos_idx[torch.from_numpy(np_rng.permutation(len(pos_idx))).to(device)]
            shown = perm[n_mask:]  # the first n_mask positives are hidden from the graph
            graph = training_graph(train_pairs[shown], x.shape[0])
            weight = torch.ones(n, device=device)
            weight[shown] = 0.0
        total = 0.0
        for lo in range(0, n, batch):
            idx = torch.from_numpy(order[lo : lo + batch]).to(device)
            opt.zero_grad(set_to_none=True)
            logits = model(x, graph, train_pairs[idx], train_y[idx])
            if weight is None:
                loss = F.cross_entropy(logits, train_y[idx])
            else:
                w = weight[idx]
                loss = (F.cross_entropy(logits, train_y[idx], reduction="none") * w).sum() / w.sum().clamp(min=1)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        record = {"epoch": epoch, "train_loss": total / n}
        if epoch % train_cfg.eval_every == 0 or epoch == train_cfg.max_epochs:
            if evaluate_now(epoch, record):
                stopped_early = True
                break
        else:
            history.append(record)
        if on_progress is not None:
            on_progress(epoch, train_cfg.max_epochs)
    if best_state is not None:
        model.load_state_dict(best_state)
    best_metrics = {}
    if best_scores is not None:
        best_metrics = evaluate_scores(split.val, best_scores)
        best_metrics["auroc_auprc"] = (best_metrics["auroc"] + best_metrics["auprc"]) / 2
    log.info(
        "trained %d epochs in %.1fs; best validation %s %.4f at epoch %d%s",
        epoch,
        time.perf_counter() - start,
        train_cfg.select_metric,
        best_val,
        best_epoch,
        " (early stop)" if stopped_early else "",
    )
    model.eval()
    return TrainResult(
        model,
        edge_index,
        best_epoch,
        float(best_val),
        best_metrics,
        history,
        time.perf_counter() - start,
        stopped_early,
    )


def bundle(result: TrainResult, inputs: ModelInputs, model_cfg, **meta) -> ModelBundle:
    """The trained model with its features and graph, ready to score or save."""
    return ModelBundle(
        result.model.cpu(),
        torch.from_numpy(inputs.features),
        result.edge_index.cpu(),
        {
            "model": model_cfg.model_dump(mode="json"),
            "genes": list(inputs.genes),
            "best_epoch": result.best_epoch,
            "best_val": result.best_val,
            **meta,
        },
    )
