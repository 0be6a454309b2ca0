"""The configurable grader for generic sources: exact, numeric, math, regex, none."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from p3_pruning.evaluation import evaluate_generation
from p3_pruning.graders import grade_detail, make_grader
from p3_pruning.models import load_model


def graded(grader, response, answer, source="mine"):
    sample = {"sample_id": "x", "source": source, "answer": answer}
    return grade_detail(source, response, sample, grader=grader)


def test_each_grader_decides_by_its_own_rule():
    assert graded("exact", "Answer: Paris.", "paris").correct
    assert not graded("exact", "Answer: 12.0", "12").correct  # text, not numbers
    assert graded("numeric", "so it is 12.0 apples", "12").correct
    assert not graded("numeric", "Answer: 13", "12").correct
    assert graded("math", r"thus \boxed{\frac{1}{2}}", "0.5").correct
    assert graded("math", "Answer: 2/4", r"\frac{1}{2}").correct
    assert not graded("math", r"\boxed{3}", r"\frac{1}{2}").correct
    spec = {"name": "regex", "pattern": r"LABEL=(\w+)"}
    result = graded(spec, "LABEL=cat then LABEL=Dog", "dog")
    assert result.correct and result.extracted == "Dog"  # the last match's group
    assert not graded(spec, "no label", "dog").correct
    assert graded({"name": "regex", "pattern": r"\d+"}, "7 then 42", "42").correct
    # the default (auto) is unchanged: numbers when both sides are one
    assert (
        graded(None, "Answer: 12.0", "12").correct and graded("auto", "Answer: 12.0", "12").correct
    )


def test_built_in_sources_keep_their_own_grader():
    sample = {"sample_id": "g", "source": "gsm8k", "answer": "18", "response": ""}
    # "exact" would reject "18.0"; GSM8K's own numeric grader accepts it
    assert grade_detail("gsm8k", "#### 18.0", sample, grader="exact").correct


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fuzzy", "unknown name"),
        ({"name": "regex"}, "'pattern' is required"),
        ({"name": "exact", "pattern": "x"}, "used by no other"),
        ({"name": "regex", "pattern": "("}, "not a valid regex"),
        ({"name": "exact", "case": True}, "unknown key"),
    ],
)
def test_bad_grader_specs_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        make_grader(spec)


def test_numeric_grader_needs_a_numeric_gold_answer():
    with pytest.raises(ValueError, match="needs a number"):
        graded("numeric", "Answer: 3", "three")


def test_evaluate_generation_with_grader_none_reports_nll_and_difficulty_only():
    model, tok = load_model("tiny-random", seed=0)
    samples = pd.DataFrame(
        {
            "sample_id": ["a", "b"],
            "source": ["mine", "mine"],
            "prompt": ["Say hi.", "Count to three."],
            "response": ["Hi!", "1\n2\n3"],
            "answer": [None, None],
            "level": [None, None],
        }
    )
    per_sample, summary = evaluate_generation(
        model, tok, samples, grader={"name": "none"}, progress=False
    )
    assert per_sample["response"].isna().all() and per_sample["score"].isna().all()
    assert (per_sample["nll"] > 0).all() and per_sample["difficulty"].between(0, 1).all()
    overall = summary[summary["scope"] == "all"].iloc[0]
    assert np.isnan(overall["accuracy"])
    assert overall["nll"] == pytest.approx(per_sample["nll"].mean())
    assert overall["difficulty"] == pytest.approx(per_sample["difficulty"].mean())


def test_evaluate_generation_uses_the_configured_grader():
    model, tok = load_model("tiny-random", seed=0)
    samples = pd.DataFrame(
        {"sample_id": ["a"], "source": ["mine"], "prompt": ["Hi"], "answer": ["x"], "level": [None]}
    )
    anything = {"name": "regex", "pattern": r"(?s)^(.*)$"}  # the whole response is the answer
    per_sample, _ = evaluate_generation(
        model, tok, samples, grader=anything, max_new_tokens=4, progress=False
    )
    assert per_sample["extracted"][0] == per_sample["response"][0]
