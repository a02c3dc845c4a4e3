"""The watcher's memory: one JSON object in the bucket, updated read-modify-write with ETag conditions.

An object that is not JSON, not a JSON object, or whose `datasets` / `failed` sections or
entries have the wrong type is never silently overwritten: it is copied aside to
`<state key>.corrupt-<UTC timestamp>` (a write with `If-None-Match: *`), reported with its
`s3://` address, and replaced (with `If-Match` on its ETag) by what could be read of it:
the well-formed entries, or an empty state.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from scregnet.priors_store.keys import state_key
from scregnet.priors_store.s3io import get_bytes, is_conflict, put_json

_SHOWN_PROBLEMS = 5


def empty_state() -> dict:
    """A well-formed empty watcher state."""
    return {"version": 1, "datasets": {}, "failed": {}}


def _dataset_entry_problem(entry) -> str | None:
    if not isinstance(entry, dict):
        return f"a JSON {type(entry).__name__}, expected an object"
    files = entry.get("files", [])
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("rel"), str) and isinstance(f.get("etag"), str) for f in files
    ):
        return "'files' must be a list of objects with string 'rel' and 'etag'"
    return None


def _failure_entry_problem(entry) -> str | None:
    # Unreadable fields inside a failure entry are tolerated by `watch.held_back` (never blocking).
    return None if isinstance(entry, dict) else f"a JSON {type(entry).__name__}, expected an object"


def parse_state(raw: bytes) -> tuple[dict, list[str]]:
    """(state, problems): the well-formed part of a state object, and what was wrong with the rest."""
    try:
        value = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return empty_state(), [f"not UTF-8 JSON ({type(exc).__name__}: {str(exc)[:200]})"]
    if not isinstance(value, dict):
        return empty_state(), [f"a JSON {type(value).__name__}, expected an object"]
    problems = []
    for section, problem in (("datasets", _dataset_entry_problem), ("failed", _failure_entry_problem)):
        entries = value.setdefault(section, {})
        if not isinstance(entries, dict):
            problems.append(f"{section!r} is a JSON {type(entries).__name__}, expected an object")
            value[section] = {}
            continue
        for name in list(entries):
            why = problem(entries[name])
            if why:
                problems.append(f"{section}.{name}: {why}")
                del entries[name]
    value.setdefault("version", 1)
    return value, problems


class WatchState:
    """The watcher's memory, one JSON object in the bucket: `datasets` (dataset -> last trained
    manifest) and `failed` (dataset -> failure entry of the priors whose runs keep failing).
    `log` receives the warning when a corrupt object is moved aside (default: `logging`)."""

    def __init__(self, s3, bucket: str, prefix: str, log: Callable[[str], None] | None = None):
        self.s3, self.bucket, self.key = s3, bucket, state_key(prefix)
        self.log = log or logging.getLogger(__name__).warning

    def read(self) -> dict:
        """The state (well-formed; a corrupt object is moved aside first)."""
        return self._load()[0]

    def dataset(self, name: str) -> dict | None:
        """The last successful run recorded for `name`, or None."""
        return self.read()["datasets"].get(name)

    def _load(self, attempts: int = 5) -> tuple[dict, str | None]:
        """(state, ETag of the object it came from; None when there is none)."""
        for _ in range(attempts):
            raw, etag = get_bytes(self.s3, self.bucket, self.key)
            if raw is None:
                return empty_state(), None
            value, problems = parse_state(raw)
            if not problems:
                return value, etag
            try:
                return value, self._set_aside(raw, etag, value, problems)
            except Exception as exc:  # noqa: BLE001 - replaced meanwhile by another writer: read again
                if not is_conflict(exc):
                    raise
        raise RuntimeError(f"s3://{self.bucket}/{self.key}: kept changing while it was being repaired")

    def _set_aside(self, raw: bytes, etag: str | None, value: dict, problems: list[str]) -> str:
        """Copy the unusable object aside (never overwriting), report it, replace it by `value`."""
        aside = f"{self.key}.corrupt-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S.%fZ')}"
        try:
            self.s3.put_object(Bucket=self.bucket, Key=aside, Body=raw, IfNoneMatch="*")
        except Exception as exc:  # noqa: BLE001 - the same microsecond on another watcher: another name
            if not is_conflict(exc):
                raise
            aside += f"-{uuid.uuid4().hex[:8]}"
            self.s3.put_object(Bucket=self.bucket, Key=aside, Body=raw, IfNoneMatch="*")
        shown = "; ".join(problems[:_SHOWN_PROBLEMS])
        if len(problems) > _SHOWN_PROBLEMS:
            shown += f"; and {len(problems) - _SHOWN_PROBLEMS} more"
        kept = "the entries that could be read" if value["datasets"] or value["failed"] else "an empty state"
        self.log(
            f"warning: watcher state s3://{self.bucket}/{self.key} is unusable ({shown}); moved aside to "
            f"s3://{self.bucket}/{aside}, continuing with {kept}"
        )
        return put_json(self.s3, self.bucket, self.key, value, if_match=etag)

    def update(self, fn: Callable[[dict], None], attempts: int = 20) -> dict:
        """Read-modify-write with an ETag-conditional PUT; retried when another writer won."""
        last: BaseException | None = None
        for i in range(attempts):
            value, etag = self._load()
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
