"""What is in the bucket: one listing of the prefix, grouped by dataset, and when an upload is settled."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from scregnet.priors_store.keys import STATE_DIR, UnsafeKeyError, is_prior_file, normalize_prefix, split_key
from scregnet.priors_store.s3io import etag, server_time


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


def list_priors(s3, bucket: str, prefix: str) -> Listing:
    """Every prior file under the prefix, grouped by dataset (boto3's paginator, one pass)."""
    prefix = normalize_prefix(prefix)
    state_prefix = prefix + STATE_DIR + "/"
    out = Listing()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out.server_time = server_time(page) or out.server_time
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
                PriorObject(key, rel, etag(obj.get("ETag")), int(obj.get("Size", 0)), obj["LastModified"])
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
