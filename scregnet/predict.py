"""Batch inference: score every TF x gene pair with a registered model -> a ranked network.

The model comes from the MLflow registry (`scregnet-<dataset>`), by alias (`champion`,
`challenger`) or version number, read through `registry.load_bundle` (checksums verified,
no pickle). TFs: `--tfs FILE` if given, else the TFs recorded in the model (models trained
by the pipeline store them), else every gene.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scregnet import registry
from scregnet.serialize import ModelBundle
from scregnet.tracking import as_tracker, with_retries

OUTPUT_SUFFIXES = (".csv", ".tsv", ".parquet", ".graphml")


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


def score_all_pairs(bundle: ModelBundle, tfs: list[str] | None = None, batch_size: int = 200_000) -> pd.DataFrame:
    """Every (TF, gene) pair except self pairs, scored, best first, with `rank` 1..n."""
    genes = bundle.genes
    if tfs is None:
        tfs = list(bundle.meta.get("tfs") or genes)
    tfs = list(dict.fromkeys(str(t).upper() for t in tfs))
    unknown = [t for t in tfs if t not in bundle.index]
    if unknown:
        raise KeyError(f"TFs not in the model's gene set: {unknown[:10]}{' ...' if len(unknown) > 10 else ''}")
    tf_idx = np.array([bundle.index[t] for t in tfs], dtype=np.int64)
    n = len(genes)
    tf_col = np.repeat(tf_idx, n)
    tg_col = np.tile(np.arange(n, dtype=np.int64), len(tf_idx))
    keep = tf_col != tg_col
    pairs = np.stack([tf_col[keep], tg_col[keep]], axis=1)
    scores = np.empty(len(pairs), dtype=np.float64)
    for i in range(0, len(pairs), batch_size):
        scores[i : i + batch_size] = bundle.score_indices(pairs[i : i + batch_size])
    names = np.asarray(genes, dtype=object)
    frame = pd.DataFrame({"tf": names[pairs[:, 0]], "target": names[pairs[:, 1]], "score": scores})
    frame = frame.sort_values(["score", "tf", "target"], ascending=[False, True, True], kind="mergesort")
    frame = frame.reset_index(drop=True)
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    return frame


def write_network(frame: pd.DataFrame, out: str | Path, meta: dict | None = None) -> Path:
    """CSV / TSV / parquet table, or a directed GraphML graph (edge attributes score, rank)."""
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ValueError(f"{out}: unsupported output type; use one of {', '.join(OUTPUT_SUFFIXES)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    if suffix == ".parquet":
        frame.to_parquet(tmp, index=False)
    elif suffix == ".graphml":
        import networkx as nx

        g = nx.DiGraph(**{k: str(v) for k, v in (meta or {}).items()})
        for row in frame.itertuples(index=False):
            g.add_edge(row.tf, row.target, score=float(row.score), rank=int(row.rank))
        nx.write_graphml(g, tmp)
    else:
        frame.to_csv(tmp, index=False, sep="\t" if suffix == ".tsv" else ",", float_format="%.6g")
    tmp.replace(out)
    return out


def predict(
    dataset: str,
    out: str | Path,
    model: str = "champion",
    config=None,
    tfs: list[str] | None = None,
    top: int | None = None,
    min_score: float | None = None,
) -> tuple[Path, pd.DataFrame, LoadedModel]:
    """Score every (TF, gene) pair with a registered model and write the ranked network to `out`."""
    loaded = load_model(dataset, model, config)
    frame = score_all_pairs(loaded.bundle, tfs)
    if min_score is not None:
        frame = frame[frame["score"] >= min_score]
    if top is not None:
        frame = frame.head(top)
    path = write_network(frame, out, {"model": loaded.name, "version": loaded.version, "dataset": dataset})
    return path, frame, loaded
