"""Replies per round's adapter (benchmarks/bench_round_replies.py), on a written workspace."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest
import torch

from p3_pruning.adapters import LoraAdapter
from p3_pruning.workspace import EVAL_SET, PROJECT_ROOT, make_workspace

_spec = importlib.util.spec_from_file_location(
    "bench_round_replies", PROJECT_ROOT / "benchmarks" / "bench_round_replies.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

VERSION = "2026-01-02T00.00.00.000Z"
EVAL = pd.DataFrame(
    {
        "sample_id": ["a", "b", "c"],
        "source": ["reasoning_gym/chain_sum"] * 3,
        "prompt": ["6 + 8 =", "1 + 2 =", "1 + 2 + 3 ="],
        "response": [
            "6 + 8 = 14\nAnswer: 14",
            "1 + 2 = 3\nAnswer: 3",
            "1 + 2 = 3\n3 + 3 = 6\nAnswer: 6",
        ],
        "level": ["1", "1", "2"],
    }
)
GOOD = {"a": "6 + 8 = 14\nAnswer: 14", "b": "1 + 2 = 3\nAnswer: 3"}
BAD = {"a": "6 + 8 = 14\n14 + 8 = 22\nAnswer: 22", "b": "1 + 2 = 3\nAnswer: 3"}


def _adapter(ws, chain, round_, marker):
    folder = ws / bench.MODELS / chain / f"round_{round_}" / "adapter" / VERSION / "adapter"
    LoraAdapter(config={"r": 2, "marker": marker}, state_dict={"w": torch.zeros(1)}).save(folder)


def _fake_evaluate(problems, params, adapter):
    """Round 1 answers well, round 2 continues the chain; checks what the script hands over."""
    assert list(problems["level"]) == ["1", "1"]
    assert params["model"]["name_or_path"] == "tiny-random"
    replies = GOOD if adapter.config["marker"] == "round 1" else BAD
    return pd.DataFrame(
        {
            "sample_id": problems["sample_id"],
            "level": problems["level"],
            "response": problems["sample_id"].map(replies),
            "correct": problems["sample_id"].map(lambda s: replies[s] == GOOD[s]),
        }
    )


def test_each_round_is_regenerated_and_the_last_checked_against_the_final(tmp_path):
    ws = make_workspace(tmp_path / "ws", {"model": {"name_or_path": "tiny-random"}})
    folder = ws / EVAL_SET / VERSION
    folder.mkdir(parents=True)
    EVAL.to_parquet(folder / EVAL_SET.name)
    for seed in (0, 1):
        _adapter(ws, f"p3.seed_{seed}", 1, "round 1")
        _adapter(ws, f"p3.seed_{seed}", 2, "round 2")
    final = pd.DataFrame({"sample_id": ["a", "b"], "response": [BAD["a"], "something else"]})
    relpath = bench.bench_replies.final_responses("p3.seed_0")
    (ws / relpath / VERSION).mkdir(parents=True)
    final.to_parquet(ws / relpath / VERSION / relpath.name)
    table = bench.round_replies(ws, "local", ["p3"], evaluate=_fake_evaluate)
    assert list(zip(table["seed"], table["round"], strict=True)) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    by_round = table.groupby("round")[["accuracy", "overrun"]].mean()
    assert by_round.loc[1].tolist() == [1.0, 0.0] and by_round.loc[2].tolist() == [0.5, 0.5]
    # seed 0's last round is compared with its final replies (one of two equal); seed 1 has none
    assert table["same_as_final"].tolist()[1] == 0.5
    assert table["same_as_final"].isna().tolist() == [True, False, True, True]
    text = bench.markdown(table)
    assert "| p3 | 2 | 2 | 50.0 (50.0 – 50.0) | 50.0 (50.0 – 50.0) |" in text


def test_missing_adapters_and_levels_are_named(tmp_path):
    ws = make_workspace(tmp_path / "ws")
    folder = ws / EVAL_SET / VERSION
    folder.mkdir(parents=True)
    EVAL.to_parquet(folder / EVAL_SET.name)
    with pytest.raises(FileNotFoundError, match="no round adapters of 'spl'"):
        bench.round_replies(ws, "local", ["spl"], evaluate=_fake_evaluate)
    with pytest.raises(ValueError, match="no eval problems of level '7'"):
        bench.round_replies(ws, "local", ["spl"], level="7", evaluate=_fake_evaluate)
