"""A versioned Kedro dataset for an exported selection: a folder with JSONL, a ``datasets`` folder and a
manifest (``p3_pruning.data.export``).

Catalog example::

    "{method}.round_{e}.export":
      type: p3_pruning.datasets.export_dataset.ExportDataset
      filepath: data/05_model_input/{method}/round_{e}/export
      versioned: true

Saves ``{"records": [...], "manifest": {...}}``; with versioning the folder is
``<filepath>/<version>/export/`` holding ``records.jsonl``, ``hf/`` and ``manifest.json``.
"""

from __future__ import annotations

import tempfile
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

from p3_pruning.data.export import MANIFEST_FILE, read_export, write_export


class ExportDataset(AbstractVersionedDataset[dict, dict]):
    """Save/load an exported selection folder (any fsspec protocol; written locally, then copied)."""

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
            # a version counts once its manifest is there (written last)
            exists_function=lambda p: self._fs.exists(f"{p}/{MANIFEST_FILE}"),
            glob_function=self._fs.glob,
        )

    def load(self) -> dict:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        if not self._fs.exists(f"{path}/{MANIFEST_FILE}"):
            raise DatasetError(f"No exported selection at '{path}': no {MANIFEST_FILE}")
        if self._protocol == "file":
            records, manifest = read_export(path)
        else:
            with tempfile.TemporaryDirectory(prefix="p3-export-") as tmp:
                self._fs.get(path, tmp, recursive=True)
                records, manifest = read_export(tmp)
        return {"records": records, "manifest": manifest}

    def save(self, data: dict) -> None:
        if not isinstance(data, dict) or set(data) != {"records", "manifest"}:
            raise DatasetError(
                f"ExportDataset at '{self._filepath}' saves a dict with 'records' and 'manifest', "
                f"got {type(data).__name__} {sorted(data) if isinstance(data, dict) else ''}"
            )
        path = get_filepath_str(self._get_save_path(), self._protocol)
        if self._protocol == "file":
            write_export(data["records"], data["manifest"], path)
        else:
            with tempfile.TemporaryDirectory(prefix="p3-export-") as tmp:
                write_export(data["records"], data["manifest"], tmp)
                self._fs.makedirs(path, exist_ok=True)
                self._fs.put(f"{tmp}/", path, recursive=True)
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(f"{path}/{MANIFEST_FILE}")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
