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


# ----------------------------------------------------------------------------- duplicates
def with_copies(frame: pd.DataFrame, copies: dict[int, int]) -> pd.DataFrame:
    """``frame`` plus, for each ``{row: n}``, n more rows with that row's content under new ids
    (sorting after the originals, so the originals are their groups' first)."""
    extra = []
    for row, n in copies.items():
        for k in range(n):
            extra.append(frame.iloc[row].to_dict() | {"sample_id": f"z-dup-{row}-{k}"})
    return pd.concat([frame, pd.DataFrame(extra)], ignore_index=True)


def test_the_split_never_puts_the_same_content_on_both_sides():
    from p3_pruning.data.duplicates import content_groups

    frame = with_copies(table(60), {i: 1 + i % 3 for i in range(0, 60, 4)})  # 15 contents copied
    for seed in range(20):
        train, evals = split_samples(frame, eval_size=0.3, seed=seed, stratify=["source"])
        groups = content_groups(frame).set_axis(frame["sample_id"])
        shared = set(groups[train["sample_id"]]) & set(groups[evals["sample_id"]])
        assert not shared, (seed, sorted(shared)[:3])
        assert len(train) + len(evals) == len(frame)
        assert set(train["sample_id"]).isdisjoint(evals["sample_id"])
        assert evals["prompt"].nunique() == round(0.3 * 60)  # eval_size counts distinct contents
    # seeds differ in where the copied contents go: the grouping is not a fixed side
    sides = {
        tuple(sorted(split_samples(frame, eval_size=0.3, seed=s)[1]["sample_id"])) for s in range(5)
    }
    assert len(sides) > 1


def test_duplicates_are_counted_and_kept_or_quarantined(caplog):
    import logging

    from p3_pruning.data import empty_quarantine
    from p3_pruning.data.duplicates import handle_duplicates

    frame = with_copies(table(20), {3: 2, 7: 1})
    frame.loc[frame["sample_id"] == "z-dup-7-0", "meta"] = json.dumps(
        {"file": "train.jsonl", "line": 22}
    )
    with caplog.at_level(logging.WARNING, logger="p3_pruning.data.duplicates"):
        kept, quarantine = handle_duplicates(frame, empty_quarantine(), "keep", what="train.jsonl")
    assert len(kept) == 23 and quarantine.empty
    assert "train.jsonl: 3 record(s) repeat the prompt and response" in caplog.text
    assert "(2 distinct contents)" in caplog.text

    kept, quarantine = handle_duplicates(frame, empty_quarantine(), "quarantine")
    assert sorted(kept["sample_id"]) == sorted(
        table(20)["sample_id"]
    )  # the first of each group stays
    assert sorted(quarantine["reason"]) == [
        "duplicate content of sample 's-003'",
        "duplicate content of sample 's-003'",
        "duplicate content of sample 's-007'",
    ]
    row = quarantine[quarantine["reason"].str.contains("s-007")].iloc[0]
    assert (row["file"], row["line"], row["field"]) == ("train.jsonl", 22, "prompt+response")
    with pytest.raises(ValueError, match="data.duplicates must be one of"):
        handle_duplicates(frame, empty_quarantine(), "drop")


def test_the_data_step_reports_content_duplicates_of_a_file(tmp_path, caplog):
    import logging

    from p3_pruning.pipelines.data.nodes import ingest_samples

    # the same problem under two ids (lines 5 and 6 repeat lines 1 and 2); records without ids
    # would get content ids, and the loader already refuses a repeat of those
    records = [
        {"uid": f"u{i}", "q": f"What is {i % 4} + 1?", "a": f"{i % 4 + 1}"} for i in range(6)
    ]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    data = {
        "source": "jsonl",
        "path": str(path),
        "eval_path": None,
        "columns": {"prompt": "q", "response": "a", "sample_id": "uid"},
        "on_bad_record": "raise",
    }
    with caplog.at_level(logging.WARNING, logger="p3_pruning.data.duplicates"):
        samples, _, quarantine = ingest_samples({**data, "duplicates": "keep"})
    assert len(samples) == 6 and quarantine.empty
    assert "2 record(s) repeat the prompt and response" in caplog.text

    samples, _, quarantine = ingest_samples({**data, "duplicates": "quarantine"})
    assert len(samples) == 4 and samples["prompt"].is_unique
    assert sorted(quarantine["line"]) == [5, 6] and set(quarantine["file"]) == {"train.jsonl"}
