"""Loading expression and priors into one dataset object.

Two sources:
- a BEELINE-layout directory (`BL--ExpressionData.csv[.gz]` genes x cells, `Target.csv`,
  `TF.csv`, `Label.csv`; see ../shared/beeline/README.md);
- an AnnData `.h5ad` (cells x genes; gene names harmonised by `scregnet.genes`) plus one or
  more prior files (pairs CSV/TSV, GMT, ChIP-Atlas; read by `scregnet.priors`).

The dataset keeps AnnData conventions: `adata` is cells x genes, `var_names` are upper-case
gene symbols. Priors (TF -> target symbols) stay as a table until
`label_graph()` turns them into node indices, so validation can report bad rows by name.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scregnet.errors import DataError, ExpressionMissingError

# Prior files are read by scregnet.priors; `read_priors` and the aliases stay importable from here.
from scregnet.priors import PRIOR_COLUMN_ALIASES, read_prior_file, read_prior_files, read_priors  # noqa: F401

EXPRESSION_FILE = "BL--ExpressionData.csv"
# genes x k reduced node features (metacell profiles) that preprocessing stores in `adata.varm`.
CELL_FEATURES_KEY = "cell_features"


@dataclass
class LabelGraph:
    """Priors as node indices.

    Attributes:
        genes: node names, length N (order = expression order).
        tf_index: int64 [T] indices of TFs with at least one positive.
        edges: int64 [E, 2] positive (tf, target) pairs, unique, no self loops.
    """

    genes: list[str]
    tf_index: np.ndarray
    edges: np.ndarray

    @property
    def n_genes(self) -> int:
        """Number of genes (nodes)."""
        return len(self.genes)


@dataclass
class GRNDataset:
    """Expression (cells x genes) + TF list + prior edges (symbols)."""

    name: str
    adata: object  # anndata.AnnData; typed loosely so importing this module stays cheap
    priors: pd.DataFrame  # columns: tf, target, score, source, line (see scregnet.priors)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def genes(self) -> list[str]:
        """Gene symbols in expression order (the nodes)."""
        return list(self.adata.var_names)

    @property
    def tfs(self) -> list[str]:
        """Regulators with at least one measured positive target (the TFs a model can score)."""
        graph = self.label_graph()
        return [graph.genes[i] for i in graph.tf_index]

    def label_graph(self) -> LabelGraph:
        """Known positives as indices; drops self loops, duplicates and unmeasured genes."""
        return label_graph_from_symbols(self.genes, self.priors)

    def zscored_features(self) -> np.ndarray:
        """Node features float32 [genes, C]: each gene's expression z-scored across the cells
        (C = cells), or across the reduced profiles preprocessing stored in
        `varm["cell_features"]` (C = metacells). Dense only at the size of the result."""
        varm = getattr(self.adata, "varm", None)
        if varm is not None and CELL_FEATURES_KEY in varm:
            return _zscore_rows(np.asarray(varm[CELL_FEATURES_KEY], dtype=np.float64))
        x = self.adata.X
        if not sp.issparse(x):  # the computation every BEELINE number was made with
            return _zscore_rows(np.asarray(x).astype(np.float64).T)
        return _zscore_sparse_columns(x)

    def expression_hash(self) -> str:
        """sha256 of the gene names and the expression values (the embed step's cache key)."""
        return expression_content_hash(self.adata)

    def priors_hash(self) -> str:
        """sha256 of the sorted (tf, target) prior pairs."""
        table = self.priors[["tf", "target"]].sort_values(["tf", "target"]).to_csv(index=False)
        return hashlib.sha256(table.encode()).hexdigest()

    # Pipeline artifacts: expression (AnnData, name and sources in `uns`) and priors travel
    # separately, so a change of priors leaves the expression artifact's content unchanged.
    def expression(self):
        """The expression as an AnnData artifact, with the dataset name and sources in `uns`."""
        adata = self.adata.copy()
        adata.uns["dataset"] = self.name
        adata.uns["sources"] = dict(self.sources)
        return adata

    @classmethod
    def from_parts(cls, adata, priors: pd.DataFrame) -> GRNDataset:
        """A dataset from the pipeline's expression and priors artifacts."""
        return cls(
            name=str(adata.uns.get("dataset", "dataset")),
            adata=adata,
            priors=_prior_columns_as_str(priors),
            sources=dict(adata.uns.get("sources", {})),
        )


def _prior_columns_as_str(priors: pd.DataFrame) -> pd.DataFrame:
    """Names as str (artifact round trips may bring categoricals); score and line stay numeric."""
    out = priors.reset_index(drop=True).copy()
    for col in out.columns:
        if col not in ("score", "line"):
            out[col] = out[col].astype(str)
    return out


def label_graph_from_symbols(genes: list[str], priors: pd.DataFrame) -> LabelGraph:
    """Prior pairs (symbols) -> a LabelGraph over `genes` (unmeasured genes and self loops dropped)."""
    index = {g: i for i, g in enumerate(genes)}
    tf = priors["tf"].map(index)
    tg = priors["target"].map(index)
    keep = tf.notna() & tg.notna() & (priors["tf"] != priors["target"])
    edges = (
        np.stack([tf[keep].to_numpy(np.int64), tg[keep].to_numpy(np.int64)], axis=1)
        if keep.any()
        else np.zeros((0, 2), np.int64)
    )
    edges = np.unique(edges, axis=0) if len(edges) else edges
    return LabelGraph(genes=list(genes), tf_index=np.unique(edges[:, 0]), edges=edges)


def _zscore_rows(x: np.ndarray) -> np.ndarray:
    """float64 [rows, C] -> float32, each row z-scored (population std; constant rows -> 0)."""
    mean = x.mean(axis=1, keepdims=True)
    std = x.std(axis=1, keepdims=True)
    std[std == 0] = 1.0  # constant genes become all-zero features rather than NaN
    return ((x - mean) / std).astype(np.float32)


def _zscore_sparse_columns(x, block: int = 256) -> np.ndarray:
    """Cells x genes sparse [n, G] -> float32 [G, n], each gene z-scored over the cells, built
    `block` genes at a time (no float64 copy of the whole matrix)."""
    csc = x.tocsc()
    out = np.empty((x.shape[1], x.shape[0]), dtype=np.float32)
    for lo in range(0, x.shape[1], block):
        out[lo : lo + block] = _zscore_rows(csc[:, lo : lo + block].toarray().astype(np.float64).T)
    return out


HASH_CHUNK = 1 << 20  # elements hashed at a time: bounded temporary copies (8 MB)


def expression_content_hash(adata) -> str:
    """sha256 of a cells x genes AnnData's gene names and X values (`hash_matrix`): the cache key of
    the embed step and of the peer scores. Storage details (float32 vs float64, duplicate sparse
    entries) do not change it; values and gene names do."""
    h = hashlib.sha256()
    h.update("\n".join(map(str, adata.var_names)).encode())
    hash_matrix(h, adata.X)
    return h.hexdigest()


def hash_matrix(h, x) -> None:
    """Feed a matrix into hashlib object `h` in chunks, never densifying.

    Dense: its float32 bytes in row order (the same digest as hashing `x.astype(float32)` whole,
    so hashes of dense data are those of earlier versions). Sparse: format and shape, then the
    data (float32), indices and indptr (int64) arrays of its canonical form (duplicates summed,
    indices sorted: the same content hashes the same).
    """
    if sp.issparse(x):
        fmt = x.format if x.format in ("csr", "csc") else "csr"
        x = x if x.format == fmt else x.tocsr()
        if not x.has_canonical_format:
            x = x.copy()
            x.sum_duplicates()
        h.update(f"{fmt}{tuple(int(d) for d in x.shape)}".encode())
        for array, dtype in ((x.data, np.float32), (x.indices, np.int64), (x.indptr, np.int64)):
            for lo in range(0, array.size, HASH_CHUNK):
                h.update(np.ascontiguousarray(array[lo : lo + HASH_CHUNK], dtype=dtype).tobytes())
        return
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0:
        h.update(np.ascontiguousarray(x, dtype=np.float32).tobytes())
        return
    rows = max(1, HASH_CHUNK // max(1, int(np.prod(x.shape[1:]))))
    for lo in range(0, x.shape[0], rows):
        h.update(np.ascontiguousarray(x[lo : lo + rows], dtype=np.float32).tobytes())


def find_file(directory: Path, name: str) -> Path | None:
    """`name` or `name.gz` inside `directory`, whichever exists."""
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_table(path: Path, *, index_col: int | None = 0, expect: tuple[str, ...] = ()) -> pd.DataFrame:
    """Read a CSV/TSV (plain or .gz) with errors that name the file and what was expected."""
    path = Path(path)
    if not path.is_file():
        raise DataError("file not found", path)
    if path.stat().st_size == 0:
        raise DataError("file is empty", path)
    sep = "\t" if path.name.removesuffix(".gz").endswith((".tsv", ".txt")) else ","
    try:
        df = pd.read_csv(path, index_col=index_col, sep=sep)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"cannot decompress/read ({exc}); the file looks truncated or corrupt", path) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError("file has no rows or header", path) from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"not a valid {'TSV' if sep == chr(9) else 'CSV'} table: {exc}", path) from exc
    missing = [c for c in expect if c not in df.columns]
    if missing:
        hint = ""
        if len(df.columns) <= 1:
            opener = gzip.open if path.name.endswith(".gz") else open
            with opener(path, "rt", errors="replace") as fh:
                first = fh.readline()
            other = next((d for d in (";", "\t", "|") if d != sep and d in first), None)
            if other:
                hint = f" (the header is split by {other!r}: wrong delimiter? expected {sep!r})"
        raise DataError(
            f"missing column(s) {missing}; expected columns {list(expect)}, found {list(df.columns)}{hint}", path
        )
    return df


def load_beeline_labels(directory: str | Path) -> tuple[list[str], list[str], pd.DataFrame]:
    """Genes, TFs and prior edges (symbols) of a BEELINE directory; needs no expression.

    Returns:
        genes: node names in index order (from Target.csv).
        tfs: TF symbols (from TF.csv).
        priors: DataFrame with columns tf, target, source.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError("dataset directory not found", directory)
    paths = {}
    for name in ("Target.csv", "TF.csv", "Label.csv"):
        p = find_file(directory, name)
        if p is None:
            raise DataError(
                f"missing {name} (or {name}.gz); a BEELINE dataset needs Target.csv, TF.csv and Label.csv", directory
            )
        paths[name] = p
    target = read_table(paths["Target.csv"], expect=("Gene", "index"))
    tf = read_table(paths["TF.csv"], expect=("TF", "index"))
    label = read_table(paths["Label.csv"], expect=("TF", "Target"))

    n = len(target)
    idx = pd.to_numeric(target["index"], errors="coerce")
    if idx.isna().any():
        row = int(np.flatnonzero(idx.isna().to_numpy())[0])
        raise DataError(
            f"row {row + 2}: column 'index' must be an integer, got {str(target['index'].iloc[row])!r}",
            paths["Target.csv"],
        )
    if sorted(idx.astype(int)) != list(range(n)):
        raise DataError(
            f"column 'index' must be a permutation of 0..{n - 1} (one row per expression row)", paths["Target.csv"]
        )
    genes_by_index = pd.Series(
        target["Gene"].astype(str).str.upper().to_numpy(), index=idx.astype(int).to_numpy()
    ).sort_index()
    genes = list(genes_by_index)

    for path, frame, cols in ((paths["TF.csv"], tf, ("index",)), (paths["Label.csv"], label, ("TF", "Target"))):
        for col in cols:
            values = pd.to_numeric(frame[col], errors="coerce")
            bad = values.isna() | (values < 0) | (values >= n) | (values % 1 != 0)
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataError(
                    f"row {row + 2}, column '{col}': node index {str(frame[col].iloc[row])!r} is out of range; "
                    f"expected an integer in 0..{n - 1} (Target.csv has {n} genes)",
                    path,
                )
    tfs = [genes[int(i)] for i in tf["index"]]
    priors = pd.DataFrame(
        {
            "tf": [genes[int(i)] for i in label["TF"]],
            "target": [genes[int(i)] for i in label["Target"]],
            "score": np.nan,
            "source": str(paths["Label.csv"]),
            "line": np.arange(len(label), dtype=np.int64) + 2,  # header = line 1
        }
    )
    return genes, tfs, priors


def load_beeline(directory: str | Path, name: str | None = None) -> GRNDataset:
    """A BEELINE-layout directory -> GRNDataset (raises ExpressionMissingError without expression)."""
    import anndata as ad

    directory = Path(directory)
    genes, tfs, priors = load_beeline_labels(directory)
    expr_path = find_file(directory, EXPRESSION_FILE)
    if expr_path is None:
        raise ExpressionMissingError(
            f"no {EXPRESSION_FILE} (or .gz) here: labels exist but the expression matrix is absent, "
            "so this dataset cannot be trained on",
            directory,
        )
    expr = read_table(expr_path)
    # pandas renames duplicated header cells ("c", "c.1"): look at the raw header instead.
    header = [str(c) for c in pd.read_csv(expr_path, header=None, nrows=1).iloc[0, 1:]]
    dup_cells = sorted({c for c in header if header.count(c) > 1})
    if dup_cells:
        raise DataError(
            f"duplicated cell names in the header, e.g. {dup_cells[:5]}; expected one column per distinct cell",
            expr_path,
        )
    if expr.shape[1] == 0:
        raise DataError("expression has no cell columns; expected genes as rows and cells as columns", expr_path)
    values = expr.apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & expr.notna()
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise DataError(
            f"row {r + 2} (gene {expr.index[r]!r}), column {expr.columns[c]!r}: value {str(expr.iat[r, c])!r} is not a number",
            expr_path,
        )
    expr_genes = [str(g).upper() for g in expr.index]
    if len(expr_genes) != len(genes):
        raise DataError(
            f"has {len(expr_genes)} gene rows but Target.csv lists {len(genes)} genes; expected one row per gene in index order",
            expr_path,
        )
    mismatch = [i for i, (a, b) in enumerate(zip(expr_genes, genes)) if a != b]
    if mismatch:
        i = mismatch[0]
        raise DataError(
            f"row {i + 2}: gene {expr_genes[i]!r} does not match Target.csv index {i} ({genes[i]!r}); "
            f"{len(mismatch)} row(s) out of order",
            expr_path,
        )
    adata = ad.AnnData(
        X=values.to_numpy(dtype=np.float32).T,  # cells x genes
        obs=pd.DataFrame(index=pd.Index([str(c) for c in expr.columns], name="cell")),
        var=pd.DataFrame(index=pd.Index(genes, name="gene")),
    )
    return GRNDataset(
        name=name or dataset_name(directory),
        adata=adata,
        priors=priors,
        sources={"expression": str(expr_path), "labels": str(find_file(directory, "Label.csv"))},
    )


def read_h5ad(h5ad: str | Path, symbols_column: str | None = None):
    """An `.h5ad` file as AnnData (cells x genes) with harmonised gene names (`scregnet.genes`).

    The harmonisation report is kept in `uns["gene_harmonization"]` so validation can show it.
    """
    import anndata as ad

    from scregnet.genes import harmonize_genes

    h5ad = Path(h5ad)
    if not h5ad.is_file():
        raise DataError("file not found", h5ad)
    try:
        adata = ad.read_h5ad(h5ad)
    except Exception as exc:  # h5py raises OSError/KeyError variants for truncated files
        raise DataError(
            f"cannot read as .h5ad ({type(exc).__name__}: {exc}); the file looks truncated or corrupt", h5ad
        ) from exc
    adata, report = harmonize_genes(adata, symbols_column=symbols_column, source=h5ad)
    # Kept with the expression (h5ad-writable: no None) so validation can report it as warnings.
    adata.uns["gene_harmonization"] = {k: v for k, v in report.items() if v is not None}
    return adata


def load_h5ad(
    h5ad: str | Path,
    priors: list[str | Path],
    name: str | None = None,
    *,
    symbols_column: str | None = None,
    prior_format: str = "auto",
    prior_tf: str | None = None,
    prior_min_score: float | None = None,
) -> GRNDataset:
    """AnnData (cells x genes) + prior files -> GRNDataset; gene names harmonised (`scregnet.genes`)."""
    from scregnet.genes import canonicalize_priors, gene_aliases

    h5ad = Path(h5ad)
    adata = read_h5ad(h5ad, symbols_column)
    if not priors:
        raise DataError("no priors given; pass --priors FILE (CSV/TSV with tf,target columns, GMT or ChIP-Atlas)")
    table = read_prior_files(priors, format=prior_format, tf=prior_tf, min_score=prior_min_score)
    table = canonicalize_priors(table, gene_aliases(adata))  # priors naming Ensembl IDs meet symbols
    return GRNDataset(
        name=name or h5ad.stem,
        adata=adata,
        priors=table,
        sources={"expression": str(h5ad), "priors": ",".join(str(p) for p in priors)},
    )


def dataset_name(directory: str | Path) -> str:
    """`.../Specific/hESC/TFs500` -> `hESC/TFs500`; any other directory -> its name."""
    directory = Path(directory).resolve()
    if directory.name.lower().startswith("tfs"):
        return f"{directory.parent.name}/{directory.name}"
    return directory.name


def dataset_name_of(config) -> str:
    """The dataset's name from a `DataConfig`: `name` if set, else from the BEELINE directory, else
    the `.h5ad` file's stem. The one rule the registry, MLflow tags and run names follow."""
    if config.name:
        return config.name
    if config.path is not None:
        return dataset_name(config.path)
    if config.h5ad is not None:
        return Path(config.h5ad).stem
    return "dataset"


def check_inputs(config) -> None:
    """Fail fast, before any orchestration starts: every input path of a `DataConfig` exists."""
    if config.path is None and config.h5ad is None:
        raise DataError("no input: set data.path (BEELINE directory) or data.h5ad + data.priors in the config")
    if config.path is not None and not Path(config.path).is_dir():
        raise DataError("dataset directory not found (expected a BEELINE-layout directory)", config.path)
    if config.h5ad is not None and not Path(config.h5ad).is_file():
        raise DataError("file not found (expected an .h5ad file)", config.h5ad)
    for path in config.priors:
        if not Path(path).is_file():
            raise DataError("priors file not found", path)


def _prior_options(config) -> dict:
    """`read_prior_file` options of a DataConfig (absent fields: defaults)."""
    return {
        "format": config.prior_format,
        "tf": config.prior_tf,
        "min_score": config.prior_min_score,
    }


def load_dataset(config) -> GRNDataset:
    """From a `DataConfig`: BEELINE directory, or h5ad + priors."""
    if config.path is not None:
        ds = load_beeline(config.path, name=dataset_name_of(config))
        if config.priors:  # extra priors on top of Label.csv (or instead of it: replace_labels)
            extra = read_prior_files(config.priors, **_prior_options(config))
            if config.replace_labels:
                ds.priors = extra
                ds.sources["labels"] = ",".join(str(p) for p in config.priors)
            else:
                ds.priors = pd.concat([ds.priors, extra], ignore_index=True)
        return ds
    if config.h5ad is not None:
        return load_h5ad(
            config.h5ad,
            config.priors,
            name=dataset_name_of(config),
            symbols_column=config.gene_symbols,
            **{f"prior_{k}": v for k, v in _prior_options(config).items()},
        )
    raise DataError("no input: set data.path (BEELINE directory) or data.h5ad + data.priors in the config")
