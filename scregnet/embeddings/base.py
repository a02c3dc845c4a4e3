"""The gene-embedding interface shared by every embedder.

An embedder turns an AnnData (cells x genes, `var_names` = gene symbols) into a
`GeneEmbedding`: one vector per gene that received one. Genes without a vector are
reported and zero-filled when the embedding is aligned to a dataset.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class GeneEmbedding:
    """Gene symbol -> vector.

    Attributes:
        genes: gene symbols, length G, unique.
        vectors: float32 array of shape [G, D].
        metadata: provenance (embedder, model id, layer, hashes, coverage, ...).
    """

    genes: list[str]
    vectors: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise ValueError(f"embedding vectors must be 2-D [genes, dims], got shape {self.vectors.shape}")
        if len(self.genes) != self.vectors.shape[0]:
            raise ValueError(f"embedding has {len(self.genes)} gene names but {self.vectors.shape[0]} vectors")
        if len(set(self.genes)) != len(self.genes):
            seen: set[str] = set()
            dup = next(g for g in self.genes if g in seen or seen.add(g))  # type: ignore[func-returns-value]
            raise ValueError(f"embedding gene names must be unique; '{dup}' appears more than once")

    @property
    def dim(self) -> int:
        """Dimensions D of the vectors."""
        return int(self.vectors.shape[1])

    @classmethod
    def empty(cls, **metadata: Any) -> GeneEmbedding:
        """An embedding with no genes and no dimensions (embedder `none`)."""
        return cls(genes=[], vectors=np.zeros((0, 0), dtype=np.float32), metadata=dict(metadata))

    def align(self, genes: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Vectors in the order of `genes`.

        Returns:
            matrix: float32 [len(genes), D], zero rows for genes without a vector.
            found: bool [len(genes)], True where the gene had a vector.
        """
        index = {g: i for i, g in enumerate(self.genes)}
        rows = np.array([index.get(g, -1) for g in genes], dtype=np.int64)
        found = rows >= 0
        out = np.zeros((len(genes), self.dim), dtype=np.float32)
        if self.dim:
            out[found] = self.vectors[rows[found]]
        return out, found

    def content_hash(self) -> str:
        """sha256 of the gene names and vectors (cache key and stored checksum)."""
        h = hashlib.sha256()
        h.update("\n".join(self.genes).encode())
        h.update(np.ascontiguousarray(self.vectors).tobytes())
        return h.hexdigest()

    # On-disk form shared by the ZenML materializer and the CLI: no pickle.
    def save(self, directory: str | Path) -> None:
        """Write vectors.npy, genes.txt and metadata.json (with the checksum) into `directory`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.save(directory / "vectors.npy", self.vectors, allow_pickle=False)
        (directory / "genes.txt").write_text("\n".join(self.genes) + ("\n" if self.genes else ""))
        meta = dict(self.metadata)
        meta["sha256"] = self.content_hash()
        (directory / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=str))

    @classmethod
    def load(cls, directory: str | Path) -> GeneEmbedding:
        """Read a saved embedding; refuses one whose checksum does not match."""
        directory = Path(directory)
        vectors = np.load(directory / "vectors.npy", allow_pickle=False)
        text = (directory / "genes.txt").read_text()
        genes = [g for g in text.split("\n") if g]
        meta = json.loads((directory / "metadata.json").read_text())
        emb = cls(genes=genes, vectors=vectors, metadata=meta)
        expected = meta.get("sha256")
        if expected and emb.content_hash() != expected:
            raise ValueError(
                f"{directory}: embedding checksum mismatch (stored {expected[:12]}..., "
                f"computed {emb.content_hash()[:12]}...); refusing a corrupted artifact"
            )
        return emb

    def to_frame(self):
        """pandas DataFrame indexed by gene symbol, one column per dimension."""
        import pandas as pd

        return pd.DataFrame(
            self.vectors, index=pd.Index(self.genes, name="gene"), columns=[f"d{i}" for i in range(self.dim)]
        )


@runtime_checkable
class GeneEmbedder(Protocol):
    """Anything with a name and `embed(adata) -> GeneEmbedding`."""

    name: str

    def embed(self, adata) -> GeneEmbedding:  # adata: anndata.AnnData, cells x genes
        """Gene embedding of an AnnData (cells x genes, var_names = gene symbols)."""
        ...
