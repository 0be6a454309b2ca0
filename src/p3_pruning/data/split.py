"""Seeded, stratified train-pool / eval-set split of a samples table."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from p3_pruning.data.duplicates import content_groups

log = logging.getLogger(__name__)
MISSING = "<missing>"


def _eval_count(eval_size: int | float, n: int) -> int:
    if isinstance(eval_size, bool) or not isinstance(eval_size, (int, float)):
        raise ValueError(f"eval_size must be an int or a fraction in (0, 1), got {eval_size!r}")
    if isinstance(eval_size, float) and not eval_size.is_integer():
        if not 0 < eval_size < 1:
            raise ValueError(f"eval_size as a fraction must be in (0, 1), got {eval_size}")
        count = max(1, round(eval_size * n))
    else:
        count = int(eval_size)
    if not 1 <= count <= n - 1:
        raise ValueError(
            f"eval_size {eval_size!r} gives {count} eval samples out of {n}: need 1 … {n - 1} "
            "so both sides are non-empty"
        )
    return count


def _allocate(sizes: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Integer eval counts per stratum, proportional to ``sizes`` and summing to ``total``.

    Largest-remainder rounding; ties in the remainder are broken at random (seeded).
    """
    exact = sizes * total / sizes.sum()
    counts = np.floor(exact).astype(int)
    short = total - int(counts.sum())
    order = np.lexsort((rng.random(len(sizes)), -(exact - counts)))
    for i in order[:short]:
        counts[i] += 1
    return counts


def split_samples(
    samples: pd.DataFrame,
    *,
    eval_size: int | float,
    seed: int,
    stratify: tuple[str, ...] | list[str] | None = ("source", "level"),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split into ``(train_pool, eval_set)``: disjoint, together all rows, original row order kept.

    ``eval_size``: a count, or a fraction of the rows. With ``stratify`` each stratum (distinct
    values of those columns, missing values as their own value) gives the eval set its
    proportional share (largest-remainder rounding). The result depends only on the rows'
    ``sample_id``\\s and ``seed``, not on the row order.

    Rows with the same content (prompt, response, messages) under different ids stay on one side:
    the split draws among distinct contents (each represented by its first ``sample_id``; so
    ``eval_size`` counts distinct contents) and every copy follows its group.
    """
    if "sample_id" not in samples.columns:
        raise ValueError("samples has no 'sample_id' column; run validate_samples first")
    if not samples["sample_id"].is_unique:
        raise ValueError("samples has duplicate sample_id values; run validate_samples first")
    groups = content_groups(samples).to_numpy()
    first = groups == samples["sample_id"].astype(str).to_numpy()
    if not first.all():  # content duplicates: split the distinct contents, copies follow
        _, eval_first = split_samples(
            samples.loc[first], eval_size=eval_size, seed=seed, stratify=stratify
        )
        is_eval = np.isin(groups, eval_first["sample_id"].astype(str).to_numpy())
        log.info(
            "split: %d rows repeat another's content; each follows its group (%d distinct)",
            int((~first).sum()),
            int(first.sum()),
        )
        return (
            samples.loc[~is_eval].reset_index(drop=True),
            samples.loc[is_eval].reset_index(drop=True),
        )
    n_eval = _eval_count(eval_size, len(samples))
    stratify = list(stratify or [])
    missing = [c for c in stratify if c not in samples.columns]
    if missing:
        raise ValueError(
            f"stratify column(s) {missing} not in samples (has {list(samples.columns)})"
        )

    rng = np.random.default_rng(seed)
    # Canonical order (by sample_id) so the draw does not depend on how the rows came in.
    order = np.argsort(samples["sample_id"].to_numpy().astype(str), kind="stable")
    if stratify:
        keys = samples[stratify].astype(object).where(samples[stratify].notna(), MISSING)
        keys = keys.astype(str).agg("\x1f".join, axis=1).to_numpy()[order]
    else:
        keys = np.zeros(len(samples), dtype=str)
    strata, inverse = np.unique(keys, return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(strata))
    counts = _allocate(sizes, n_eval, rng)

    is_eval = np.zeros(len(samples), dtype=bool)
    for s, count in enumerate(counts):
        members = order[inverse == s]
        is_eval[rng.permutation(members)[:count]] = True
    train_pool = samples.loc[~is_eval].reset_index(drop=True)
    eval_set = samples.loc[is_eval].reset_index(drop=True)
    log.info(
        "split %d samples into train pool %d and eval set %d (seed %d, %d strata by %s)",
        len(samples),
        len(train_pool),
        len(eval_set),
        seed,
        len(strata),
        stratify or "nothing",
    )
    return train_pool, eval_set
