"""validate_samples and split_samples: schema errors, determinism, stratification."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from p3_pruning.data import SAMPLE_COLUMNS, DataError, split_samples, validate_samples


def table(n: int = 60) -> pd.DataFrame:
    """n samples over 3 sources × 2 levels with unequal stratum sizes."""
    sources = ["a"] * (n // 2) + ["b"] * (n // 3) + ["c"] * (n - n // 2 - n // 3)
    return pd.DataFrame(
        {
            "sample_id": [f"s-{i:03d}" for i in range(n)],
            "source": sources,
            "prompt": [f"q{i}" for i in range(n)],
            "response": [f"r{i}" for i in range(n)],
            "answer": [str(i) if i % 4 else None for i in range(n)],
            "tests": [None] * n,
            "level": [None if i % 5 == 0 else str(i % 2) for i in range(n)],
            "meta": [json.dumps({"i": i}) for i in range(n)],
        }
    )


# ----------------------------------------------------------------------------- validate
def test_validate_accepts_and_normalises_missing_values():
    frame = table()
    frame.loc[1, "answer"] = np.nan
    frame["extra"] = 1
    out = validate_samples(frame)
    assert list(out.columns) == [*SAMPLE_COLUMNS, "extra"]
    assert out.loc[1, "answer"] is None and out.loc[2, "answer"] == "2"
    assert len(out) == len(frame)


@pytest.mark.parametrize(
    ("change", "field", "line", "words"),
    [
        (lambda f: f.drop(columns="meta"), "meta", None, "lacks column"),
        (
            lambda f: f.assign(prompt=["ok"] * 3 + [" "] + ["ok"] * 56),
            "prompt",
            4,
            "non-empty string",
        ),
        (
            lambda f: f.assign(sample_id=[*f["sample_id"][:5], None, *f["sample_id"][6:]]),
            "sample_id",
            6,
            "missing",
        ),
        (lambda f: f.assign(answer=[1] * 60), "answer", 1, "found int"),
        (lambda f: f.assign(meta=["{}"] * 7 + ["{bad"] + ["{}"] * 52), "meta", 8, "not valid JSON"),
        (lambda f: f.assign(meta=["[1]"] * 60), "meta", 1, "JSON object"),
        (lambda f: f.assign(tests=["x"] + [None] * 59), "tests", 1, "not valid JSON"),
        (
            lambda f: f.assign(sample_id=[*f["sample_id"][:9], "s-002", *f["sample_id"][10:]]),
            "sample_id",
            10,
            "duplicate sample_id 's-002' (first at row 3)",
        ),
    ],
)
def test_validate_names_column_and_row(change, field, line, words):
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        validate_samples(change(table()))
    assert (info.value.field, info.value.line) == (field, line)


# ----------------------------------------------------------------------------- split
def test_split_is_a_partition_of_exact_size():
    frame = table()
    train, evals = split_samples(frame, eval_size=15, seed=0)
    assert len(evals) == 15 and len(train) == 45
    assert set(train["sample_id"]).isdisjoint(evals["sample_id"])
    assert set(train["sample_id"]) | set(evals["sample_id"]) == set(frame["sample_id"])
    # the original row order is kept on both sides
    assert train["sample_id"].is_monotonic_increasing and evals["sample_id"].is_monotonic_increasing
    assert len(split_samples(frame, eval_size=0.25, seed=0)[1]) == 15


def test_split_deterministic_and_seeded_and_order_free():
    frame = table()
    first = split_samples(frame, eval_size=12, seed=3)[1]["sample_id"].tolist()
    assert split_samples(frame, eval_size=12, seed=3)[1]["sample_id"].tolist() == first
    assert split_samples(frame, eval_size=12, seed=4)[1]["sample_id"].tolist() != first
    shuffled = frame.sample(frac=1.0, random_state=1)
    assert sorted(split_samples(shuffled, eval_size=12, seed=3)[1]["sample_id"]) == sorted(first)


def test_split_is_stratified():
    frame = table(120)
    _, evals = split_samples(frame, eval_size=30, seed=0)
    keys = ["source", "level"]
    whole = frame.fillna("-").groupby(keys).size()
    got = evals.fillna("-").groupby(keys).size().reindex(whole.index, fill_value=0)
    expected = whole * 30 / len(frame)
    assert ((got - np.floor(expected) >= 0) & (got - np.ceil(expected) <= 0)).all()
    # stratify=None: one plain seeded draw over all rows
    flat = split_samples(frame, eval_size=30, seed=0, stratify=None)[1]
    assert len(flat) == 30 and flat["sample_id"].is_unique


@pytest.mark.parametrize("eval_size", [0, 60, 1.5, -0.1, True, "10"])
def test_split_rejects_bad_sizes(eval_size):
    with pytest.raises(ValueError, match="eval_size"):
        split_samples(table(), eval_size=eval_size, seed=0)


def test_split_rejects_unknown_stratify_column_and_duplicates():
    with pytest.raises(ValueError, match="stratify column"):
        split_samples(table(), eval_size=5, seed=0, stratify=("kind",))
    frame = table()
    frame.loc[3, "sample_id"] = "s-000"
    with pytest.raises(ValueError, match="duplicate sample_id"):
        split_samples(frame, eval_size=5, seed=0)
