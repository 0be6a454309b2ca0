"""What each arm's model wrote and trained on (benchmarks/bench_replies.py), on a written workspace."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from p3_pruning.workspace import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location(
    "bench_replies", PROJECT_ROOT / "benchmarks" / "bench_replies.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

VERSION = "2026-01-02T00.00.00.000Z"
EVAL = pd.DataFrame(
    {
        "sample_id": ["e1", "e2", "e3", "e4"],
        "response": [
            "6 + 8 = 14\nAnswer: 14",
            "6 + 8 = 14\nAnswer: 14",
            "2 * 3 = 6\nAnswer: 6",
            "1 + 2 = 3\n3 + 4 = 7\nAnswer: 7",
        ],
        "level": ["1", "1", "2", "2"],
    }
)
POOL = pd.DataFrame(
    {
        "sample_id": ["c1", "c2", "h1", "h2"],
        "response": ["1 + 1 = 2\nAnswer: 2", "a\nb\nc\nAnswer: 1", "x\nAnswer: 3", "y\nAnswer: 4"],
        "level": ["1", "2", "4", "4"],
        "origin": ["clean", "clean", "too_hard", "too_hard"],
    }
)


def _write(workspace, relpath, frame):
    folder = workspace / relpath / VERSION
    folder.mkdir(parents=True)
    frame.to_parquet(folder / relpath.name)


def _run(ws, chain, replies, correct, selections):
    responses = pd.DataFrame(
        {
            "sample_id": EVAL["sample_id"],
            "level": EVAL["level"],
            "response": replies,
            "correct": correct,
        }
    )
    _write(ws, bench.final_responses(chain), responses)
    for round_, ids in enumerate(selections, start=1):
        relpath = bench.SELECTIONS / chain / f"round_{round_}" / "selection.parquet"
        _write(ws, relpath, pd.DataFrame({"sample_id": ids}))


def test_replies_and_training_rows_per_run(tmp_path):
    ws = tmp_path / "ws"
    _write(ws, bench.TRAIN_POOL, POOL)
    _write(ws, bench.EVAL_SET, EVAL)
    # overruns twice (e1 continues the chain, e3 adds a step) and forgets the answer line once
    _run(
        ws,
        "p3.seed_0",
        [
            "6 + 8 = 14\n14 + 8 = 22\nAnswer: 22",
            "6 + 8 = 14\nAnswer: 14",
            "2 * 3 = 6\n6 * 3 = 18",
            "1 + 2 = 3\n3 + 4 = 7\nAnswer: 7",
        ],
        [False, True, False, True],
        [["c1", "h1"], ["h1", "h2", "c2"]],
    )
    _run(ws, "random.seed_0", list(EVAL["response"]), [True] * 4, [["c1", "c2"], ["c1", "h1"]])
    _run(
        ws,
        "spl.seed_0",
        ["6 + 8 = 14\n14 + 8 = 22\nAnswer: 22", *EVAL["response"][1:]],
        [False, True, True, True],
        [["c1", "h1"]],
    )
    _run(ws, "base", list(EVAL["response"]), [True, False, True, True], [])  # not a run
    table = bench.main([ws])
    assert list(zip(table["arm"], table["seed"], strict=True)) == [
        ("p3", 0),
        ("random", 0),
        ("spl", 0),
    ]
    p3 = table.set_index("arm").loc["p3"]
    assert p3["accuracy"] == 0.5 and p3["answered"] == 0.75
    assert p3["overrun"] == 0.5 and p3["level_1_accuracy"] == 0.5 and p3["level_1_overrun"] == 0.5
    assert p3["lines"] == pytest.approx((3 + 2 + 2 + 3) / 4)
    # the last round (2): h1, h2 and c2 -- two of three out of reach, no level-1 row
    assert p3["round"] == 2 and p3["rows"] == 3 and p3["train_level_1"] == 0
    assert p3["share_too_hard"] == pytest.approx(2 / 3)
    assert p3["train_lines"] == pytest.approx((2 + 2 + 4) / 3)
    random = table.set_index("arm").loc["random"]
    assert random["overrun"] == 0 and random["answered"] == 1 and random["share_too_hard"] == 0.5
    assert (table["base_accuracy"] == 0.75).all()
    # p3 (0.5) is below the base (0.75) and overran on half the level-1 problems: not more than half
    assert bench.collapses(table) == {
        "runs": 3,
        "below_base": 1,
        "overran": 0,
        "overran_and_below_base": 0,
    }
    assert bench.collapses(table, overrun=0.4)["overran_and_below_base"] == 1
    text = bench.markdown(table)
    assert "| p3 | 1 | 50.0 (50.0 – 50.0) | 75.0 (75.0 – 75.0) | 50.0 (50.0 – 50.0) |" in text
    assert table.set_index("arm").loc["spl", "round"] == 1  # its only round
    # accuracy 0.5 / 1 / 0.75 against overrun 0.5 / 0 / 0.25: a straight line down
    corr = bench.correlations(table).set_index("feature")
    assert (
        corr.loc["overrun", "pearson"] == pytest.approx(-1.0) and corr.loc["overrun", "runs"] == 3
    )


def test_unknown_ids_are_named(tmp_path):
    with pytest.raises(ValueError, match="not in the train pool, e.g. zz"):
        bench.training_features(pd.DataFrame({"sample_id": ["c1", "zz"]}), POOL)
    replies = pd.DataFrame(
        {"sample_id": ["e9"], "response": ["x"], "level": ["1"], "correct": [False]}
    )
    with pytest.raises(ValueError, match="not in the eval set, e.g. e9"):
        bench.reply_features(replies, EVAL)
