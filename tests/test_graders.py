"""Graders on hand-written responses: GSM8K, MATH (math-verify), reasoning-gym, APPS (sandbox), generic."""

from __future__ import annotations

import json

import pytest
import reasoning_gym

from p3_pruning.evaluation import grade
from p3_pruning.graders import (
    answer_end,
    answer_line,
    apps_strict,
    extract_code,
    final_number,
    grade_detail,
    last_boxed,
)


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------
def test_last_boxed_handles_nesting_and_takes_the_last():
    assert (
        last_boxed(r"first \boxed{1} then \boxed{\frac{\sqrt{3}}{2}} done") == r"\frac{\sqrt{3}}{2}"
    )
    assert last_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert last_boxed(r"$\boxed 5$") == "5"
    assert last_boxed(r"\fbox{x^{2}}") == "x^{2}"
    assert last_boxed(r"unclosed \boxed{\frac{1}{2}") is None
    assert last_boxed("no box") is None


def test_answer_end_marks_the_first_complete_answer():
    assert answer_end("3 + 4 = 7\nAnswer: 7\nAnswer: 8\n") == len("3 + 4 = 7\nAnswer: 7\n")
    assert answer_end("3 + 4 = 7\nAnswer: 7") is None  # the line is not finished yet
    assert answer_end("Answer:\n") is None  # nothing after the colon
    assert answer_end("so #### 72\nmore") == len("so #### 72\n")
    assert answer_end(r"x = \boxed{\frac{1}{2}} and") == len(r"x = \boxed{\frac{1}{2}}")
    assert answer_end(r"x = \boxed{\frac{1}{2}") is None
    assert answer_end("**Final answer:** 12\n") == len("**Final answer:** 12\n")


def test_answer_line_and_final_number():
    assert answer_line("steps\n**Answer:** $42$.") == "42"
    assert final_number("Janet pays $1,234.50 in total.\n#### 1,234.5 dollars") == pytest.approx(
        1234.5
    )
    assert final_number("10-4 = 6 apples") == 6  # a subtraction is not a negative number
    assert final_number("It is -3.") == -3
    assert final_number("no digits here") is None


def test_extract_code_prefers_the_python_fence():
    resp = "Here:\n```python\nprint(int(input()) * 2)\n```\nExample:\n```\n$ echo 2\n```"
    assert extract_code(resp) == "print(int(input()) * 2)\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("print(1)") == "print(1)"


# ---------------------------------------------------------------------------------------------
# GSM8K
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "response, expected",
    [
        ("She has 1000 left.\n#### 1,000", 1.0),
        ("Answer: $1,000.00", 1.0),
        ("Answer: 1000 dollars.", 1.0),
        ("The total is 1,000 apples in the end", 1.0),  # last-number fallback
        ("Answer: 1000.0", 1.0),
        ("Answer: 10000", 0.0),  # shares every digit with the gold
        ("Answer: 100", 0.0),
        ("Answer: 1,001", 0.0),
        ("I do not know", 0.0),
        ("She had 1000 then lost 3.\n#### 997", 0.0),  # the marker wins over earlier numbers
    ],
)
def test_gsm8k(response, expected):
    assert grade("gsm8k", response, {"sample_id": "g1", "answer": "1000"}) == expected


def test_gsm8k_shared_digits_and_gold_from_reference():
    sample = {"sample_id": "g2", "answer": None, "response": "6 * 3 = 18\n#### 18"}
    assert grade("gsm8k", "Answer: 18", sample) == 1.0
    for wrong in ("Answer: 81", "Answer: 118", "Answer: 180", "Answer: 1.8"):
        assert grade("gsm8k", wrong, sample) == 0.0
    with pytest.raises(ValueError, match="g3"):
        grade("gsm8k", "Answer: 1", {"sample_id": "g3", "answer": None, "response": "no number"})


# ---------------------------------------------------------------------------------------------
# MATH
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "gold, response, expected",
    [
        (r"\frac{1}{2}", r"So the probability is \boxed{0.5}.", 1.0),
        ("0.5", r"\boxed{\frac{1}{2}}", 1.0),
        ("A", r"The answer is \boxed{\text{(A)}}", 1.0),
        (r"\text{(A)}", r"\boxed{A}", 1.0),
        ("B", r"\boxed{\text{(A)}}", 0.0),
        (r"\frac{\sqrt3}{2}", r"\boxed{\frac{\sqrt{3}}{2}}", 1.0),  # nested braces
        (r"\frac{1}{2}", r"\boxed{\frac{1}{20}}", 0.0),  # shares digits
        (r"\frac{1}{2}", r"try \boxed{2} then \boxed{\frac{2}{4}}", 1.0),  # the last box counts
        (r"\frac{1}{2}", r"try \boxed{\frac{1}{2}} then \boxed{3}", 0.0),
        ("1000", r"\boxed{1,000}", 1.0),
        ("x^2+1", "work\nAnswer: 1+x^2", 1.0),  # no box: the Answer line
        ("12", "no final answer", 0.0),
    ],
)
def test_math(gold, response, expected):
    assert grade("math", response, {"sample_id": "m", "answer": gold}) == expected


def test_math_gold_from_reference_solution():
    sample = {"sample_id": "m2", "answer": None, "response": r"so $x = \boxed{\dfrac{3}{4}}$"}
    assert grade("math", r"\boxed{0.75}", sample) == 1.0
    assert grade("math", r"\boxed{0.57}", sample) == 0.0


# ---------------------------------------------------------------------------------------------
# reasoning-gym
# ---------------------------------------------------------------------------------------------
def _rg_sample(task: str, index: int = 0, **config) -> dict:
    entry = reasoning_gym.create_dataset(task, size=4, seed=3, **config)[index]
    meta = json.dumps({"task": task, "entry": entry})  # stored as JSON in the samples table
    return {
        "sample_id": f"{task}-{index}",
        "source": f"reasoning_gym/{task}",
        "answer": entry["answer"],
        "meta": meta,
    }


@pytest.mark.parametrize(
    "task, config",
    [
        ("chain_sum", dict(min_terms=3, max_terms=3, min_digits=2, max_digits=2)),
        ("products", dict(min_terms=2, max_terms=2, min_digits=2, max_digits=2)),
    ],
)
def test_reasoning_gym_uses_the_task_scorer_exactly(task, config):
    sample = _rg_sample(task, **config)
    gold = sample["answer"]
    src = sample["source"]
    assert grade(src, f"some steps\nAnswer: {gold}", sample) == 1.0
    assert grade(src, f"some steps\nAnswer: **{gold}**.", sample) == 1.0
    assert grade(src, f"the result is {gold}", sample) == 1.0  # last-number fallback
    wrong = str(int(gold) * 10)  # shares digits with the gold
    assert grade(src, f"Answer: {wrong}", sample) == 0.0
    assert (
        grade(src, f"Answer: {gold}\nwait, no.\nAnswer: {int(gold) + 1}", sample) == 0.0
    )  # last line counts
    assert grade(src, "no idea", sample) == 0.0


def test_reasoning_gym_partial_credit_counts_as_wrong():
    sample = _rg_sample("products", min_terms=2, max_terms=2, min_digits=2, max_digits=2)
    near = "1" + sample["answer"]  # the task's scorer gives partial credit to this
    detail = grade_detail(sample["source"], f"Answer: {near}", sample)
    assert 0.0 < detail.detail["raw_score"] < 0.999
    assert detail.score == 0.0 and not detail.correct


def test_reasoning_gym_needs_its_entry():
    with pytest.raises(ValueError, match="meta"):
        grade("reasoning_gym/chain_sum", "Answer: 1", {"sample_id": "x", "meta": "{}"})


# ---------------------------------------------------------------------------------------------
# APPS (real sandbox)
# ---------------------------------------------------------------------------------------------
STDIO = {
    "sample_id": "a1",
    "tests": json.dumps({"inputs": ["1 2\n", "5 7\n"], "outputs": ["3\n", "12\n"]}),
}
CALL = {
    "sample_id": "a2",
    "tests": json.dumps({"fn_name": "add", "inputs": [[1, 2], [5, 7]], "outputs": [3, 12]}),
}


def test_apps_fraction_of_tests_and_strict():
    right = "Sure:\n```python\na, b = map(int, input().split())\nprint(a + b)\n```\nDone."
    half = "```python\na, b = map(int, input().split())\nprint(3)\n```"
    assert grade("apps", right, STDIO) == 1.0 and apps_strict(right, STDIO) == 1.0
    assert grade("apps", half, STDIO) == 0.5 and apps_strict(half, STDIO) == 0.0
    assert grade("apps", "```python\nwhile True: pass\n```", STDIO, timeout_s=1.0) == 0.0
    d = grade_detail("apps", half, STDIO)
    assert (d.detail["passed"], d.detail["total"], d.correct) == (1, 2, False)


def test_apps_call_based():
    assert grade("apps", "```python\ndef add(a, b):\n    return a + b\n```", CALL) == 1.0
    assert grade("apps", "```python\ndef add(a, b):\n    return a * b + 1\n```", CALL) == 0.5
    with pytest.raises(ValueError, match="a3"):
        grade("apps", "x", {"sample_id": "a3", "tests": json.dumps({"inputs": [], "outputs": []})})


# ---------------------------------------------------------------------------------------------
# Generic sources
# ---------------------------------------------------------------------------------------------
def test_generic_numeric_and_text_answers():
    assert grade("my_data", "steps\nAnswer: 1,000", {"sample_id": "u", "answer": "1000"}) == 1.0
    assert grade("my_data", "steps\nAnswer: 10000", {"sample_id": "u", "answer": "1000"}) == 0.0
    assert grade("my_data", "Answer: paris.", {"sample_id": "u", "answer": "Paris"}) == 1.0
    assert grade("my_data", "Answer: Lyon", {"sample_id": "u", "answer": "Paris"}) == 0.0
    assert grade("my_data", "it must be\nParis", {"sample_id": "u", "answer": "Paris"}) == 1.0
    with pytest.raises(ValueError, match="no answer"):
        grade("my_data", "Answer: 1", {"sample_id": "u", "answer": None})
