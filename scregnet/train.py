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
from scregnet.models import ScRegNet, build_scregnet, training_graph
from scregnet.serialize import ModelBundle
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
        """Features (z-scored expression) and the aligned embedding of a dataset."""
        genes = dataset.genes
        if embedding is None or embedding.dim == 0:
            return cls(genes, dataset.zscored_features())
        matrix, found = embedding.align(genes)
        return cls(genes, dataset.zscored_features(), matrix, found)


@dataclass
class TrainResult:
    """The trained model with its selected epoch, validation metrics and curves."""

    model: ScRegNet
    edge_index: torch.Tensor
    best_epoch: int
    best_val: float
    val_metrics: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    stopped_early: bool = False
    train_positives: np.ndarray | None = None  # int64 [E, 2] (tf, target) the model was trained on
    seen_pairs: np.ndarray | None = None  # int64 [m, 2] train + validation pairs (trained on or selected on)


def build_model(inputs: ModelInputs, model_cfg) -> ScRegNet:
    """The model for these inputs (the embedding only when the config uses it)."""
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


class CheckpointSelector:
    """The best validation checkpoint so far, and how many evaluations passed without beating it."""

    def __init__(self, patience: int):
        self.patience = patience
        self.value, self.epoch, self.stale = -np.inf, 0, 0
        self.state: dict | None = None
        self.scores: np.ndarray | None = None

    def offer(self, epoch: int, value: float, model: ScRegNet, scores: np.ndarray) -> bool:
        """Keep a copy of `model` if `value` beats the best so far; True once patience has run out."""
        if value > self.value:
            self.value, self.epoch, self.scores, self.stale = value, epoch, scores, 0
            self.state = copy.deepcopy(model.state_dict())
        else:
            self.stale += 1
        return self.stale >= self.patience

    def restore(self, model: ScRegNet) -> None:
        """Load the kept checkpoint into `model` (no-op if nothing was evaluated)."""
        if self.state is not None:
            model.load_state_dict(self.state)


@dataclass
class _Fit:
    """The tensors and state of one training run (pairs: int64 [M, 2]; labels: int64 [M])."""

    model: ScRegNet
    opt: torch.optim.Optimizer
    x: torch.Tensor  # [N, C] node features
    edge_index: torch.Tensor  # [2, E'] training-positive graph
    pairs: torch.Tensor
    labels: torch.Tensor
    val_pairs: torch.Tensor
    val_y: np.ndarray
    batch: int
    n_mask: int  # training positives hidden from the graph per epoch (edge_mask_frac)
    rng: np.random.Generator


def init_coexpression_head(model: ScRegNet, x: torch.Tensor, train: torch.Tensor, steps: int = 100) -> dict:
    """Set the head's r and |r| weights and its bias to the maximum-likelihood logistic regression of
    the training labels on (r, |r|), with the model's prior (leave-one-out) as a fixed offset.

    x: [N, C] node features; train: int64 [M, 3] (tf, target, label). The head's other weights stay
    zero, so the untrained model scores prior + w_r r + w_abs |r| + b. Returns the coefficients.
    """
    if not model.coexpression or model.prior == "none":
        # Only with a prior is the head zero-initialised, so that r and |r| are all it adds.
        raise ValueError("coexpression_init needs model.coexpression: true and model.prior: label_count")
    head = model.head
    with torch.no_grad():
        r = model.pair_correlation(x, train[:, :2]).double()
        y = train[:, 2].double()
        offset = model.prior_logit(train[:, :2], train[:, 2]).double()
    feats = torch.stack([r, r.abs(), torch.ones_like(r)], dim=1)
    coef = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([coef], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(offset + feats @ coef, y)
        loss.backward()
        return loss

    opt.step(closure)
    w_r, w_abs, bias = (float(v) for v in coef.detach())
    with torch.no_grad():
        # Logit of class 1 minus class 0 = the edge logit; the r and |r| inputs are the last two.
        head.weight[1, -2], head.weight[1, -1], head.bias[1] = w_r, w_abs, bias
    log.info(
        "co-expression head start: w_r %.3f, w_|r| %.3f, bias %.3f (fitted on %d training pairs)",
        w_r,
        w_abs,
        bias,
        len(y),
    )
    return {"w_r": w_r, "w_abs_r": w_abs, "bias": bias}


def _setup(inputs: ModelInputs, split: Split, model_cfg, train_cfg) -> _Fit:
    if train_cfg.threads:
        torch.set_num_threads(train_cfg.threads)
    torch.manual_seed(train_cfg.seed)
    device = _device(train_cfg.device)
    x = torch.from_numpy(inputs.features).to(device)
    edge_index = training_graph(torch.from_numpy(split.train_positive_edges()), x.shape[0]).to(device)
    model = build_model(inputs, model_cfg).to(device)
    train = torch.from_numpy(split.train).to(device)  # [M, 3] tf, target, label
    model.set_degrees(train)
    if model_cfg.coexpression_init:
        init_coexpression_head(model, x, train)
    head_decay = train_cfg.head_weight_decay if train_cfg.head_weight_decay is not None else train_cfg.weight_decay
    params = [
        {"params": [p for name, p in model.named_parameters() if not name.startswith("head.")]},
        {"params": list(model.head.parameters()), "weight_decay": head_decay},
    ]
    labels = train[:, 2]
    n = len(labels)
    return _Fit(
        model=model,
        opt=_optimizer(train_cfg.optimizer, params, train_cfg.lr, train_cfg.weight_decay),
        x=x,
        edge_index=edge_index,
        pairs=train[:, :2],
        labels=labels,
        val_pairs=torch.from_numpy(split.val[:, :2]).to(device),
        val_y=split.val[:, 2].astype(int),
        batch=n if not train_cfg.batch_size else min(train_cfg.batch_size, n),
        n_mask=int(round(train_cfg.edge_mask_frac * int((labels == 1).sum()))),
        rng=np.random.default_rng(train_cfg.seed),
    )


def _train_epoch(f: _Fit) -> float:
    """One pass over the training pairs (mini-batches when `batch` < M); returns the mean loss."""
    f.model.train()
    n = len(f.pairs)
    order = f.rng.permutation(n) if f.batch < n else np.arange(n)
    graph, weight = f.edge_index, None
    if f.n_mask:
        # Hide a random subset of training positives from message passing and supervise
        # positives only there, so a training positive is never scored through its own edge
        # (held-out positives never are): no train/validation shift in the GNN input.
        pos_idx = torch.nonzero(f.labels == 1).flatten()
        perm = pos_idx[torch.from_numpy(f.rng.permutation(len(pos_idx))).to(pos_idx.device)]
        shown = perm[f.n_mask :]  # the first n_mask positives are hidden from the graph
        graph = training_graph(f.pairs[shown], f.x.shape[0])
        weight = torch.ones(n, device=f.labels.device)
        weight[shown] = 0.0
    total = 0.0
    for lo in range(0, n, f.batch):
        idx = torch.from_numpy(order[lo : lo + f.batch]).to(f.labels.device)
        f.opt.zero_grad(set_to_none=True)
        logits = f.model(f.x, graph, f.pairs[idx], f.labels[idx])
        if weight is None:
            loss = F.cross_entropy(logits, f.labels[idx])
        else:
            w = weight[idx]
            loss = (F.cross_entropy(logits, f.labels[idx], reduction="none") * w).sum() / w.sum().clamp(min=1)
        loss.backward()
        f.opt.step()
        total += float(loss.detach()) * len(idx)
    return total / n


class _Progress:
    """INFO lines while training: epoch, loss, validation metric, best so far, elapsed and ETA.

    At most one line per `every` seconds (plus the first evaluation), so long runs stay readable.
    """

    def __init__(self, max_epochs: int, metric: str, every: float = 10.0):
        self.max_epochs, self.metric, self.every = max_epochs, metric, every
        self.start = time.perf_counter()
        self.last = -np.inf

    def __call__(self, epoch: int, loss: float, value: float, best: float, best_epoch: int) -> None:
        now = time.perf_counter()
        if now - self.last < self.every:  # the first call always logs (last = -inf)
            return
        self.last = now
        elapsed = now - self.start
        eta = elapsed / max(epoch, 1) * (self.max_epochs - epoch)
        log.info(
            "epoch %d/%d: loss %.4f, validation %s %.4f (best %.4f at epoch %d); %.0fs elapsed, at most %.0fs to go",
            epoch,
            self.max_epochs,
            loss,
            self.metric,
            value,
            best,
            best_epoch,
            elapsed,
            eta,
        )


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
    start = time.perf_counter()
    f = _setup(inputs, split, model_cfg, train_cfg)
    selector = CheckpointSelector(train_cfg.patience)
    progress = _Progress(train_cfg.max_epochs, train_cfg.select_metric)
    history: list[dict[str, float]] = []

    def evaluate_now(epoch: int, record: dict) -> bool:
        """Validation metrics into `record`; offers the checkpoint; True = stop (patience)."""
        f.model.eval()
        scores = f.model.score(f.x, f.edge_index, f.val_pairs).cpu().numpy()
        metrics = _pooled_metrics(f.val_y, scores)  # per-TF metrics only for the chosen checkpoint
        value = metrics[train_cfg.select_metric]
        record.update({f"val_{k}": metrics[k] for k in ("auroc", "auprc", train_cfg.select_metric)})
        history.append(record)
        stop = selector.offer(epoch, value, f.model, scores)
        progress(epoch, record["train_loss"], value, selector.value, selector.epoch)
        if on_eval is not None:
            on_eval(epoch, value)
        return stop

    epoch, stopped_early = 0, False
    if train_cfg.eval_at_start:  # the untrained model is a candidate (with a prior: the baseline itself)
        evaluate_now(0, {"epoch": 0, "train_loss": float("nan")})
    for epoch in range(1, train_cfg.max_epochs + 1):
        record = {"epoch": epoch, "train_loss": _train_epoch(f)}
        if epoch % train_cfg.eval_every == 0 or epoch == train_cfg.max_epochs:
            if evaluate_now(epoch, record):
                stopped_early = True
                break
        else:
            history.append(record)
        if on_progress is not None:
            on_progress(epoch, train_cfg.max_epochs)
    return _finish(f, split, selector, history, train_cfg.select_metric, epoch, stopped_early, start)


def _finish(f, split: Split, selector, history, select_metric: str, epoch: int, stopped_early: bool, start: float):
    """The selected checkpoint restored, its validation metrics (per-TF included), a log line."""
    selector.restore(f.model)
    best_metrics = {}
    if selector.scores is not None:
        best_metrics = evaluate_scores(split.val, selector.scores)
        best_metrics["auroc_auprc"] = (best_metrics["auroc"] + best_metrics["auprc"]) / 2
    seconds = time.perf_counter() - start
    log.info(
        "trained %d epochs in %.1fs; best validation %s %.4f at epoch %d%s",
        epoch,
        seconds,
        select_metric,
        selector.value,
        selector.epoch,
        " (early stop)" if stopped_early else "",
    )
    f.model.eval()
    return TrainResult(
        f.model,
        f.edge_index,
        selector.epoch,
        float(selector.value),
        best_metrics,
        history,
        seconds,
        stopped_early,
        split.train_positive_edges(),
        np.concatenate([split.train[:, :2], split.val[:, :2]]).astype(np.int64),
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
        None if result.train_positives is None else torch.from_numpy(result.train_positives),
        result.seen_pairs,
    )
