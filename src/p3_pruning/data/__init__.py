"""Data sources → the canonical samples table (Kedro-free).

- ``generate_default(n, seed, tasks=..., levels=...)``: offline reasoning-gym arithmetic with step solutions.
- ``load_samples(path, source, on_bad_record=..., columns=...)``: GSM8K, MATH, APPS, Alpaca, chat
  (OpenAI messages, ShareGPT), generic files, ``datasets`` folders, hub ids.
- ``export_selection(pool, selection, data=..., ...)``, ``write_export``, ``read_export``: a round's
  selection as the original records (``p3_pruning.data.export``).
- ``validate_samples(samples)``, ``split_samples(samples, eval_size=..., seed=..., stratify=...)``.
"""

from p3_pruning.data.export import export_selection, read_export, write_export
from p3_pruning.data.reasoning import DEFAULT_LEVELS, check_steps, generate_default
from p3_pruning.data.schema import (
    OPTIONAL_COLUMNS,
    QUARANTINE_COLUMNS,
    SAMPLE_COLUMNS,
    DataError,
    empty_quarantine,
    empty_samples,
    validate_samples,
)
from p3_pruning.data.sources import SOURCES, last_boxed, load_samples
from p3_pruning.data.split import split_samples

__all__ = [
    "DEFAULT_LEVELS",
    "OPTIONAL_COLUMNS",
    "QUARANTINE_COLUMNS",
    "SAMPLE_COLUMNS",
    "SOURCES",
    "DataError",
    "check_steps",
    "empty_quarantine",
    "empty_samples",
    "export_selection",
    "generate_default",
    "last_boxed",
    "load_samples",
    "read_export",
    "split_samples",
    "validate_samples",
    "write_export",
]
