"""Sweep from cached scores: seconds for a 10k-sample round against one selection call.

Run: ``.venv/bin/python benchmarks/bench_sweep.py [--n 10000] [--d 576] [--threads 2]``.

A round of n samples with random difficulties (uniform, 1 % failed = +inf) and random float32
embeddings (d = 576, SmolLM2's hidden size). Timed in the same run:
- one ``strategies.select("p3", …)`` at the paper's round-1 setting (P = 45, budget 0.2, ridge 1e-3),
  the reference: what a round's select step costs;
- ``sweep.sweep`` over 4 percentiles × 4 budgets × 2 ridges (32 points);
- ``sweep.schedule_sweep`` over 3 schedules × 3 rounds (9 points);
- one (percentile, ridge) column of the grid (P = 90, ridge 1e-3, the 4 budgets) both ways: as the
  sweep reads it (one DPP run at the largest budget, the smaller budgets its prefixes) and point by
  point (one ``run_strategy`` call per budget), with a check that both give the same picks.
Prints seconds, the ratio of each sweep to the reference call, and the ratio per grid point.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from p3_pruning import pacing, strategies
from p3_pruning.sweep import schedule_sweep, sweep

PERCENTILES = [45, 60, 75, 90]
BUDGETS = [0.05, 0.1, 0.2, 0.3]
RIDGES = [1e-3, 1e-2]
SCHEDULES = {
    "linear": {"schedule": "linear"},
    "geometric": {"schedule": "geometric"},
    "root": {"schedule": "root", "power": 2},
}
RUN = {"round_index": 0, "rounds": 3, "seed": 0}
PACING = {"start": pacing.PAPER_START, "end": pacing.PAPER_END, "schedule": "linear"}


def cached_round(n: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    difficulty = rng.uniform(0, 1, n)
    difficulty[rng.choice(n, n // 100, replace=False)] = np.inf
    scores = pd.DataFrame({"sample_id": [f"s{i:06d}" for i in range(n)], "difficulty": difficulty})
    return scores, rng.standard_normal((n, d)).astype(np.float32)


def main(n: int, d: int) -> None:
    scores, embeddings = cached_round(n, d)
    start = time.perf_counter()
    configured = strategies.select(
        "p3", scores, embeddings, budget=0.2, ridge=1e-3, **PACING, **RUN
    )
    one = time.perf_counter() - start

    start = time.perf_counter()
    table = sweep(
        scores,
        embeddings,
        percentiles=PERCENTILES,
        budgets=BUDGETS,
        ridges=RIDGES,
        configured=configured,
        progress=False,
        **RUN,
    )
    grid_s = time.perf_counter() - start

    start = time.perf_counter()
    sched = schedule_sweep(
        scores,
        embeddings,
        schedules=SCHEDULES,
        rounds=RUN["rounds"],
        budget=0.2,
        seed=RUN["seed"],
        scores_round=1,
        configured=configured,
        progress=False,
        ridge=1e-3,
        **PACING,
    )
    sched_s = time.perf_counter() - start

    column = {"percentiles": [90], "budgets": BUDGETS, "ridges": [1e-3]}
    start = time.perf_counter()
    prefixed = sweep(scores, embeddings, **column, configured=configured, progress=False, **RUN)
    prefix_s = time.perf_counter() - start
    start = time.perf_counter()
    one_by_one = [
        strategies.run_strategy(
            "p3", scores, embeddings, budget=b, start=90, end=90, ridge=1e-3, **RUN
        )[1]["dpp_log_det"]
        for b in BUDGETS
    ]
    point_s = time.perf_counter() - start
    same = prefixed["dpp_log_det"].tolist() == one_by_one

    points = len(table)
    print(f"round: n = {n}, d = {d}, torch threads {torch.get_num_threads()}")
    print(f"one strategies.select (P = 45, budget 0.2, ridge 1e-3): {one:.2f} s")
    print(
        f"sweep {len(PERCENTILES)}x{len(BUDGETS)}x{len(RIDGES)} = {points} points: {grid_s:.1f} s "
        f"= {grid_s / one:.1f}x one select ({grid_s / points / one:.2f}x per point)"
    )
    print(
        f"schedules {len(SCHEDULES)}x{RUN['rounds']} = {len(sched)} points: {sched_s:.1f} s "
        f"= {sched_s / one:.1f}x one select ({sched_s / len(sched) / one:.2f}x per point)"
    )
    print(
        f"one column (P = 90, ridge 1e-3, {len(BUDGETS)} budgets): {prefix_s:.1f} s from one DPP run "
        f"against {point_s:.1f} s point by point = {point_s / prefix_s:.2f}x faster; "
        f"same log dets: {same}"
    )
    at_config = table[(table["percentile"] == 45) & (table["budget"] == 0.2)]
    at_config = at_config[at_config["ridge"] == 1e-3].iloc[0]
    print(f"overlap with the configured selection at its own point: {at_config.overlap_configured}")
    print(
        f"point seconds: median {table['seconds'].median():.2f}, max {table['seconds'].max():.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, default=576)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    main(args.n, args.d)
