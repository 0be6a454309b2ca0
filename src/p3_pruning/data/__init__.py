"""Data sources → the canonical samples table (Kedro-free).

- ``generate_default(n, seed, tasks=..., levels=...)``: offline reasoning-gym arithmetic with step solutions.
- ``load_samples(path, source, on_bad_record=..., columns=...)``: GSM8K, MATH, APPS, generic files, hub ids.
- ``validate_samples(samples)``, ``split_samples(samples, eval_size=..., seed=..., stratify=...)``.
"""

from p3_pruning.data.reasoning import DEFAULT_LEVELS, check_steps, generate_default
from p3_pruning.data.schema import (
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
    "QUARANTINE_COLUMNS",
    "SAMPLE_COLUMNS",
    "SOURCES",
    "DataError",
    "check_steps",
    "empty_quarantine",
    "empty_samples",
    "generate_default",
    "last_boxed",
    "load_samples",
    "split_samples",
    "validate_samples",
]
