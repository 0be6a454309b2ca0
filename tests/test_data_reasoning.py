"""The offline default: determinism, balance, levels, and every step line recomputed."""

from __future__ import annotations

import hashlib
import json
import re

import pandas as pd
import pytest
import reasoning_gym

from p3_pruning.data import DEFAULT_LEVELS, check_steps, generate_default, validate_samples
from p3_pruning.data.reasoning import chain_sum_steps, multiply_steps, products_steps

ARITHMETIC = re.compile(r"^-?\d+( [-+*] -?\d+)*$")


@pytest.fixture(scope="module")
def samples() -> pd.DataFrame:
    return generate_default(90, seed=7)


def _value(side: str) -> int:
    side = side.strip()
    assert ARITHMETIC.match(side), side
    return eval(side, {"__builtins__": {}})  # only digits, spaces and + - * (checked above)


def test_deterministic_per_seed(samples):
    pd.testing.assert_frame_equal(samples, generate_default(90, seed=7))
    other = generate_default(90, seed=8)
    assert len(set(other["sample_id"]) & set(samples["sample_id"])) < 10


def test_balanced_over_task_and_level():
    table = generate_default(61, seed=1)
    counts = table.groupby(["source", "level"]).size()
    assert len(counts) == 6 and counts.sum() == 61
    assert counts.max() - counts.min() == 1
    assert set(table["level"]) == {"1", "2", "3"}
    assert set(table["source"]) == {"reasoning_gym/chain_sum", "reasoning_gym/products"}


def test_ids_are_content_hashes_and_unique(samples):
    validate_samples(samples)
    assert samples["sample_id"].is_unique and samples["prompt"].is_unique
    for row in samples.to_dict(orient="records"):
        task = json.loads(row["meta"])["task"]
        digest = hashlib.sha1(row["prompt"].encode()).hexdigest()[:12]
        assert row["sample_id"] == f"{task}-{digest}"


def test_every_step_line_is_true_and_ends_in_the_generator_answer(samples):
    for row in samples.to_dict(orient="records"):
        meta = json.loads(row["meta"])
        entry, task = meta["entry"], meta["task"]
        lines = row["response"].split("\n")
        assert lines[-1] == f"Answer: {entry['answer']}"
        assert row["answer"] == entry["answer"]
        for line in lines[:-1]:
            sides = [_value(s) for s in line.split("=")]
            assert len(sides) >= 2 and len(set(sides)) == 1, line
        # the steps start from the problem itself and end at the answer
        expression = entry["metadata"]["expression"]
        assert lines[0].startswith(expression.split(" ")[0] + " ")
        assert _value(lines[-2].split("=")[-1]) == int(entry["answer"])
        if task == "chain_sum":
            assert len(lines) - 1 == entry["metadata"]["num_terms"] - 1
        else:
            assert lines[0].split(" = ")[0] == expression
        # the task's own grader accepts the reference answer
        score = reasoning_gym.get_score_answer_fn(task)(entry["answer"], entry)
        assert score == 1.0


def test_prompt_meta_and_levels(samples):
    for row in samples.to_dict(orient="records"):
        meta = json.loads(row["meta"])
        assert set(meta) == {"task", "level", "seed", "entry"} and meta["seed"] == 7
        assert (
            row["prompt"]
            == meta["entry"]["question"] + " End your reply with a line 'Answer: <number>'."
        )
        config = DEFAULT_LEVELS[meta["task"]][row["level"]]
        md = meta["entry"]["metadata"]
        assert config["min_terms"] <= md["num_terms"] <= config["max_terms"]
        assert config["min_digits"] <= md["num_digits"] <= config["max_digits"]
        assert row["tests"] is None


def test_step_writers_exact_text():
    assert multiply_steps(23, 47) == (
        ["23 * 47 = 23 * 40 + 23 * 7", "23 * 40 = 920", "23 * 7 = 161", "920 + 161 = 1081"],
        1081,
    )
    assert multiply_steps(12, 407)[0] == [
        "12 * 407 = 12 * 400 + 12 * 7",
        "12 * 400 = 4800",
        "12 * 7 = 84",
        "4800 + 84 = 4884",
    ]
    assert multiply_steps(9, 30) == (["9 * 30 = 270"], 270)
    assert multiply_steps(9, 0) == (["9 * 0 = 0"], 0)
    assert products_steps("2 * 3 * 45")[1] == 270
    assert chain_sum_steps("12 + 7 - 4") == (["12 + 7 = 19", "19 - 4 = 15"], 15)
    assert chain_sum_steps("5 - -3") == (["5 - -3 = 8"], 8)


def test_check_steps_rejects_a_false_step():
    assert check_steps("23 * 47 = 23 * 40 + 23 * 7\n23 * 40 = 920\nAnswer: 1081") == 1081
    with pytest.raises(ValueError, match="is false"):
        check_steps("23 * 40 = 910\nAnswer: 910")
    with pytest.raises(ValueError, match="Answer"):
        check_steps("1 + 1 = 2")


def test_options_and_errors():
    only = generate_default(4, seed=0, tasks=["products"])
    assert set(only["source"]) == {"reasoning_gym/products"}
    custom = {
        "chain_sum": {"easy": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}}
    }
    easy = generate_default(5, seed=0, levels=custom)
    assert set(easy["level"]) == {"easy"} and len(easy) == 5
    with pytest.raises(ValueError, match="no step-solution writer"):
        generate_default(4, seed=0, tasks=["gcd"])
    with pytest.raises(ValueError, match="no entry for task 'products'"):
        generate_default(4, seed=0, tasks=["products"], levels=custom)
    with pytest.raises(ValueError, match="positive integer"):
        generate_default(0, seed=0)
    with pytest.raises(ValueError, match="invalid config"):
        generate_default(2, seed=0, levels={"chain_sum": {"1": {"min_terms": 3, "max_terms": 2}}})
    # 1-digit 1-term sums have only 10 distinct problems: asking for more must fail loudly
    tiny = {"chain_sum": {"1": {"min_terms": 1, "max_terms": 1, "min_digits": 1, "max_digits": 1}}}
    with pytest.raises(ValueError, match="distinct problems"):
        generate_default(11, seed=0, levels=tiny)
