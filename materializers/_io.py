"""A materializer base for artifacts stored as a directory of plain files (no pickle)."""

from __future__ import annotations

import os
from typing import Any

from zenml.io import fileio
from zenml.materializers.base_materializer import BaseMaterializer


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


class DirectoryMaterializer(BaseMaterializer):
    """Subclasses implement `write(data, directory)` and `read(directory, data_type)` on a local
    directory; this class moves it to and from the artifact store (local disk, S3, ...)."""

    SKIP_REGISTRATION = True

    def write(self, data: Any, directory: str) -> None:
        raise NotImplementedError

    def read(self, directory: str, data_type: type[Any]) -> Any:
        raise NotImplementedError

    def load(self, data_type: type[Any]) -> Any:
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            download_dir(self.uri, tmp)
            return self.read(tmp, data_type)

    def save(self, data: Any) -> None:
        with self.get_temporary_directory(delete_at_exit=True) as tmp:
            self.write(data, tmp)
            upload_dir(tmp, self.uri)
