"""Sweeps from cached scores: what threshold, budget, ridge and schedule would have selected.

Kedro-free, no model call. A round's scores and embeddings are all the threshold and the DPP look
at, so the selection any other setting would have made in that round is a pure function of them.

- :func:`sweep`: a grid of threshold percentile P × budget k × ridge ε. Each point runs P3's own
  rule (:func:`p3_pruning.strategies.run_strategy`, method ``p3``: threshold, then greedy MAP of the
  DPP) with the percentile forced to P (``start = end = P``: every schedule gives P_e = P then).
- :func:`schedule_sweep`: for each pacing schedule, the percentile P_e of every round e and what
  that round's rule would select from the given scores (column ``scores_round`` says which round
  scored them: the other rounds' figures are "this round's difficulties, thresholded at round e's
  percentile", not a replay of those rounds).

Per point: ``threshold`` τ, ``eligible`` count, ``k`` (the budget resolved against the pool),
``selected``, ``shortfall``, ``selected_difficulty_mean``, ``dpp_log_det`` (log det of the kernel
over the first DPP pass's picks), ``dpp_passes``, ``overlap_configured`` (fraction of this
selection that the configured run also selected, as the rounds' ``overlap_prev``),
``jaccard_configured`` and ``seconds``. At the configured point (same percentile, budget, ridge and
options as the run) the selection is the run's, bit for bit: overlap 1.

Cost: p3's exact greedy MAP picks the same first k items whatever the budget, so the budgets of one
(percentile, ridge) are read from one DPP run at the largest of them (prefixes, and the log det of
each prefix replayed by :func:`p3_pruning.dpp.log_det_path`), equal to running each point alone.

:func:`sweep_heatmap`: percentile × budget, one panel per ridge, colour = any numeric column.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from p3_pruning import dpp, methods, pacing, strategies
from p3_pruning.plotting import subplots

log = logging.getLogger(__name__)

# options the percentile grid sets itself (start = end = P makes the schedule irrelevant)
GRID_OPTIONS = ("start", "end", "schedule", "power", "ridge")
# the rules a sweep runs: threshold + DPP (p3) and threshold + uniform pick (spl)
SWEPT = methods.names(scoring="rescore", threshold="pacing")
SCHEDULE_OPTIONS = ("start", "end", "schedule", "power", "alpha")
METRICS = [
    "pool",
    "finite",
    "threshold",
    "eligible",
    "k",
    "selected",
    "shortfall",
    "selected_difficulty_mean",
    "dpp_log_det",
    "dpp_passes",
    "overlap_configured",
    "jaccard_configured",
    "seconds",
]
SWEEP_COLUMNS = ["percentile", "budget", "ridge", *METRICS]
SCHEDULE_COLUMNS = ["schedule", "round", "scores_round", "percentile", *METRICS]


def _progress(iterable, *, enabled: bool, total: int, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="point")


def _measure(scores, embeddings, configured_ids, *, method, **kwargs) -> dict:
    """Run the strategy once; the per-point metrics of the module doc."""
    start = time.perf_counter()
    chosen, info = strategies.run_strategy(method, scores, embeddings, **kwargs)
    return _metrics(chosen, info, configured_ids, time.perf_counter() - start)


def _metrics(chosen: pd.DataFrame, info: dict, configured_ids, seconds: float) -> dict:
    picked = set(chosen["sample_id"])
    if configured_ids is None:
        overlap = jaccard = math.nan
    else:
        common = len(picked & configured_ids)
        overlap = common / len(picked) if picked else math.nan
        union = len(picked | configured_ids)
        jaccard = common / union if union else math.nan
    d = chosen["difficulty"].to_numpy(dtype=np.float64)
    return {
        "pool": info["pool"],
        "finite": info["finite"],
        "threshold": info["threshold"],
        "eligible": info["eligible"],
        "k": info["budget"],
        "selected": info["selected"],
        "shortfall": info["shortfall"],
        "selected_difficulty_mean": float(d.mean()) if len(d) else math.nan,
        "dpp_log_det": info["dpp_log_det"],
        "dpp_passes": info["dpp_passes"],
        "overlap_configured": overlap,
        "jaccard_configured": jaccard,
        "seconds": seconds,
        "percentile": info["percentile"],
    }


def _budget_prefixes(scores, embeddings, configured_ids, budgets, run, point) -> list[dict]:
    """p3's points for every budget at one (percentile, ridge), from one DPP run at the largest.

    Exact greedy MAP's first k picks are the same for any longer run (the state after t picks does
    not depend on k), so the selection for a smaller budget is a prefix of the largest budget's and
    its log det is :func:`p3_pruning.dpp.log_det_path` at that length: the per-point values bit for
    bit (a test compares them). A run that needed more than one DPP pass (ridge 0 past the
    features' rank) is no prefix family: its budgets are measured one by one. ``seconds``: the
    largest budget's point carries the threshold and the DPP run, every point its own share of the
    log det replay and the time to read its prefix.
    """
    ks = [strategies.resolve_budget(b, len(scores)) for b in budgets]
    top = int(np.argmax(ks))
    start = time.perf_counter()
    schedule = {"round_index": run["round_index"], "rounds": run["rounds"]}
    eligible, info = strategies.threshold(methods.P3, scores, **schedule, **point)
    chosen, pick_info = strategies.pick(
        methods.P3, scores, embeddings, eligible=eligible, budget=budgets[top], **run, **point
    )
    info = {**pick_info, **info, "eligible": pick_info["eligible"]}  # as run_strategy
    largest = _metrics(chosen, info, configured_ids, time.perf_counter() - start)
    if info["dpp_passes"] != 1:
        return [
            largest
            if i == top
            else _measure(
                scores, embeddings, configured_ids, method=methods.P3, budget=b, **run, **point
            )
            for i, b in enumerate(budgets)
        ]
    start = time.perf_counter()
    path = _replay_log_dets(scores, embeddings, eligible, chosen, point)
    replay = (time.perf_counter() - start) / len(ks)
    out = []
    for i, k in enumerate(ks):
        if i == top:
            out.append({**largest, "seconds": largest["seconds"] + replay})
            continue
        start = time.perf_counter()
        prefix = chosen[chosen["pick_order"] < k]
        m = len(prefix)
        part = {
            **info,
            "budget": k,
            "selected": m,
            "shortfall": max(0, k - m),
            "dpp_log_det": float(path[m - 1]) if m else math.nan,
            "dpp_passes": 1 if m else 0,
        }
        out.append(_metrics(prefix, part, configured_ids, time.perf_counter() - start + replay))
    return out


def _replay_log_dets(scores, embeddings, eligible, chosen, point) -> np.ndarray:
    """The running log det of the DPP pick order of ``chosen``, on the kernel the pick step built:
    features and quality of the eligible candidates (``strategies.dpp_kernel_inputs``)."""
    candidates = np.flatnonzero(eligible["eligible"].to_numpy(dtype=bool))
    difficulty = pacing.as_difficulty(scores["difficulty"].to_numpy(), "scores['difficulty']")
    floor = point.get("quality_floor", strategies.OPTION_DEFAULTS["quality_floor"])
    rule = point.get("quality", strategies.OPTION_DEFAULTS["quality"])
    features, quality = strategies.dpp_kernel_inputs(
        candidates, np.asarray(embeddings), difficulty, floor, rule
    )
    ids = scores["sample_id"].to_numpy()[candidates]
    position = pd.Series(np.arange(len(candidates)), index=ids)
    picks = position.loc[chosen.sort_values("pick_order")["sample_id"]].to_numpy()
    return dpp.log_det_path(features, quality, picks, ridge=point["ridge"])


def _configured_ids(configured: pd.DataFrame | None) -> set | None:
    if configured is None:
        return None
    if not isinstance(configured, pd.DataFrame) or "sample_id" not in configured.columns:
        raise ValueError("configured must be a selection table with a sample_id column")
    return set(configured["sample_id"])


def _values(name: str, values) -> list:
    values = list(values)
    if not values:
        raise ValueError(f"the sweep grid needs at least one value for {name}")
    return values


def sweep(
    scores: pd.DataFrame,
    embeddings,
    *,
    percentiles: Sequence[float],
    budgets: Sequence[int | float],
    ridges: Sequence[float],
    rounds: int,
    round_index: int,
    seed: int,
    configured: pd.DataFrame | None = None,
    method: str = methods.P3,
    progress: bool = True,
    **options,
) -> pd.DataFrame:
    """One row per (percentile, budget, ridge), in that nesting order; columns ``SWEEP_COLUMNS``.

    scores / embeddings: one round's cached scores table and (n, d) embeddings in the same row
    order. round_index (0-based) / rounds / seed: the run's, so the strategy draws what the run
    drew. configured: the run's selection for that round (overlap columns; NaN without it).
    method: ``p3`` (threshold + DPP, default) or ``spl`` (threshold + uniform pick: no log det).
    options: further :func:`p3_pruning.strategies.run_strategy` options (``dpp_mode``, ``alpha``,
    ``previous``, ``quality_floor`` …); ``GRID_OPTIONS`` are set by the grid and ignored if given.
    """
    if method not in SWEPT:
        raise ValueError(
            f"the sweep runs a thresholding method that rescores {SWEPT}, got {method!r}"
        )
    percentiles = _values("percentiles", percentiles)
    budgets = _values("budgets", budgets)
    ridges = _values("ridges", ridges)
    for p in percentiles:
        if not 0 <= p <= 100:
            raise ValueError(f"sweep percentiles must be in [0, 100], got {p!r}")
    base = {k: v for k, v in options.items() if k not in GRID_OPTIONS}
    configured_ids = _configured_ids(configured)
    run = {"round_index": round_index, "rounds": rounds, "seed": seed}
    groups = list(itertools.product(percentiles, ridges))
    rows = []
    for p, ridge in _progress(groups, enabled=progress, total=len(groups), desc="sweep"):
        point = {**base, "start": float(p), "end": float(p), "ridge": float(ridge)}
        if (
            methods.get(method).needs_embeddings
            and point.get("dpp_mode", strategies.OPTION_DEFAULTS["dpp_mode"]) == "exact"
        ):
            per_budget = _budget_prefixes(scores, embeddings, configured_ids, budgets, run, point)
        else:
            per_budget = [
                _measure(
                    scores, embeddings, configured_ids, method=method, budget=b, **run, **point
                )
                for b in budgets
            ]
        for budget, metrics in zip(budgets, per_budget, strict=True):
            metrics.pop("percentile")
            rows.append(
                {"percentile": float(p), "budget": budget, "ridge": float(ridge), **metrics}
            )
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def schedule_sweep(
    scores: pd.DataFrame,
    embeddings,
    *,
    schedules: Mapping[str, Mapping],
    rounds: int,
    budget: int | float,
    seed: int,
    scores_round: int,
    configured: pd.DataFrame | None = None,
    method: str = methods.P3,
    progress: bool = True,
    **options,
) -> pd.DataFrame:
    """One row per (schedule, round); columns ``SCHEDULE_COLUMNS``.

    schedules: name → pacing settings (``start``, ``end``, ``schedule``, ``power``, ``alpha``) that
    replace those in ``options`` for that schedule. Each round e = 1 … ``rounds`` runs the method's
    rule with ``round_index = e − 1`` on the given scores; ``scores_round`` (1-based) is the round
    that produced them, written into every row. Other arguments as :func:`sweep`.
    """
    configured_ids = _configured_ids(configured)
    grid = []
    for name, settings in schedules.items():
        unknown = sorted(set(settings or {}) - set(SCHEDULE_OPTIONS))
        if unknown:
            raise ValueError(
                f"schedule {name!r} has unknown key(s) {unknown}; expected {list(SCHEDULE_OPTIONS)}"
            )
        grid += [(name, dict(settings or {}), e) for e in range(rounds)]
    rows = []
    for name, settings, e in _progress(grid, enabled=progress, total=len(grid), desc="schedules"):
        metrics = _measure(
            scores,
            embeddings,
            configured_ids,
            method=method,
            round_index=e,
            rounds=rounds,
            budget=budget,
            seed=seed,
            **{**options, **settings},
        )
        rows.append({"schedule": name, "round": e + 1, "scores_round": scores_round, **metrics})
    return pd.DataFrame(rows, columns=SCHEDULE_COLUMNS)


def sweep_heatmap(table: pd.DataFrame, *, value: str = "dpp_log_det", title: str | None = None):
    """Heat map of ``value`` over percentile (rows) × budget (columns), one panel per ridge.

    table: the output of :func:`sweep`. Each panel has its own colour scale (log det moves with the
    ridge by orders of magnitude); cells are annotated; NaN cells stay blank.
    """
    missing = [c for c in ("percentile", "budget", "ridge", value) if c not in table.columns]
    if missing:
        raise ValueError(f"sweep table lacks column(s) {missing}")
    ridges = sorted(table["ridge"].unique())
    percentiles = sorted(table["percentile"].unique())
    budgets = sorted(table["budget"].unique())
    fig, axes = subplots(
        1, len(ridges), figsize=(1.2 + 0.9 * len(budgets) * len(ridges) + 1.5 * len(ridges), 3.8)
    )
    axes = np.atleast_1d(axes)
    for ax, ridge in zip(axes, ridges, strict=True):
        part = table[table["ridge"] == ridge]
        grid = (
            part.pivot_table(index="percentile", columns="budget", values=value, aggfunc="first")
            .reindex(index=percentiles, columns=budgets)
            .to_numpy(dtype=np.float64)
        )
        image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap="viridis", origin="lower")
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):  # dark text on the bright end of viridis, light on the dark end
                color = "k" if image.norm(v) > 0.6 else "w"
                ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color=color)
        ax.set_xticks(range(len(budgets)), [f"{b:g}" for b in budgets])
        ax.set_yticks(range(len(percentiles)), [f"{p:g}" for p in percentiles])
        ax.set_xlabel("budget")
        ax.set_ylabel("threshold percentile")
        ax.set_title(f"ridge {ridge:g}", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.05)
    fig.suptitle(title or value)
    fig.tight_layout()
    return fig
