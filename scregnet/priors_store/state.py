"""The watcher's memory: one JSON object in the bucket, updated read-modify-write with ETag conditions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from scregnet.priors_store.keys import state_key
from scregnet.priors_store.s3io import get_json, is_conflict, put_json


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
