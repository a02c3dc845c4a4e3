"""The scRegNet model: GNN encoder + frozen gene embedding + shared MLP link head.

Shapes: N genes (nodes), C cells (expression feature width), D embedding dims,
E training-positive edges, B scored pairs.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn import GATConv, GCNConv, SAGEConv
from torch_geometric.utils import to_undirected

# Up to this many genes the model keeps the whole [N, N] correlation matrix (256 MiB in float32 at
# most; reused every epoch). Above it, only the rows of the TFs being scored are computed.
FULL_CORRELATION_MAX_GENES = 8192


def training_graph(train_edges: Tensor, num_nodes: int) -> Tensor:
    """Undirected edge_index [2, 2E'] of the training positives, self loops removed.

    Args:
        train_edges: int64 [E, 2] (tf, target) pairs with label 1 in the training split.
    """
    edge_index = train_edges.t().contiguous()
    edge_index = edge_index[:, edge_index[0] != edge_index[1]]
    return to_undirected(edge_index, num_nodes=num_nodes)


class GNNEncoder(nn.Module):
    """Stack of GCN / GraphSAGE / GAT layers with ReLU + dropout between them.

    forward(x [N, C], edge_index [2, E']) -> [N, dims[-1]]
    """

    def __init__(
        self,
        in_dim: int,
        dims: list[int],
        kind: str = "gcn",
        dropout: float = 0.2,
        heads: int = 2,
        concat: bool = False,
        negative_slope: float = 0.2,
    ):
        super().__init__()
        if not dims:
            raise ValueError("GNN needs at least one layer width")
        self.dropout = dropout
        self.layers = nn.ModuleList()
        width = in_dim
        for out in dims:
            if kind == "gcn":
                layer = GCNConv(width, out)
            elif kind == "sage":
                layer = SAGEConv(width, out)
            elif kind == "gat":
                per_head = max(1, out // heads) if concat else out
                layer = GATConv(width, per_head, heads=heads, concat=concat, negative_slope=negative_slope)
                out = per_head * heads if concat else out
            else:
                raise ValueError(f"unknown GNN kind {kind!r}; expected gcn, sage or gat")
            self.layers.append(layer)
            width = out
        self.out_dim = width

    def forward(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """Node representations [N, dims[-1]] from features x [N, C] over edge_index [2, E']."""
        for i, layer in enumerate(self.layers):
            x = layer(x, edge_index)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
                x = nn.functional.dropout(x, self.dropout, self.training)
        return x


def mlp(in_dim: int, dims: list[int], dropout: float) -> tuple[nn.Sequential, int]:
    """LeakyReLU + dropout MLP; returns the module and its output width."""
    layers: list[nn.Module] = []
    width = in_dim
    for out in dims:
        layers += [nn.Linear(width, out), nn.LeakyReLU(0.01), nn.Dropout(dropout)]
        width = out
    return nn.Sequential(*layers), width


class ScRegNet(nn.Module):
    """Joint gene representation -> tower MLP -> Linear(2h, 2) over (TF, target).

    With head="interaction" the head sees [h_tf, h_target, h_tf * h_target] -> Linear(3h, 2).

    forward(x [N, C], edge_index [2, E'], pairs [B, 2]) -> logits [B, 2]
    score(...) -> P(edge) [B]
    """

    def __init__(
        self,
        num_features: int,
        embedding: Tensor | None,
        gnn: str = "gcn",
        gnn_dims: list[int] | None = None,
        mlp_dims: list[int] | None = None,
        dropout: float = 0.2,
        gat_heads: int = 2,
        gat_concat: bool = False,
        gat_negative_slope: float = 0.2,
        shared_towers: bool = True,
        use_gnn: bool = True,
        head: str = "concat",
        num_nodes: int | None = None,
        degree_features: bool = False,
        prior: str = "none",
        prior_eps: float = 1e-6,
        prior_leave_one_out: bool = True,
        coexpression: bool = False,
    ):
        super().__init__()
        gnn_dims = list(gnn_dims or [128, 64])
        mlp_dims = list(mlp_dims or [64])
        # The foundation-model embedding is frozen: a buffer, saved with the weights, never trained.
        emb = embedding if embedding is not None else torch.zeros(0, 0)
        self.register_buffer("embedding", emb.float())
        emb_dim = int(self.embedding.shape[1]) if self.embedding.numel() else 0
        self.use_gnn = use_gnn
        # Per-gene label statistics [N, 2] (log TF positive rate, log1p target in-degree), set by
        # `set_degrees` from the training pairs; saved with the weights.
        self.degree_features = degree_features
        if degree_features and num_nodes is None:
            raise ValueError("degree_features needs num_nodes")
        self.register_buffer("degree", torch.zeros((num_nodes, 2) if degree_features else (0, 0)))
        self.encoder = (
            GNNEncoder(num_features, gnn_dims, gnn, dropout, gat_heads, gat_concat, gat_negative_slope)
            if use_gnn
            else None
        )
        joint = emb_dim + (self.encoder.out_dim if use_gnn else num_features)
        if joint == 0:
            raise ValueError("model has no input: enable the GNN or give an embedding")
        self.tf_tower, width = mlp(joint, mlp_dims, dropout)
        self.target_tower = self.tf_tower if shared_towers else mlp(joint, mlp_dims, dropout)[0]
        if head not in ("concat", "interaction"):
            raise ValueError(f"unknown head {head!r}; expected concat or interaction")
        self.interaction = head == "interaction"
        # Pair input: Pearson r of the TF's and target's expression (z-scored rows: r = <x_a, x_b> / C)
        # and |r|, straight into the head. The towers see one gene at a time, so without this the
        # model can only score co-expression through products of compressed gene vectors.
        self.coexpression = coexpression
        self._corr_cache: tuple | None = None
        self._corr_rows: dict[tuple, Tensor] = {}  # (features key, rows) -> [R, N], large N only
        extra = (2 if degree_features else 0) + (2 if coexpression else 0)
        self.head = nn.Linear((3 if self.interaction else 2) * width + extra, 2)
        # Residual on a fixed prior: logit(edge) = label_count(tf, target) + learned correction.
        # The correction starts at exactly zero (zero-initialised head), so the untrained model
        # scores like the label_count baseline and training can only move it where that helps.
        if prior not in ("none", "label_count"):
            raise ValueError(f"unknown prior {prior!r}; expected none or label_count")
        self.prior = prior
        self.prior_eps = float(prior_eps)
        self.prior_leave_one_out = prior_leave_one_out
        if prior != "none":
            if num_nodes is None:
                raise ValueError("prior needs num_nodes")
            # Per gene: positives as TF, labelled pairs as TF, positives as target (training labels).
            # Registered only when used, so bundles saved without a prior still load strictly.
            self.register_buffer("prior_stats", torch.zeros(num_nodes, 3))
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def set_degrees(self, train_pairs: Tensor) -> None:
        """From labelled training pairs [M, 3] (tf, target, label): per gene, log of its positive
        rate as a TF and log1p of its positive count as a target (and the prior's counts)."""
        if self.prior != "none":
            n = self.prior_stats.shape[0]
            label = train_pairs[:, 2].float()
            zeros = torch.zeros(n, device=label.device)
            self.prior_stats.copy_(
                torch.stack(
                    [
                        zeros.index_add(0, train_pairs[:, 0], label),
                        torch.bincount(train_pairs[:, 0], minlength=n).float(),
                        zeros.index_add(0, train_pairs[:, 1], label),
                    ],
                    dim=1,
                )
            )
        if not self.degree_features:
            return
        n = self.degree.shape[0]
        label = train_pairs[:, 2].float()
        pos = torch.zeros(n, device=label.device).index_add_(0, train_pairs[:, 0], label)
        tot = torch.bincount(train_pairs[:, 0], minlength=n).float()
        rate = torch.where(tot > 0, pos / tot.clamp(min=1), torch.zeros_like(pos))
        in_deg = torch.zeros(n, device=label.device).index_add_(0, train_pairs[:, 1], label)
        self.degree.copy_(torch.stack([torch.log(rate + 1e-3), torch.log1p(in_deg)], dim=1))

    def node_representation(self, x: Tensor, edge_index: Tensor) -> Tensor:
        """[N, D + h_gnn]: frozen embedding concatenated with the GNN output."""
        parts = [self.embedding] if self.embedding.numel() else []
        parts.append(self.encoder(x, edge_index) if self.use_gnn else x)
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def prior_logit(self, pairs: Tensor, labels: Tensor | None = None) -> Tensor:
        """label_count(tf, target) = log(TF positive rate + eps) + log1p(target positive count) [B].

        With `labels` (the pairs are training pairs) and leave-one-out on, each pair's own label
        is removed from the counts, so a training pair sees the prior a held-out pair would see
        (otherwise training positives get an inflated prior and the correction learns to undo it).
        """
        st = self.prior_stats
        pos, tot, indeg = st[pairs[:, 0], 0], st[pairs[:, 0], 1], st[pairs[:, 1], 2]
        if labels is not None and self.prior_leave_one_out:
            y = labels.float()
            pos, tot, indeg = pos - y, tot - 1, indeg - y
        rate = torch.where(tot > 0, pos / tot.clamp(min=1), torch.zeros_like(pos))
        return torch.log(rate + self.prior_eps) + torch.log1p(indeg)

    def correlation(self, x: Tensor) -> Tensor:
        """[N, N] Pearson r between genes of z-scored features x [N, C]; cached per input tensor."""
        key = self._features_key(x)
        if self._corr_cache is None or self._corr_cache[0] != key:
            with torch.no_grad():
                xn = self._normalized(x)
                self._corr_cache = (key, xn @ xn.t())
        return self._corr_cache[1]

    @staticmethod
    def _features_key(x: Tensor) -> tuple:
        return (x.data_ptr(), tuple(x.shape), x.device, x._version)

    @staticmethod
    def _normalized(x: Tensor) -> Tensor:
        xc = x - x.mean(dim=1, keepdim=True)
        return xc / xc.norm(dim=1, keepdim=True).clamp(min=1e-8)

    def pair_correlation(self, x: Tensor, pairs: Tensor) -> Tensor:
        """Pearson r [B] of each pair's rows of x [N, C], for pairs [B, 2].

        Small N: looked up in the cached [N, N] matrix. Large N (a genome-wide gene set): only the
        rows of the pairs' TFs are computed ([R, N] for R distinct TFs), cached for the last few
        TF sets (the training pairs come back every epoch).
        """
        if x.shape[0] <= FULL_CORRELATION_MAX_GENES:
            return self.correlation(x)[pairs[:, 0], pairs[:, 1]]
        rows, where = torch.unique(pairs[:, 0], return_inverse=True)
        key = (*self._features_key(x), rows.cpu().numpy().tobytes())
        table = self._corr_rows.get(key)
        if table is None:
            with torch.no_grad():
                xn = self._normalized(x)
                table = xn[rows] @ xn.t()
            if len(self._corr_rows) >= 4:
                self._corr_rows.pop(next(iter(self._corr_rows)))
            self._corr_rows[key] = table
        return table[where, pairs[:, 1]]

    def forward(self, x: Tensor, edge_index: Tensor, pairs: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits [B, 2]. `labels` [B] only for training pairs (leave-one-out prior)."""
        h = self.node_representation(x, edge_index)
        # The towers act on one gene at a time, so run them once per node ([N, h]) and gather:
        # the same function as per-pair application at ~1/40 of the rows (dropout masks are
        # then drawn per gene rather than per pair occurrence).
        tf = self.tf_tower(h)
        target = tf if self.target_tower is self.tf_tower else self.target_tower(h)
        a, b = tf[pairs[:, 0]], target[pairs[:, 1]]
        feats = [a, b, a * b] if self.interaction else [a, b]
        if self.degree_features:  # wide path: label statistics go straight to the head
            feats += [self.degree[pairs[:, 0], :1], self.degree[pairs[:, 1], 1:]]
        if self.coexpression:
            r = self.pair_correlation(x, pairs).unsqueeze(1)
            feats += [r, r.abs()]
        logits = self.head(torch.cat(feats, dim=1))
        if self.prior != "none":
            prior = self.prior_logit(pairs, labels)
            logits = logits + torch.stack([torch.zeros_like(prior), prior], dim=1)
        return logits

    @torch.no_grad()
    def score(self, x: Tensor, edge_index: Tensor, pairs: Tensor) -> Tensor:
        """P(edge) [B] for pairs [B, 2] (no gradients)."""
        return torch.softmax(self.forward(x, edge_index, pairs), dim=1)[:, 1]


def build_scregnet(num_features: int, embedding: Tensor | None, cfg, num_nodes: int | None = None) -> ScRegNet:
    """The model a `ModelConfig` describes, for C = `num_features` and an optional frozen embedding [N, D]."""
    return ScRegNet(
        num_features=num_features,
        embedding=embedding,
        gnn=cfg.gnn,
        gnn_dims=cfg.gnn_dims,
        mlp_dims=cfg.mlp_dims,
        dropout=cfg.dropout,
        gat_heads=cfg.gat_heads,
        gat_concat=cfg.gat_concat,
        gat_negative_slope=cfg.gat_negative_slope,
        shared_towers=cfg.shared_towers,
        use_gnn=cfg.use_gnn,
        head=cfg.head,
        num_nodes=num_nodes,
        degree_features=cfg.degree_features,
        prior=cfg.prior,
        prior_eps=cfg.prior_eps,
        prior_leave_one_out=cfg.prior_leave_one_out,
        coexpression=cfg.coexpression,
    )
