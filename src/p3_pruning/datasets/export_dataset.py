"""A versioned Kedro dataset for an exported selection: a folder with JSONL, a ``datasets`` folder and a
manifest (``p3_pruning.data.export``).

Catalog example::

    "{method}.round_{e}.export":
      type: p3_pruning.datasets.export_dataset.ExportDataset
      filepath: data/05_model_input/{method}/round_{e}/export
      versioned: true

Saves ``{"records": [...], "manifest": {...}}``; with versioning the folder is
``<filepath>/<version>/export/`` holding ``records.jsonl``, ``hf/`` and ``manifest.json``, written
under a temporary name and renamed into place (``datasets.atomic``).
"""

from __future__ import annotations

import tempfile

from kedro.io.core import DatasetError, get_filepath_str

from p3_pruning.data.export import MANIFEST_FILE, read_export, write_export
from p3_pruning.datasets.folder import VersionedFolderDataset


class ExportDataset(VersionedFolderDataset):
    """Save/load an exported selection folder (any fsspec protocol; written locally, then copied)."""

    def _folder_complete(self, path: str) -> bool:
        return self._fs.exists(f"{path}/{MANIFEST_FILE}")  # the manifest is written last

    def _read(self) -> dict:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        if not self._folder_complete(path):
            raise DatasetError(f"No exported selection at '{path}': no {MANIFEST_FILE}")
        if self._protocol == "file":
            records, manifest = read_export(path)
        else:
            with tempfile.TemporaryDirectory(prefix="p3-export-") as tmp:
                self._fs.get(path, tmp, recursive=True)
                records, manifest = read_export(tmp)
        return {"records": records, "manifest": manifest}

    def _write(self, data: dict) -> None:
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
