"""Prior files (ChIP-seq TF -> target tables) kept in S3, as versioned training inputs.

Layout: `s3://BUCKET/PREFIX/<dataset>/<file>.csv|.tsv[.gz]`; the labels of a dataset are the
union of all its prior files. Core library: boto3 only (no ZenML, no MLflow); the S3
client is passed in, so any S3-compatible endpoint works (AWS, MinIO, moto).

- `list_priors`: one listing of the prefix with boto3's paginator, grouped by dataset;
  keys that would escape the prefix (`..`, absolute, backslashes, ...) are refused.
- `is_settled`: an upload batch is settled when its newest object is `settle_seconds` old
  by the S3 server's clock (the `Date` header of the listing), so a watcher does not train
  on the first half of a multi-file upload and clock skew does not matter.
- `materialize`: download a dataset's files (each GET conditional on the listed ETag),
  hash them, and write the manifest (keys, ETags, sha256; its own sha256 over
  (relative key, sha256) pairs) next to them, under `<root>/<dataset>/<manifest sha256>/`.
- `WatchState`: one JSON object in the bucket (`PREFIX/.scregnet-watch/state.json`):
  `datasets` (last successful run per dataset) and `failed` (the current failure streak per
  dataset, see `scregnet.watch`), updated read-modify-write with an ETag-conditional PUT
  (`If-Match`, or `If-None-Match: *` when creating), retried on conflict.
- `S3Lock`: a lease object per dataset created with `If-None-Match: *` (S3 conditional
  writes), renewed by a heartbeat with `If-Match` on its own ETag, released with a
  conditional DELETE; an expired lease (owner crashed) is taken over with `If-Match` on
  the stale ETag, so exactly one contender wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any

STATE_DIR = ".scregnet-watch"  # under the prefix; dataset names may not start with "."
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
PRIOR_SUFFIXES = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
DATASET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


class UnsafeKeyError(ValueError):
    """An S3 key that is not a plain relative path below the watched prefix."""


class ChangedDuringDownload(RuntimeError):
    """An object changed (new ETag) or vanished between the listing and the download."""


# ------------------------------------------------------------------------------------
# keys


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


# ------------------------------------------------------------------------------------
# listing


@dataclass(frozen=True)
class PriorObject:
    key: str
    rel: str  # path below PREFIX/<dataset>/
    etag: str  # without quotes
    size: int
    last_modified: datetime


@dataclass
class Listing:
    datasets: dict[str, list[PriorObject]] = field(default_factory=dict)
    refused: list[tuple[str, str]] = field(default_factory=list)  # (key, why)
    ignored: list[str] = field(default_factory=list)  # not a prior table (suffix)
    server_time: datetime | None = None


def _etag(value: str) -> str:
    return str(value or "").strip('"')


def _server_time(response: dict) -> datetime | None:
    date = (response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}).get("date")
    try:
        return parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None


def list_priors(s3, bucket: str, prefix: str) -> Listing:
    """Every prior file under the prefix, grouped by dataset (boto3's paginator, one pass)."""
    prefix = normalize_prefix(prefix)
    state_prefix = prefix + STATE_DIR + "/"
    out = Listing()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.server_time = _server_time(page) or out.server_time
        for obj in page.get("Contents", []) or []:
            key = obj["Key"]
            if key.startswith(state_prefix) or key.endswith("/"):
                continue  # our own state / "folder" markers
            try:
                dataset, rel = split_key(prefix, key)
            except UnsafeKeyError as exc:
                out.refused.append((key, str(exc)))
                continue
            if not is_prior_file(rel):
                out.ignored.append(key)
                continue
            out.datasets.setdefault(dataset, []).append(
                PriorObject(key, rel, _etag(obj.get("ETag")), int(obj.get("Size", 0)), obj["LastModified"])
            )
    for objs in out.datasets.values():
        objs.sort(key=lambda o: o.key)
    return out


def fingerprint(objects) -> list[list[str]]:
    """What the listing says about a dataset: sorted (relative key, ETag) pairs."""
    return sorted([o.rel, o.etag] if isinstance(o, PriorObject) else [o["rel"], o["etag"]] for o in objects)


def is_settled(objects: list[PriorObject], now: datetime | None, settle_seconds: float) -> bool:
    """True when the newest object is at least `settle_seconds` old (server clock if known)."""
    if settle_seconds <= 0 or not objects:
        return bool(objects)
    now = now or datetime.now(UTC)
    newest = max(o.last_modified for o in objects)
    return (now - newest).total_seconds() >= settle_seconds


# ------------------------------------------------------------------------------------
# manifests


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


def materialize(
    s3, bucket: str, prefix: str, dataset: str, objects: list[PriorObject], root: str | Path
) -> tuple[Path, dict]:
    """Download a dataset's prior files to `<root>/<dataset>/<manifest sha256>/files/...`.

    Returns (manifest path, manifest). The directory is content-addressed: a second call
    for the same content reuses it.
    """
    if not DATASET_RE.match(dataset):
        raise UnsafeKeyError(f"dataset name {dataset!r}")
    base = Path(root).resolve() / dataset
    tmp = base / f".tmp-{uuid.uuid4().hex}"
    try:
        files = []
        for obj in objects:
            local = safe_join(tmp / "files", obj.rel)
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
    return [safe_join(manifest_path.parent / "files", f["rel"]) for f in manifest["files"]]


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


# ------------------------------------------------------------------------------------
# conditional writes


def is_conflict(exc: BaseException) -> bool:
    """A failed S3 precondition (412) or a concurrent conditional write (409)."""
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code in CONFLICT_CODES or status in ("412", "409")


def _is_missing(exc: BaseException) -> bool:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404", "NotFound")


def get_json(s3, bucket: str, key: str) -> tuple[dict | None, str | None]:
    """(object, ETag) or (None, None) when the key does not exist."""
    from botocore.exceptions import ClientError

    try:
        r = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if _is_missing(exc):
            return None, None
        raise
    return json.loads(r["Body"].read() or b"{}"), _etag(r.get("ETag"))


def put_json(
    s3, bucket: str, key: str, value: dict, *, if_match: str | None = None, if_none_match: bool = False
) -> str:
    """Conditional PUT; returns the new ETag. Raises ClientError (see `is_conflict`) on a lost race."""
    kwargs: dict[str, Any] = {}
    if if_match is not None:
        kwargs["IfMatch"] = f'"{if_match}"'
    if if_none_match:
        kwargs["IfNoneMatch"] = "*"
    r = s3.put_object(
        Bucket=bucket, Key=key, Body=json.dumps(value, indent=1).encode(), ContentType="application/json", **kwargs
    )
    return _etag(r.get("ETag"))


def state_key(prefix: str) -> str:
    return f"{normalize_prefix(prefix)}{STATE_DIR}/{STATE_FILE}"


def lock_key(prefix: str, dataset: str) -> str:
    return f"{normalize_prefix(prefix)}{STATE_DIR}/locks/{dataset}.lock"


class WatchState:
    """The watcher's memory, one JSON object in the bucket: `datasets` (dataset -> last trained
    manifest) and `failed` (dataset -> failure entry of the priors whose runs keep failing)."""

    def __init__(self, s3, bucket: str, prefix: str):
        self.s3, self.bucket, self.key = s3, bucket, state_key(prefix)

    def read(self) -> dict:
        value, _ = get_json(self.s3, self.bucket, self.key)
        value = value or {}
        value.setdefault("version", 1)
        value.setdefault("datasets", {})
        value.setdefault("failed", {})
        return value

    def dataset(self, name: str) -> dict | None:
        return self.read()["datasets"].get(name)

    def update(self, fn: Callable[[dict], None], attempts: int = 20) -> dict:
        """Read-modify-write with an ETag-conditional PUT; retried when another writer won."""
        last: BaseException | None = None
        for i in range(attempts):
            value, etag = get_json(self.s3, self.bucket, self.key)
            value = value or {"version": 1, "datasets": {}}
            value.setdefault("datasets", {})
            value.setdefault("failed", {})
            fn(value)
            value["updated"] = datetime.now(UTC).isoformat()
            try:
                put_json(self.s3, self.bucket, self.key, value, if_match=etag, if_none_match=etag is None)
                return value
            except Exception as exc:  # noqa: BLE001 - only conflicts are retried
                if not is_conflict(exc):
                    raise
                last = exc
                time.sleep(min(2.0, 0.05 * 2**i) * (0.5 + (uuid.uuid4().int % 100) / 100))
        raise RuntimeError(f"s3://{self.bucket}/{self.key}: could not update after {attempts} conflicts: {last}")


class S3Lock:
    """A lease in S3: created with `If-None-Match: *`, kept alive by a heartbeat.

    `acquire()` returns False when someone else holds a live lease. A lease whose object
    was last written more than `lease_seconds` ago (server clock) belonged to a watcher
    that died; it is taken over with `If-Match` on that stale ETag, so of several
    contenders exactly one wins. After each successful write the lock is read back and
    its token compared (cheap; protects against emulators whose conditional writes are not
    atomic). `lost` becomes True if a renewal finds the lease taken.
    """

    def __init__(
        self,
        s3,
        bucket: str,
        key: str,
        lease_seconds: float = 300.0,
        owner: str | None = None,
        verify_delay: float = 0.2,
    ):
        self.s3, self.bucket, self.key, self.lease = s3, bucket, key, float(lease_seconds)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.token = uuid.uuid4().hex
        self.etag: str | None = None
        self.lost = False
        self.verify_delay = verify_delay
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._mutex = threading.Lock()

    def _body(self) -> dict:
        return {
            "owner": self.owner,
            "token": self.token,
            "lease_seconds": self.lease,
            "written": datetime.now(UTC).isoformat(),
        }

    def _verify(self) -> bool:
        if self.verify_delay:
            time.sleep(self.verify_delay)
        value, etag = get_json(self.s3, self.bucket, self.key)
        if value is None or value.get("token") != self.token:
            return False
        self.etag = etag
        return True

    def _expired(self) -> tuple[bool, str | None]:
        from botocore.exceptions import ClientError

        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if _is_missing(exc) or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")) == "404":
                return True, None
            raise
        now = _server_time(head) or datetime.now(UTC)
        age = (now - head["LastModified"]).total_seconds()
        return age > self.lease, _etag(head.get("ETag"))

    def acquire(self) -> bool:
        try:
            put_json(self.s3, self.bucket, self.key, self._body(), if_none_match=True)
            return self._verify()
        except Exception as exc:  # noqa: BLE001
            if not is_conflict(exc):
                raise
        expired, stale_etag = self._expired()
        if not expired:
            return False
        try:
            if stale_etag is None:
                put_json(self.s3, self.bucket, self.key, self._body(), if_none_match=True)
            else:
                put_json(self.s3, self.bucket, self.key, self._body(), if_match=stale_etag)
        except Exception as exc:  # noqa: BLE001
            if is_conflict(exc) or _is_missing(exc):
                return False
            raise
        return self._verify()

    def renew(self) -> bool:
        with self._mutex:
            if self.etag is None or self.lost:
                return False
            try:
                self.etag = put_json(self.s3, self.bucket, self.key, self._body(), if_match=self.etag)
                return True
            except Exception as exc:  # noqa: BLE001
                if is_conflict(exc) or _is_missing(exc):
                    self.lost = True
                    return False
                return True  # transient error: the lease has not expired yet; try again next beat

    def _beat(self) -> None:
        interval = max(0.5, self.lease / 3)
        while not self._stop.wait(interval):
            if not self.renew():
                return

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name=f"lease {self.key}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._mutex:
            if self.etag is None or self.lost:
                return
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=f'"{self.etag}"')
            except Exception as exc:  # noqa: BLE001 - someone took over an expired lease: not ours to delete
                if not (is_conflict(exc) or _is_missing(exc)):
                    raise
            self.etag = None

    def __enter__(self) -> S3Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def s3_client(endpoint_url: str | None = None, region: str | None = None):
    """A boto3 S3 client (credentials from the usual AWS environment/config chain)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
        config=Config(retries={"max_attempts": 5, "mode": "standard"}),
    )
