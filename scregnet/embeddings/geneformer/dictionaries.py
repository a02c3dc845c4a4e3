"""Geneformer's gene dictionaries: locate, read and hash them; tell V1 from V2.

Dictionaries are pickles and are read only from a trusted, configured directory.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scregnet.errors import DataError

V1_SUBDIR = "gene_dictionaries_30m"  # where upstream keeps the 30M dictionaries
DICTIONARY_FILES = {
    "v1": {
        "token": "token_dictionary_gc30M.pkl",
        "median": "gene_median_dictionary_gc30M.pkl",
        "mapping": "ensembl_mapping_dict_gc30M.pkl",
        "name_id": "gene_name_id_dict_gc30M.pkl",
    },
    "v2": {
        "token": "token_dictionary_gc95M.pkl",
        "median": "gene_median_dictionary_gc95M.pkl",
        "mapping": "ensembl_mapping_dict_gc95M.pkl",
        "name_id": "gene_name_id_dict_gc95M.pkl",
    },
}
_VERSION_BY_MAX_POSITIONS = {2048: "v1", 4096: "v2"}
_VERSION_BY_VOCAB = {25426: "v1", 20275: "v2"}


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _find_dictionary(directory: Path, filename: str) -> Path | None:
    for candidate in (directory / filename, directory / V1_SUBDIR / filename):
        if candidate.is_file():
            return candidate
    return None


@dataclass
class GeneformerDictionaries:
    """The four Geneformer dictionaries of one version, with numpy scalars cast to Python types.

    Attributes:
        version: "v1" (30M: no <cls>/<eos>) or "v2" (95M).
        token: Ensembl ID (and "<pad>", "<mask>", ...) -> token id.
        median: Ensembl ID -> non-zero median of normalised expression in the pretraining corpus.
        mapping: UPPER-CASE symbol / alias / Ensembl ID -> Ensembl ID (may be empty).
        name_id: UPPER-CASE symbol -> Ensembl ID (may be empty; for V1 also the 95M aliases).
        files: role -> path of the file read; hashes: file name -> sha256.
    """

    version: str
    directory: Path
    token: dict[str, int]
    median: dict[str, float]
    mapping: dict[str, str]
    name_id: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)

    @property
    def pad_id(self) -> int:
        """Token id of <pad> (0 upstream)."""
        return self.token.get("<pad>", 0)

    @property
    def special_ids(self) -> tuple[int, int] | None:
        """(<cls>, <eos>) for V2; None for V1."""
        if self.version == "v1":
            return None
        missing = [t for t in ("<cls>", "<eos>") if t not in self.token]
        if missing:
            raise DataError(f"V2 token dictionary has no {', '.join(missing)} token", self.files.get("token"))
        return self.token["<cls>"], self.token["<eos>"]

    @property
    def max_token_id(self) -> int:
        """Largest token id (must be below the model's vocabulary size)."""
        return max(self.token.values())

    def to_ensembl(self, symbol: str) -> str | None:
        """Ensembl ID of a symbol (upper-cased); an Ensembl ID in the token dictionary maps to itself."""
        key = str(symbol).strip().upper()
        if key in self.token:
            return key
        return self.mapping.get(key) or self.name_id.get(key)


def load_dictionaries(directory: str | Path | None, version: str) -> GeneformerDictionaries:
    """Read the token, median and symbol-mapping dictionaries of `version` ("v1" or "v2").

    Files are looked up in `directory` and in `directory/gene_dictionaries_30m/` (upstream's layout
    for the 30M set). The token and median dictionaries are required; of the two mapping
    dictionaries at least one must exist. For V1, `ensembl_mapping_dict_gc95M.pkl`, when present in
    `directory`, is a last-resort symbol/alias -> Ensembl fallback (the 30M mapping holds no symbols).
    """
    if version not in DICTIONARY_FILES:
        raise ValueError(f"Geneformer version must be 'v1' or 'v2', got {version!r}")
    if directory is None:
        raise DataError(
            "embedder.geneformer.dictionaries is not set: give the directory holding "
            f"{DICTIONARY_FILES[version]['token']} and the other Geneformer dictionaries"
        )
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError("Geneformer dictionary directory not found", directory)
    names = DICTIONARY_FILES[version]
    found = {role: _find_dictionary(directory, name) for role, name in names.items()}
    for role in ("token", "median"):
        if found[role] is None:
            raise DataError(
                f"Geneformer {version} {role} dictionary not found: expected {directory / names[role]}"
                f" (or {directory / V1_SUBDIR / names[role]})"
            )
    if found["mapping"] is None and found["name_id"] is None:
        raise DataError(
            f"no symbol -> Ensembl dictionary for Geneformer {version}: expected {directory / names['mapping']}"
            f" or {directory / names['name_id']}"
        )

    def read(role: str) -> dict:
        path = found[role]
        if path is None:
            return {}
        with open(path, "rb") as fh:
            obj = pickle.load(fh)  # trusted, configured dictionary directory only; never model weights
        if not isinstance(obj, dict):
            raise DataError(f"expected a pickled dict, got {type(obj).__name__}", path)
        return obj

    token = {str(k): int(v) for k, v in read("token").items()}
    median = {str(k): float(v) for k, v in read("median").items()}
    mapping = {str(k).upper(): str(v) for k, v in read("mapping").items()}
    name_id: dict[str, str] = {}
    for k, v in read("name_id").items():  # keys are mixed case upstream; first spelling wins
        name_id.setdefault(str(k).upper(), str(v))
    alias = _find_dictionary(directory, DICTIONARY_FILES["v2"]["mapping"]) if version == "v1" else None
    if alias is not None:
        # The 30M mapping only maps Ensembl IDs to themselves; the 95M alias table (symbols, old
        # names) is the better symbol -> ID map, used after the V1 dictionaries as a fallback.
        found["alias"] = alias
        with open(alias, "rb") as fh:
            for k, v in pickle.load(fh).items():  # trusted dictionary directory
                name_id.setdefault(str(k).upper(), str(v))
    paths = {role: str(p) for role, p in found.items() if p is not None}
    hashes = {Path(p).name: _sha256_file(Path(p)) for p in paths.values()}
    return GeneformerDictionaries(version, directory, token, median, mapping, name_id, paths, hashes)


def detect_version(model_config: Any | None = None, directory: str | Path | None = None) -> str:
    """ "v1" or "v2": from the model's max_position_embeddings (2048 / 4096) or vocab size
    (25,426 / 20,275); otherwise from which token dictionary exists in `directory`."""
    if model_config is not None:
        by_pos = _VERSION_BY_MAX_POSITIONS.get(getattr(model_config, "max_position_embeddings", None))
        if by_pos:
            return by_pos
        by_vocab = _VERSION_BY_VOCAB.get(getattr(model_config, "vocab_size", None))
        if by_vocab:
            return by_vocab
    if directory is not None and Path(directory).is_dir():
        present = [v for v, names in DICTIONARY_FILES.items() if _find_dictionary(Path(directory), names["token"])]
        if len(present) == 1:
            return present[0]
    raise DataError(
        "cannot tell the Geneformer version (model max_position_embeddings is neither 2048 nor 4096, "
        "vocab size is not a known one, and the dictionary directory does not hold exactly one token "
        "dictionary); set embedder.geneformer.version to 'v1' or 'v2'"
    )
