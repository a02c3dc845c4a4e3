"""Downloaded priors: a content-addressed directory per dataset and its manifest (keys, ETags, sha256)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

from scregnet.priors_store.keys import (
    DATASET_RE,
    FILES_DIR,
    UnsafeKeyError,
    colliding,
    normalize_prefix,
    safe_join,
    split_key,
)
from scregnet.priors_store.listing import PriorObject
from scregnet.priors_store.s3io import CONFLICT_CODES

MANIFEST_FILE = "manifest.json"


class ChangedDuringDownload(RuntimeError):
    """An object changed (new ETag) or vanished between the listing and the download."""


def manifest_sha256(files: list[dict]) -> str:
    """Content hash of a manifest: sorted (relative key, sha256) pairs (ETags excluded:
    re-uploading the same bytes, or a multipart ETag, does not make a new manifest)."""
    canon = json.dumps(sorted([f["rel"], f["sha256"]] for f in files), separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def _download(s3, bucket: str, obj: PriorObject, dest: Path) -> str:
    from botocore.exceptions import ClientError

    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    try:
        body = s3.get_object(Bucket=bucket, Key=obj.key, IfMatch=f'"{obj.etag}"')["Body"]
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in CONFLICT_CODES or code in ("NoSuchKey", "404"):
            raise ChangedDuringDownload(f"s3://{bucket}/{obj.key} changed or vanished since the listing") from exc
        raise
    with open(dest, "wb") as f:
        for chunk in iter(lambda: body.read(1 << 20), b""):
            h.update(chunk)
            f.write(chunk)
    return h.hexdigest()


def _judge(prefix: str, dataset: str, objects: list[PriorObject], root: Path) -> None:
    for obj in objects:
        if split_key(prefix, obj.key, root) != (dataset, obj.rel):
            raise UnsafeKeyError(f"key {obj.key!r} is not {dataset}/{obj.rel}", dataset)
    clash = colliding(o.rel for o in objects)
    if clash:
        raise UnsafeKeyError("; ".join(sorted(set(clash.values()))), dataset)


def materialize(
    s3, bucket: str, prefix: str, dataset: str, objects: list[PriorObject], root: str | Path
) -> tuple[Path, dict]:
    """Download a dataset's prior files to `<root>/<dataset>/<manifest sha256>/files/...`.

    Returns (manifest path, manifest). The directory is content-addressed: a second call
    for the same content reuses it. Every key is judged again, by the listing's own judges
    (`keys.split_key`, `keys.colliding`), before anything is written.
    """
    if not DATASET_RE.match(dataset):
        raise UnsafeKeyError(f"dataset name {dataset!r}", dataset)
    root = Path(root).resolve()
    _judge(prefix, dataset, objects, root)
    base = root / dataset
    tmp = base / f".tmp-{uuid.uuid4().hex}"
    try:
        files = []
        for obj in objects:
            local = safe_join(tmp / FILES_DIR, obj.rel)
            files.append(
                {
                    "key": obj.key,
                    "rel": obj.rel,
                    "etag": obj.etag,
                    "size": obj.size,
                    "last_modified": obj.last_modified.isoformat(),
                    "sha256": _download(s3, bucket, obj, local),
                }
            )
        digest = manifest_sha256(files)
        manifest = {
            "dataset": dataset,
            "bucket": bucket,
            "prefix": normalize_prefix(prefix),
            "sha256": digest,
            "created": datetime.now(UTC).isoformat(),
            "files": files,
        }
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
        final = base / digest
        try:
            os.rename(tmp, final)
        except OSError:  # already there (same content, earlier pass or another watcher)
            if not (final / MANIFEST_FILE).is_file():
                raise
        return final / MANIFEST_FILE, json.loads((final / MANIFEST_FILE).read_text())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def manifest_files(manifest_path: str | Path) -> list[Path]:
    """Local paths of the prior files a manifest describes (in key order)."""
    manifest_path = Path(manifest_path)
    manifest = json.loads(manifest_path.read_text())
    return [safe_join(manifest_path.parent / FILES_DIR, f["rel"]) for f in manifest["files"]]


def prior_manifest_tags(manifest_path: str | Path | None) -> dict[str, str]:
    """MLflow run tags for a manifest written by `materialize` ({} when there is none)."""
    if manifest_path is None:
        return {}
    manifest = json.loads(Path(manifest_path).read_text())
    keys = ",".join(f["key"] for f in manifest.get("files", []))
    return {
        "prior_manifest_sha256": str(manifest["sha256"]),
        "prior_manifest_keys": keys if len(keys) <= 4000 else keys[:3990] + ",...",
    }
