"""Other foundation models' native outputs -> `GeneEmbedding` (one mean vector per gene).

Formats (`load_precomputed(path, format, gene_index)`):
- "scbert": .npy (cells, genes + 1, 200) + `gene_index` = gene list (one symbol per line, scBERT's
  gene order); the last position (the extra/CLS position) is dropped.
- "scfoundation": .npy (cells, 19264, 512) + `gene_index` = OS_scRNA_gene_index.19264.tsv
  (`gene_name<TAB>index`). An array with 19,266 positions (gene tokens + scFoundation's two total-
  count tokens T and S, appended last) has those two dropped.
- "torch": a `torch.save`d dict {symbol: tensor [D]} (the scRegNet authors' fm_embeddings.pt),
  read with `torch.load(..., weights_only=True)` only.
- "ensembl_csv": CSV/TSV indexed by Ensembl ID, one column per dimension (Geneformer's gene
  embedding output; `<cls>`/`<eos>` rows dropped) + `gene_index` = a symbol <-> Ensembl table.
- "table": CSV/TSV/parquet indexed by symbol (`read_table_embedding`).
- "auto": .pt/.pth -> torch; .csv/.tsv/.txt/.parquet (optionally .gz) -> table.

The .npy readers memory-map the array and average it in chunks of cells (float64 sums), so a
(cells x 19264 x 512) array need not fit in memory. For scBERT/scFoundation every gene has an
output in every cell, so the mean is over all cells. Symbols are upper-cased (BEELINE convention).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path

import numpy as np

from scregnet.embeddings.base import GeneEmbedding
from scregnet.errors import DataError

SCFOUNDATION_GENES = 19264
SCFOUNDATION_EXTRA = 2  # total-count tokens T and S appended after the genes
_HASH_LIMIT = 1 << 30  # files above 1 GiB are identified by size, not sha256
_CHUNK_BYTES = 256 << 20


def _file_id(path: Path) -> dict:
    size = path.stat().st_size
    if size > _HASH_LIMIT:
        return {"path": str(path), "bytes": size}
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"path": str(path), "bytes": size, "sha256": h.hexdigest()}


def _require(path: Path | None, what: str) -> Path:
    if path is None:
        raise DataError(f"{what} is required for this format (set embedder.gene_index)")
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found", path)
    return path


def _upper_unique(names: list[str], path: Path) -> list[str]:
    out = [str(n).strip().upper() for n in names]
    seen: set[str] = set()
    for n in out:
        if n in seen:
            raise DataError(f"gene {n!r} appears more than once (after upper-casing)", path)
        seen.add(n)
    return out


def mean_over_cells(
    array: np.ndarray, columns: np.ndarray | None = None, chunk_bytes: int = _CHUNK_BYTES
) -> np.ndarray:
    """Mean over axis 0 of a (possibly memory-mapped) array [C, G, D], in chunks of cells.

    Args:
        array: [C, G, D]; columns: optional int index into G (read only those genes).
    Returns:
        float64 [G' , D].
    """
    n_cells, n_genes, dims = array.shape
    g = n_genes if columns is None else len(columns)
    step = max(1, int(chunk_bytes // max(1, g * dims * array.dtype.itemsize)))
    total = np.zeros((g, dims), dtype=np.float64)
    for start in range(0, n_cells, step):
        block = array[start : start + step]
        if columns is not None:
            block = block[:, columns]
        total += block.sum(axis=0, dtype=np.float64)
    return total / max(n_cells, 1)


def _open_npy(path: Path, expected: str) -> np.ndarray:
    if not path.is_file():
        raise DataError("embedding array not found", path)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"not a readable .npy array of shape {expected} ({exc})", path) from exc
    if arr.ndim != 3 or arr.dtype.kind not in "fiu":
        raise DataError(f"expected a numeric array of shape {expected}, got {arr.dtype} {arr.shape}", path)
    if arr.shape[0] == 0:
        raise DataError(f"array has no cells; expected shape {expected}", path)
    return arr


def _restrict(symbols: list[str], genes: Collection[str] | None) -> np.ndarray:
    if genes is None:
        return np.arange(len(symbols))
    want = {str(g).upper() for g in genes}
    return np.array([i for i, s in enumerate(symbols) if s in want], dtype=np.int64)


def read_scbert(
    path: Path, gene_list: Path | None, *, genes: Collection[str] | None = None, chunk_bytes: int = _CHUNK_BYTES
) -> GeneEmbedding:
    """scBERT outputs [cells, n_genes + 1, 200] + gene list -> mean per gene (extra position dropped)."""
    path, gene_list = Path(path), _require(gene_list, "scBERT gene list (one symbol per line)")
    symbols = _upper_unique([s for s in gene_list.read_text().splitlines() if s.strip()], gene_list)
    expected = f"(cells, {len(symbols) + 1}, 200) for {len(symbols)} genes in {gene_list}"
    arr = _open_npy(path, expected)
    if arr.shape[1] != len(symbols) + 1:
        raise DataError(f"expected shape {expected}, got {arr.shape}", path)
    cols = _restrict(symbols, genes)
    vectors = mean_over_cells(arr, cols, chunk_bytes)
    return GeneEmbedding(
        [symbols[i] for i in cols],
        vectors,
        {
            "embedder": "precomputed",
            "format": "scbert",
            "source_model": "scBERT",
            "file": _file_id(path),
            "gene_index": str(gene_list),
            "n_cells": int(arr.shape[0]),
            "dims": int(arr.shape[2]),
            "aggregation": "mean over all cells",
        },
    )


def read_scfoundation_index(path: Path) -> list[str]:
    """OS_scRNA_gene_index.19264.tsv (`gene_name<TAB>index`) -> symbols in position order."""
    import pandas as pd

    try:
        df = pd.read_csv(path, sep="\t")
    except Exception as exc:  # noqa: BLE001 - re-raised with the file name
        raise DataError(f"not a readable TSV with columns gene_name, index ({exc})", path) from exc
    if not {"gene_name", "index"} <= set(df.columns):
        raise DataError(f"expected columns gene_name<TAB>index, found {list(df.columns)}", path)
    idx = df["index"].to_numpy()
    if sorted(idx.tolist()) != list(range(len(df))):
        raise DataError(f"column 'index' must be a permutation of 0..{len(df) - 1}", path)
    names = [""] * len(df)
    for name, i in zip(df["gene_name"].astype(str), idx):
        names[int(i)] = name
    return _upper_unique(names, path)


def read_scfoundation(
    path: Path, gene_index: Path | None, *, genes: Collection[str] | None = None, chunk_bytes: int = _CHUNK_BYTES
) -> GeneEmbedding:
    """scFoundation gene outputs [cells, 19264, 512] -> mean per gene, optionally only `genes`."""
    path, gene_index = Path(path), _require(gene_index, "scFoundation gene index (OS_scRNA_gene_index.19264.tsv)")
    symbols = read_scfoundation_index(gene_index)
    expected = f"(cells, {len(symbols)}, 512) (or {len(symbols) + SCFOUNDATION_EXTRA} with the T/S tokens last)"
    arr = _open_npy(path, expected)
    if arr.shape[1] not in (len(symbols), len(symbols) + SCFOUNDATION_EXTRA):
        raise DataError(f"expected shape {expected} for the gene order in {gene_index}, got {arr.shape}", path)
    cols = _restrict(symbols, genes)  # indices < len(symbols): T/S positions are never read
    vectors = mean_over_cells(arr, cols, chunk_bytes)
    return GeneEmbedding(
        [symbols[i] for i in cols],
        vectors,
        {
            "embedder": "precomputed",
            "format": "scfoundation",
            "source_model": "scFoundation",
            "file": _file_id(path),
            "gene_index": str(gene_index),
            "n_cells": int(arr.shape[0]),
            "dims": int(arr.shape[2]),
            "aggregation": "mean over all cells",
        },
    )


def read_torch_dict(path: Path, *, genes: Collection[str] | None = None) -> GeneEmbedding:
    """`{symbol: tensor [D]}` saved with torch.save, loaded with weights_only=True (no arbitrary pickle)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise DataError("torch embedding file not found", path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - weights_only refusals and corrupt files alike
        raise DataError(f"cannot load as a plain {{symbol: tensor}} dict with weights_only=True ({exc})", path) from exc
    if not isinstance(obj, dict) or not obj:
        raise DataError(f"expected a non-empty dict {{gene symbol: tensor [D]}}, got {type(obj).__name__}", path)
    symbols = _upper_unique([str(k) for k in obj], path)
    rows = []
    for key, value in obj.items():
        vec = value.detach().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, np.float32)
        if vec.ndim != 1:
            raise DataError(f"gene {key!r}: expected a 1-D vector, got shape {tuple(vec.shape)}", path)
        if rows and vec.shape != rows[0].shape:
            raise DataError(f"gene {key!r}: vector length {vec.shape[0]} differs from {rows[0].shape[0]}", path)
        rows.append(vec)
    vectors = np.stack(rows)
    if not np.isfinite(vectors).all():
        bad = symbols[int(np.argwhere(~np.isfinite(vectors))[0][0])]
        raise DataError(f"gene {bad!r}: non-finite embedding value", path)
    keep = _restrict(symbols, genes)
    return GeneEmbedding(
        [symbols[i] for i in keep],
        vectors[keep],
        {"embedder": "precomputed", "format": "torch", "file": _file_id(path), "dims": int(vectors.shape[1])},
    )


def _read_mapping(path: Path) -> dict[str, list[str]]:
    """Symbol <-> Ensembl table (CSV/TSV) -> Ensembl ID -> symbols. The Ensembl column is the one
    whose values start with "ENS"; the symbol column is named gene/symbol/gene_name/gene_symbol,
    or else the other column."""
    from scregnet.data import read_table

    df = read_table(path, index_col=None).astype(str)
    if df.shape[1] < 2:
        raise DataError(f"expected two columns (gene symbol, Ensembl ID), found {list(df.columns)}", path)
    share = {c: df[c].str.upper().str.startswith("ENS").mean() for c in df.columns}
    ens_col = max(share, key=share.get)
    if share[ens_col] < 0.5:
        raise DataError(f"no column of Ensembl IDs (values starting with 'ENS') among {list(df.columns)}", path)
    named = [c for c in df.columns if c != ens_col and c.lower() in ("gene", "symbol", "gene_name", "gene_symbol")]
    sym_col = named[0] if named else next(c for c in df.columns if c != ens_col)
    out: dict[str, list[str]] = {}
    for ens, sym in zip(df[ens_col], df[sym_col]):
        out.setdefault(ens.strip(), []).append(sym.strip().upper())
    return out


def read_ensembl_csv(path: Path, mapping: Path | None, *, genes: Collection[str] | None = None) -> GeneEmbedding:
    """Table indexed by Ensembl ID + symbol mapping -> one vector per symbol.

    Every symbol mapped to an ID gets that ID's vector; a symbol mapped to several IDs keeps the
    first one in table order (counted in metadata as `symbol_conflicts`).
    """
    from scregnet.data import read_table

    path, mapping = Path(path), _require(mapping, "symbol <-> Ensembl mapping table")
    df = read_table(path, index_col=0)
    df = df[~df.index.astype(str).str.startswith("<")]  # <cls>, <eos>, <pad> rows
    try:
        values = df.to_numpy(dtype=np.float32)
    except ValueError as exc:
        raise DataError(f"expected Ensembl ID + numeric columns ({exc})", path) from exc
    ens_to_sym = _read_mapping(mapping)
    want = None if genes is None else {str(g).upper() for g in genes}
    symbols: list[str] = []
    rows: list[int] = []
    seen: set[str] = set()
    unmapped = conflicts = 0
    for r, ens in enumerate(df.index.astype(str)):
        syms = ens_to_sym.get(ens.strip())
        if not syms:
            unmapped += 1
            continue
        for s in syms:
            if s in seen:
                conflicts += 1
                continue
            if want is None or s in want:
                seen.add(s)
                symbols.append(s)
                rows.append(r)
    if not symbols:
        raise DataError(f"none of the {len(df)} Ensembl IDs maps to a gene symbol via {mapping}", path)
    vectors = values[rows]
    if not np.isfinite(vectors).all():
        bad = symbols[int(np.argwhere(~np.isfinite(vectors))[0][0])]
        raise DataError(f"gene {bad!r}: non-finite embedding value", path)
    return GeneEmbedding(
        symbols,
        vectors,
        {
            "embedder": "precomputed",
            "format": "ensembl_csv",
            "file": _file_id(path),
            "gene_index": str(mapping),
            "dims": int(values.shape[1]),
            "unmapped_ids": unmapped,
            "symbol_conflicts": conflicts,
        },
    )


def read_table_embedding(path: Path) -> GeneEmbedding:
    """CSV / TSV / parquet indexed by gene symbol (first column), one column per dimension."""
    import pandas as pd

    name = path.name.lower()
    if name.endswith(".parquet"):
        df = pd.read_parquet(path)
        if df.index.dtype.kind in "iu" and df.shape[1] and df[df.columns[0]].dtype == object:
            df = df.set_index(df.columns[0])
    else:
        from scregnet.data import read_table

        df = read_table(path, index_col=0)
    try:
        values = df.to_numpy(dtype=np.float32)
    except ValueError as exc:
        raise DataError(f"embedding table must be gene symbol + numeric columns ({exc})", path) from exc
    if not np.isfinite(values).all():
        r = int(np.argwhere(~np.isfinite(values))[0][0])
        raise DataError(f"row {r + 2} (gene {df.index[r]!r}): non-finite embedding value", path)
    genes = [str(g).upper() for g in df.index]
    return GeneEmbedding(genes, values, {"embedder": "precomputed", "path": str(path), "format": "table"})


def detect_format(path: Path) -> str:
    """Format of an embedding file from its suffix (`table` or `torch`); .npy needs an explicit one."""
    name = Path(path).name.lower().removesuffix(".gz")
    if name.endswith((".pt", ".pth")):
        return "torch"
    if name.endswith((".csv", ".tsv", ".txt", ".parquet")):
        return "table"
    if name.endswith(".npy"):
        raise DataError("a .npy array needs an explicit format: 'scbert' or 'scfoundation'", path)
    raise DataError("cannot tell the embedding format from the extension; set embedder.format", path)


def load_precomputed(
    path: str | Path,
    format: str = "auto",
    gene_index: str | Path | None = None,
    *,
    genes: Collection[str] | None = None,
    chunk_bytes: int = _CHUNK_BYTES,
) -> GeneEmbedding:
    """Read a precomputed gene embedding in one of the formats of the module docstring.

    Args:
        path: the embedding file. format: auto | table | torch | scbert | scfoundation | ensembl_csv.
        gene_index: scBERT gene list / scFoundation gene index / symbol <-> Ensembl table.
        genes: optional symbols to keep (saves reading the rest of a large .npy).
        chunk_bytes: host memory per chunk when averaging a .npy over cells.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("precomputed embedding file not found", path)
    gene_index = Path(gene_index) if gene_index is not None else None
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "scbert":
        emb = read_scbert(path, gene_index, genes=genes, chunk_bytes=chunk_bytes)
    elif fmt == "scfoundation":
        emb = read_scfoundation(path, gene_index, genes=genes, chunk_bytes=chunk_bytes)
    elif fmt == "torch":
        emb = read_torch_dict(path, genes=genes)
    elif fmt == "ensembl_csv":
        emb = read_ensembl_csv(path, gene_index, genes=genes)
    elif fmt == "table":
        emb = read_table_embedding(path)
        if genes is not None:
            want = {str(g).upper() for g in genes}
            keep = [i for i, g in enumerate(emb.genes) if g in want]
            emb = GeneEmbedding([emb.genes[i] for i in keep], emb.vectors[keep], emb.metadata)
    else:
        raise ValueError(
            f"unknown embedding format {fmt!r}; expected auto, table, torch, scbert, scfoundation or ensembl_csv"
        )
    emb.metadata["format"] = fmt
    return emb
