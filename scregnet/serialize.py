"""Trained model on disk: safetensors weights + JSON config. No pickle anywhere.

A `ModelBundle` is self-contained for scoring: besides the weights (the frozen gene
embedding is a buffer among them) it carries the node features [N, C] and the training
graph edge_index [2, E'] the GNN runs on.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from scregnet.config import ModelConfig
from scregnet.models import ScRegNet, build_scregnet

WEIGHTS = "model.safetensors"
INPUTS = "inputs.safetensors"
CONFIG = "model.json"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pack_pairs(pairs: np.ndarray, n_genes: int) -> dict[str, torch.Tensor]:
    """Pairs [m, >=2] (tf, target) as one bit per (row TF, gene): `seen_tfs` int64 [T] and
    `seen_bits` uint8 [T, ceil(N / 8)]. 150 TFs x 30,000 genes take 560 KB instead of 28 MB."""
    pairs = np.asarray(pairs)[:, :2].astype(np.int64)
    tfs, rows = np.unique(pairs[:, 0], return_inverse=True)
    bits = np.zeros((len(tfs), n_genes), dtype=bool)
    bits[rows, pairs[:, 1]] = True
    return {"seen_tfs": torch.from_numpy(tfs), "seen_bits": torch.from_numpy(np.packbits(bits, axis=1))}


def unpack_pairs(tensors: dict, n_genes: int) -> np.ndarray:
    """The pairs [m, 2] (int64, sorted) that `pack_pairs` stored."""
    tfs = tensors["seen_tfs"].numpy()
    bits = np.unpackbits(tensors["seen_bits"].numpy(), axis=1, count=n_genes).astype(bool)
    rows, genes = np.nonzero(bits)
    return np.stack([tfs[rows], genes], axis=1).astype(np.int64)


class ModelBundle:
    """A trained model with everything needed to score (tf, target) pairs by index or symbol.

    Attributes:
        model: ScRegNet in eval mode.
        features: float32 [N, C] node features (z-scored expression).
        edge_index: int64 [2, E'] undirected training-positive graph.
        meta: JSON-able dict with at least `model` (ModelConfig) and `genes` (length N).
        positives: int64 [E, 2] directed (tf, target) training positives, or None (older bundles).
        seen: int64 [m, 2] every (tf, target) pair trained on or used to select the checkpoint
            (train + validation), or None (older bundles); the fair champion comparison leaves them out.
    """

    def __init__(
        self,
        model: ScRegNet,
        features: torch.Tensor,
        edge_index: torch.Tensor,
        meta: dict,
        positives: torch.Tensor | None = None,
        seen: np.ndarray | None = None,
    ):
        self.model, self.features, self.edge_index, self.meta = model.eval(), features, edge_index, meta
        self.positives = positives
        self.seen = seen
        self.genes: list[str] = list(meta["genes"])
        self.index = {g: i for i, g in enumerate(self.genes)}

    @property
    def config(self) -> ModelConfig:
        """The bundle's ModelConfig."""
        return ModelConfig.model_validate(self.meta["model"])

    def score_indices(self, pairs: np.ndarray) -> np.ndarray:
        """P(edge) for int pairs [n, >=2] (tf, target) -> float [n]."""
        p = torch.from_numpy(np.ascontiguousarray(np.asarray(pairs)[:, :2], dtype=np.int64))
        dev = self.edge_index.device
        return self.model.score(self.features.to(dev), self.edge_index, p.to(dev)).cpu().numpy()

    def score_symbols(self, tfs: list[str], targets: list[str]) -> np.ndarray:
        """P(edge) for pairs of gene symbols; KeyError naming genes the model does not know."""
        unknown = sorted({str(g).upper() for g in list(tfs) + list(targets)} - set(self.index))
        if unknown:
            raise KeyError(f"genes not in the model's gene set: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
        pairs = np.array(
            [[self.index[str(a).upper()], self.index[str(b).upper()]] for a, b in zip(tfs, targets)], dtype=np.int64
        ).reshape(-1, 2)
        return self.score_indices(pairs)

    def save(self, directory: str | Path) -> Path:
        """Write weights, inputs (safetensors) and model.json with checksums into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        if self.model.target_tower is self.model.tf_tower:  # shared towers: store the tensors once
            state = {k: v for k, v in state.items() if not k.startswith("target_tower.")}
        save_file(state, directory / WEIGHTS)
        inputs = {"features": self.features, "edge_index": self.edge_index}
        if self.positives is not None:
            inputs["positives"] = self.positives
        if self.seen is not None:
            inputs.update(pack_pairs(self.seen, len(self.genes)))
        save_file({k: v.detach().cpu().contiguous() for k, v in inputs.items()}, directory / INPUTS)
        meta = dict(self.meta)
        meta["embedding_shape"] = list(self.model.embedding.shape)
        meta["num_features"] = int(self.features.shape[1])
        meta["sha256"] = {WEIGHTS: _sha256(directory / WEIGHTS), INPUTS: _sha256(directory / INPUTS)}
        (directory / CONFIG).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        """Read a saved bundle; refuses files whose checksum does not match."""
        directory = Path(directory)
        if not (directory / CONFIG).is_file():
            raise FileNotFoundError(f"{directory}: no {CONFIG}; not a saved scregnet model")
        meta = json.loads((directory / CONFIG).read_text())
        for name, expected in meta.get("sha256", {}).items():
            actual = _sha256(directory / name)
            if actual != expected:
                raise ValueError(
                    f"{directory / name}: checksum mismatch (expected {expected[:12]}..., "
                    f"got {actual[:12]}...); refusing to load"
                )
        # Bundles saved before the prior/coexpression options existed used neither.
        cfg = ModelConfig.model_validate({"prior": "none", "coexpression": False, **meta["model"]})
        state = load_file(directory / WEIGHTS)
        inputs = load_file(directory / INPUTS)
        emb_shape = meta.get("embedding_shape") or [0, 0]
        embedding = state["embedding"] if emb_shape[0] else None
        model = build_scregnet(meta["num_features"], embedding, cfg, num_nodes=len(meta["genes"]))
        if model.target_tower is model.tf_tower:
            state.update(
                {k.replace("tf_tower.", "target_tower.", 1): v for k, v in state.items() if k.startswith("tf_tower.")}
            )
        model.load_state_dict(state, strict=True)
        seen = unpack_pairs(inputs, len(meta["genes"])) if "seen_tfs" in inputs else None
        return cls(model, inputs["features"], inputs["edge_index"], meta, inputs.get("positives"), seen)
