"""Content duplicates: the same prompt and response under different sample ids.

Two records that say the same thing under two ids are one sample twice: the selection can pick it
twice, and a split by id can put one copy in the train pool and the other in the eval set (leakage).
:func:`content_groups` gives every row the ``sample_id`` of its content group's first member (in
``sample_id`` order; a row without a duplicate maps to itself). Content is compared exactly:
``prompt``, ``response`` and, for conversations, ``messages``.

:func:`handle_duplicates` reports them when the samples are loaded and, by ``data.duplicates``,
keeps them (``keep``, the default: a warning with the count) or moves every copy but the first of
each group to the quarantine table (``quarantine``). Kept or not, the seeded split
(``split.split_samples``) keeps each group on one side.
"""

from __future__ import annotations

import json
import logging

import pandas as pd

from p3_pruning.data.schema import RECORD_PREVIEW_CHARS, quarantine_frame

log = logging.getLogger(__name__)

DUPLICATES = ("keep", "quarantine")
CONTENT_COLUMNS = ("prompt", "response", "messages")


def content_groups(samples: pd.DataFrame) -> pd.Series:
    """Per row (same index), the ``sample_id`` of the first row (by ``sample_id``) with its content.

    >>> rows = pd.DataFrame({"sample_id": ["b", "a", "c"], "prompt": ["1+1", "1+1", "2+2"],
    ...                      "response": ["2", "2", "4"]})
    >>> content_groups(rows).tolist()
    ['a', 'a', 'c']
    """
    columns = [c for c in CONTENT_COLUMNS if c in samples.columns]
    key = samples[columns].astype(object).where(samples[columns].notna(), "")
    key = key.astype(str).agg("\x1f".join, axis=1)
    ids = samples["sample_id"].astype(str)
    return ids.groupby(key.to_numpy()).transform("min")


def _where(row: pd.Series) -> tuple[str, int]:
    """``(file, line)`` of a samples row from its ``meta`` (file sources record them)."""
    try:
        meta = json.loads(row.get("meta") or "{}")
    except (TypeError, ValueError):
        meta = {}
    return str(meta.get("file", "<samples>")), int(meta.get("line", 0) or 0)


def handle_duplicates(
    samples: pd.DataFrame, quarantine: pd.DataFrame, mode: str = "keep", *, what: str = "samples"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Report content duplicates in ``samples``; ``mode="quarantine"`` moves the extra copies.

    Returns ``(samples, quarantine)``: unchanged with ``keep``; with ``quarantine`` the rows that are
    not their group's first go to the quarantine table (``field`` prompt+response, ``reason`` naming
    the sample they repeat) and the rest keep their order. ``what`` names the table in messages.
    """
    if mode not in DUPLICATES:
        raise ValueError(f"data.duplicates must be one of {DUPLICATES}, got {mode!r}")
    if samples.empty:
        return samples, quarantine
    first = content_groups(samples)
    extra = first != samples["sample_id"].astype(str)
    n_extra = int(extra.sum())
    if not n_extra:
        return samples, quarantine
    row = samples[extra].iloc[0]
    file, line = _where(row)
    example = f"{row['sample_id']!r} ({file}:{line}) repeats {first[extra].iloc[0]!r}"
    n_groups = first[extra].nunique()
    if mode == "keep":
        log.warning(
            "%s: %d record(s) repeat the prompt and response of another under a different "
            "sample_id (%d distinct contents), e.g. %s; kept (data.duplicates: keep), and the split "
            "keeps each group on one side; set data.duplicates: quarantine to drop the copies",
            what,
            n_extra,
            n_groups,
            example,
        )
        return samples, quarantine
    rows = []
    for (_, dup), original in zip(samples[extra].iterrows(), first[extra], strict=True):
        file, line = _where(dup)
        record = dup.drop(labels=["meta"], errors="ignore").to_dict()
        rows.append(
            {
                "file": file,
                "line": line,
                "field": "prompt+response",
                "reason": f"duplicate content of sample {original!r}",
                "record": json.dumps(record, ensure_ascii=False, default=str)[
                    :RECORD_PREVIEW_CHARS
                ],
            }
        )
    log.warning(
        "%s: quarantined %d record(s) that repeat the prompt and response of another under a "
        "different sample_id (%d distinct contents), e.g. %s (data.duplicates: quarantine)",
        what,
        n_extra,
        n_groups,
        example,
    )
    quarantine = pd.concat([quarantine, quarantine_frame(rows)], ignore_index=True)
    return samples[~extra].reset_index(drop=True), quarantine


__all__ = ["DUPLICATES", "content_groups", "handle_duplicates"]
