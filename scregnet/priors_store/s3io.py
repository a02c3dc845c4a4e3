"""S3 plumbing shared by the listing, the state and the lease: the client, JSON objects read and
written with ETag conditions, and how a lost race (412/409) or a missing key looks."""

from __future__ import annotations

import json
import os
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def etag(value: str) -> str:
    """An ETag without its quotes."""
    return str(value or "").strip('"')


def server_time(response: dict) -> datetime | None:
    """The S3 server's clock: the response's `Date` header (None when absent or unreadable)."""
    date = (response.get("ResponseMetadata", {}).get("HTTPHeaders", {}) or {}).get("date")
    try:
        return parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None


def is_conflict(exc: BaseException) -> bool:
    """A failed S3 precondition (412) or a concurrent conditional write (409)."""
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code in CONFLICT_CODES or status in ("412", "409")


def is_missing(exc: BaseException) -> bool:
    """The key (or object) does not exist."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", "")) in ("NoSuchKey", "404", "NotFound")


def get_bytes(s3, bucket: str, key: str) -> tuple[bytes | None, str | None]:
    """(body, ETag) or (None, None) when the key does not exist."""
    from botocore.exceptions import ClientError

    try:
        r = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if is_missing(exc):
            return None, None
        raise
    return r["Body"].read(), etag(r.get("ETag"))


def get_json(s3, bucket: str, key: str) -> tuple[dict | None, str | None]:
    """(object, ETag) or (None, None) when the key does not exist; ValueError when it is not JSON."""
    body, tag = get_bytes(s3, bucket, key)
    if body is None:
        return None, None
    return json.loads(body or b"{}"), tag


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
    return etag(r.get("ETag"))


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
