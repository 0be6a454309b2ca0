"""Sweep nodes: adapt a round's catalog entries and the ``sweep`` parameters to ``p3_pruning.sweep``."""

from __future__ import annotations

import pandas as pd

from p3_pruning import methods
from p3_pruning import sweep as core


def strategy_for(method: str) -> str:
    """The rule swept: the rescoring thresholded method with ``method``'s selector (threshold +
    DPP for p3 and static, threshold + uniform pick for spl and curriculum)."""
    selector = methods.get(method).selector
    return next(m for m in core.SWEPT if methods.get(m).selector == selector)


def run_sweep(
    scores: pd.DataFrame,
    embeddings,
    configured: pd.DataFrame,
    sweep: dict,
    pacing: dict,
    selection: dict,
    budget: int | float,
    seed: int,
    rounds: int,
    previous_scores: pd.DataFrame | None = None,
    *,
    method: str,
    round_index: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The percentile × budget × ridge grid and the schedules table for one cached round."""
    built = {"method": method, "round": round_index + 1}
    for key, value in built.items():
        if sweep.get(key) != value:
            raise ValueError(
                f"parameter sweep.{key}={sweep.get(key)!r} but the sweep pipeline was built for "
                f"{key} {value!r}; sweep.method and sweep.round choose the datasets the pipeline "
                "reads: set them in conf/<env>/parameters_sweep.yml, not with --params"
            )
    if not 0 <= round_index < int(rounds):
        raise ValueError(f"sweep.round={round_index + 1} but the run has rounds={rounds}")
    options = {**pacing, **selection}
    if previous_scores is not None:
        options["previous"] = previous_scores  # the trend term, matched on sample_id
    common = {
        "configured": configured,
        "method": strategy_for(method),
        "seed": seed,
        "rounds": int(rounds),
        "progress": bool(sweep.get("progress", True)),
    }
    table = core.sweep(
        scores,
        embeddings,
        percentiles=sweep["percentiles"],
        budgets=sweep["budgets"],
        ridges=sweep["ridges"],
        round_index=round_index,
        **common,
        **options,
    )
    schedules = core.schedule_sweep(
        scores,
        embeddings,
        schedules=sweep.get("schedules") or {},
        budget=budget,
        scores_round=round_index + 1,
        **common,
        **options,
    )
    return table, schedules


def heatmaps(table: pd.DataFrame):
    """Heat maps of the DPP log det and of the selected samples' mean difficulty."""
    return (
        core.sweep_heatmap(table, value="dpp_log_det", title="DPP log det of the selection"),
        core.sweep_heatmap(
            table, value="selected_difficulty_mean", title="mean difficulty of the selection"
        ),
    )
