"""The part every versioned folder dataset of the project shares: an fsspec filesystem, versioned
paths, an atomic save (the folder is written under a temporary name beside its place, then renamed:
``datasets.atomic``), and "a version exists once its folder is complete" (the file written last is
there; a second guard where the file system cannot rename)."""

from __future__ import annotations

from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from p3_pruning.datasets.atomic import AtomicSave


class VersionedFolderDataset(AtomicSave, AbstractVersionedDataset):
    """Base of a dataset saved as a folder; subclasses say when a folder is complete and implement
    ``_read``/``_write`` (``_write`` fills the folder at ``self._get_save_path()``)."""

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        self._fs = fsspec.filesystem(
            protocol, **(deepcopy(credentials) or {}), **(deepcopy(fs_args) or {})
        )
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._folder_complete,
            glob_function=self._fs.glob,
        )

    def _folder_complete(self, path: str) -> bool:
        """Whether the folder at ``path`` holds a whole saved version."""
        raise NotImplementedError

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._folder_complete(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
