"""Packed (unpadded) forward of a Geneformer BERT: cells concatenated into one token stream.

A pack holds n cells' token sequences back to back, [N] tokens in all, with cumulative sequence
lengths `cu_seqlens` [n + 1]; position ids restart at 0 in every cell and attention is restricted to
each cell, so every cell sees exactly what it sees alone. No padding token is ever computed.

The HF `BertModel`'s own submodules do everything except attention (embeddings, q/k/v projections,
attention output dense + LayerNorm, FFN + LayerNorm), so weights and numerics follow `BertModel` in
eval mode (transformers 5: absolute positions, token type 0, scaling head_dim ** -0.5, dropout off).
Attention kernels:
- "flash_varlen": `torch.nn.attention.varlen.varlen_attn` (FlashAttention varlen) over the whole
  stream; CUDA only, bf16/fp16 inputs, checked by a one-off probe call.
- "sdpa_per_cell": `scaled_dot_product_attention` once per cell on its slice of the stream; the
  fallback on CPU (where it is not slower than the padded path) and on CUDA without flash (fp32).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FLASH_VARLEN = "flash_varlen"
SDPA_PER_CELL = "sdpa_per_cell"


@dataclass
class Pack:
    """Cells concatenated into one stream (all tensors on the model's device).

    Attributes:
        ids: int64 [N] token ids; positions: int64 [N] position in the cell (restarts at 0);
        slots: int64 [N] per-gene slot (n_slots at `<cls>`/`<eos>`);
        cu_seqlens: int32 [n + 1] on the device; bounds: the same offsets on the host (int64 [n + 1]);
        max_len: longest cell of the pack.
    """

    ids: torch.Tensor
    positions: torch.Tensor
    slots: torch.Tensor
    cu_seqlens: torch.Tensor
    bounds: np.ndarray
    max_len: int

    @property
    def n_cells(self) -> int:
        """Cells in the pack."""
        return len(self.bounds) - 1


def pack_cells(cells: Sequence[tuple[np.ndarray, np.ndarray]], idx: np.ndarray, n_slots: int, device) -> Pack:
    """Cells `idx` (each (token ids int64 [T], slots int64 [T], -1 at special tokens), T > 0) -> a Pack."""
    import torch

    lengths = np.fromiter((len(cells[c][0]) for c in idx), dtype=np.int64, count=len(idx))
    bounds = np.concatenate(([0], np.cumsum(lengths)))
    ids = np.concatenate([cells[c][0] for c in idx])
    slots = np.concatenate([cells[c][1] for c in idx])
    slots = np.where(slots >= 0, slots, n_slots)
    positions = np.arange(bounds[-1], dtype=np.int64) - np.repeat(bounds[:-1], lengths)

    def put(a, dtype=torch.int64):
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype, non_blocking=True)

    return Pack(put(ids), put(positions), put(slots), put(bounds, torch.int32), bounds, int(lengths.max(initial=0)))


@functools.lru_cache(maxsize=16)
def _flash_probe(device: str, dtype_name: str, head_dim: int) -> bool:
    import torch

    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return False
    dtype = getattr(torch, dtype_name)
    try:
        q = torch.randn(3, 2, head_dim, device=device, dtype=dtype)
        cu = torch.tensor([0, 1, 3], device=device, dtype=torch.int32)
        out = varlen_attn(q, q, q, cu, cu, 2, 2)
        # cell 0 has one token: attention to itself returns its value exactly
        return bool(torch.allclose(out[0].float(), q[0].float(), atol=1e-2))
    except Exception as exc:  # no kernel for this GPU / dtype / head size: fall back, and say why
        log.info("flash varlen attention unavailable on %s (%s, head dim %d): %s", device, dtype_name, head_dim, exc)
        return False


def flash_varlen_available(device, dtype, head_dim: int) -> bool:
    """Whether `varlen_attn` runs on this CUDA device for `dtype` (bf16/fp16) and head size."""
    import torch

    if getattr(device, "type", str(device)) != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return False
    if not torch.backends.cuda.is_flash_attention_available():
        return False
    return _flash_probe(str(device), str(dtype).removeprefix("torch."), int(head_dim))


def _attend(q, k, v, pack: Pack, kernel: str, scale: float):
    """q, k, v: [N, H, Dh] -> [N, H, Dh], attention within each cell of the pack."""
    import torch
    import torch.nn.functional as F

    if kernel == FLASH_VARLEN:
        from torch.nn.attention.varlen import varlen_attn

        return varlen_attn(q, k, v, pack.cu_seqlens, pack.cu_seqlens, pack.max_len, pack.max_len, scale=scale)
    parts = []
    for s, e in zip(pack.bounds[:-1].tolist(), pack.bounds[1:].tolist()):
        # [1, H, T, Dh] views of the cell, laid out as HF's SDPA path lays them out
        cell = F.scaled_dot_product_attention(
            q[None, s:e].transpose(1, 2), k[None, s:e].transpose(1, 2), v[None, s:e].transpose(1, 2), scale=scale
        )
        parts.append(cell[0].transpose(0, 1))
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _layer(layer, x, pack: Pack, kernel: str):
    """One `BertLayer` over the stream x [N, D] with attention restricted to each cell."""
    sa = layer.attention.self
    n, shape = x.shape[0], (x.shape[0], sa.num_attention_heads, sa.attention_head_size)
    q, k, v = sa.query(x).view(shape), sa.key(x).view(shape), sa.value(x).view(shape)
    context = _attend(q, k, v, pack, kernel, sa.scaling).reshape(n, -1)
    attended = layer.attention.output(context, x)  # dense, dropout (off), LayerNorm(+ residual)
    return layer.output(layer.intermediate(attended), attended)


def packed_hidden(bert, pack: Pack, depth: int, kernel: str):
    """hidden_states[depth] of every token of the pack, float [N, D]: embeddings, then layers 0..depth-1."""
    if bert.config.is_decoder or getattr(bert.config, "add_cross_attention", False):
        raise ValueError("the packed attention path supports encoder-only BERT models (Geneformer), not decoders")
    emb = bert.embeddings
    # BertEmbeddings: word + token type (all 0) + absolute position, LayerNorm, dropout (off in eval)
    x = emb.word_embeddings(pack.ids) + emb.token_type_embeddings.weight[0]
    x = emb.dropout(emb.LayerNorm(x + emb.position_embeddings(pack.positions)))
    for layer in bert.encoder.layer[:depth]:
        x = _layer(layer, x, pack, kernel)
    return x
