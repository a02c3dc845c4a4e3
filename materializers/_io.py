"""Copy whole directories between a local temp dir and the artifact store (local, S3, ...)."""

from __future__ import annotations

import os

from zenml.io import fileio


def upload_dir(local: str, uri: str) -> None:
    for root, _, files in os.walk(local):
        rel = os.path.relpath(root, local)
        dest = uri if rel == "." else os.path.join(uri, rel)
        fileio.makedirs(dest)
        for name in files:
            fileio.copy(os.path.join(root, name), os.path.join(dest, name), overwrite=True)


def download_dir(uri: str, local: str) -> None:
    for root, _, files in fileio.walk(uri):
        root = str(root)
        rel = os.path.relpath(root, uri)
        dest = local if rel == "." else os.path.join(local, rel)
        os.makedirs(dest, exist_ok=True)
        for name in files:
            fileio.copy(os.path.join(root, str(name)), os.path.join(dest, str(name)), overwrite=True)
