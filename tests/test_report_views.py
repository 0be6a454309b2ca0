"""report_views: the round's outcome per sample, the examples at each edge, the mix, the Markdown page."""

from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest

from p3_pruning import report_views
from p3_pruning.report_views import examples, mix, selection_frame, selection_view

# 8 samples, difficulty 0.1 … 0.8; threshold 0.55 (s1–s5 eligible); s8 not a scoring candidate
DIFFICULTY = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, np.inf]


@pytest.fixture
def pool():
    return pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(1, 9)],
            "prompt": [f"What is {i} + {i}?" for i in range(1, 9)],
            "response": [f"{i} + {i} = {2 * i}\nAnswer: {2 * i}" for i in range(1, 9)],
            "level": [1, 1, 2, 2, 3, 3, 3, 1],
        }
    )


@pytest.fixture
def scores(pool):
    return pd.DataFrame(
        {
            "sample_id": pool["sample_id"][::-1].to_numpy(),  # joined on id, not row order
            "difficulty": DIFFICULTY[::-1],
            "action_probs": [[1 - d, 0.5] if np.isfinite(d) else [] for d in DIFFICULTY[::-1]],
        }
    )


@pytest.fixture
def eligible(scores):
    return scores[["sample_id", "difficulty"]].assign(
        threshold=0.55, percentile=71.4, eligible=scores["difficulty"] <= 0.55
    )


@pytest.fixture
def selection():  # the DPP took s2, s4, s1 in that order
    return pd.DataFrame(
        {"sample_id": ["s2", "s4", "s1"], "round": 1, "pick_order": [0, 1, 2]}
    ).assign(difficulty=[0.2, 0.4, 0.1], threshold=0.55)


def test_statuses_place_each_sample(pool, scores, eligible, selection):
    frame = selection_frame(pool, selection, scores, eligible)
    assert frame["sample_id"].tolist() == pool["sample_id"].tolist()
    assert frame["status"].tolist() == [
        "selected",
        "selected",
        "refused_eligible",
        "selected",
        "refused_eligible",
        "refused_over",
        "refused_over",
        "unscored",
    ]
    assert frame["difficulty"].tolist()[:7] == DIFFICULTY[:7]
    assert frame.loc[frame["sample_id"] == "s3", "action_probs"].item() == [0.7, 0.5]
    order = frame.set_index("sample_id")["pick_order"]
    assert order[["s1", "s2", "s4"]].tolist() == [2.0, 0.0, 1.0] and order.isna().sum() == 5


def test_examples_are_the_edges_of_the_selection(pool, scores, eligible, selection):
    groups = examples(selection_frame(pool, selection, scores, eligible), k=2)
    ids = {title: rows["sample_id"].tolist() for title, rows in groups.items()}
    assert ids == {
        "easiest selected": ["s1", "s2"],
        "hardest selected": ["s4", "s2"],
        "hardest refused, eligible": ["s5", "s3"],
        "easiest refused, over the threshold": ["s6", "s7"],
    }


def test_without_threshold_refused_are_split_easiest_and_hardest(pool, scores, selection):
    frame = selection_frame(pool, selection, scores)
    assert set(frame["status"]) == {"selected", "refused", "unscored"}
    groups = examples(frame, k=1)
    assert groups["easiest refused"]["sample_id"].tolist() == ["s3"]
    assert groups["hardest refused"]["sample_id"].tolist() == ["s7"]
    # unscored samples are no candidates: not counted as eligible
    assert mix(frame)["eligible"].tolist() == [2, 2, 3]


def test_unscored_methods_show_their_first_picks(pool, selection):
    picks = selection.assign(difficulty=np.nan)
    frame = selection_frame(pool, picks)
    assert frame["status"].value_counts().to_dict() == {"refused": 5, "selected": 3}
    groups = examples(frame, k=2)
    assert list(groups) == ["first picks"]
    assert groups["first picks"]["sample_id"].tolist() == ["s2", "s4"]


def test_mix_counts_by_level_and_origin_when_present(pool, scores, eligible, selection):
    frame = selection_frame(pool, selection, scores, eligible)
    by_level = mix(frame, "level")
    assert by_level.to_dict("list") == {
        "level": [1, 2, 3],
        "pool": [3, 2, 3],
        "eligible": [2, 2, 1],
        "selected": [2, 1, 0],
        "selected_share": [2 / 3, 1 / 3, 0.0],
    }
    assert mix(frame, "origin").empty  # a pool without origins
    composed = pool.assign(origin=["gsm8k"] * 4 + ["math"] * 4)
    by_origin = mix(selection_frame(composed, selection, scores, eligible), "origin")
    assert by_origin.set_index("origin")["selected"].to_dict() == {"gsm8k": 3, "math": 0}


def test_selection_naming_an_unknown_sample_fails_with_its_id(pool, scores):
    with pytest.raises(KeyError, match="s99"):
        selection_frame(pool, pd.DataFrame({"sample_id": ["s99"], "pick_order": [0]}), scores)


def test_the_page_states_threshold_counts_and_examples(pool, scores, eligible, selection):
    text = selection_view(pool, selection, scores, eligible, title="p3.round_1", k=1)
    assert text.startswith("# p3.round_1: selection\n")
    assert "Threshold **0.550** (percentile 71.4" in text
    for row in (
        "| pool | 8 |",
        "| scored | 7 |",
        "| selected | 3 |",
        "| refused, eligible (under the threshold) | 2 |",
        "| refused, over the threshold | 2 |",
        "| not scored | 1 |",
        "| 1 | 3 | 2 | 2 | 67 % |",  # level 1: pool, eligible, selected, share of the selection
    ):
        assert row in text, row
    assert "## Mix by origin" not in text
    easiest = text.split("## Easiest selected")[1].split("##")[0]
    assert "| s1 | 0.100 | 1 | 0.90 0.50 | What is 1 + 1? | 1 + 1 = 2 Answer: 2 |" in easiest
    assert "## Hardest refused, eligible" in text and "| s5 | 0.500 |" in text
    assert "## Easiest refused, over the threshold" in text and "| s6 | 0.600 |" in text
    assert "pool median 0.400, selected mean 0.233, refused mean 0.525" in text


def test_the_page_without_scores_or_threshold(pool, selection):
    text = selection_view(pool, selection.assign(difficulty=np.nan), title="random.round_2")
    assert "No threshold" in text and "| scored |" not in text
    assert "## First picks" in text and "| s2 | — | 1 | — |" in text


def test_cells_stay_on_one_line_and_escape_pipes(pool, scores, selection):
    long = pool.assign(prompt=["a | b\n" + "x" * 500] * 8)
    text = selection_view(long, selection, scores, title="dpp.round_1")
    row = next(line for line in text.splitlines() if line.startswith("| s1 |"))
    assert "a \\| b x" in row and row.count("…") == 1 and len(row) < 400


def test_doctests():
    assert doctest.testmod(report_views).failed == 0
