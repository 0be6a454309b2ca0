"""Views of a round's selection a person can read: which samples were picked, which were refused, and why.

Kedro-free. A round's tables (the data contract of docs/method.md) join on ``sample_id``:

- ``pool``: the samples (``prompt``, ``response``, ``level`` and, for composed pools, ``origin``);
- ``scores``: ``difficulty`` ``d = 1 − mean_k p_k`` and the action probabilities ``p_k``
  (absent for methods that never score: random, full);
- ``eligible``: the threshold step's ``eligible`` flag, ``threshold`` and ``percentile`` (absent
  for methods without a threshold: dpp, random, full);
- ``selection``: the picked ``sample_id``s in ``pick_order``.

:func:`selection_frame` puts them in one table with each sample's place in the round (``status``):

=======================  ==============================================================
``selected``             picked for training this round
``refused_eligible``     under the threshold, but the selector took others (DPP / uniform)
``refused_over``         over the threshold: too hard for this round's pace
``refused``              not picked, by a method without a threshold
``unscored``             no finite difficulty (not a scoring candidate, or scoring failed)
=======================  ==============================================================

:func:`examples` takes the few samples that show where the line was drawn (the easiest and the
hardest selected, the hardest refused though eligible, the easiest refused over the threshold),
:func:`mix` counts the pool, the eligible and the selected by level (or origin), and
:func:`selection_view` writes all of it as a short Markdown page.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from p3_pruning.data.inject import ORIGIN

STATUSES = ("selected", "refused_eligible", "refused_over", "refused", "unscored")
STATUS_TEXT = {
    "selected": "selected",
    "refused_eligible": "refused, eligible (under the threshold)",
    "refused_over": "refused, over the threshold",
    "refused": "refused",
    "unscored": "not scored",
}
# (title, status, easiest first?) of the example groups, in the order they are shown
GROUPS = (
    ("easiest selected", "selected", True),
    ("hardest selected", "selected", False),
    ("hardest refused, eligible", "refused_eligible", False),
    ("easiest refused, over the threshold", "refused_over", True),
    ("easiest refused", "refused", True),
    ("hardest refused", "refused", False),
)
TEXT_CHARS = 120  # prompt and response are cut to this many characters in a view


def selection_frame(
    pool: pd.DataFrame,
    selection: pd.DataFrame,
    scores: pd.DataFrame | None = None,
    eligible: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per pool sample with its round outcome.

    Returns the pool's columns plus ``difficulty`` (NaN where unknown), ``action_probs`` (a list,
    empty where unknown), ``eligible`` (bool; all True without a threshold), ``selected``,
    ``pick_order`` (NaN when not selected) and ``status`` (see the module doc), in pool order.

    >>> pool = pd.DataFrame({"sample_id": ["a", "b", "c"], "level": [1, 2, 3]})
    >>> scores = pd.DataFrame({"sample_id": ["a", "b", "c"], "difficulty": [0.1, 0.5, 0.9]})
    >>> eligible = scores.assign(eligible=[True, True, False])
    >>> selection = pd.DataFrame({"sample_id": ["a"], "pick_order": [0]})
    >>> selection_frame(pool, selection, scores, eligible)["status"].tolist()
    ['selected', 'refused_eligible', 'refused_over']
    """
    frame = pool.copy()
    ids = frame["sample_id"]
    unknown = set(selection["sample_id"]) - set(ids)
    if unknown:
        raise KeyError(
            f"selection names {len(unknown)} sample_id(s) not in the train pool, e.g. {sorted(unknown)[:3]}"
        )
    if scores is not None:
        by_id = scores.drop_duplicates("sample_id").set_index("sample_id")
        frame["difficulty"] = ids.map(by_id["difficulty"]).astype(float).to_numpy()
        probs = by_id["action_probs"] if "action_probs" in by_id else pd.Series(dtype=object)
        frame["action_probs"] = [_probs(probs.get(i)) for i in ids]
    else:  # methods that never score: the selection's own difficulty (NaN for random, full)
        by_id = selection.set_index("sample_id")
        known = by_id["difficulty"] if "difficulty" in by_id else pd.Series(dtype=float)
        frame["difficulty"] = ids.map(known).astype(float).to_numpy()
        frame["action_probs"] = [[] for _ in range(len(frame))]
    order = selection.reset_index(drop=True)
    if "pick_order" not in order:
        order = order.assign(pick_order=np.arange(len(order)))
    frame["selected"] = ids.isin(set(order["sample_id"])).to_numpy()
    frame["pick_order"] = ids.map(order.set_index("sample_id")["pick_order"]).to_numpy(float)
    finite = np.isfinite(frame["difficulty"].to_numpy(float))
    if eligible is not None:
        flags = eligible.drop_duplicates("sample_id").set_index("sample_id")["eligible"]
        frame["eligible"] = ids.map(flags).fillna(False).astype(bool).to_numpy()
        status = np.where(frame["eligible"], "refused_eligible", "refused_over")
    else:  # every scored sample is a candidate (every sample, for methods that never score)
        frame["eligible"] = finite if scores is not None else True
        status = np.full(len(frame), "refused", dtype=object)
    if scores is not None:
        status = np.where(finite, status, "unscored")
    frame["status"] = np.where(frame["selected"], "selected", status)
    return frame


def examples(frame: pd.DataFrame, k: int = 3) -> dict[str, pd.DataFrame]:
    """The ``k`` samples at each edge of the selection, by group title (see ``GROUPS``).

    Only groups with members and a known difficulty are returned; without any difficulty (random,
    full) the first ``k`` picks stand for the selection (``"first picks"``).
    """
    out: dict[str, pd.DataFrame] = {}
    known = frame[np.isfinite(frame["difficulty"].to_numpy(float))]
    for title, status, easiest_first in GROUPS:
        rows = known[known["status"] == status]
        if len(rows):
            rows = rows.sort_values(["difficulty", "sample_id"], ascending=easiest_first)
            out[title] = rows.head(k)
    if not out:
        picked = frame[frame["selected"]].sort_values("pick_order")
        if len(picked):
            out["first picks"] = picked.head(k)
    return out


def mix(frame: pd.DataFrame, by: str = "level") -> pd.DataFrame:
    """Counts of the pool, the eligible and the selected per value of ``by`` (``level`` or
    ``origin``), with the selected share; an empty frame when the pool has no such column, or,
    for ``origin``, a single value of it (a pool that was not composed is all ``clean``).

    >>> frame = pd.DataFrame({"level": [1, 1, 2], "eligible": [True, True, False],
    ...                       "selected": [True, False, False]})
    >>> mix(frame).to_dict("records")[0]
    {'level': 1, 'pool': 2, 'eligible': 2, 'selected': 1, 'selected_share': 1.0}
    """
    if by not in frame or frame[by].isna().all():
        return pd.DataFrame()
    if by == ORIGIN and frame[by].nunique() < 2:  # nothing was composed into the pool
        return pd.DataFrame()
    groups = frame.groupby(by, dropna=False, sort=True)
    table = pd.DataFrame(
        {
            "pool": groups.size(),
            "eligible": groups["eligible"].sum(),
            "selected": groups["selected"].sum(),
        }
    ).astype(int)
    total = max(int(table["selected"].sum()), 1)
    table["selected_share"] = table["selected"] / total
    return table.reset_index()


def counts(frame: pd.DataFrame) -> dict[str, int]:
    """``pool``, ``scored`` and one count per status present in ``STATUSES``."""
    out = {
        "pool": len(frame),
        "scored": int(np.isfinite(frame["difficulty"].to_numpy(float)).sum()),
    }
    seen = frame["status"].value_counts()
    out.update({s: int(seen[s]) for s in STATUSES if s in seen})
    return out


def selection_view(
    pool: pd.DataFrame,
    selection: pd.DataFrame,
    scores: pd.DataFrame | None = None,
    eligible: pd.DataFrame | None = None,
    *,
    title: str,
    k: int = 3,
) -> str:
    """A round's selection as Markdown: threshold and percentile, counts, difficulty, the mix by
    level (and origin) and the examples at each edge with their action probabilities.

    Args:
        pool, selection, scores, eligible: the round's tables (``scores`` None for methods that
            never score, ``eligible`` None for methods without a threshold).
        title: the round's namespace, e.g. ``p3.round_2``.
        k: examples per group.

    Returns:
        The page as one string (UTF-8 Markdown).
    """
    frame = selection_frame(pool, selection, scores, eligible)
    lines = [f"# {title}: selection", ""]
    if eligible is not None and len(eligible):
        threshold = float(eligible["threshold"].iloc[0])
        percentile = float(eligible["percentile"].iloc[0])
        lines.append(
            f"Threshold **{_num(threshold)}** (percentile {_num(percentile, 1)} of the scored "
            f"pool's difficulty): samples at or under it are eligible."
        )
    else:
        lines.append("No threshold: every scored sample is a candidate for the selector.")
    lines += ["", "| samples | count |", "| --- | ---: |"]
    numbers = counts(frame)
    lines.append(f"| pool | {numbers['pool']} |")
    if scores is not None:
        lines.append(f"| scored | {numbers['scored']} |")
    for status in STATUSES:
        if status in numbers:
            lines.append(f"| {STATUS_TEXT[status]} | {numbers[status]} |")
    d = frame["difficulty"].to_numpy(float)
    chosen = frame["selected"].to_numpy()
    if np.isfinite(d).any():
        lines += [
            "",
            f"Difficulty (1 − mean action probability): pool median {_num(np.median(d[np.isfinite(d)]))}, "
            f"selected mean {_mean(d[chosen])}, refused mean {_mean(d[~chosen])}.",
        ]
    for by in ("level", "origin"):
        table = mix(frame, by)
        if not table.empty:
            lines += ["", f"## Mix by {by}", "", f"| {by} | pool | eligible | selected | share |"]
            lines.append("| --- | ---: | ---: | ---: | ---: |")
            for row in table.to_dict("records"):
                lines.append(
                    f"| {_cell(row[by])} | {row['pool']} | {row['eligible']} | {row['selected']} "
                    f"| {100 * row['selected_share']:.0f} % |"
                )
    for group, rows in examples(frame, k).items():
        lines += ["", f"## {group.capitalize()}", ""]
        lines.append("| sample | difficulty | level | action probabilities | prompt | response |")
        lines.append("| --- | ---: | ---: | --- | --- | --- |")
        for row in rows.to_dict("records"):
            lines.append(
                f"| {_cell(row['sample_id'])} | {_num(row['difficulty'])} | {_cell(row.get('level'))} "
                f"| {format_probs(row['action_probs'])} | {_cell(row.get('prompt'))} "
                f"| {_cell(row.get('response'))} |"
            )
    return "\n".join(lines) + "\n"


def format_probs(probs, digits: int = 2, limit: int = 8) -> str:
    """Action probabilities as ``0.91 0.42 …`` (the first ``limit``; ``—`` when unknown).

    >>> format_probs([0.912, 0.4, 0.77])
    '0.91 0.40 0.77'
    """
    values = _probs(probs)
    if not values:
        return "—"
    text = " ".join(f"{p:.{digits}f}" for p in values[:limit])
    return text + (f" … ({len(values)})" if len(values) > limit else "")


def _probs(value) -> list[float]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [float(p) for p in np.asarray(value, dtype=float).ravel()]


def _num(value, digits: int = 3) -> str:
    value = float(value)
    return f"{value:.{digits}f}" if math.isfinite(value) else "—"


def _mean(values: np.ndarray) -> str:
    values = values[np.isfinite(values)]
    return _num(values.mean()) if len(values) else "—"


def _cell(value) -> str:
    """A value as one Markdown table cell: one line, pipes escaped, cut to ``TEXT_CHARS``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"
