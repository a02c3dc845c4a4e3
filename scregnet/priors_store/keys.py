"""S3 key hygiene: which keys below the watched prefix are prior files, and where they go on disk.

`split_key` is the one judge of a key: the listing calls it for every key, and `materialize`
calls it again before writing a file, so a key the listing accepted is one the download can
write. `colliding` judges the prior files of a dataset together (names that cannot exist side
by side in one directory tree).
"""

from __future__ import annotations

import functools
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from scregnet.priors import PRIOR_FILE_SUFFIXES

STATE_DIR = ".scregnet-watch"  # under the prefix; dataset names may not start with "."
STATE_FILE = "state.json"
PRIOR_SUFFIXES = PRIOR_FILE_SUFFIXES  # one list: what scregnet.priors can read
DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
MAX_NAME_BYTES = 255  # NAME_MAX of ext4, XFS, btrfs, APFS: judged the same on every host
FILES_DIR = "files"  # <root>/<dataset>/<manifest sha256>/files/<rel>, see manifest.materialize
_DIGEST_CHARS = 64
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


class UnsafeKeyError(ValueError):
    """An S3 key that is not a plain relative path below the watched prefix; `dataset` names the
    dataset whose folder holds it (None when the key is not below `PREFIX/<dataset>/`)."""

    def __init__(self, message: str, dataset: str | None = None):
        super().__init__(message)
        self.dataset = dataset


def normalize_prefix(prefix: str) -> str:
    """`incoming` / `incoming/` -> `incoming/`; `` -> `` (whole bucket). Refuses unsafe prefixes."""
    prefix = (prefix or "").strip()
    if prefix in ("", "/"):
        return ""
    _check_relative(prefix.rstrip("/"), what="prefix")
    return prefix.rstrip("/") + "/"


def _component_problem(part: str) -> str | None:
    if part in ("", ".", ".."):
        return "empty, '.' or '..' path components are not allowed"
    if _DRIVE_RE.match(part):
        return f"component {part!r} is a drive (absolute on Windows)"
    if part.startswith("~"):
        return f"component {part!r} is a home directory (absolute after ~ expansion)"
    try:
        size = len(part.encode("utf-8"))
    except UnicodeEncodeError:
        return f"component {part!r} is not valid UTF-8"
    if size > MAX_NAME_BYTES:
        return f"component {part[:40]!r}... is {size} bytes (UTF-8); a file name has at most {MAX_NAME_BYTES}"
    return None


def _check_relative(path: str, what: str = "key") -> list[str]:
    """The parts of a plain relative POSIX path, or UnsafeKeyError saying what is wrong with it."""
    if not path:
        raise UnsafeKeyError(f"empty {what}")
    if "\\" in path:
        raise UnsafeKeyError(f"{what} {path!r}: backslashes are not allowed")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise UnsafeKeyError(f"{what} {path!r}: control characters are not allowed")
    if path.startswith("/"):
        raise UnsafeKeyError(f"{what} {path!r}: absolute paths are not allowed")
    parts = path.split("/")
    for part in parts:
        why = _component_problem(part)
        if why:
            raise UnsafeKeyError(f"{what} {path[:300]!r}: {why}")
    return parts


@functools.lru_cache(maxsize=64)
def _path_max(root: str) -> int:
    """PATH_MAX of the file system holding `root` (its nearest existing folder); 4096 if unknown."""
    here = Path(root)
    while not here.exists() and here != here.parent:
        here = here.parent
    try:
        return int(os.pathconf(here, "PC_PATH_MAX"))
    except (OSError, ValueError, AttributeError):
        return 4096


def local_path_bytes(root: str | Path, dataset: str, rel: str) -> int:
    """Bytes of the longest local path `materialize` writes for this file:
    `<root>/<dataset>/<64-hex manifest sha256>/files/<rel>` (the temporary folder is shorter)."""
    return len(os.fsencode(os.path.join(os.fspath(root), dataset, "0" * _DIGEST_CHARS, FILES_DIR, rel)))


def split_key(prefix: str, key: str, local_root: str | Path | None = None) -> tuple[str, str]:
    """`PREFIX/<dataset>/<rel>` -> (dataset, rel). Raises UnsafeKeyError for anything else.

    With `local_root` (absolute: the priors folder), also refuses a key whose local file path
    would be too long for that file system.
    """
    prefix = normalize_prefix(prefix)
    if not key.startswith(prefix):
        raise UnsafeKeyError(f"key {key!r} is not under the prefix {prefix!r}")
    rest = key[len(prefix) :]
    head, sep, _ = rest.partition("/")
    dataset = head if sep and DATASET_RE.match(head) else None
    try:
        parts = _check_relative(rest)
        if len(parts) < 2:
            raise UnsafeKeyError(f"key {key!r}: expected {prefix}<dataset>/<file>")
        if dataset is None:
            raise UnsafeKeyError(f"key {key!r}: dataset name {head!r} must match {DATASET_RE.pattern}")
        rel = "/".join(parts[1:])
        if local_root is not None:
            size, limit = local_path_bytes(local_root, dataset, rel), _path_max(os.fspath(local_root)) - 1
            if size > limit:
                raise UnsafeKeyError(
                    f"key {key[:300]!r}: its local path under {local_root} would be {size} bytes; "
                    f"this file system allows {limit}"
                )
    except UnsafeKeyError as exc:
        exc.dataset = dataset
        raise
    return dataset, rel


def _fold(name: str) -> str:
    # Case-insensitive, normalization-insensitive file systems (APFS, NTFS) treat these as one name.
    return unicodedata.normalize("NFC", name).casefold()


def colliding(rels: Iterable[str]) -> dict[str, str]:
    """rel -> why, for the files of one dataset that cannot all be written into one folder tree:
    a file that is also another file's folder (`a.csv`, `a.csv/b.csv`), or names that differ only
    in case or Unicode normalization (one would overwrite the other on APFS/NTFS)."""
    rels = sorted(set(rels))
    why: dict[str, str] = {}
    by_name: dict[str, list[str]] = {}
    for rel in rels:
        by_name.setdefault(_fold(rel), []).append(rel)
    for group in by_name.values():
        for rel in group[1:] if len(group) > 1 else ():
            why[rel] = why[group[0]] = f"{group[0]!r} and {rel!r} differ only in case or Unicode normalization"
    under: dict[str, list[str]] = {}  # folded folder -> the files below it
    for rel in rels:
        parts = rel.split("/")
        for i in range(1, len(parts)):
            under.setdefault(_fold("/".join(parts[:i])), []).append(rel)
    for rel in rels:
        for other in under.get(_fold(rel), []):
            why[rel] = why[other] = f"{rel!r} is a file and also the folder of {other!r}"
    return why


def safe_join(root: str | Path, rel: str) -> Path:
    """`root / rel`, refusing anything that would resolve outside `root` (defence in depth)."""
    _check_relative(rel)
    root = Path(root).resolve()
    path = (root / PurePosixPath(rel)).resolve()
    if path != root and root not in path.parents:
        raise UnsafeKeyError(f"{rel!r} escapes {root}")
    return path


def is_prior_file(rel: str) -> bool:
    """A prior table by its name: one of PRIOR_SUFFIXES (any case), not hidden."""
    name = rel.rsplit("/", 1)[-1].lower()
    return not name.startswith(".") and name.endswith(PRIOR_SUFFIXES)


def state_key(prefix: str) -> str:
    """Key of the watcher's state object under the prefix."""
    return f"{normalize_prefix(prefix)}{STATE_DIR}/{STATE_FILE}"


def lock_key(prefix: str, dataset: str) -> str:
    """Key of a dataset's lease object under the prefix."""
    return f"{normalize_prefix(prefix)}{STATE_DIR}/locks/{dataset}.lock"
