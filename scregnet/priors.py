"""Prior files (TF -> target gene) in the formats labs download, read into one table.

`read_prior_file(path, format="auto", tf=None, min_score=None)` reads one file, plain or gzipped
(detected by its magic bytes, so a `.gz` suffix is not required). Formats:

- **pairs**: a CSV/TSV table with a TF and a target column (`PRIOR_COLUMN_ALIASES`, matched
  case-insensitively: `tf,target`, BEELINE's `Gene1,Gene2`, TFLink's `Name.TF`/`Name.Target`,
  OmniPath/CollecTRI's `source[_genesymbol]`/`target[_genesymbol]`, RegNetwork's `regulator`,
  ...), an optional score column (`SCORE_COLUMN_ALIASES`), other columns ignored. The delimiter
  follows the suffix (`.csv` comma; `.tsv`/`.txt`/`.tab` tab; otherwise tab if the header has
  one). TRRUST's raw download (no header; TF, target, Activation|Repression|Unknown, PMIDs) is
  recognised by its third column. A table with a target column and no TF column takes its TF
  from `tf`.
- **gmt**: a gene-set library (ChEA, ENCODE, TFLink): one set per line, tab-separated, no header:
  set name, description (always skipped, often empty), then the targets, a variable number per
  line; empty fields are skipped, `#` lines and blank lines too. The TF is the set name up to its
  first space or underscore (`POU5F1 ChIP-seq ESC` -> POU5F1, ChEA's
  `SOX2_20726797_ChIP-Seq_ESCs_Mouse` -> SOX2). Targets written `GENE,weight` (Enrichr's weighted
  libraries) give the score.
- **chip-atlas**: a ChIP-Atlas "target genes" table (`{TF}.{1|5|10}.tsv`): columns
  `Target_genes`, `{TF}|Average`, one per experiment, `STRING`. Only the target and the Average
  columns are read (usecols; files carry thousands of experiment columns); score = Average (mean
  MACS2 score). The STRING column (protein-interaction evidence, not binding) is ignored. The TF
  comes from `tf`, else the `{TF}|Average` header, else the file name.

`format="auto"`: `.gmt[.gz]` -> gmt; a header with `Target_genes` and an `Average`/`{TF}|Average`
column -> chip-atlas; tab-separated lines of 3+ fields with varying lengths or an empty/URL
second field -> gmt; else pairs.

Result columns: tf, target (canonical names, see `scregnet.genes`: upper-case, Ensembl versions
stripped), score (float, NaN where the format has none), source (the file), line (the line of the
file the pair came from; header = line 1). `min_score` keeps pairs with score >= min_score; it
needs a numeric score. Every error is a `DataError` naming the file, the line or column, and what
was expected.
"""

from __future__ import annotations

import codecs
import gzip
import logging
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from scregnet.errors import DataError
from scregnet.genes import canonical_gene_names

log = logging.getLogger(__name__)

PRIOR_FORMATS = ("auto", "pairs", "gmt", "chip-atlas")
# What the prior watcher should accept (lower-case; compare against the lower-cased file name).
PRIOR_FILE_SUFFIXES = (".csv", ".tsv", ".txt", ".gmt", ".csv.gz", ".tsv.gz", ".txt.gz", ".gmt.gz")
# First alias present wins, so gene-symbol columns come before ID columns (OmniPath has both
# `source` (UniProt) and `source_genesymbol`).
PRIOR_COLUMN_ALIASES = {
    "tf": ("tf", "gene1", "source_genesymbol", "name.tf", "tf_symbol", "tf_name", "regulator", "source"),
    "target": (
        "target_genesymbol",
        "name.target",
        "target_symbol",
        "target_name",
        "target_gene",
        "target",
        "gene2",
        "gene",
    ),
}
SCORE_COLUMN_ALIASES = ("score", "weight", "combined_score", "confidence_score")
TRRUST_MODES = {"activation", "repression", "unknown"}
SNIFF_BYTES = 1 << 16
OUTPUT_COLUMNS = ["tf", "target", "score", "source", "line"]
_CHIP_ATLAS_NAME = re.compile(r"^(?P<tf>.+?)\.(?:1|5|10)\.tsv$", re.IGNORECASE)
_DECOMPRESS_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)


@dataclass
class _Head:
    """The first bytes of a file, decompressed and decoded."""

    gz: bool
    lines: list[str]  # complete lines of the first SNIFF_BYTES (at least one, maybe cut)


def read_prior_file(
    path: str | Path, *, format: str = "auto", tf: str | None = None, min_score: float | None = None
) -> pd.DataFrame:
    """One prior file (pairs CSV/TSV, GMT, ChIP-Atlas; plain or gzipped) -> tf, target, score, source, line."""
    path = Path(path)
    if format not in PRIOR_FORMATS:
        raise DataError(f"unknown prior format {format!r}; expected one of {', '.join(PRIOR_FORMATS)}", path)
    head = _sniff(path)
    fmt = _detect(path, head) if format == "auto" else format
    reader = {"pairs": _read_pairs, "gmt": _read_gmt, "chip-atlas": _read_chip_atlas}[fmt]
    try:
        out = reader(path, head, tf=tf, min_score=min_score)
    except _DECOMPRESS_ERRORS as exc:
        raise DataError(f"cannot decompress ({exc}); the file looks truncated or corrupt", path) from exc
    except UnicodeDecodeError as exc:
        line = _first_undecodable_line(path, head.gz)
        raise DataError(
            f"line {line}: not UTF-8 text ({exc.reason}); expected a text table saved as UTF-8", path
        ) from exc
    log.info("%s: %s priors, %d pairs, %d TFs", path, fmt, len(out), out["tf"].nunique())
    return out


def read_prior_files(
    paths, *, format: str = "auto", tf: str | None = None, min_score: float | None = None
) -> pd.DataFrame:
    """Several prior files -> one table (same columns as `read_prior_file`)."""
    frames = [read_prior_file(p, format=format, tf=tf, min_score=min_score) for p in paths]
    return pd.concat(frames, ignore_index=True) if frames else _frame([], [], [], "", [])


def read_priors(path: str | Path, **options) -> pd.DataFrame:
    """Kept for existing callers: `read_prior_file`."""
    return read_prior_file(path, **options)


def gmt_tf_symbol(set_name: str) -> str:
    """TF of a GMT set name: the name up to its first space or underscore."""
    return re.split(r"[\s_]+", set_name.strip(), maxsplit=1)[0]


# ------------------------------------------------------------------------------------------
# opening and sniffing


def _sniff(path: Path) -> _Head:
    if not path.is_file():
        raise DataError("file not found", path)
    if path.stat().st_size == 0:
        raise DataError("file is empty", path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    gz = magic[:2] == b"\x1f\x8b"
    if magic == b"PK\x03\x04":
        raise DataError("is a ZIP archive (an Excel workbook?), not a text table; export it as CSV/TSV", path)
    if magic == b"\x89HDF":
        raise DataError("is an HDF5 file (an .h5ad?), not a priors table; expected CSV/TSV, GMT or ChIP-Atlas", path)
    try:
        with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
            data = fh.read(SNIFF_BYTES)
            more = bool(fh.read(1))
    except _DECOMPRESS_ERRORS as exc:
        raise DataError(f"cannot decompress ({exc}); the file looks truncated or corrupt", path) from exc
    if not data.strip():
        raise DataError("file is empty" + (" after decompression" if gz else ""), path)
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise DataError(f"line {line}: binary content (NUL bytes); expected a text table", path)
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=not more)
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"line {line}: not UTF-8 text ({exc.reason}); expected a text table saved as UTF-8", path
        ) from exc
    lines = text.splitlines()
    if more and len(lines) > 1:
        lines = lines[:-1]  # the last one is cut
    return _Head(gz=gz, lines=lines)


def _open_text(path: Path, gz: bool):
    # newline="" keeps "\r\n" so line numbers count physical lines; callers strip it.
    if gz:
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _first_undecodable_line(path: Path, gz: bool) -> int | str:
    with gzip.open(path, "rb") if gz else open(path, "rb") as fh:
        for i, raw in enumerate(fh, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return i
    return "?"


def _base_name(path: Path) -> str:
    name = path.name.lower()
    return name[:-3] if name.endswith(".gz") else name


def _detect(path: Path, head: _Head) -> str:
    if _base_name(path).endswith(".gmt"):
        return "gmt"
    if _chip_atlas_columns(head.lines[0].split("\t")) is not None:
        return "chip-atlas"
    if _looks_like_gmt(head.lines):
        return "gmt"
    return "pairs"


def _has_alias_header(fields: list[str]) -> bool:
    lower = {f.strip().lower() for f in fields}
    return any(a in lower for aliases in PRIOR_COLUMN_ALIASES.values() for a in aliases)


def _looks_like_gmt(lines: list[str]) -> bool:
    rows = [line.rstrip("\r").split("\t") for line in lines[:20] if line.strip() and not line.startswith("#")]
    if not rows or _has_alias_header(rows[0]) or min(len(r) for r in rows) < 3:
        return False
    if rows[0][2].strip().lower() in TRRUST_MODES:
        return False
    second = [r[1].strip() for r in rows]
    return len({len(r) for r in rows}) > 1 or all(s == "" or s.startswith(("http://", "https://")) for s in second)


def _canonical(values) -> np.ndarray:
    """Canonical names [n], computed once per distinct name; equal names share one str object."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    return canonical_gene_names(uniques)[codes]


def _frame(tf, target, score, source: str, line) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tf": _canonical(tf),
            "target": _canonical(target),
            "score": np.asarray(score, dtype=np.float64),
            "source": source,
            "line": np.asarray(line, dtype=np.int64),
        },
        columns=OUTPUT_COLUMNS,
    )


def _scores(
    raw: pd.Series, lines: np.ndarray, where: str, path: Path, min_score: float | None, word: str = "line"
) -> np.ndarray:
    """Numeric scores [n]; text is an error when `min_score` needs them, a warning (all NaN) otherwise."""
    num = pd.to_numeric(raw, errors="coerce")
    text = num.isna().to_numpy() & raw.notna().to_numpy() & (raw.astype(str).str.strip() != "").to_numpy()
    if text.any():
        i = int(np.flatnonzero(text)[0])
        what = f"{word} {lines[i]}, {where}: {str(raw.iloc[i])!r} is not a number"
        if min_score is not None:
            raise DataError(f"{what}; --min-score needs a numeric score ({int(text.sum())} text value(s))", path)
        log.warning("%s: %s (%d text value(s)); these scores are ignored", path, what, int(text.sum()))
        return np.full(len(raw), np.nan)
    return num.to_numpy(dtype=np.float64)


def _apply_min_score(out: pd.DataFrame, min_score: float | None, path: Path) -> pd.DataFrame:
    if min_score is None:
        return out
    kept = out[out["score"] >= min_score].reset_index(drop=True)
    log.info("%s: --min-score %g kept %d of %d pairs", path, min_score, len(kept), len(out))
    return kept


def _delimiter_hint(text: str, sep: str) -> str:
    other = next((d for d in (";", "|", "\t", ",") if d != sep and d in text), None)
    if other is None:
        return ""
    kind = "TSV (tab-separated)" if sep == "\t" else "CSV (comma-separated)"
    return f" (the line is split by {other!r}, but this file is read as {kind}: the delimiter looks wrong)"


def _line_text(path: Path, head: _Head, number: int) -> str:
    if number <= len(head.lines):
        return head.lines[number - 1]
    with _open_text(path, head.gz) as fh:
        for i, line in enumerate(fh, 1):
            if i == number:
                return line
    return ""


# ------------------------------------------------------------------------------------------
# pairs tables


def _pairs_sep(path: Path, header: str) -> str:
    base = _base_name(path)
    if base.endswith(".csv"):
        return ","
    if base.endswith((".tsv", ".txt", ".tab")):
        return "\t"
    return "\t" if "\t" in header else ","


def _read_csv(path: Path, head: _Head, sep: str, **kwargs) -> pd.DataFrame:
    kind = "TSV" if sep == "\t" else "CSV"
    try:
        return pd.read_csv(path, sep=sep, compression="gzip" if head.gz else None, encoding="utf-8-sig", **kwargs)
    except UnicodeDecodeError:
        raise  # located by read_prior_file
    except pd.errors.EmptyDataError as exc:
        raise DataError("file has no rows or header", path) from exc
    except pd.errors.ParserError as exc:
        m = re.search(r"line (\d+)", str(exc))
        hint = _delimiter_hint(_line_text(path, head, int(m.group(1))), sep) if m else ""
        raise DataError(f"not a valid {kind} table: {exc}{hint}", path) from exc
    except ValueError as exc:  # usecols naming a column the parser did not find
        raise DataError(f"not a valid {kind} table: {exc}", path) from exc


def _read_pairs(path: Path, head: _Head, *, tf: str | None, min_score: float | None) -> pd.DataFrame:
    header = head.lines[0]
    sep = _pairs_sep(path, header)
    columns = [str(c) for c in _read_csv(path, head, sep, nrows=0).columns]
    lower = {c.strip().lower(): c for c in columns}
    chosen = {
        role: next((lower[a] for a in aliases if a in lower), None) for role, aliases in PRIOR_COLUMN_ALIASES.items()
    }
    fields = header.split("\t")

    if chosen["tf"] is None and chosen["target"] is None and len(fields) >= 3:
        if fields[2].strip().lower() in TRRUST_MODES:  # TRRUST raw download: no header
            if tf is not None:
                raise DataError(f"--tf {tf} given, but this TRRUST table names a TF on every line", path)
            df = _read_csv(path, head, "\t", header=None, usecols=[0, 1], dtype=str)
            return _pairs_frame(path, head, df[0], df[1], None, df.index.to_numpy() + 1, "\t", min_score, "line")

    for role in ("tf", "target"):
        if chosen[role] is None and not (role == "tf" and tf is not None and chosen["target"] is not None):
            hint = _delimiter_hint(header, sep)
            if not hint and sep == "\t" and len(fields) >= 3:
                hint = " (a GMT gene-set library? name it .gmt or pass --prior-format gmt)"
            raise DataError(
                f"no {role} column; expected a header with 'tf,target' or 'Gene1,Gene2' (or TFLink's Name.TF/"
                f"Name.Target, OmniPath's source_genesymbol/target_genesymbol), found {columns}{hint}",
                path,
            )
    if tf is not None and chosen["tf"] is not None:
        raise DataError(f"--tf {tf} given, but the table has a TF column {chosen['tf']!r}; drop --tf", path)
    score_col = next((lower[a] for a in SCORE_COLUMN_ALIASES if a in lower), None)
    if min_score is not None and score_col is None:
        raise DataError(
            f"--min-score needs a score column; expected one of {list(SCORE_COLUMN_ALIASES)}, found {columns}", path
        )
    usecols = [c for c in (chosen["tf"], chosen["target"], score_col) if c is not None]
    df = _read_csv(path, head, sep, usecols=usecols, dtype=str)
    tfs = df[chosen["tf"]] if chosen["tf"] is not None else pd.Series(tf, index=df.index, dtype=object)
    scores = None
    lines = df.index.to_numpy() + 2
    if score_col is not None:
        scores = _scores(df[score_col], lines, f"column {score_col!r}", path, min_score, word="row")
    return _pairs_frame(path, head, tfs, df[chosen["target"]], scores, lines, sep, min_score, "row")


def _pairs_frame(path, head, tfs, targets, scores, lines, sep, min_score, word: str) -> pd.DataFrame:
    tf_up = tfs.astype(str).str.strip().str.upper()
    tg_up = targets.astype(str).str.strip().str.upper()
    empty = tf_up.isin(["", "NAN"]) | tg_up.isin(["", "NAN"])
    if empty.any():
        i = int(np.flatnonzero(empty.to_numpy())[0])
        hint = _delimiter_hint(_line_text(path, head, int(lines[i])), sep)
        raise DataError(f"{word} {lines[i]}: empty TF or target gene name{hint}", path)
    score = scores if scores is not None else np.full(len(tf_up), np.nan)
    return _apply_min_score(_frame(tf_up, tg_up, score, str(path), lines), min_score, path)


# ------------------------------------------------------------------------------------------
# GMT gene-set libraries


def _read_gmt(path: Path, head: _Head, *, tf: str | None, min_score: float | None) -> pd.DataFrame:
    if tf is not None:
        raise DataError(f"--tf {tf} given, but a GMT library names the TF of every line; drop --tf", path)
    expected = "expected: set name, description, then target genes, tab-separated"
    # Targets become int32 codes into `index` as lines are read: no str object per pair is kept.
    tfs, counts, numbers, code_chunks, index = [], [], [], [], {}
    with _open_text(path, head.gz) as fh:
        for number, raw in enumerate(fh, 1):
            line = raw.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            name = fields[0].strip()
            if not name:
                raise DataError(f"line {number}: empty gene-set name in the first field; {expected}", path)
            genes = [g for g in (f.strip() for f in fields[2:]) if g]
            if not genes:
                hint = " (the line has no tab: GMT fields are tab-separated)" if len(fields) == 1 else ""
                raise DataError(f"line {number}: gene set {name!r} has no target genes; {expected}{hint}", path)
            tfs.append(gmt_tf_symbol(name))
            counts.append(len(genes))
            numbers.append(number)
            code_chunks.append(
                np.fromiter((index.setdefault(g, len(index)) for g in genes), dtype=np.int32, count=len(genes))
            )
    if not tfs:
        raise DataError(f"no gene sets; {expected}", path)
    lines = np.repeat(np.asarray(numbers, dtype=np.int64), counts)
    uniques = np.asarray(list(index), dtype=object)
    target = pd.Series(uniques[np.concatenate(code_chunks)], dtype=object)  # equal names share one object
    score = np.full(len(target), np.nan)
    weighted = np.zeros(len(target), dtype=bool)
    if any("," in u for u in uniques):  # Enrichr's weighted libraries: GENE,weight
        weighted = target.str.contains(",", regex=False).to_numpy()
        parts = target[weighted].str.split(",", n=1, expand=True)
        target[weighted] = parts[0].str.strip()
        score[weighted] = _scores(parts[1], lines[weighted], "target weight", path, min_score)
        empty = (target.str.strip() == "").to_numpy()
        if empty.any():
            raise DataError(f"line {lines[np.flatnonzero(empty)[0]]}: empty target gene name before ','", path)
    if min_score is not None and not weighted.any():
        raise DataError("--min-score needs scores, but this GMT library has none (weighted targets: GENE,weight)", path)
    tf_col = np.repeat(np.asarray(tfs, dtype=object), counts)
    return _apply_min_score(_frame(tf_col, target, score, str(path), lines), min_score, path)


# ------------------------------------------------------------------------------------------
# ChIP-Atlas target-genes tables


def _chip_atlas_columns(fields: list[str]) -> tuple[int, int, str] | None:
    """(target column, Average column, TF from the Average header or '') of a ChIP-Atlas header."""
    names = [f.strip() for f in fields]
    target = next((i for i, f in enumerate(names) if f.lower() == "target_genes"), None)
    average = next((i for i, f in enumerate(names) if f == "Average" or f.endswith("|Average")), None)
    if target is None or average is None:
        return None
    return target, average, names[average].rpartition("|")[0].strip()


def _read_chip_atlas(path: Path, head: _Head, *, tf: str | None, min_score: float | None) -> pd.DataFrame:
    found = _chip_atlas_columns(head.lines[0].split("\t"))
    if found is None:
        raise DataError(
            "line 1: not a ChIP-Atlas target-genes table; expected a tab-separated header "
            f"'Target_genes, {{TF}}|Average, ..., STRING', found {head.lines[0].split(chr(9))[:3]}",
            path,
        )
    target_i, average_i, header_tf = found
    m = _CHIP_ATLAS_NAME.match(_base_name(path))
    name = tf or header_tf or (m.group("tf") if m else "")
    if not name.strip():
        raise DataError(
            "cannot tell the TF: the header has no '{TF}|Average' column and the file name is not "
            "'{TF}.{1|5|10}.tsv'; pass --tf",
            path,
        )
    df = _read_csv(path, head, "\t", usecols=[target_i, average_i], dtype=str)
    target_col, average_col = (df.columns[0], df.columns[1]) if target_i < average_i else (df.columns[1], df.columns[0])
    lines = df.index.to_numpy() + 2
    targets = df[target_col].astype(str).str.strip()
    empty = df[target_col].isna().to_numpy() | (targets == "").to_numpy()
    if empty.any():
        raise DataError(f"line {lines[np.flatnonzero(empty)[0]]}: empty gene name in column {target_col!r}", path)
    score = _scores(df[average_col], lines, f"column {average_col!r}", path, min_score)
    tfs = np.full(len(df), name.strip(), dtype=object)
    return _apply_min_score(_frame(tfs, targets, score, str(path), lines), min_score, path)
