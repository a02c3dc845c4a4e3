"""Rank-value encoding of cells into Geneformer token sequences (see the package docstring)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from scregnet.embeddings.geneformer.dictionaries import GeneformerDictionaries

V1_MAX_TOKENS = 2048  # V1 input size, no special tokens
V2_MAX_GENES = 4094  # V2 input size 4,096 = <cls> + 4,094 genes + <eos>
TARGET_SUM = 10_000
TIE_RULE = "value descending, then token id ascending, then input column"


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
        """Number of token slots S (distinct tokens of the input genes)."""
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
