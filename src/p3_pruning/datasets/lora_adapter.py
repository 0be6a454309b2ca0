"""Kedro dataset for a LoRA adapter folder (peft format), versioned like any Kedro file dataset.

Catalog example::

    "{namespace}.adapter":
      type: p3_pruning.datasets.lora_adapter.LoraAdapterDataset
      filepath: data/06_models/{namespace}/adapter
      versioned: true

With versioning the adapter lives in ``<filepath>/<version>/<name>/`` and holds
``adapter_config.json`` + ``adapter_model.safetensors``; ``PeftModel.from_pretrained`` reads that folder.
"""

from __future__ import annotations

import tempfile
from copy import deepcopy
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)

from p3_pruning.adapters import CONFIG_NAME, WEIGHTS_NAME, LoraAdapter


class LoraAdapterDataset(AbstractVersionedDataset[LoraAdapter, LoraAdapter]):
    """Save/load a :class:`~p3_pruning.adapters.LoraAdapter` as a peft adapter folder (any fsspec protocol)."""

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
            # A version counts only once its weights file is there (written last).
            exists_function=self._folder_complete,
            glob_function=self._fs.glob,
        )

    def _folder_complete(self, path: str) -> bool:
        return self._fs.exists(f"{path}/{WEIGHTS_NAME}") and self._fs.exists(
            f"{path}/{CONFIG_NAME}"
        )

    def _load(self) -> LoraAdapter:
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

    def _save(self, data: LoraAdapter) -> None:
        if not isinstance(data, LoraAdapter):
            raise DatasetError(
                f"LoraAdapterDataset at '{self._filepath}' can only save a LoraAdapter, got {type(data).__name__}"
            )
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        with tempfile.TemporaryDirectory(prefix="lora-save-") as tmp:
            data.save(tmp)
            self._fs.makedirs(save_path, exist_ok=True)
            for name in (
                CONFIG_NAME,
                WEIGHTS_NAME,
            ):  # weights last: their presence marks a complete folder
                self._fs.put(str(Path(tmp) / name), f"{save_path}/{name}")
        self._invalidate_cache()

    def _exists(self) -> bool:
        try:
            load_path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._folder_complete(load_path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}

    def _release(self) -> None:
        super()._release()
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))
