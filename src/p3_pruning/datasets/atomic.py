"""Atomic saves: a dataset version exists whole or not at all.

Kedro's file datasets write straight into their version folder, so a run killed during a save leaves
a half-written ``scores.parquet`` that a resumed run (``kedro run --only-missing-outputs``) takes for a
finished output. Every dataset of this project therefore writes to a hidden temporary name in the same
folder, ``.<name>.partial-<pid>-<random>``, and renames it onto ``<name>`` once the write has returned
(``os.replace``: atomic on one file system; a folder is renamed the same way). A write that fails
removes its temporary; one killed outright leaves it behind under a name no version lookup matches.

A finished file that still cannot be read (truncated or overwritten by hand) is reported with the
dataset, its path and how to recompute it, instead of the reader's bare error.

The catalog uses the subclasses below in place of Kedro's own (same options)::

    "{method}.round_{e}.scores":
      type: p3_pruning.datasets.atomic.ParquetDataset
      filepath: data/04_feature/{method}/round_{e}/scores.parquet
      versioned: true

Project datasets (numpy, LoRA adapter, export folder) inherit :class:`AtomicSave` and implement
``_write`` / ``_read``.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import PurePosixPath
from typing import Any

from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import CSVDataset as _CSVDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset

PARTIAL = ".partial-"  # marks a temporary being written: `.<name>.partial-<pid>-<hex>`


def partial_name(name: str) -> str:
    """The hidden temporary name a save of ``name`` writes to before the rename."""
    return f".{name}{PARTIAL}{os.getpid()}-{secrets.token_hex(4)}"


class AtomicSave:
    """Mixin for a Kedro dataset with ``self._fs`` and ``self._protocol``: ``save`` writes through
    ``_write`` to a temporary beside the target and renames it into place; ``load`` reads through
    ``_read`` and names the file when it cannot be read. Put it first among the bases.

    Subclasses implement ``_write(data)`` (writing to ``self._get_save_path()``) and ``_read()``."""

    _partial_path: PurePosixPath | None = None

    def _write(self, data: Any) -> None:  # pragma: no cover - every subclass implements it
        raise NotImplementedError

    def _read(self) -> Any:  # pragma: no cover - every subclass implements it
        raise NotImplementedError

    def _get_save_path(self) -> PurePosixPath:
        # while a save runs, the writer is handed the temporary path
        if self._partial_path is not None:
            return self._partial_path
        return super()._get_save_path()  # type: ignore[misc]

    # `_save`/`_load`, not `save`/`load`: Kedro wraps a class's `_save` afresh for every subclass,
    # while an inherited, already wrapped versioned `save` would be wrapped twice (two save versions)
    def _save(self, data: Any) -> None:
        final = self._get_save_path()
        partial = final.parent / partial_name(final.name)
        final_str = get_filepath_str(final, self._protocol)
        partial_str = get_filepath_str(partial, self._protocol)
        self._fs.makedirs(get_filepath_str(final.parent, self._protocol), exist_ok=True)
        self._partial_path = partial
        try:
            self._write(data)
            self._place(partial_str, final_str)
        except BaseException:
            self._remove(partial_str)
            raise
        finally:
            self._partial_path = None
        self._invalidate_cache()

    def _place(self, partial: str, final: str) -> None:
        """Rename the finished temporary onto its name."""
        if self._protocol != "file":  # object stores have no rename; a copy is the closest
            self._fs.mv(partial, final, recursive=True)
        elif os.path.isdir(final):  # an unversioned folder saved again: swap, then drop the old one
            parent, name = os.path.split(final)
            old = os.path.join(parent, f".{name}.old-{os.getpid()}-{secrets.token_hex(4)}")
            os.replace(final, old)
            os.replace(partial, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(partial, final)

    def _remove(self, path: str) -> None:
        try:
            if self._fs.exists(path):
                self._fs.rm(path, recursive=True)
        except OSError:  # the save's own error is the one to report
            pass

    def _load(self) -> Any:
        try:
            return self._read()
        except (DatasetError, FileNotFoundError):
            raise
        except Exception as exc:
            path = get_filepath_str(self._get_load_path(), self._protocol)  # type: ignore[attr-defined]
            raise DatasetError(unreadable(type(self).__name__, path, self._version, exc)) from exc  # type: ignore[attr-defined]


def unreadable(dataset: str, path: str, version, exc: BaseException) -> str:
    """The message for a finished output that cannot be read: what, where, how to recompute it."""
    where = str(PurePosixPath(path).parent) if version else path
    return (
        f"{dataset} at '{path}' cannot be read ({type(exc).__name__}: {exc}): the file is corrupt "
        f"(truncated, or changed after it was written). Recompute it: delete '{where}' and resume "
        "with `kedro run --only-missing-outputs` (which reruns the node that writes it, unless an "
        "older version of this dataset is left, which it would read instead), or run the pipeline "
        "again without --only-missing-outputs."
    )


def _unwrapped(method):
    """The dataset class's own ``save``/``load``, without Kedro's logging/versioning wrapper."""
    return getattr(method, "__wrapped__", method)


class ParquetDataset(AtomicSave, _ParquetDataset):
    """``pandas.ParquetDataset``, saved atomically."""

    _write = _unwrapped(_ParquetDataset.save)
    _read = _unwrapped(_ParquetDataset.load)


class JSONDataset(AtomicSave, _JSONDataset):
    """``json.JSONDataset``, saved atomically."""

    _write = _unwrapped(_JSONDataset.save)
    _read = _unwrapped(_JSONDataset.load)


class CSVDataset(AtomicSave, _CSVDataset):
    """``pandas.CSVDataset``, saved atomically."""

    _write = _unwrapped(_CSVDataset.save)
    _read = _unwrapped(_CSVDataset.load)


class MatplotlibDataset(AtomicSave, _MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` (one figure, or a folder of them), saved atomically."""

    _write = _unwrapped(_MatplotlibDataset.save)
    _read = _unwrapped(_MatplotlibDataset.load)


__all__ = [
    "AtomicSave",
    "CSVDataset",
    "JSONDataset",
    "MatplotlibDataset",
    "ParquetDataset",
    "partial_name",
    "unreadable",
]
