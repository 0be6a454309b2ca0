"""Learnability signals against difficulty (benchmarks/bench_learnability.py), on a written workspace."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from p3_pruning.workspace import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location(
    "bench_learnability", PROJECT_ROOT / "benchmarks" / "bench_learnability.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

VERSION = "2026-01-02T00.00.00.000Z"


def _write(workspace, relpath, frame):
    folder = workspace / relpath / VERSION
    folder.mkdir(parents=True)
    frame.to_parquet(folder / relpath.name)


def _scores(workspace, chain, round_, difficulty):
    relpath = bench.FEATURES / chain / f"round_{round_}" / "scores.parquet"
    frame = pd.DataFrame({"sample_id": list(difficulty), "difficulty": list(difficulty.values())})
    _write(workspace, relpath, frame)


def test_signals_separate_the_rows_that_stay_hard(tmp_path):
    ws = tmp_path / "ws"
    pool = pd.DataFrame(
        {"sample_id": ["c1", "c2", "c3", "n1", "n2"], "origin": ["clean"] * 3 + ["noise"] * 2}
    )
    _write(ws, bench.TRAIN_POOL, pool)
    # round 1 comes from the shared base scoring; the clean rows fall a lot, the noisy ones little
    # or not at all, and one noisy row ends as easy as a clean one
    _scores(ws, "base.seed_0", 1, {"c1": 0.8, "c2": 0.6, "c3": 0.5, "n1": 0.3, "n2": 0.7})
    _scores(ws, "p3.seed_0", 2, {"c1": 0.4, "c2": 0.3, "c3": 0.2, "n1": 0.3, "n2": 0.65})
    _scores(ws, "random.seed_0", 2, {"c1": 0.1})  # another arm: not read
    table = bench.main([ws])
    assert len(table) == 1
    row = table.iloc[0]
    assert (row["seed"], row["round"], row["origin"]) == (0, 2, "noise")
    # d_2: n2 (0.65) beats all three clean rows, n1 (0.3) beats c3 and ties c2: (3 + 1.5) / 6
    assert row["auroc_d"] == pytest.approx(4.5 / 6)
    # drops: clean 0.4, 0.3, 0.3; noise 0.0, 0.05: both noisy rows fell least
    assert row["auroc_slow_drop"] == pytest.approx(1.0)
    assert row["did_not_fall"] == pytest.approx(0.5) and row["clean_did_not_fall"] == 0.0
    text = bench.markdown(table)
    assert "| noise | 2 | 1 | 0.75 (0.75 – 0.75) | 1.00 (1.00 – 1.00) |" in text
    assert "| 50 (50 – 50) | 0 (0 – 0) |" in text


def test_missing_scores_and_clean_pools_are_named(tmp_path):
    ws = tmp_path / "ws"
    _write(ws, bench.TRAIN_POOL, pd.DataFrame({"sample_id": ["a"]}))
    with pytest.raises(ValueError, match="no 'origin' column"):
        bench.learnability_table([ws])
    with pytest.raises(FileNotFoundError, match="no round-1 scores for p3.seed_3"):
        bench.scores_path(ws, "p3", 3, 1)
