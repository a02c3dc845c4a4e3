"""Batch inference: score every TF x gene pair with a registered model -> a ranked network.

The model comes from the MLflow registry (`scregnet-<dataset>`), by alias (`champion`,
`challenger`) or version number, read through `registry.load_bundle` (checksums verified,
no pickle). TFs: `--tfs FILE` if given, else the TFs recorded in the model (models trained
by the pipeline store them), else every gene.

Genome-wide networks (1,500 TFs x 30,000 genes = 45M pairs) are scored in blocks of TFs and
written in chunks; pairs never exist as Python objects. Two orders:
- `score` (default): the whole network ranked by score (`rank` 1..n). Holds one float32 score and
  one int64 key per kept pair (~12 bytes a pair: 45M pairs ~ 0.6 GB), sorted with numpy.
- `tf`: TF by TF, each TF's targets by score (`tf_rank`); memory bounded by one block of TFs,
  whatever the network's size.
`--top-k-per-tf` and `--min-score` filter each block before anything is kept. Every row says
whether the pair was a training positive of the model (`known`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scregnet import registry
from scregnet.serialize import ModelBundle
from scregnet.tracking import as_tracker, with_retries

OUTPUT_SUFFIXES = (".csv", ".tsv", ".parquet", ".graphml")
ORDERS = ("score", "tf")
COLUMNS = ["tf", "target", "score", "rank", "known"]  # of a network in score order
PAIRS_PER_BLOCK = 1_000_000  # pairs scored per model call (bounds the per-block memory)
ROWS_PER_CHUNK = 1_000_000  # rows per written chunk
GRAPHML_MAX_EDGES = 2_000_000  # networkx holds the whole graph: larger networks go to parquet
log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    """A registered model version and its bundle."""

    name: str
    version: str
    bundle: ModelBundle


def resolve_version(name: str, model: str = "champion", config=None) -> str:
    """`champion` / `challenger` (any alias) or a version number -> version number (str)."""
    c = as_tracker(config).client
    if str(model).isdigit():
        mv = with_retries(lambda: c.get_model_version(name, str(model)), f"read {name} version {model}")
        return str(mv.version)
    mv = with_retries(lambda: c.get_model_version_by_alias(name, str(model)), f"resolve {name}@{model}")
    return str(mv.version)


def load_model(dataset: str, model: str = "champion", config=None, prefix: str | None = None) -> LoadedModel:
    """Download a registered version (alias or number) of a dataset's model and read its bundle."""
    from scregnet.config import RegistryConfig

    prefix = prefix or (config.registry.model_prefix if config is not None else RegistryConfig().model_prefix)
    name = registry.model_name(prefix, dataset)
    version = resolve_version(name, model, config)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = registry.load_bundle(name, version, tmp, config)
    return LoadedModel(name, version, bundle)


def read_tf_list(path: str | Path) -> list[str]:
    """TF symbols from BEELINE's TF.csv (column TF), a table with a tf column, or one per line."""
    path = Path(path)
    text = path.read_text().splitlines()
    header = [h.strip().lower() for h in (text[0].split("," if "," in text[0] else "\t") if text else [])]
    if "tf" in header:
        from scregnet.data import read_table

        frame = read_table(path, index_col=None)
        col = next(c for c in frame.columns if str(c).strip().lower() == "tf")
        return [str(t).strip().upper() for t in frame[col]]
    return [line.strip().upper() for line in text if line.strip()]


@dataclass
class NetworkSpec:
    """What to write: which TFs, in which order, and the filters applied per TF block."""

    tfs: list[str] | None = None  # None: the model's TFs (else every gene)
    order: str = "score"  # score | tf (see the module docstring)
    top: int | None = None  # the N best pairs overall
    top_k_per_tf: int | None = None  # each TF's K best targets
    min_score: float | None = None
    pairs_per_block: int = PAIRS_PER_BLOCK


def _tf_indices(bundle: ModelBundle, tfs: list[str] | None) -> np.ndarray:
    if tfs is None:
        tfs = list(bundle.meta.get("tfs") or bundle.genes)
    tfs = list(dict.fromkeys(str(t).strip().upper() for t in tfs))
    unknown = [t for t in tfs if t not in bundle.index]
    if unknown:
        raise KeyError(f"TFs not in the model's gene set: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
    return np.array([bundle.index[t] for t in tfs], dtype=np.int64)


def _known_keys(bundle: ModelBundle) -> np.ndarray:
    """Sorted int64 keys tf * N + target of the model's training positives."""
    n = len(bundle.genes)
    if bundle.positives is not None:
        pos = bundle.positives.cpu().numpy().astype(np.int64)
    else:  # older bundles: the undirected graph (both directions count as known)
        pos = bundle.edge_index.cpu().numpy().T.astype(np.int64)
    return np.unique(pos[:, 0] * n + pos[:, 1]) if len(pos) else np.zeros(0, np.int64)


def warn_tfs_without_positives(bundle: ModelBundle, tf_idx: np.ndarray, log_fn=log.warning) -> list[str]:
    """Name the TFs with no training positive: their scores rest on the prior alone and rank low."""
    with_pos = set((_known_keys(bundle) // len(bundle.genes)).tolist())
    missing = [bundle.genes[i] for i in tf_idx if int(i) not in with_pos]
    if missing:
        log_fn(
            f"{len(missing)} TF(s) had no training positive, so their targets are scored without any known "
            f"edge of their own (near-constant scores that rank at the bottom): {missing[:20]}"
            + (" ..." if len(missing) > 20 else "")
        )
    return missing


def score_blocks(bundle: ModelBundle, tf_idx: np.ndarray, spec: NetworkSpec) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Per block of TFs: (int64 keys tf * N + target [k], float32 scores [k]) of the kept pairs.

    Self pairs are left out; `top_k_per_tf` and `min_score` are applied inside the block.
    """
    n = len(bundle.genes)
    per_block = max(1, spec.pairs_per_block // max(n, 1))
    targets = np.arange(n, dtype=np.int64)
    for lo in range(0, len(tf_idx), per_block):
        block = tf_idx[lo : lo + per_block]
        pairs = np.stack([np.repeat(block, n), np.tile(targets, len(block))], axis=1)
        scores = bundle.score_indices(pairs).astype(np.float32).reshape(len(block), n)
        scores[np.arange(len(block)), block] = np.nan  # self pairs
        keep = ~np.isnan(scores)
        if spec.min_score is not None:
            keep &= scores >= spec.min_score
        if spec.top_k_per_tf is not None and spec.top_k_per_tf < n:
            ranked = np.where(keep, scores, -np.inf)
            cut = np.argpartition(-ranked, spec.top_k_per_tf - 1, axis=1)[:, : spec.top_k_per_tf]
            top = np.zeros_like(keep)
            np.put_along_axis(top, cut, True, axis=1)
            keep &= top
        rows, cols = np.nonzero(keep)
        yield block[rows] * n + cols, scores[rows, cols]


def _name_ranks(genes: list[str]) -> np.ndarray:
    """Position of each gene in alphabetical order (ties of score are broken by names, as before)."""
    ranks = np.empty(len(genes), dtype=np.int32)
    ranks[np.argsort(np.asarray(genes, dtype=object), kind="stable")] = np.arange(len(genes))
    return ranks


def _ranked(keys: np.ndarray, scores: np.ndarray, n: int, names: np.ndarray) -> np.ndarray:
    """Order of `keys` by score (descending), then TF name, then target name (`names`: `_name_ranks`)."""
    return np.lexsort((names[keys % n], names[keys // n], np.negative(scores, dtype=np.float32)))


def network_chunks(bundle: ModelBundle, spec: NetworkSpec) -> Iterator[pd.DataFrame]:
    """The network as DataFrames of at most ROWS_PER_CHUNK rows, in `spec.order`.

    Columns: tf, target, score, known, and `rank` (order score: 1..n over the whole network) or
    `tf_rank` (order tf: 1..k within the TF).
    """
    if spec.order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {spec.order!r}")
    n, names = len(bundle.genes), np.asarray(bundle.genes, dtype=object)
    tf_idx = _tf_indices(bundle, spec.tfs)
    warn_tfs_without_positives(bundle, tf_idx)
    known = _known_keys(bundle)
    name_ranks = _name_ranks(bundle.genes)  # once: every block's ranking breaks ties by name

    def frame(keys: np.ndarray, scores: np.ndarray, rank_name: str, ranks: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "tf": names[keys // n],
                "target": names[keys % n],
                "score": scores.astype(np.float64),
                rank_name: ranks,
                "known": np.isin(keys, known),
            }
        )

    if spec.order == "tf" and spec.top is None:
        for keys, scores in score_blocks(bundle, tf_idx, spec):
            tf = keys // n
            order = _ranked(keys, scores, n, name_ranks)
            order = order[np.argsort(tf[order], kind="stable")]  # grouped by TF, by score within
            keys, scores, tf = keys[order], scores[order], tf[order]
            starts = np.r_[0, np.flatnonzero(np.diff(tf)) + 1]
            tf_rank = np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)])) + 1
            for lo in range(0, len(keys), ROWS_PER_CHUNK):
                sl = slice(lo, lo + ROWS_PER_CHUNK)
                yield frame(keys[sl], scores[sl], "tf_rank", tf_rank[sl])
        return
    keys_parts, score_parts = [], []
    for keys, scores in score_blocks(bundle, tf_idx, spec):
        keys_parts.append(keys)
        score_parts.append(scores)
        if spec.top is not None:  # a running top-N keeps memory at N + one block
            keys, scores = np.concatenate(keys_parts), np.concatenate(score_parts)
            if len(keys) > spec.top:
                order = _ranked(keys, scores, n, name_ranks)[: spec.top]
                keys, scores = keys[order], scores[order]
            keys_parts, score_parts = [keys], [scores]
    keys = np.concatenate(keys_parts) if keys_parts else np.zeros(0, np.int64)
    scores = np.concatenate(score_parts) if score_parts else np.zeros(0, np.float32)
    order = _ranked(keys, scores, n, name_ranks)
    if spec.top is not None:
        order = order[: spec.top]
    for lo in range(0, len(order), ROWS_PER_CHUNK):
        idx = order[lo : lo + ROWS_PER_CHUNK]
        yield frame(keys[idx], scores[idx], "rank", np.arange(lo + 1, lo + 1 + len(idx)))


def score_all_pairs(bundle: ModelBundle, tfs: list[str] | None = None) -> pd.DataFrame:
    """Every (TF, gene) pair except self pairs, scored, best first, with `rank` 1..n (in memory)."""
    parts = list(network_chunks(bundle, NetworkSpec(tfs=tfs)))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


def write_network(chunks: Iterator[pd.DataFrame], out: str | Path, meta: dict | None = None) -> tuple[Path, dict]:
    """Stream DataFrame chunks to CSV / TSV / parquet, or a directed GraphML graph; returns (path, summary).

    The file appears only when complete (written under a temporary name, then renamed).
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"{out}: unsupported output type; use one of {', '.join(OUTPUT_SUFFIXES)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    summary = {"pairs": 0, "tfs": set(), "known": 0}
    try:
        if suffix == ".graphml":
            _write_graphml(chunks, tmp, meta, summary)
        elif suffix == ".parquet":
            _write_parquet(chunks, tmp, meta, summary)
        else:
            for i, chunk in enumerate(chunks):
                _count(summary, chunk)
                chunk.to_csv(
                    tmp,
                    mode="w" if i == 0 else "a",
                    header=i == 0,
                    index=False,
                    sep="\t" if suffix == ".tsv" else ",",
                    float_format="%.6g",
                )
            if not summary["pairs"]:
                pd.DataFrame(columns=COLUMNS).to_csv(tmp, index=False)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    summary["tfs"] = len(summary["tfs"])
    return out, summary


def _count(summary: dict, chunk: pd.DataFrame) -> None:
    summary["pairs"] += len(chunk)
    summary["known"] += int(chunk["known"].sum())
    summary["tfs"].update(chunk["tf"].unique().tolist())


def _write_parquet(chunks, tmp: Path, meta: dict | None, summary: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    try:
        for chunk in chunks:
            _count(summary, chunk)
            table = pa.Table.from_pandas(chunk, preserve_index=False)
            if writer is None:
                schema = table.schema.with_metadata({k: str(v) for k, v in (meta or {}).items()})
                writer = pq.ParquetWriter(tmp, schema)
            writer.write_table(table.cast(writer.schema))
        if writer is None:  # nothing passed the filters: an empty table with the columns
            empty = pd.DataFrame({"tf": [], "target": [], "score": [], "rank": [], "known": []})
            pq.write_table(pa.Table.from_pandas(empty, preserve_index=False), tmp)
    finally:
        if writer is not None:
            writer.close()


def _write_graphml(chunks, tmp: Path, meta: dict | None, summary: dict) -> None:
    import networkx as nx

    g = nx.DiGraph(**{k: str(v) for k, v in (meta or {}).items()})
    for chunk in chunks:
        _count(summary, chunk)
        if summary["pairs"] > GRAPHML_MAX_EDGES:
            raise ValueError(
                f"more than {GRAPHML_MAX_EDGES:,} edges do not fit a GraphML graph in memory: write .parquet, or "
                "filter with --top, --top-k-per-tf or --min-score"
            )
        rank_col = "rank" if "rank" in chunk else "tf_rank"
        for tf, target, score, rank, known in zip(
            chunk["tf"], chunk["target"], chunk["score"], chunk[rank_col], chunk["known"]
        ):
            g.add_edge(tf, target, score=float(score), rank=int(rank), known=bool(known))
    nx.write_graphml(g, tmp)


def predict(
    dataset: str,
    out: str | Path,
    model: str = "champion",
    config=None,
    spec: NetworkSpec | None = None,
) -> tuple[Path, dict, LoadedModel]:
    """Score (TF, gene) pairs with a registered model and stream the network to `out`.

    Returns (path, summary: pairs, tfs, known, model name and version, order, filters, seconds), loaded model.
    """
    import time

    spec = spec or NetworkSpec()
    t0 = time.perf_counter()
    loaded = load_model(dataset, model, config)
    meta = {"model": loaded.name, "version": loaded.version, "dataset": dataset, "order": spec.order}
    path, summary = write_network(network_chunks(loaded.bundle, spec), out, meta)
    summary.update(meta, seconds=round(time.perf_counter() - t0, 2))
    return path, summary, loaded
