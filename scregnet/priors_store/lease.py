"""A per-dataset lease in S3, so that of several watchers exactly one trains a change."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from datetime import UTC, datetime

from scregnet.priors_store.s3io import etag, get_json, is_conflict, is_missing, put_json, server_time


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
        try:
            value, tag = get_json(self.s3, self.bucket, self.key)
        except ValueError:  # not JSON (UnicodeDecodeError is one): not our lease
            return False
        if not isinstance(value, dict) or value.get("token") != self.token:
            return False
        self.etag = tag
        return True

    def _expired(self) -> tuple[bool, str | None]:
        from botocore.exceptions import ClientError

        try:
            head = self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if is_missing(exc) or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")) == "404":
                return True, None
            raise
        now = server_time(head) or datetime.now(UTC)
        age = (now - head["LastModified"]).total_seconds()
        return age > self.lease, etag(head.get("ETag"))

    def acquire(self) -> bool:
        """Take the lease (or an expired one); False when another watcher holds it."""
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
            if is_conflict(exc) or is_missing(exc):
                return False
            raise
        return self._verify()

    def renew(self) -> bool:
        """Rewrite the lease if it is still ours; False (and `lost`) once it was taken."""
        with self._mutex:
            if self.etag is None or self.lost:
                return False
            try:
                self.etag = put_json(self.s3, self.bucket, self.key, self._body(), if_match=self.etag)
                return True
            except Exception as exc:  # noqa: BLE001
                if is_conflict(exc) or is_missing(exc):
                    self.lost = True
                    return False
                return True  # transient error: the lease has not expired yet; try again next beat

    def _beat(self) -> None:
        interval = max(0.5, self.lease / 3)
        while not self._stop.wait(interval):
            if not self.renew():
                return

    def start_heartbeat(self) -> None:
        """Renew the lease every third of its length on a daemon thread."""
        self._thread = threading.Thread(target=self._beat, name=f"lease {self.key}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and delete the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._mutex:
            if self.etag is None or self.lost:
                return
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=f'"{self.etag}"')
            except Exception as exc:  # noqa: BLE001 - someone took over an expired lease: not ours to delete
                if not (is_conflict(exc) or is_missing(exc)):
                    raise
            self.etag = None

    def __enter__(self) -> S3Lock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
