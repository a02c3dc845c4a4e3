"""S3 key hygiene: which keys below the watched prefix are prior files, and where they go on disk."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

STATE_DIR = ".scregnet-watch"  # under the prefix; dataset names may not start with "."
STATE_FILE = "state.json"
PRIOR_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


class UnsafeKeyError(ValueError):
    """An S3 key that is not a plain relative path below the watched prefix."""


def normalize_prefix(prefix: str) -> str:
    """`incoming` / `incoming/` -> `incoming/`; `` -> `` (whole bucket). Refuses unsafe prefixes."""
    prefix = (prefix or "").strip()
    if prefix in ("", "/"):
        return ""
    _check_relative(prefix.rstrip("/"), what="prefix")
    return prefix.rstrip("/") + "/"


def _check_relative(path: str, what: str = "key") -> list[str]:
    if not path:
        raise UnsafeKeyError(f"empty {what}")
    if "\\" in path:
        raise UnsafeKeyError(f"{what} {path!r}: backslashes are not allowed")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise UnsafeKeyError(f"{what} {path!r}: control characters are not allowed")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path) or path.startswith("~"):
        raise UnsafeKeyError(f"{what} {path!r}: absolute paths are not allowed")
    parts = path.split("/")
    bad = [p for p in parts if p in ("", ".", "..")]
    if bad:
        raise UnsafeKeyError(f"{what} {path!r}: empty, '.' or '..' path components are not allowed")
    return parts


def split_key(prefix: str, key: str) -> tuple[str, str]:
    """`PREFIX/<dataset>/<rel>` -> (dataset, rel). Raises UnsafeKeyError for anything else."""
    prefix = normalize_prefix(prefix)
    if not key.startswith(prefix):
        raise UnsafeKeyError(f"key {key!r} is not under the prefix {prefix!r}")
    parts = _check_relative(key[len(prefix) :])
    if len(parts) < 2:
        raise UnsafeKeyError(f"key {key!r}: expected {prefix}<dataset>/<file>")
    dataset = parts[0]
    if not DATASET_RE.match(dataset):
        raise UnsafeKeyError(f"key {key!r}: dataset name {dataset!r} must match {DATASET_RE.pattern}")
    return dataset, "/".join(parts[1:])


def safe_join(root: str | Path, rel: str) -> Path:
    """`root / rel`, refusing anything that would resolve outside `root` (defence in depth)."""
    _check_relative(rel)
    root = Path(root).resolve()
    path = (root / PurePosixPath(rel)).resolve()
    if path != root and root not in path.parents:
        raise UnsafeKeyError(f"{rel!r} escapes {root}")
    return path


def is_prior_file(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1].lower()
    return not name.startswith(".") and name.endswith(PRIOR_SUFFIXES)


def state_key(prefix: str) -> str:
    return f"{normalize_prefix(prefix)}{STATE_DIR}/{STATE_FILE}"


def lock_key(prefix: str, dataset: str) -> str:
    return f"{normalize_prefix(prefix)}{STATE_DIR}/locks/{dataset}.lock"
