"""Prior files (ChIP-seq TF -> target tables) kept in S3, as versioned training inputs.

Layout: `s3://BUCKET/PREFIX/<dataset>/<file>.csv|.tsv|.txt|.gmt[.gz]`; the labels of a dataset are the
union of all its prior files. Core library: boto3 only (no ZenML, no MLflow); the S3
client is passed in, so any S3-compatible endpoint works (AWS, MinIO, moto).

One job per module:
- `keys`: which keys are prior files of which dataset, and where they go on disk. One judge
  (`split_key`, used by the listing and again by the download) refuses keys that would
  escape the prefix or cannot be written locally (`..`, absolute on any OS, backslashes,
  control characters, a name over 255 bytes, a path too long); `colliding` refuses files
  of a dataset that cannot coexist (`a.csv` next to `a.csv/b.csv`, names equal up to case).
- `listing`: `list_priors`, one listing of the prefix with boto3's paginator, grouped by
  dataset; `is_settled`: an upload batch is settled when its newest object is
  `settle_seconds` old by the S3 server's clock (the `Date` header of the listing), so a
  watcher does not train on the first half of a multi-file upload and clock skew does not
  matter.
- `manifest`: `materialize` downloads a dataset's files (each GET conditional on the listed
  ETag), hashes them, and writes the manifest (keys, ETags, sha256; its own sha256 over
  (relative key, sha256) pairs) next to them, under `<root>/<dataset>/<manifest sha256>/`.
- `s3io`: the client, JSON objects read and written with ETag conditions, lost races.
- `state`: `WatchState`, one JSON object in the bucket (`PREFIX/.scregnet-watch/state.json`):
  `datasets` (last successful run per dataset) and `failed` (the current failure streak per
  dataset, see `scregnet.watch`), updated read-modify-write with an ETag-conditional PUT
  (`If-Match`, or `If-None-Match: *` when creating), retried on conflict. A corrupt or
  wrong-typed object is copied aside, reported, and replaced by what could be read of it.
- `lease`: `S3Lock`, a lease object per dataset created with `If-None-Match: *` (S3
  conditional writes), renewed by a heartbeat with `If-Match` on its own ETag, released
  with a conditional DELETE; an expired lease (owner crashed) is taken over with `If-Match`
  on the stale ETag, so exactly one contender wins.
"""

from scregnet.priors_store.keys import (
    DATASET_RE,
    FILES_DIR,
    MAX_NAME_BYTES,
    PRIOR_SUFFIXES,
    STATE_DIR,
    STATE_FILE,
    UnsafeKeyError,
    colliding,
    is_prior_file,
    local_path_bytes,
    lock_key,
    normalize_prefix,
    safe_join,
    split_key,
    state_key,
)
from scregnet.priors_store.lease import S3Lock
from scregnet.priors_store.listing import Listing, PriorObject, RefusedKey, fingerprint, is_settled, list_priors
from scregnet.priors_store.manifest import (
    MANIFEST_FILE,
    ChangedDuringDownload,
    manifest_files,
    manifest_sha256,
    materialize,
    prior_manifest_tags,
)
from scregnet.priors_store.s3io import CONFLICT_CODES, get_bytes, get_json, is_conflict, put_json, s3_client
from scregnet.priors_store.state import WatchState, parse_state

__all__ = [
    "CONFLICT_CODES",
    "DATASET_RE",
    "FILES_DIR",
    "MANIFEST_FILE",
    "MAX_NAME_BYTES",
    "PRIOR_SUFFIXES",
    "STATE_DIR",
    "STATE_FILE",
    "ChangedDuringDownload",
    "Listing",
    "PriorObject",
    "RefusedKey",
    "S3Lock",
    "UnsafeKeyError",
    "WatchState",
    "colliding",
    "fingerprint",
    "get_bytes",
    "get_json",
    "is_conflict",
    "is_prior_file",
    "is_settled",
    "list_priors",
    "local_path_bytes",
    "lock_key",
    "manifest_files",
    "manifest_sha256",
    "materialize",
    "normalize_prefix",
    "parse_state",
    "prior_manifest_tags",
    "put_json",
    "s3_client",
    "safe_join",
    "split_key",
    "state_key",
]
