"""Running a Geneformer BERT: loading, layer choice, batch planning, precision, per-gene sums.

Two execution paths give the same numbers within float tolerance (see the package docstring): the
fast path and the fp32 eager reference path. Model weights are never unpickled (safetensors only).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from scregnet.embeddings.geneformer.packed import (
    FLASH_VARLEN,
    SDPA_PER_CELL,
    flash_varlen_available,
    pack_cells,
    packed_hidden,
)
from scregnet.errors import DataError

log = logging.getLogger(__name__)

_CPU_TOKENS_PER_BATCH = 8192  # modest: keeps CPU batches in cache-friendly sizes
_MAX_CELLS_PER_BATCH = 1024
ATTENTION_CHOICES = ("auto", "packed", "sdpa", "eager")


def load_model(model: str | Path, *, attn_implementation: str = "sdpa"):
    """`BertForMaskedLM` from a local directory (config.json + *.safetensors) or a hub id.

    A hub id may carry a subfolder: "ctheodoris/Geneformer/gf-20L-95M-i4096". Weights are loaded
    with safetensors only (never pickle).
    """
    from transformers import BertForMaskedLM

    text = str(model)
    path = Path(text).expanduser()
    kwargs: dict[str, Any] = {"use_safetensors": True, "attn_implementation": attn_implementation}
    if path.exists():
        if not (path / "config.json").is_file():
            raise DataError("expected a Geneformer model directory containing config.json", path)
        if not any(path.glob("*.safetensors")):
            raise DataError(
                "no *.safetensors weights in the model directory (pickled pytorch_model.bin is refused); "
                "convert the checkpoint to safetensors",
                path,
            )
        source = str(path)
    elif text.startswith(("/", ".", "~")) or "\\" in text or text.count("/") == 0:
        raise DataError("Geneformer model directory not found (and it is not a hub id 'org/name')", path)
    else:
        parts = text.split("/")
        source = "/".join(parts[:2])
        if len(parts) > 2:
            kwargs["subfolder"] = "/".join(parts[2:])
    try:
        loaded = BertForMaskedLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise DataError(
            f"could not load Geneformer model {text!r} (not a local directory; hub not reachable or no "
            f"safetensors weights there): {exc}"
        ) from exc
    return loaded.eval()


def build_random_model(config: str | Path | dict, *, seed: int = 0, attn_implementation: str = "sdpa", **overrides):
    """The exact architecture of a config.json (a file, its directory, or a dict) with random weights.

    For tests and benchmarks: nothing is downloaded. `overrides` replace config fields
    (e.g. `num_hidden_layers=2`). The global torch RNG is left untouched.
    """
    import torch
    from transformers import BertConfig, BertForMaskedLM

    name = "dict"
    if not isinstance(config, dict):
        path = Path(config)
        path = path / "config.json" if path.is_dir() else path
        if not path.is_file():
            raise DataError("model config.json not found", path)
        name = path.parent.name
        config = json.loads(path.read_text())
    cfg = BertConfig.from_dict({**config, **overrides})
    cfg._attn_implementation = attn_implementation
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForMaskedLM(cfg)
    model.config.name_or_path = f"random-init:{name}:seed{seed}"
    return model.eval()


def hidden_state_index(layer: int, n_layers: int) -> int:
    """Index into the L+1 hidden states: negative counts from the end (-1 -> L, -2 -> L-1)."""
    index = n_layers + 1 + layer if layer < 0 else layer
    if not 0 <= index <= n_layers:
        raise ValueError(
            f"layer {layer} is out of range for a {n_layers}-layer model (use -{n_layers + 1}..{n_layers})"
        )
    return index


def base_bert(model):
    """The BertModel inside a BertForMaskedLM (or the model itself)."""
    return model.bert if hasattr(model, "bert") else model


@contextmanager
def _encoder_depth(bert, depth: int) -> Iterator[None]:
    """Run only the first `depth` encoder layers (the modules are shared, nothing is copied)."""
    from torch import nn

    full = bert.encoder.layer
    if depth == len(full):
        yield
        return
    bert.encoder.layer = nn.ModuleList(list(full)[:depth])
    try:
        yield
    finally:
        bert.encoder.layer = full


def _bytes_per_token(config, seq_len: int) -> int:
    # Live activations of one layer under inference mode: hidden, q/k/v, attention output,
    # residual/LayerNorm copies (~8 D), the FFN intermediate (2 I), the output buffer and attention
    # scores in case SDPA falls back to the math kernel (H * T); 4 bytes each as autocast keeps
    # LayerNorm outputs in fp32.
    d, i, h = config.hidden_size, config.intermediate_size, config.num_attention_heads
    return 4 * (9 * d + 2 * i + h * seq_len)


def _plan_batches(
    lengths: np.ndarray, batch_size: int | None, budget_bytes: float | None, config, pad_to: int
) -> list[np.ndarray]:
    """Cells sorted by length (longest first) cut into batches: `batch_size` cells each, or as many
    as fit in `budget_bytes` at the batch's (padded) length."""
    order = np.argsort(-lengths, kind="stable")
    batches, i = [], 0
    while i < len(order):
        if batch_size:
            n = batch_size
        else:
            t = int(-(-int(lengths[order[i]]) // pad_to) * pad_to)
            n = int(budget_bytes // (t * _bytes_per_token(config, t))) if budget_bytes else 1
            n = max(1, min(n, _MAX_CELLS_PER_BATCH))
        batches.append(order[i : i + n])
        i += n
    return batches


def _cuda_budget_bytes(device) -> float:
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    return 0.5 * free  # leave room for the allocator's fragmentation and other tenants


def _memory_budget(device, config) -> float:
    if device.type == "cuda":
        return _cuda_budget_bytes(device)
    t = 1024
    return _CPU_TOKENS_PER_BATCH * _bytes_per_token(config, t)


def _packed_bytes_per_token(config) -> int:
    # As _bytes_per_token without the attention scores: flash keeps none, and the per-cell fallback
    # holds one cell's at a time.
    return 4 * (9 * config.hidden_size + 2 * config.intermediate_size)


def _plan_packs(lengths: np.ndarray, batch_size: int | None, token_budget: int) -> list[np.ndarray]:
    """Cells sorted by length (longest first) cut into packs: `batch_size` cells each, or as many as
    fit in `token_budget` tokens (at least one cell, at most _MAX_CELLS_PER_BATCH)."""
    order = np.argsort(-lengths, kind="stable")
    if batch_size:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    packs, i = [], 0
    ends = np.cumsum(lengths[order])
    while i < len(order):
        start = ends[i - 1] if i else 0
        n = int(np.searchsorted(ends, start + token_budget, side="right")) - i
        n = max(1, min(n, _MAX_CELLS_PER_BATCH))
        packs.append(order[i : i + n])
        i += n
    return packs


def _packed_token_budget(device, config) -> int:
    if device.type == "cuda":
        return int(_cuda_budget_bytes(device) // _packed_bytes_per_token(config))
    return _CPU_TOKENS_PER_BATCH


def check_attention(attention: str) -> str:
    """`attention` itself if it is one of ATTENTION_CHOICES, else a ValueError naming them."""
    if attention not in ATTENTION_CHOICES:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_CHOICES)}, got {attention!r}")
    return attention


def resolve_attention(attention: str, device, precision: str = "auto", head_dim: int = 64) -> str:
    """`auto` -> "packed" on CUDA when the flash varlen kernel runs there in the resolved precision
    (bf16), else "sdpa"; "packed" on CPU (per-cell SDPA, not slower than padding there).
    Explicit values are returned as given (packed without flash uses the per-cell fallback)."""
    import torch

    if check_attention(attention) != "auto":
        return attention
    if device.type != "cuda":
        return "packed"
    dtype = torch.bfloat16 if resolve_precision(precision, device) == "bf16" else torch.float32
    return "packed" if flash_varlen_available(device, dtype, head_dim) else "sdpa"


def packed_kernel(device, precision: str, head_dim: int) -> str:
    """Kernel of the packed path: "flash_varlen" where it runs, else "sdpa_per_cell"."""
    import torch

    dtype = torch.bfloat16 if resolve_precision(precision, device) == "bf16" else torch.float32
    return FLASH_VARLEN if flash_varlen_available(device, dtype, head_dim) else SDPA_PER_CELL


def resolve_precision(precision: str, device) -> str:
    """`auto` -> bf16 on CUDA, fp32 elsewhere; explicit values are checked against the device."""
    import torch

    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision bf16 asked for but {torch.cuda.get_device_name(device)} has no bf16 support")
    return precision


class _SlotSums:
    """Adds hidden vectors into per-slot float64 sums and int64 counts on their device.

    One scratch row (index n_slots) absorbs padding and `<cls>`/`<eos>`: no boolean gather copies.
    Counts are kept on the device and added to `counts` by `close()`.
    """

    def __init__(self, sums, counts):
        import torch

        self.sums, self.counts, self.n_slots = sums, counts, sums.shape[0]
        self.scratch = torch.zeros(self.n_slots + 1, sums.shape[1], dtype=torch.float32, device=sums.device)
        self.hits = torch.zeros(self.n_slots + 1, dtype=torch.int64, device=sums.device)

    def add(self, hidden, slot) -> None:
        """hidden [..., D] (any float dtype), slot int64 [N] for the N = prod(...) positions (n_slots = drop)."""
        import torch

        self.scratch.zero_()
        self.scratch.index_add_(0, slot, hidden.reshape(-1, hidden.shape[-1]).float())
        self.sums += self.scratch[: self.n_slots].double()
        self.hits.index_add_(0, slot, torch.ones_like(slot))  # unlike bincount, no host sync on CUDA

    def close(self) -> None:
        self.counts += self.hits[: self.n_slots]


class _Progress:
    """Logs cells/s every `every` batches (0 = silent)."""

    def __init__(self, total: int, every: int):
        self.total, self.every, self.done, self.batches = total, every, 0, 0
        self.started = time.perf_counter()

    def step(self, n_cells: int) -> None:
        self.done += n_cells
        self.batches += 1
        if self.every and self.batches % self.every == 0:
            rate = self.done / max(time.perf_counter() - self.started, 1e-9)
            log.info("geneformer: %d/%d cells, %.1f cells/s", self.done, self.total, rate)


def _padded_batch(cells, idx: np.ndarray, lengths: np.ndarray, t: int, n_slots: int, device):
    """Cells `idx` padded to `t` tokens: ids int64 [B, t] (pad id 0), attention mask int64 [B, t] and
    slots int64 [B * t] (n_slots at padding and special tokens), all on `device`."""
    import torch

    ids = np.zeros((len(idx), t), dtype=np.int64)
    slot = np.full((len(idx), t), n_slots, dtype=np.int64)
    for r, c in enumerate(idx):
        tok, sl = cells[c]
        ids[r, : len(tok)] = tok
        slot[r, : len(sl)] = np.where(sl >= 0, sl, n_slots)
    mask = (np.arange(t)[None, :] < lengths[idx][:, None]).astype(np.int64)
    return (
        torch.from_numpy(ids).to(device, non_blocking=True),
        torch.from_numpy(mask).to(device, non_blocking=True),
        torch.from_numpy(slot).to(device, non_blocking=True).view(-1),
    )


def head_dim(config) -> int:
    """Size of one attention head."""
    return config.hidden_size // config.num_attention_heads


def accumulate_gene_sums(
    model,
    cells: Sequence[tuple[np.ndarray, np.ndarray]],
    sums,
    counts,
    *,
    layer: int = -2,
    fast: bool = True,
    batch_size: int | None = None,
    log_every: int = 0,
    precision: str = "auto",
    attention: str = "auto",
) -> int:
    """Add the per-gene sums of hidden-state vectors of `cells` into `sums` / `counts` (in place).

    Args:
        model: `BertForMaskedLM` (or `BertModel`), already on the device of `sums`.
        cells: per cell (token ids int64 [T], slots int64 [T] with -1 at special positions).
        sums: float64 tensor [S, D] on the device; counts: int64 tensor [S].
        layer: hidden-state index relative to the end (see `hidden_state_index`).
        fast: optimised path (True) or the fp32 eager reference path (False).
        batch_size: cells per batch (or pack); None = from free memory (fast) / 1 (reference).
        precision: autocast dtype of the fast path (`resolve_precision`); the reference is fp32.
        attention: fast path's attention (`resolve_attention`): packed (unpadded stream), sdpa or
            eager (padded batches); the reference path is always eager.
    Returns:
        the number of cells that had at least one token (empty cells are skipped).
    """
    config = base_bert(model).config
    index = hidden_state_index(layer, config.num_hidden_layers)
    attention = resolve_attention(attention, sums.device, precision, head_dim(config)) if fast else "eager"
    model.eval()
    lengths = np.array([len(t) for t, _ in cells], dtype=np.int64)
    keep = np.flatnonzero(lengths > 0)
    if keep.size == 0:
        return 0
    progress = _Progress(len(keep), log_every)
    acc = _SlotSums(sums, counts)
    if not fast:
        _accumulate_reference(model, cells, lengths, keep, acc, progress, index, batch_size)
    elif attention == "packed":
        _accumulate_packed(model, cells, lengths, keep, acc, progress, index, batch_size, precision)
    else:
        _accumulate_padded(model, cells, lengths, keep, acc, progress, index, batch_size, precision, attention)
    acc.close()
    return progress.done


def _autocast(device, precision: str):
    import torch

    bf16 = resolve_precision(precision, device) == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def _accumulate_padded(model, cells, lengths, keep, acc, progress, index, batch_size, precision, attention):
    """Base BertModel cut after layer `index`, HF `attention` (sdpa/eager), autocast per `precision`,
    length-sorted padded batches."""
    import torch

    device = acc.sums.device
    bert = base_bert(model)
    config = bert.config
    if config._attn_implementation != attention:
        model.set_attn_implementation(attention)
    pad_to = 8 if device.type == "cuda" else 1  # tensor-core friendly shapes on GPU
    budget = None if batch_size else _memory_budget(device, config)
    batches = [keep[b] for b in _plan_batches(lengths[keep], batch_size, budget, config, pad_to)]
    with torch.inference_mode(), _autocast(device, precision), _encoder_depth(bert, index):
        for idx in batches:
            t = -(-int(lengths[idx].max()) // pad_to) * pad_to  # round up to pad_to
            ids, mask, slot = _padded_batch(cells, idx, lengths, t, acc.n_slots, device)
            acc.add(bert(input_ids=ids, attention_mask=mask).last_hidden_state, slot)
            progress.step(len(idx))


def _accumulate_packed(model, cells, lengths, keep, acc, progress, index, batch_size, precision):
    """Length-sorted cells packed into unpadded token streams; `packed.packed_hidden` up to layer `index`."""
    import torch

    device = acc.sums.device
    bert = base_bert(model)
    kernel = packed_kernel(device, precision, head_dim(bert.config))
    budget = 0 if batch_size else _packed_token_budget(device, bert.config)
    with torch.inference_mode(), _autocast(device, precision):
        for pos in _plan_packs(lengths[keep], batch_size, budget):
            idx = keep[pos]
            pack = pack_cells(cells, idx, acc.n_slots, device)
            acc.add(packed_hidden(bert, pack, index, kernel), pack.slots)
            progress.step(len(idx))


def _accumulate_reference(model, cells, lengths, keep, acc: _SlotSums, progress: _Progress, index, batch_size):
    """Geneformer's own extractor: full model, fp32, eager attention, input order, padded to the longest cell."""
    import torch

    if base_bert(model).config._attn_implementation != "eager":
        model.set_attn_implementation("eager")
    t = int(lengths.max())
    step = batch_size or 1
    with torch.inference_mode():
        for i in range(0, len(keep), step):
            idx = keep[i : i + step]
            ids, mask, slot = _padded_batch(cells, idx, lengths, t, acc.n_slots, acc.sums.device)
            hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[index]
            acc.add(hidden, slot)
            progress.step(len(idx))


def embed_token_cells(
    model,
    cells: Sequence[tuple[np.ndarray, np.ndarray]],
    n_slots: int,
    *,
    layer: int = -2,
    device: str = "cpu",
    fast: bool = True,
    batch_size: int | None = None,
    precision: str = "auto",
    attention: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenised cells -> (float64 sums [S, D], int64 counts [S]); moves the model to `device`."""
    import torch

    dev = torch.device(device)
    model.to(dev)
    sums = torch.zeros(n_slots, base_bert(model).config.hidden_size, dtype=torch.float64, device=dev)
    counts = torch.zeros(n_slots, dtype=torch.int64, device=dev)
    accumulate_gene_sums(
        model,
        cells,
        sums,
        counts,
        layer=layer,
        fast=fast,
        batch_size=batch_size,
        precision=precision,
        attention=attention,
    )
    return sums.cpu().numpy(), counts.cpu().numpy()
