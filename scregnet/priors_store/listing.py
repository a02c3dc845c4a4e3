"""What is in the bucket: one listing of the prefix, grouped by dataset, and when an upload is settled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from scregnet.priors_store.keys import (
    STATE_DIR,
    UnsafeKeyError,
    colliding,
    is_prior_file,
    normalize_prefix,
    split_key,
)
from scregnet.priors_store.s3io import etag, server_time


@dataclass(frozen=True)
class PriorObject:
    """One prior file as listed: key, path below the dataset, ETag, size, time."""

    key: str
    rel: str  # path below PREFIX/<dataset>/
    etag: str  # without quotes
    size: int
    last_modified: datetime


@dataclass(frozen=True)
class RefusedKey:
    """A key in a dataset's folder that is not downloaded, and why."""

    key: str
    etag: str
    why: str


@dataclass
class Listing:
    """One listing of the prefix: prior files per dataset, refused and ignored keys, server time."""

    datasets: dict[str, list[PriorObject]] = field(default_factory=dict)  # the accepted prior files
    refused: list[tuple[str, str]] = field(default_factory=list)  # (key, why): every refused key
    blocked: dict[str, list[RefusedKey]] = field(default_factory=dict)  # dataset -> its refused keys
    ignored: list[str] = field(default_factory=list)  # not a prior table (suffix)
    server_time: datetime | None = None

    def refuse(self, key: str, etag: str, why: str, dataset: str | None) -> None:
        """Record a refused key (and its dataset, when it has one) with the reason."""
        self.refused.append((key, why))
        if dataset is not None:
            self.blocked.setdefault(dataset, []).append(RefusedKey(key, etag, why))


def list_priors(s3, bucket: str, prefix: str, local_root: str | Path | None = None) -> Listing:
    """Every prior file under the prefix, grouped by dataset (boto3's paginator, one pass).

    Each key is judged by `keys.split_key` (with `local_root`, the priors folder, also its local
    path length), then each dataset's files together by `keys.colliding`. A refused key inside a
    dataset's folder is listed in `blocked[dataset]` (and taken out of `datasets`).
    """
    prefix = normalize_prefix(prefix)
    state_prefix = prefix + STATE_DIR + "/"
    root = None if local_root is None else Path(local_root).resolve()
    out = Listing()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.server_time = server_time(page) or out.server_time
        for obj in page.get("Contents", []) or []:
            key = obj["Key"]
            if key.startswith(state_prefix) or key.endswith("/"):
                continue  # our own state / "folder" markers
            try:
                dataset, rel = split_key(prefix, key, root)
            except UnsafeKeyError as exc:
                out.refuse(key, etag(obj.get("ETag")), str(exc), exc.dataset)
                continue
            if not is_prior_file(rel):
                out.ignored.append(key)
                continue
            out.datasets.setdefault(dataset, []).append(
                PriorObject(key, rel, etag(obj.get("ETag")), int(obj.get("Size", 0)), obj["LastModified"])
            )
    for dataset, objs in list(out.datasets.items()):
        clash = colliding(o.rel for o in objs)
        for o in objs:
            if o.rel in clash:
                out.refuse(o.key, o.etag, f"key {o.key!r}: {clash[o.rel]}", dataset)
        objs[:] = sorted((o for o in objs if o.rel not in clash), key=lambda o: o.key)
        if not objs:
            del out.datasets[dataset]
    for refused in out.blocked.values():
        refused.sort(key=lambda r: r.key)
    return out


def fingerprint(objects) -> list[list[str]]:
    """What the listing says about a dataset: sorted (relative key, ETag) pairs; a refused key
    counts as (`refused:<key>`, ETag), so removing or replacing it changes the fingerprint."""
    return sorted(_pair(o) for o in objects)


def _pair(o) -> list[str]:
    if isinstance(o, PriorObject):
        return [o.rel, o.etag]
    if isinstance(o, RefusedKey):
        return [f"refused:{o.key}", o.etag]
    return [o["rel"], o["etag"]]


def is_settled(objects: list[PriorObject], now: datetime | None, settle_seconds: float) -> bool:
    """True when the newest object is at least `settle_seconds` old (server clock if known)."""
    if settle_seconds <= 0 or not objects:
        return bool(objects)
    now = now or datetime.now(UTC)
    newest = max(o.last_modified for o in objects)
    return (now - newest).total_seconds() >= settle_seconds
