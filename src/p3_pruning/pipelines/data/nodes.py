"""Nodes of the ``data`` pipeline: thin adapters from parameters to ``p3_pruning.data``."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from p3_pruning.data import (
    DataError,
    empty_quarantine,
    empty_samples,
    generate_default,
    load_samples,
    split_samples,
    validate_samples,
)
from p3_pruning.data.duplicates import handle_duplicates
from p3_pruning.data.inject import compose_pool, origin_counts

log = logging.getLogger(__name__)


def ingest_samples(data: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Raw samples, a separate eval file's samples (empty table when none) and the quarantine table.

    ``data.source: default`` generates the reasoning-gym default from ``data.default``; any other
    source loads ``data.path`` (and ``data.eval_path`` when set) with ``data.columns`` and
    ``data.on_bad_record``. Content duplicates (same prompt and response, another sample_id) are
    counted and kept or quarantined by ``data.duplicates``.
    """
    samples, eval_samples, quarantine = _ingest(data)
    mode = data.get("duplicates", "keep")
    samples, quarantine = handle_duplicates(
        samples, quarantine, mode, what=str(data.get("path") or "samples")
    )
    eval_samples, quarantine = handle_duplicates(
        eval_samples, quarantine, mode, what=str(data.get("eval_path") or "eval samples")
    )
    return samples, eval_samples, quarantine


def _ingest(data: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    if data["source"] == "default":
        if data["eval_path"]:
            raise ValueError(
                "data.eval_path needs a file source (data.source/data.path), not default"
            )
        options = data["default"]
        samples = generate_default(
            options["n"],
            options["seed"],
            tasks=options["tasks"],
            levels=options["levels"],
            fill=options.get("fill", False),
        )
        return samples, empty_samples(), empty_quarantine()

    if not data["path"]:
        raise ValueError(f"data.path is required when data.source is {data['source']!r}")
    load = {
        "source": data["source"],
        "on_bad_record": data["on_bad_record"],
        "columns": data["columns"],
    }
    samples, quarantine = load_samples(data["path"], **load)
    if samples.empty:
        raise DataError("no valid samples (all records quarantined)", file=str(data["path"]))
    eval_samples = empty_samples()
    if data["eval_path"]:
        eval_samples, eval_quarantine = load_samples(data["eval_path"], **load)
        if eval_samples.empty:
            raise DataError(
                "no valid samples (all records quarantined)", file=str(data["eval_path"])
            )
        quarantine = pd.concat([quarantine, eval_quarantine], ignore_index=True)
    return samples, eval_samples, quarantine


def validate(
    raw_samples: pd.DataFrame, raw_eval_samples: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check both tables against the samples schema (types, ids)."""
    return validate_samples(raw_samples), validate_samples(raw_eval_samples)


def split(
    samples: pd.DataFrame, eval_samples: pd.DataFrame, split_options: dict
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train_pool, eval_set)``: the given eval file's samples when there are any, else a seeded
    split; then at most ``max_train`` / ``max_eval`` rows of each (seeded, original order kept)."""
    options = {k: v for k, v in split_options.items() if k not in ("max_train", "max_eval")}
    if eval_samples.empty:
        train, evals = split_samples(samples, **options)
    else:
        overlap = set(samples["prompt"]) & set(eval_samples["prompt"])
        if overlap:
            log.warning(
                "%d eval prompt(s) also appear in the training file (possible leakage)",
                len(overlap),
            )
        train, evals = samples, eval_samples
    train = _at_most(train, split_options.get("max_train"), split_options["seed"])
    evals = _at_most(evals, split_options.get("max_eval"), split_options["seed"] + 1)
    log.info("train pool %d samples, eval set %d samples", len(train), len(evals))
    return train, evals


def _at_most(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """A seeded random subset of ``limit`` rows in their original order (all rows when None)."""
    if limit is None or len(frame) <= limit:
        return frame
    keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=limit, replace=False))
    return frame.iloc[keep].reset_index(drop=True)


def compose(train_pool: pd.DataFrame, inject: dict | None, source: str) -> pd.DataFrame:
    """The train pool with its ``origin`` column; with ``data.inject`` fractions set, a seeded
    share of its rows replaced by wrong answers, near-duplicates, off-task or too-hard samples
    (``p3_pruning.data.inject``). The eval set is never composed."""
    options = dict(inject or {})
    composed = compose_pool(train_pool, default_source=source == "default", **options)
    counts = {k: v for k, v in origin_counts(composed).items() if v}
    log.info("train pool %d samples by origin: %s", len(composed), counts)
    return composed
