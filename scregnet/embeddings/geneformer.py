"""Geneformer gene embeddings: rank-value tokenisation + hidden states of a frozen BERT.

Recipe (docs/geneformer.md):

1. Map gene symbols to Ensembl IDs (upper-cased lookup in `ensembl_mapping_dict_*`, then
   `gene_name_id_dict_*`); keep genes present in the token dictionary (and the median dictionary).
2. Per cell, value per gene -> rank-value encoding:
   - V2 (95M dictionaries): columns that map to one Ensembl ID are summed (one token per ID);
     V1 (30M) keeps every column as its own token, as the V1 tokenizer did.
   - `transform="none"`: rank by the values exactly as given (no total and no median scaling),
     e.g. BEELINE's log-normalised values ranked directly.
     `transform="counts"`: Geneformer's normalisation value / cell total * 10,000 / gene median,
     treating the input as raw counts (the cell total is the row sum over ALL input genes).
     The total scaling does not change the order within a cell, so this ranks by value / median.
   - Keep values > 0 (zeros, negatives and NaN are "not expressed"), sort descending; ties are
     broken by ascending token id, then by input column (deterministic, independent of the order
     of the input columns for V2).
   - V1: first 2,048 tokens, no special tokens. V2: first 4,094 genes between `<cls>` and `<eos>`.
3. Run the model (eval mode; pad id 0 + attention mask). `layer` indexes the L+1 hidden states
   like Python does: -1 = last layer output (hidden_states[L]), -2 = penultimate block output
   (hidden_states[L-1], the default; index 19 of the 20-layer model), 0 = token embeddings.
4. A gene's embedding = mean of its vectors over the cells in which it was ranked; `<cls>`/`<eos>`
   positions are dropped. The mean is kept as (float64 sum, count) so cell shards merge exactly.

Two execution paths give the same numbers within float tolerance:
- fast (default; the GPU path, also used on CPU): base `BertModel` only (no MLM head), encoder cut
  after the requested layer (later layers cannot change it), SDPA attention, bf16 autocast
  (`precision`: auto = bf16 on CUDA, fp32 on CPU; bf16 on CPU on request), cells sorted by length into batches sized from free memory, `torch.inference_mode`, per-gene
  sums accumulated on the device with `index_add_` (per-cell hidden states are never kept).
- reference: what Geneformer's own extractor does: the full `BertForMaskedLM` in fp32 with eager
  attention, `output_hidden_states=True`, batches in input order padded to the longest cell.

Dictionaries are pickles and are read only from a trusted, configured directory; model weights are
never unpickled (safetensors only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from scregnet.config import GeneformerConfig
from scregnet.embeddings.base import GeneEmbedding
from scregnet.errors import DataError

log = logging.getLogger(__name__)

V1_MAX_TOKENS = 2048  # V1 input size, no special tokens
V2_MAX_GENES = 4094  # V2 input size 4,096 = <cls> + 4,094 genes + <eos>
TARGET_SUM = 10_000
TIE_RULE = "value descending, then token id ascending, then input column"
V1_SUBDIR = "gene_dictionaries_30m"  # where upstream keeps the 30M dictionaries
DICTIONARY_FILES = {
    "v1": {
        "token": "token_dictionary_gc30M.pkl",
        "median": "gene_median_dictionary_gc30M.pkl",
        "mapping": "ensembl_mapping_dict_gc30M.pkl",
        "name_id": "gene_name_id_dict_gc30M.pkl",
    },
    "v2": {
        "token": "token_dictionary_gc95M.pkl",
        "median": "gene_median_dictionary_gc95M.pkl",
        "mapping": "ensembl_mapping_dict_gc95M.pkl",
        "name_id": "gene_name_id_dict_gc95M.pkl",
    },
}
_VERSION_BY_MAX_POSITIONS = {2048: "v1", 4096: "v2"}
_VERSION_BY_VOCAB = {25426: "v1", 20275: "v2"}
_CPU_TOKENS_PER_BATCH = 8192  # modest: keeps CPU batches in cache-friendly sizes
_MAX_CELLS_PER_BATCH = 1024


# ----------------------------------------------------------------------------------------------
# Dictionaries


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _find_dictionary(directory: Path, filename: str) -> Path | None:
    for candidate in (directory / filename, directory / V1_SUBDIR / filename):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class GeneformerDictionaries:
    """The four Geneformer dictionaries of one version, with numpy scalars cast to Python types.

    Attributes:
        version: "v1" (30M: no <cls>/<eos>) or "v2" (95M).
        token: Ensembl ID (and "<pad>", "<mask>", ...) -> token id.
        median: Ensembl ID -> non-zero median of normalised expression in the pretraining corpus.
        mapping: UPPER-CASE symbol / alias / Ensembl ID -> Ensembl ID (may be empty).
        name_id: UPPER-CASE symbol -> Ensembl ID (may be empty; for V1 also the 95M aliases).
        files: role -> path of the file read; hashes: file name -> sha256.
    """

    version: str
    directory: Path
    token: dict[str, int]
    median: dict[str, float]
    mapping: dict[str, str]
    name_id: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)

    @property
    def pad_id(self) -> int:
        return self.token.get("<pad>", 0)

    @property
    def special_ids(self) -> tuple[int, int] | None:
        """(<cls>, <eos>) for V2; None for V1."""
        if self.version == "v1":
            return None
        missing = [t for t in ("<cls>", "<eos>") if t not in self.token]
        if missing:
            raise DataError(f"V2 token dictionary has no {', '.join(missing)} token", self.files.get("token"))
        return self.token["<cls>"], self.token["<eos>"]

    @property
    def max_token_id(self) -> int:
        return max(self.token.values())

    def to_ensembl(self, symbol: str) -> str | None:
        """Ensembl ID of a symbol (upper-cased); an Ensembl ID in the token dictionary maps to itself."""
        key = str(symbol).strip().upper()
        if key in self.token:
            return key
        return self.mapping.get(key) or self.name_id.get(key)


def load_dictionaries(directory: str | Path | None, version: str) -> GeneformerDictionaries:
    """Read the token, median and symbol-mapping dictionaries of `version` ("v1" or "v2").

    Files are looked up in `directory` and in `directory/gene_dictionaries_30m/` (upstream's layout
    for the 30M set). The token and median dictionaries are required; of the two mapping
    dictionaries at least one must exist. For V1, `ensembl_mapping_dict_gc95M.pkl`, when present in
    `directory`, is a last-resort symbol/alias -> Ensembl fallback (the 30M mapping holds no symbols).
    """
    if version not in DICTIONARY_FILES:
        raise ValueError(f"Geneformer version must be 'v1' or 'v2', got {version!r}")
    if directory is None:
        raise DataError(
            "embedder.geneformer.dictionaries is not set: give the directory holding "
            f"{DICTIONARY_FILES[version]['token']} and the other Geneformer dictionaries"
        )
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError("Geneformer dictionary directory not found", directory)
    names = DICTIONARY_FILES[version]
    found = {role: _find_dictionary(directory, name) for role, name in names.items()}
    for role in ("token", "median"):
        if found[role] is None:
            raise DataError(
                f"Geneformer {version} {role} dictionary not found: expected {directory / names[role]}"
                f" (or {directory / V1_SUBDIR / names[role]})"
            )
    if found["mapping"] is None and found["name_id"] is None:
        raise DataError(
            f"no symbol -> Ensembl dictionary for Geneformer {version}: expected {directory / names['mapping']}"
            f" or {directory / names['name_id']}"
        )

    def read(role: str) -> dict:
        path = found[role]
        if path is None:
            return {}
        with open(path, "rb") as fh:
            obj = pickle.load(fh)  # trusted, configured dictionary directory only; never model weights
        if not isinstance(obj, dict):
            raise DataError(f"expected a pickled dict, got {type(obj).__name__}", path)
        return obj

    token = {str(k): int(v) for k, v in read("token").items()}
    median = {str(k): float(v) for k, v in read("median").items()}
    mapping = {str(k).upper(): str(v) for k, v in read("mapping").items()}
    name_id: dict[str, str] = {}
    for k, v in read("name_id").items():  # keys are mixed case upstream; first spelling wins
        name_id.setdefault(str(k).upper(), str(v))
    alias = _find_dictionary(directory, DICTIONARY_FILES["v2"]["mapping"]) if version == "v1" else None
    if alias is not None:
        # The 30M mapping only maps Ensembl IDs to themselves; the 95M alias table (symbols, old
        # names) is the better symbol -> ID map, used after the V1 dictionaries as a fallback.
        found["alias"] = alias
        with open(alias, "rb") as fh:
            for k, v in pickle.load(fh).items():  # trusted dictionary directory
                name_id.setdefault(str(k).upper(), str(v))
    paths = {role: str(p) for role, p in found.items() if p is not None}
    hashes = {Path(p).name: _sha256_file(Path(p)) for p in paths.values()}
    return GeneformerDictionaries(version, directory, token, median, mapping, name_id, paths, hashes)


def detect_version(model_config: Any | None = None, directory: str | Path | None = None) -> str:
    """ "v1" or "v2": from the model's max_position_embeddings (2048 / 4096) or vocab size
    (25,426 / 20,275); otherwise from which token dictionary exists in `directory`."""
    if model_config is not None:
        by_pos = _VERSION_BY_MAX_POSITIONS.get(getattr(model_config, "max_position_embeddings", None))
        if by_pos:
            return by_pos
        by_vocab = _VERSION_BY_VOCAB.get(getattr(model_config, "vocab_size", None))
        if by_vocab:
            return by_vocab
    if directory is not None and Path(directory).is_dir():
        present = [v for v, names in DICTIONARY_FILES.items() if _find_dictionary(Path(directory), names["token"])]
        if len(present) == 1:
            return present[0]
    raise DataError(
        "cannot tell the Geneformer version (model max_position_embeddings is neither 2048 nor 4096, "
        "vocab size is not a known one, and the dictionary directory does not hold exactly one token "
        "dictionary); set embedder.geneformer.version to 'v1' or 'v2'"
    )


# ----------------------------------------------------------------------------------------------
# Tokenisation


class GeneformerTokenizer:
    """Rank-value encoding of cells over one fixed list of input genes.

    Input columns are mapped to "slots": one per distinct token id for V2 (duplicates summed),
    one per input column for V1. `slot_token[s]` is the token id of slot s, `gene_slot[g]` the slot
    of input column g (-1 when the gene cannot be tokenised).
    """

    def __init__(self, dictionaries: GeneformerDictionaries, genes: Sequence[str], transform: str = "none"):
        if transform not in ("none", "counts"):
            raise ValueError(f"transform must be 'none' or 'counts', got {transform!r}")
        self.dictionaries = dictionaries
        self.version = dictionaries.version
        self.transform = transform
        self.genes = [str(g) for g in genes]
        self.max_genes = V1_MAX_TOKENS if self.version == "v1" else V2_MAX_GENES
        self.special = dictionaries.special_ids
        ensembl = [dictionaries.to_ensembl(g) for g in self.genes]
        slot_of_id: dict[str, int] = {}
        gene_slot = np.full(len(self.genes), -1, dtype=np.int64)
        tokens: list[int] = []
        medians: list[float] = []
        for j, ens in enumerate(ensembl):
            if ens is None or ens not in dictionaries.token or ens not in dictionaries.median:
                continue
            if self.version == "v2" and ens in slot_of_id:
                gene_slot[j] = slot_of_id[ens]
                continue
            slot_of_id.setdefault(ens, len(tokens))
            gene_slot[j] = len(tokens)
            tokens.append(dictionaries.token[ens])
            medians.append(dictionaries.median[ens])
        self.gene_slot = gene_slot
        self.slot_token = np.asarray(tokens, dtype=np.int64)
        self.slot_median = np.asarray(medians, dtype=np.float64)
        cols = np.flatnonzero(gene_slot >= 0)
        # [G_in, S] 0/1 matrix: X_rows @ agg sums the columns of each slot
        self.agg = sp.csr_matrix((np.ones(len(cols)), (cols, gene_slot[cols])), shape=(len(self.genes), len(tokens)))
        unmapped = [g for g, e in zip(self.genes, ensembl) if e is None]
        not_in_vocab = [g for g, e, s in zip(self.genes, ensembl, gene_slot) if e is not None and s < 0]
        n = max(len(self.genes), 1)
        self.coverage: dict[str, Any] = {
            "n_genes": len(self.genes),
            "n_mapped_ensembl": len(self.genes) - len(unmapped),
            "n_in_vocabulary": int(len(cols)),
            "mapped_fraction": round(len(cols) / n, 6),
            "n_tokens": len(tokens),
            "n_duplicates_summed": int(len(cols) - len(tokens)),
            "unmapped": unmapped,
            "not_in_vocabulary": not_in_vocab,
        }

    @property
    def n_slots(self) -> int:
        return int(self.slot_token.shape[0])

    def slot_values(self, rows) -> np.ndarray:
        """Transformed values per slot for a block of cells.

        Args:
            rows: cells x input genes, dense array or scipy sparse, shape [n, G_in].
        Returns:
            float64 [n, S]; only entries > 0 are expressed.
        """
        rows = rows.astype(np.float64) if sp.issparse(rows) else np.asarray(rows, dtype=np.float64)
        vals = rows @ self.agg
        vals = vals.toarray() if sp.issparse(vals) else np.asarray(vals)
        if self.transform == "counts":
            total = np.asarray(rows.sum(axis=1), dtype=np.float64).reshape(-1, 1)
            with np.errstate(divide="ignore", invalid="ignore"):
                vals = np.where(total > 0, vals / total * TARGET_SUM, 0.0) / self.slot_median[None, :]
        return vals

    def tokenize_values(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One cell's slot values [S] -> (token ids int64 [T], slots int64 [T]; -1 at <cls>/<eos>).

        An empty cell (nothing expressed) gives two empty arrays, also for V2.
        """
        nz = np.flatnonzero(values > 0)
        if nz.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty
        order = np.lexsort((nz, self.slot_token[nz], -values[nz]))[: self.max_genes]
        slots = nz[order]
        tokens = self.slot_token[slots]
        if self.special is not None:
            cls_id, eos_id = self.special
            tokens = np.concatenate(([cls_id], tokens, [eos_id]))
            slots = np.concatenate(([-1], slots, [-1]))
        return tokens.astype(np.int64), slots.astype(np.int64)

    def tokenize(self, rows, block: int = 256) -> list[tuple[np.ndarray, np.ndarray]]:
        """Cells [n, G_in] -> one (tokens, slots) pair per cell, in row order."""
        out: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, rows.shape[0], block):  # bounds the dense [block, S] buffer
            vals = self.slot_values(rows[start : start + block])
            out.extend(self.tokenize_values(v) for v in vals)
        return out


# ----------------------------------------------------------------------------------------------
# Models


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


def _bert(model):
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


def _memory_budget(device, config) -> float:
    import torch

    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.5 * free  # leave room for the allocator's fragmentation and other tenants
    t = 1024
    return _CPU_TOKENS_PER_BATCH * _bytes_per_token(config, t)


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
) -> int:
    """Add the per-gene sums of hidden-state vectors of `cells` into `sums` / `counts` (in place).

    Args:
        model: `BertForMaskedLM` (or `BertModel`), already on the device of `sums`.
        cells: per cell (token ids int64 [T], slots int64 [T] with -1 at special positions).
        sums: float64 tensor [S, D] on the device; counts: int64 tensor [S].
        layer: hidden-state index relative to the end (see `hidden_state_index`).
        fast: optimised path (True) or the fp32 eager reference path (False).
        batch_size: cells per batch; None = from free memory (fast) / 1 (reference).
        precision: autocast dtype of the fast path (`resolve_precision`); the reference is fp32.
    Returns:
        the number of cells that had at least one token (empty cells are skipped).
    """
    import torch

    device = sums.device
    n_slots = sums.shape[0]
    bert = _bert(model)
    config = bert.config
    index = hidden_state_index(layer, config.num_hidden_layers)
    model.eval()
    lengths = np.array([len(t) for t, _ in cells], dtype=np.int64)
    keep = np.flatnonzero(lengths > 0)
    if keep.size == 0:
        return 0
    if fast:
        if config._attn_implementation != "sdpa":
            model.set_attn_implementation("sdpa")
        pad_to = 8 if device.type == "cuda" else 1  # tensor-core friendly shapes on GPU
        batches = [
            keep[b]
            for b in _plan_batches(
                lengths[keep], batch_size, None if batch_size else _memory_budget(device, config), config, pad_to
            )
        ]
        bf16 = resolve_precision(precision, device) == "bf16"
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
    else:
        if config._attn_implementation != "eager":
            model.set_attn_implementation("eager")
        pad_to = int(lengths.max())  # every batch padded to the longest cell, in input order
        step = batch_size or 1
        batches = [keep[i : i + step] for i in range(0, len(keep), step)]
        autocast = nullcontext()
    # One scratch row (index n_slots) absorbs padding and <cls>/<eos>: no boolean gather copies.
    scratch = torch.zeros(n_slots + 1, sums.shape[1], dtype=torch.float32, device=device)
    hits = torch.zeros(n_slots + 1, dtype=torch.int64, device=device)
    started, done = time.perf_counter(), 0
    with torch.inference_mode(), autocast, _encoder_depth(bert, index) if fast else nullcontext():
        for b, idx in enumerate(batches):
            t = -(-int(lengths[idx].max()) // pad_to) * pad_to if fast else pad_to  # round up to pad_to
            ids = np.zeros((len(idx), t), dtype=np.int64)  # pad id 0
            slot = np.full((len(idx), t), n_slots, dtype=np.int64)
            for r, c in enumerate(idx):
                tok, sl = cells[c]
                ids[r, : len(tok)] = tok
                slot[r, : len(sl)] = np.where(sl >= 0, sl, n_slots)
            mask = (np.arange(t)[None, :] < lengths[idx][:, None]).astype(np.int64)
            ids_t = torch.from_numpy(ids).to(device, non_blocking=True)
            mask_t = torch.from_numpy(mask).to(device, non_blocking=True)
            slot_t = torch.from_numpy(slot).to(device, non_blocking=True).view(-1)
            if fast:
                hidden = bert(input_ids=ids_t, attention_mask=mask_t).last_hidden_state
            else:
                hidden = model(input_ids=ids_t, attention_mask=mask_t, output_hidden_states=True).hidden_states[index]
            scratch.zero_()
            scratch.index_add_(0, slot_t, hidden.reshape(-1, hidden.shape[-1]).float())
            sums += scratch[:n_slots].double()
            hits.index_add_(0, slot_t, torch.ones_like(slot_t))  # unlike bincount, no host sync on CUDA
            done += len(idx)
            if log_every and (b + 1) % log_every == 0:
                rate = done / max(time.perf_counter() - started, 1e-9)
                log.info("geneformer: %d/%d cells, %.1f cells/s", done, len(keep), rate)
    counts += hits[:n_slots]
    return done


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
) -> tuple[np.ndarray, np.ndarray]:
    """Tokenised cells -> (float64 sums [S, D], int64 counts [S]); moves the model to `device`."""
    import torch

    dev = torch.device(device)
    model.to(dev)
    sums = torch.zeros(n_slots, _bert(model).config.hidden_size, dtype=torch.float64, device=dev)
    counts = torch.zeros(n_slots, dtype=torch.int64, device=dev)
    accumulate_gene_sums(model, cells, sums, counts, layer=layer, fast=fast, batch_size=batch_size, precision=precision)
    return sums.cpu().numpy(), counts.cpu().numpy()


# ----------------------------------------------------------------------------------------------
# Shards and the embedder


@dataclass
class GeneSums:
    """Per-gene (sum, count) of one shard of cells; `merge_gene_sums` turns shards into means.

    Attributes:
        genes: input gene symbols that can be tokenised, length G (input order).
        sums: float64 [G, D], sum of the gene's vectors over the shard's cells where it was ranked.
        counts: int64 [G], number of those cells.
        n_cells: cells in the shard; metadata: provenance shared by all shards of one run.
    """

    genes: list[str]
    sums: np.ndarray
    counts: np.ndarray
    n_cells: int
    metadata: dict[str, Any] = field(default_factory=dict)


# Metadata that must agree between shards before they can be merged.
_MERGE_KEYS = (
    "embedder",
    "model",
    "layer",
    "version",
    "transform",
    "precision",
    "dictionary_sha256",
    "input_sha256",
    "dims",
)


def sum_gene_sums(parts: Sequence[GeneSums]) -> GeneSums:
    """Exact sum of shard (sum, count) tables; refuses shards of different runs/models."""
    if not parts:
        raise ValueError("merging Geneformer shards needs at least one shard")
    first = parts[0].metadata
    for p in parts[1:]:
        bad = [k for k in _MERGE_KEYS if p.metadata.get(k) != first.get(k)]
        if bad:
            raise ValueError(f"cannot merge Geneformer shards computed with different {', '.join(bad)}")
    genes: list[str] = []
    pos: dict[str, int] = {}
    for p in parts:
        for g in p.genes:
            if g not in pos:
                pos[g] = len(genes)
                genes.append(g)
    dims = max((p.sums.shape[1] for p in parts), default=0)
    sums = np.zeros((len(genes), dims), dtype=np.float64)
    counts = np.zeros(len(genes), dtype=np.int64)
    for p in parts:
        rows = np.array([pos[g] for g in p.genes], dtype=np.int64)
        np.add.at(sums, rows, p.sums)
        np.add.at(counts, rows, p.counts)
    meta = {k: v for k, v in first.items() if k not in ("shard",)}
    meta["n_shards"] = int(sum(p.metadata.get("n_shards_merged", 1) for p in parts))
    meta["n_shards_merged"] = meta["n_shards"]
    return GeneSums(genes, sums, counts, int(sum(p.n_cells for p in parts)), meta)


def gene_sums_to_embedding(total: GeneSums) -> GeneEmbedding:
    """Means from (sum, count); genes never ranked (count 0) get no vector."""
    has = total.counts > 0
    vectors = (total.sums[has] / total.counts[has, None]).astype(np.float32)
    kept = [g for g, h in zip(total.genes, has) if h]
    meta = {k: v for k, v in total.metadata.items() if k not in ("shard", "n_shards_merged")}
    meta.setdefault("n_shards", 1)
    meta["n_cells"] = int(total.n_cells)
    coverage = dict(meta.get("coverage", {}))
    coverage["genes_with_vector"] = len(kept)
    n = coverage.get("n_genes") or max(len(total.genes), 1)
    coverage["vector_fraction"] = round(len(kept) / n, 6)
    meta["coverage"] = coverage
    return GeneEmbedding(genes=kept, vectors=vectors, metadata=meta)


def merge_gene_sums(parts: Sequence[GeneSums]) -> GeneEmbedding:
    """Exact merge of shard sums: mean = sum of sums / sum of counts; genes with count 0 dropped."""
    return gene_sums_to_embedding(sum_gene_sums(parts))


def expression_matrix(adata, transform: str):
    """The matrix to rank: with transform "counts", the raw counts preprocessing keeps in
    `layers["counts"]` when there (X is then log-normalised); otherwise X."""
    if transform == "counts" and "counts" in getattr(adata, "layers", {}):
        return adata.layers["counts"]
    return adata.X


def input_sha256(X, genes: Sequence[str]) -> str:
    """sha256 of the gene names and the expression matrix (dense bytes or CSR arrays)."""
    h = hashlib.sha256()
    h.update("\n".join(map(str, genes)).encode())
    if sp.issparse(X):
        X = X.tocsr()
        h.update(f"csr{X.shape}{X.dtype}".encode())
        for a in (X.data, X.indices, X.indptr):
            h.update(np.ascontiguousarray(a).data)
    else:
        X = np.ascontiguousarray(np.asarray(X))
        h.update(f"dense{X.shape}{X.dtype}".encode())
        h.update(X.data)
    return h.hexdigest()


def select_cells(n_cells: int, max_cells: int | None) -> np.ndarray:
    """All cells, or `max_cells` evenly spaced ones (deterministic; keeps pseudotime coverage)."""
    if max_cells is None or max_cells >= n_cells:
        return np.arange(n_cells)
    if max_cells < 1:
        raise ValueError(f"max_cells must be >= 1, got {max_cells}")
    return np.unique(np.round(np.linspace(0, n_cells - 1, max_cells)).astype(np.int64))


def shard_cells(cells: np.ndarray, shard: int, n_shards: int) -> np.ndarray:
    """Contiguous block `shard` of `n_shards` (np.array_split): every cell in exactly one shard."""
    if n_shards < 1 or not 0 <= shard < n_shards:
        raise ValueError(f"shard must be in 0..n_shards-1 with n_shards >= 1, got shard={shard}, n_shards={n_shards}")
    return np.array_split(cells, n_shards)[shard]


class GeneformerEmbedder:
    """`embed(adata) -> GeneEmbedding` with a Geneformer checkpoint (see the module docstring).

    Args:
        cfg: model, dictionaries, version, layer, transform, device, batch_size, n_shards, max_cells.
        model: an already built `BertForMaskedLM` (tests, benchmarks); otherwise `cfg.model` is loaded.
        fast: the optimised path (default) or the fp32 eager reference path.
        chunk_cells: cells tokenised at a time (bounds host memory; batches are length-sorted within).
        log_every: log progress every N batches (0 = silent).
    """

    name = "geneformer"

    def __init__(
        self,
        cfg: GeneformerConfig | None = None,
        *,
        model=None,
        fast: bool = True,
        chunk_cells: int = 8192,
        log_every: int = 50,
    ):
        self.cfg = cfg or GeneformerConfig()
        self._model = model
        self.fast = fast
        self.chunk_cells = chunk_cells
        self.log_every = log_every
        self._dicts: GeneformerDictionaries | None = None
        self._device = None

    # -- setup --------------------------------------------------------------------------------
    @property
    def device(self):
        import torch

        if self._device is None:
            want = self.cfg.device
            if want == "auto":
                want = "cuda" if torch.cuda.is_available() else "cpu"
            if want == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("embedder.geneformer.device is 'cuda' but no CUDA device is available")
            self._device = torch.device(want)
        return self._device

    @property
    def model(self):
        if self._model is None:
            if not self.cfg.model:
                raise DataError("embedder.geneformer.model is not set: give a local model directory or a hub id")
            self._model = load_model(self.cfg.model)
        return self._model

    @property
    def model_id(self) -> str:
        return str(self.cfg.model or getattr(self.model.config, "name_or_path", "") or "in-memory")

    @property
    def dictionaries(self) -> GeneformerDictionaries:
        if self._dicts is None:
            config = _bert(self.model).config
            version = self.cfg.version
            if version == "auto":
                version = detect_version(config, self.cfg.dictionaries)
            dicts = load_dictionaries(self.cfg.dictionaries, version)
            if dicts.max_token_id >= config.vocab_size:
                raise DataError(
                    f"token dictionary ids go up to {dicts.max_token_id} but the model vocabulary has "
                    f"{config.vocab_size} entries: dictionaries and model ({version}) do not match",
                    dicts.files["token"],
                )
            need = V1_MAX_TOKENS if version == "v1" else V2_MAX_GENES + 2
            if config.max_position_embeddings < need:
                raise DataError(
                    f"Geneformer {version} needs {need} input positions but the model has "
                    f"max_position_embeddings={config.max_position_embeddings}"
                )
            self._dicts = dicts
        return self._dicts

    # -- embedding ----------------------------------------------------------------------------
    def tokenizer(self, genes: Sequence[str]) -> GeneformerTokenizer:
        tok = GeneformerTokenizer(self.dictionaries, genes, self.cfg.transform)
        if tok.n_slots == 0:
            sample = ", ".join(list(genes)[:5])
            raise DataError(
                f"none of the {len(tok.genes)} genes (e.g. {sample}) maps to the Geneformer "
                f"{tok.version} token dictionary in {self.dictionaries.directory}; expected upper-case "
                "gene symbols or Ensembl IDs"
            )
        return tok

    def embed_shard(
        self, adata, shard: int = 0, n_shards: int | None = None, *, _input_hash: str | None = None
    ) -> GeneSums:
        """(sum, count) per gene over shard `shard` of `n_shards` (default cfg.n_shards) of the cells.

        Cells are first limited to cfg.max_cells (evenly spaced), then split into contiguous blocks.
        """
        import torch

        n_shards = n_shards or self.cfg.n_shards
        genes = [str(g) for g in adata.var_names]
        tok = self.tokenizer(genes)
        cells = shard_cells(select_cells(adata.n_obs, self.cfg.max_cells), shard, n_shards)
        model = self.model.to(self.device)
        d = _bert(model).config.hidden_size
        sums = torch.zeros(tok.n_slots, d, dtype=torch.float64, device=self.device)
        counts = torch.zeros(tok.n_slots, dtype=torch.int64, device=self.device)
        X = expression_matrix(adata, self.cfg.transform)
        chunks = [cells[i : i + self.chunk_cells] for i in range(0, len(cells), self.chunk_cells)]
        started, n_embedded = time.perf_counter(), 0
        # Tokenise the next chunk on a CPU thread while the device works on the current one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(tok.tokenize, X[chunks[0]]) if chunks else None
            for k in range(len(chunks)):
                tokenised = pending.result()
                pending = pool.submit(tok.tokenize, X[chunks[k + 1]]) if k + 1 < len(chunks) else None
                n_embedded += accumulate_gene_sums(
                    model,
                    tokenised,
                    sums,
                    counts,
                    layer=self.cfg.layer,
                    fast=self.fast,
                    batch_size=self.cfg.batch_size,
                    log_every=self.log_every,
                    precision=self.cfg.precision,
                )
        seconds = time.perf_counter() - started
        slot_sums, slot_counts = sums.cpu().numpy(), counts.cpu().numpy()
        rows = np.flatnonzero(tok.gene_slot >= 0)
        meta = {
            "embedder": "geneformer",
            "model": self.model_id,
            "layer": self.cfg.layer,
            "hidden_state_index": hidden_state_index(self.cfg.layer, _bert(model).config.num_hidden_layers),
            "version": tok.version,
            "transform": self.cfg.transform,
            "ranking": "value as given" if self.cfg.transform == "none" else "value / cell total * 10000 / gene median",
            "tie_rule": TIE_RULE,
            "max_genes_per_cell": tok.max_genes,
            "dictionaries": str(self.dictionaries.directory),
            "dictionary_sha256": dict(self.dictionaries.hashes),
            "input_sha256": _input_hash or input_sha256(X, genes),
            "coverage": dict(tok.coverage),
            "dims": int(d),
            "n_cells_input": int(adata.n_obs),
            "n_cells_empty": int(len(cells) - n_embedded),
            "max_cells": self.cfg.max_cells,
            "path": "fast" if self.fast else "reference",
            "precision": resolve_precision(self.cfg.precision, self.device) if self.fast else "fp32",
            "device": str(self.device),
            "shard": shard,
            "seconds": round(seconds, 3),
        }
        return GeneSums(
            genes=[genes[g] for g in rows],
            sums=slot_sums[tok.gene_slot[rows]],
            counts=slot_counts[tok.gene_slot[rows]],
            n_cells=len(cells),
            metadata=meta,
        )

    def embed(self, adata) -> GeneEmbedding:
        """Mean hidden-state vector per input gene symbol; shards run one after another."""
        digest = input_sha256(expression_matrix(adata, self.cfg.transform), [str(g) for g in adata.var_names])
        n = self.cfg.n_shards
        parts = [self.embed_shard(adata, i, n, _input_hash=digest) for i in range(n)]
        emb = merge_gene_sums(parts)
        emb.metadata["seconds"] = round(sum(p.metadata["seconds"] for p in parts), 3)
        return emb
