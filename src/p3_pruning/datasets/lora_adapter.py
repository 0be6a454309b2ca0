"""Kedro dataset for a LoRA adapter folder (peft format), versioned like any Kedro file dataset.

Catalog example::

    "{namespace}.adapter":
      type: p3_pruning.datasets.lora_adapter.LoraAdapterDataset
      filepath: data/06_models/{namespace}/adapter
      versioned: true

With versioning the adapter lives in ``<filepath>/<version>/<name>/`` and holds
``adapter_config.json`` + ``adapter_model.safetensors``; ``PeftModel.from_pretrained`` reads that folder.
The folder is written under a temporary name and renamed into place (``datasets.atomic``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from kedro.io.core import DatasetError, get_filepath_str

from p3_pruning.adapters import CONFIG_NAME, WEIGHTS_NAME, LoraAdapter
from p3_pruning.datasets.folder import VersionedFolderDataset


class LoraAdapterDataset(VersionedFolderDataset):
    """Save/load a :class:`~p3_pruning.adapters.LoraAdapter` as a peft adapter folder (any fsspec protocol)."""

    def _folder_complete(self, path: str) -> bool:
        # a version counts only once its weights file is there (written last)
        return self._fs.exists(f"{path}/{WEIGHTS_NAME}") and self._fs.exists(
            f"{path}/{CONFIG_NAME}"
        )

    def _read(self) -> LoraAdapter:
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        if not self._folder_complete(load_path):
            raise DatasetError(
                f"No LoRA adapter at '{load_path}': expected {CONFIG_NAME} and {WEIGHTS_NAME}"
            )
        if self._protocol == "file":
            return LoraAdapter.load(load_path)
        with tempfile.TemporaryDirectory(prefix="lora-load-") as tmp:
            for name in (CONFIG_NAME, WEIGHTS_NAME):
                self._fs.get(f"{load_path}/{name}", str(Path(tmp) / name))
            return LoraAdapter.load(tmp)

    def _write(self, data: LoraAdapter) -> None:
        if not isinstance(data, LoraAdapter):
            raise DatasetError(
                f"LoraAdapterDataset at '{self._filepath}' can only save a LoraAdapter, got {type(data).__name__}"
            )
        save_path = get_filepath_str(self._get_save_path(), self._protocol)  # the temporary folder
        if self._protocol == "file":
            data.save(save_path)
            return
        with tempfile.TemporaryDirectory(prefix="lora-save-") as tmp:
            data.save(tmp)
            self._fs.makedirs(save_path, exist_ok=True)
            for name in (
                CONFIG_NAME,
                WEIGHTS_NAME,
            ):  # weights last: their presence marks a complete folder
                self._fs.put(str(Path(tmp) / name), f"{save_path}/{name}")
