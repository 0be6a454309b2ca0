"""The selection audit: what a round's selection took out of a composed pool (Kedro-free).

A composed pool (:mod:`p3_pruning.data.inject`) marks every row with its ``origin`` (clean,
noise, duplicate, off_task, too_hard). For one round of one method the audit measures

- ``audit_pool_share/<origin>``: the origin's share of the pool;
- ``audit_selected_share/<origin>``: its share of the round's selection. A selector that leaves
  the origin out has selected share < pool share; ``random`` is the control (equal in
  expectation);
- ``audit_auroc/<origin>``: the AUROC of the round's difficulty separating the origin's rows from
  the clean rows (samples with finite difficulty): P(d_origin > d_clean) + ½ P(tie). 0.5: the
  difficulty does not tell them apart; above 0.5 the origin looks harder than clean data, so an
  easy-first threshold keeps it out while a "prefer the harder" quality draws it in. NaN for a
  method that never scores;
- ``audit_distinct_share/pool`` and ``audit_distinct_share/selection``, for a pool with
  near-duplicates only: distinct problems per row (a near-duplicate and its source count once,
  ``inject.problem_of``). 1.0: nothing repeats. A pool of 50 % duplicates is 0.5; a random
  selection of 60 of its 150 rows holds about 0.8; a selector that avoids redundancy nears 1.0.

Origins absent from the pool are left out; a pool without an ``origin`` column is all clean.
The audit is the only reader of ``origin``; no selector may read it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from p3_pruning.data.inject import CLEAN, ORIGIN, ORIGINS, problem_of
from p3_pruning.plotting import subplots

POOL_SHARE = "audit_pool_share"
SELECTED_SHARE = "audit_selected_share"
AUROC = "audit_auroc"
DISTINCT_SHARE = "audit_distinct_share"
AUDIT_PREFIXES = (POOL_SHARE, SELECTED_SHARE, AUROC, DISTINCT_SHARE)


def auroc(positive, negative) -> float:
    """P(x_pos > x_neg) + ½ P(tie) from ranks (Mann–Whitney U / (n_pos · n_neg)); NaN if a side is
    empty."""
    pos = np.asarray(positive, dtype=np.float64)
    neg = np.asarray(negative, dtype=np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def distinct_share(sample_ids) -> float:
    """Distinct problems per row among ``sample_ids`` (module doc); NaN when there are none."""
    ids = list(sample_ids)
    if not ids:
        return math.nan
    return len({problem_of(i) for i in ids}) / len(ids)


def origins_of(pool: pd.DataFrame) -> pd.Series:
    """``sample_id`` → origin (all clean when the pool has no ``origin`` column)."""
    ids = pool["sample_id"].to_numpy()
    values = pool[ORIGIN].to_numpy() if ORIGIN in pool.columns else np.full(len(ids), CLEAN)
    return pd.Series(values, index=ids, name=ORIGIN)


def with_origin(selection: pd.DataFrame, pool: pd.DataFrame) -> pd.DataFrame:
    """The selection table with each row's ``origin`` appended (for people and the audit, after the
    pick: the selector itself never saw it)."""
    out = selection.copy()
    out[ORIGIN] = selection["sample_id"].map(origins_of(pool)).to_numpy()
    return out


def selection_audit(
    pool: pd.DataFrame, selection: pd.DataFrame, scores: pd.DataFrame | None = None
) -> dict[str, float]:
    """The audit of one round (module doc) as a flat record of plain floats."""
    origin = origins_of(pool)
    present = [o for o in ORIGINS if (origin == o).any()]
    chosen = selection["sample_id"].map(origin)
    out: dict[str, float] = {}
    for name in present:
        out[f"{POOL_SHARE}/{name}"] = float((origin == name).mean())
        out[f"{SELECTED_SHARE}/{name}"] = (
            float((chosen == name).mean()) if len(chosen) else math.nan
        )
    if "duplicate" in present:
        out[f"{DISTINCT_SHARE}/pool"] = distinct_share(pool["sample_id"])
        out[f"{DISTINCT_SHARE}/selection"] = distinct_share(selection["sample_id"])
    if scores is None or "difficulty" not in scores.columns:
        return {**out, **{f"{AUROC}/{n}": math.nan for n in present if n != CLEAN}}
    d = pd.Series(scores["difficulty"].to_numpy(dtype=np.float64), index=scores["sample_id"])
    d = d[np.isfinite(d.to_numpy())]
    kind = d.index.map(origin)
    clean = d.to_numpy()[kind == CLEAN]
    for name in present:
        if name != CLEAN:
            out[f"{AUROC}/{name}"] = auroc(d.to_numpy()[kind == name], clean)
    return out


def audit_table(summaries: list[dict]) -> pd.DataFrame:
    """Long table ``method, seed, round, origin, pool_share, selected_share, auroc`` from round
    summaries that carry the audit (rows only for origins the pool had); on the ``duplicate``
    rows also ``pool_distinct`` / ``selected_distinct`` (the distinct shares, NaN elsewhere)."""
    rows = []
    for summary in summaries:
        for name in ORIGINS:
            key = f"{POOL_SHARE}/{name}"
            if key not in summary:
                continue
            rows.append(
                {
                    "method": summary["method"],
                    "seed": summary.get("seed"),
                    "round": int(summary["round"]),
                    "origin": name,
                    "pool_share": float(summary[key]),
                    "selected_share": float(summary.get(f"{SELECTED_SHARE}/{name}", math.nan)),
                    "auroc": float(summary.get(f"{AUROC}/{name}", math.nan)),
                    "pool_distinct": _distinct(summary, name, "pool"),
                    "selected_distinct": _distinct(summary, name, "selection"),
                }
            )
    columns = [
        "method",
        "seed",
        "round",
        "origin",
        "pool_share",
        "selected_share",
        "auroc",
        "pool_distinct",
        "selected_distinct",
    ]
    return pd.DataFrame(rows, columns=columns)


def _distinct(summary: dict, origin: str, side: str) -> float:
    if origin != "duplicate":
        return math.nan
    return float(summary.get(f"{DISTINCT_SHARE}/{side}", math.nan))


def audit_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds per method, round and origin (with the seed count)."""
    if table.empty:
        return table.assign(seeds=pd.Series(dtype=int))
    grouped = table.groupby(["method", "round", "origin"], sort=False)
    out = grouped[
        ["pool_share", "selected_share", "auroc", "pool_distinct", "selected_distinct"]
    ].mean()
    out["seeds"] = grouped["seed"].nunique()
    return out.reset_index()


def audit_plot(table: pd.DataFrame):
    """Selected share by origin, per round, per method (mean over seeds), the pool share dashed:
    one panel per non-clean origin (clean alone when the pool is clean)."""
    summary = audit_summary(table)
    origins = [o for o in ORIGINS if o != CLEAN and (summary.get("origin") == o).any()] or [CLEAN]
    fig, axes = subplots(1, len(origins), figsize=(4.2 * len(origins), 3.4), squeeze=False)
    for ax, name in zip(axes[0], origins, strict=True):
        part = summary[summary["origin"] == name] if not summary.empty else summary
        for method, rows in part.groupby("method", sort=False):
            ax.plot(rows["round"], 100 * rows["selected_share"], marker="o", label=str(method))
        if len(part):
            ax.axhline(100 * part["pool_share"].mean(), color="k", linestyle="--", label="pool")
            ax.set_xticks(sorted(part["round"].unique()))
        ax.set_title(f"{name}: share of the selection")
        ax.set_xlabel("round")
        ax.set_ylabel("% of selected samples")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
