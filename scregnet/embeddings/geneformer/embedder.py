"""`GeneformerEmbedder`: tokenise an AnnData in chunks, run the model, return per-gene sums or means."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from scregnet.config import GeneformerConfig
from scregnet.embeddings.base import GeneEmbedding
from scregnet.embeddings.geneformer.dictionaries import GeneformerDictionaries, detect_version, load_dictionaries
from scregnet.embeddings.geneformer.inference import (
    accumulate_gene_sums,
    base_bert,
    check_attention,
    head_dim,
    hidden_state_index,
    load_model,
    packed_kernel,
    resolve_attention,
    resolve_precision,
)
from scregnet.embeddings.geneformer.sums import (
    GeneSums,
    expression_matrix,
    input_sha256,
    merge_gene_sums,
    select_cells,
    shard_cells,
)
from scregnet.embeddings.geneformer.tokenizer import TIE_RULE, V1_MAX_TOKENS, V2_MAX_GENES, GeneformerTokenizer
from scregnet.errors import DataError


class GeneformerEmbedder:
    """`embed(adata) -> GeneEmbedding` with a Geneformer checkpoint (see the package docstring).

    Args:
        cfg: model, dictionaries, version, layer, transform, device, precision, attention, batch_size,
            n_shards, max_cells.
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
        """The torch device: cfg.device, with auto = CUDA when available."""
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
        """The BERT model (loaded from cfg.model on first use unless one was given)."""
        if self._model is None:
            if not self.cfg.model:
                raise DataError("embedder.geneformer.model is not set: give a local model directory or a hub id")
            self._model = load_model(self.cfg.model)
        return self._model

    @property
    def model_id(self) -> str:
        """Where the model came from (path, hub id or in-memory), for the metadata."""
        return str(self.cfg.model or getattr(self.model.config, "name_or_path", "") or "in-memory")

    @property
    def dictionaries(self) -> GeneformerDictionaries:
        """The dictionaries of the model's version, checked against its vocabulary and input size."""
        if self._dicts is None:
            config = base_bert(self.model).config
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
        """A tokenizer over `genes`; a clear error when none of them is in the vocabulary."""
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
        check_attention(self.cfg.attention)  # a bad value fails before any work
        genes = [str(g) for g in adata.var_names]
        tok = self.tokenizer(genes)
        cells = shard_cells(select_cells(adata.n_obs, self.cfg.max_cells), shard, n_shards)
        model = self.model.to(self.device)
        d = base_bert(model).config.hidden_size
        sums = torch.zeros(tok.n_slots, d, dtype=torch.float64, device=self.device)
        counts = torch.zeros(tok.n_slots, dtype=torch.int64, device=self.device)
        started = time.perf_counter()
        n_embedded = self._accumulate(model, tok, expression_matrix(adata, self.cfg.transform), cells, sums, counts)
        meta = self._shard_metadata(model, tok, adata, _input_hash)
        meta.update(
            n_cells_empty=int(len(cells) - n_embedded),
            shard=shard,
            seconds=round(time.perf_counter() - started, 3),
        )
        slot_sums, slot_counts = sums.cpu().numpy(), counts.cpu().numpy()
        rows = np.flatnonzero(tok.gene_slot >= 0)
        return GeneSums(
            genes=[genes[g] for g in rows],
            sums=slot_sums[tok.gene_slot[rows]],
            counts=slot_counts[tok.gene_slot[rows]],
            n_cells=len(cells),
            metadata=meta,
        )

    def _accumulate(self, model, tok: GeneformerTokenizer, X, cells: np.ndarray, sums, counts) -> int:
        """Tokenise `cells` (rows of X) chunk by chunk and add their gene sums; returns cells embedded."""
        chunks = [cells[i : i + self.chunk_cells] for i in range(0, len(cells), self.chunk_cells)]
        n_embedded = 0
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
                    attention=self.cfg.attention,
                )
        return n_embedded

    def _shard_metadata(self, model, tok: GeneformerTokenizer, adata, input_hash: str | None) -> dict:
        """Provenance of a shard; the keys in `sums._MERGE_KEYS` must agree between merged shards."""
        config = base_bert(model).config
        genes = tok.genes
        return {
            "embedder": "geneformer",
            "model": self.model_id,
            "layer": self.cfg.layer,
            "hidden_state_index": hidden_state_index(self.cfg.layer, config.num_hidden_layers),
            "version": tok.version,
            "transform": self.cfg.transform,
            "ranking": "value as given" if self.cfg.transform == "none" else "value / cell total * 10000 / gene median",
            "tie_rule": TIE_RULE,
            "max_genes_per_cell": tok.max_genes,
            "dictionaries": str(self.dictionaries.directory),
            "dictionary_sha256": dict(self.dictionaries.hashes),
            "input_sha256": input_hash or input_sha256(expression_matrix(adata, self.cfg.transform), genes),
            "coverage": dict(tok.coverage),
            "dims": int(config.hidden_size),
            "n_cells_input": int(adata.n_obs),
            "max_cells": self.cfg.max_cells,
            "path": "fast" if self.fast else "reference",
            "precision": resolve_precision(self.cfg.precision, self.device) if self.fast else "fp32",
            **self._attention_metadata(config),
            "device": str(self.device),
        }

    def _attention_metadata(self, config) -> dict:
        """The resolved attention (a merge key) and, for packed, the kernel that ran it."""
        if not self.fast:
            return {"attention": "eager"}
        attention = resolve_attention(self.cfg.attention, self.device, self.cfg.precision, head_dim(config))
        if attention != "packed":
            return {"attention": attention}
        return {
            "attention": attention,
            "attention_kernel": packed_kernel(self.device, self.cfg.precision, head_dim(config)),
        }

    def embed(self, adata) -> GeneEmbedding:
        """Mean hidden-state vector per input gene symbol; shards run one after another."""
        digest = input_sha256(expression_matrix(adata, self.cfg.transform), [str(g) for g in adata.var_names])
        n = self.cfg.n_shards
        parts = [self.embed_shard(adata, i, n, _input_hash=digest) for i in range(n)]
        emb = merge_gene_sums(parts)
        emb.metadata["seconds"] = round(sum(p.metadata["seconds"] for p in parts), 3)
        return emb
