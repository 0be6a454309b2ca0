"""A versioned Kedro dataset for one numpy array stored as ``.npy`` (e.g. a round's embeddings),
saved atomically (``datasets.atomic``)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import fsspec
import numpy as np
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from p3_pruning.datasets.atomic import AtomicSave


class NumpyDataset(AtomicSave, AbstractVersionedDataset[np.ndarray, np.ndarray]):
    """Save/load a numpy array as ``.npy``; versioned like any Kedro file dataset.

    Example catalog entry::

        "{method}.round_{e}.embeddings":
          type: p3_pruning.datasets.numpy_dataset.NumpyDataset
          filepath: data/04_feature/{method}/round_{e}/embeddings.npy
          versioned: true
    """

    def __init__(
        self, *, filepath: str, version: Version | None = None, metadata: dict | None = None
    ):
        protocol, path = get_protocol_and_path(filepath, version)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    def _read(self) -> np.ndarray:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, "rb") as f:
            return np.load(f, allow_pickle=False)

    def _write(self, data: np.ndarray) -> None:
        if not isinstance(data, np.ndarray):
            raise TypeError(
                f"NumpyDataset({self._filepath}) expects a numpy array, got {type(data).__name__}"
            )
        path = get_filepath_str(self._get_save_path(), self._protocol)
        self._fs.makedirs(str(PurePosixPath(path).parent), exist_ok=True)
        with self._fs.open(path, "wb") as f:
            np.save(f, data, allow_pickle=False)
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:  # no version saved yet
            return False
        return self._fs.exists(path)

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}
