"""Graders: did a model response get the sample right?

Kedro-free. ``grade(source, response, sample) -> float`` (1.0 / 0.0; APPS: fraction of tests passed) and
``grade_detail(...) -> Grade`` with the extracted answer and strict correctness. ``sample`` is a dict-like
row of the samples table (``answer``, ``tests``, ``meta``, ``response`` = the reference solution).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import threading
from fractions import Fraction
from typing import Any

from p3_pruning.answers import (  # noqa: F401 (re-exported: part of the graders' API)
    ANSWER_LINE,
    GSM_MARKER,
    answer_end,
    answer_line,
    boxed_end,
    final_number,
    gsm_marker,
    last_boxed,
    numbers,
    to_number,
)


@dataclasses.dataclass
class Grade:
    """score: 1.0/0.0 (APPS: fraction of tests passed). correct: strict success (APPS: every test passed).
    extracted: the final answer (or code) taken from the response; None when none was found."""

    score: float
    correct: bool
    extracted: str | None
    detail: dict = dataclasses.field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Extraction (answers: p3_pruning.answers)
# ----------------------------------------------------------------------------------------------
def extract_code(response: str) -> str:
    """Python code in a response: the longest ```python fenced block, else the longest fenced block,
    else the whole response."""
    blocks = re.findall(
        r"```[ \t]*(python3?|py)[ \t]*\n(.*?)(?:```|\Z)", response or "", flags=re.S | re.I
    )
    if blocks:
        return max((b[1] for b in blocks), key=len)
    blocks = re.findall(r"```[^\n]*\n(.*?)(?:```|\Z)", response or "", flags=re.S)
    if blocks:
        return max(blocks, key=len)
    return response or ""


def normalize_text(s: str) -> str:
    """Lower-case, ``\\text{}``/``$``/markdown/punctuation-at-the-ends removed, spaces collapsed."""
    s = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", str(s))
    s = s.replace("$", "").replace("**", "").strip().lower()
    s = re.sub(r"\s+", " ", s)
    return s.strip(" .,;:!?\"'()[]")


# ----------------------------------------------------------------------------------------------
# Graders per source
# ----------------------------------------------------------------------------------------------
def _field(sample, key: str, default=None):
    try:
        value = sample[key]
    except (KeyError, IndexError, TypeError):
        return default
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    try:
        import pandas as pd

        if value is pd.NA:
            return default
    except ImportError:  # pragma: no cover
        pass
    return value


def _sample_name(sample) -> str:
    return repr(_field(sample, "sample_id", "<no sample_id>"))


def grade_gsm8k(response: str, sample) -> Grade:
    """Final number equality (commas, ``$``, units, trailing text and ``.0`` do not matter)."""
    gold_text = _field(sample, "answer")
    gold = (
        to_number(gold_text)
        if gold_text is not None
        else final_number(_field(sample, "response", ""))
    )
    if gold is None:
        raise ValueError(
            f"GSM8K sample {_sample_name(sample)} has no numeric gold answer (answer={gold_text!r})"
        )
    pred = final_number(response or "")
    ok = pred is not None and pred == gold
    return Grade(float(ok), ok, None if pred is None else _fraction_text(pred))


def _fraction_text(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else str(x)


def _math_verify_timeout() -> int | None:
    # math-verify's timeout uses SIGALRM, which only works in the main thread.
    return 5 if threading.current_thread() is threading.main_thread() else None


def math_equal(gold: str, pred: str) -> bool:
    """Equivalence of two LaTeX answers through math-verify; normalised string equality as a fallback."""
    from math_verify import parse, verify

    timeout = _math_verify_timeout()
    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout)
        pred_parsed = parse(f"${pred}$", parsing_timeout=timeout)
        if (
            gold_parsed
            and pred_parsed
            and verify(gold_parsed, pred_parsed, timeout_seconds=timeout)
        ):
            return True
    except Exception:  # noqa: BLE001 - a malformed model answer is just wrong
        pass
    return normalize_text(gold) == normalize_text(pred)


def grade_math(response: str, sample) -> Grade:
    """Last ``\\boxed{}`` of the response (else its ``Answer:`` line) against the gold answer, by math-verify."""
    gold = _field(sample, "answer") or last_boxed(_field(sample, "response", ""))
    if not gold:
        raise ValueError(
            f"MATH sample {_sample_name(sample)} has no gold answer (no answer, no \\boxed{{}})"
        )
    pred = last_boxed(response or "") or answer_line(response or "")
    ok = bool(pred) and math_equal(str(gold), pred)
    return Grade(float(ok), ok, pred)


@functools.cache
def _score_fn(task: str):
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(task)


def _meta(sample) -> dict:
    meta = _field(sample, "meta", {})
    if isinstance(meta, str):
        try:
            meta = json.loads(meta) if meta.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"sample {_sample_name(sample)}: meta is not valid JSON ({exc})"
            ) from exc
    return dict(meta)


def grade_reasoning_gym(response: str, sample, task: str | None = None) -> Grade:
    """The task's own ``score_answer`` on the final answer (``Answer:`` line, else the last number).
    Exact only: its partial credit (e.g. 0.5 for "0" vs "10") counts as wrong."""
    meta = _meta(sample)
    task = task or meta.get("task")
    entry = meta.get("entry")
    if not task or not isinstance(entry, dict):
        raise ValueError(
            f"reasoning-gym sample {_sample_name(sample)} needs meta.task and meta.entry"
        )
    pred = answer_line(response or "")
    if pred is None:
        found = numbers(response or "")
        pred = found[-1].replace(",", "") if found else None
    raw = float(_score_fn(task)(pred, entry)) if pred is not None else 0.0
    ok = raw >= 0.999
    return Grade(float(ok), ok, pred, {"raw_score": raw})


def _tests(sample) -> dict:
    tests = _field(sample, "tests")
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"APPS sample {_sample_name(sample)}: tests is not valid JSON ({exc})"
            ) from exc
    if not isinstance(tests, dict) or not tests.get("inputs"):
        raise ValueError(
            f"APPS sample {_sample_name(sample)} has no test cases (tests={str(tests)[:80]!r})"
        )
    if len(tests["inputs"]) != len(tests.get("outputs", [])):
        raise ValueError(
            f"APPS sample {_sample_name(sample)}: {len(tests['inputs'])} inputs but "
            f"{len(tests.get('outputs', []))} outputs"
        )
    return tests


def grade_apps(response: str, sample, *, timeout_s: float = 4.0, memory_mb: int = 512) -> Grade:
    """Code from the response run on the sample's test cases in the sandbox. score = fraction passed,
    correct = all passed (strict accuracy)."""
    from p3_pruning.sandbox import run_test_cases

    tests = _tests(sample)
    code = extract_code(response or "")
    results = run_test_cases(code, tests, timeout_s=timeout_s, memory_mb=memory_mb)
    passed = sum(bool(r.passed) for r in results)
    total = len(tests["inputs"])
    statuses = [str(getattr(r, "status", "")) for r in results]
    return Grade(
        passed / total,
        passed == total,
        code,
        {"passed": passed, "total": total, "statuses": statuses},
    )


def _gold(sample) -> str:
    gold = _field(sample, "answer")
    if gold is None:
        raise ValueError(
            f"sample {_sample_name(sample)} (source {_field(sample, 'source')!r}) has no answer to grade against"
        )
    return str(gold)


def final_answer(text: str) -> str | None:
    """A generic response's final answer: its ``Answer:`` line, ``####`` line or last ``\\boxed{}``,
    else its last non-empty line."""
    text = text or ""
    pred = answer_line(text) or gsm_marker(text) or last_boxed(text)
    if pred is None:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        pred = lines[-1].strip() if lines else None
    return pred


def grade_generic(response: str, sample) -> Grade:
    """Numeric equality when both sides are numbers, else normalised exact match, on the final answer."""
    gold = _gold(sample)
    pred = final_answer(response)
    if pred is None:
        return Grade(0.0, False, None)
    ok = same_answer(gold, pred)
    return Grade(float(ok), ok, pred)


def _whole_number(s: str) -> Fraction | None:
    """``s`` read as one number (``"1,000"``, ``"$5"``, ``"12 apples"``) or None when it is not just a number."""
    s = normalize_text(s).lstrip("$")
    found = numbers(s)
    if len(found) != 1 or not s.startswith(found[0]):
        return None
    return to_number(found[0])


def same_answer(gold: str, pred: str) -> bool:
    """Equal as numbers when both are just a number, else as normalised text."""
    gold_num, pred_num = _whole_number(gold), _whole_number(pred)
    if gold_num is not None and pred_num is not None:
        return gold_num == pred_num
    return normalize_text(gold) == normalize_text(pred)


def grade_exact(response: str, sample) -> Grade:
    """Normalised exact match of the final answer (:func:`final_answer`) with the gold answer."""
    gold, pred = _gold(sample), final_answer(response)
    ok = pred is not None and normalize_text(gold) == normalize_text(pred)
    return Grade(float(ok), ok, pred)


def grade_numeric(response: str, sample) -> Grade:
    """The response's final number (``####``, ``Answer:``, else the last number) equals the gold one."""
    gold_text = _gold(sample)
    gold = to_number(gold_text)
    if gold is None:
        raise ValueError(
            f"sample {_sample_name(sample)}: the numeric grader needs a number as answer, got {gold_text!r}"
        )
    pred = final_number(response or "")
    ok = pred is not None and pred == gold
    return Grade(float(ok), ok, None if pred is None else _fraction_text(pred))


def grade_math_answer(response: str, sample) -> Grade:
    """math-verify equivalence of the last ``\\boxed{}`` (else the final answer) with the gold answer."""
    gold = _gold(sample)
    pred = last_boxed(response or "") or final_answer(response)
    ok = bool(pred) and math_equal(gold, pred)
    return Grade(float(ok), ok, pred)


def grade_regex(response: str, sample, *, pattern: re.Pattern) -> Grade:
    """The last match of ``pattern`` (its first group, else the whole match) is the answer, compared
    with the gold answer as numbers when both are one, else as normalised text."""
    gold = _gold(sample)
    matches = list(pattern.finditer(response or ""))
    if not matches:
        return Grade(0.0, False, None)
    last = matches[-1]
    pred = (last.group(1) if pattern.groups else last.group(0)) or ""
    ok = same_answer(gold, pred)
    return Grade(float(ok), ok, pred)


# Graders for generic sources, by the name in ``generation.grader.name``; ``none`` skips grading.
GRADERS = ("auto", "exact", "numeric", "math", "regex", "none")


def make_grader(spec: str | dict | None):
    """``f(response, sample) -> Grade`` for a generic source, from ``spec``; None for ``none``.

    ``spec``: a name or ``{"name": ..., "pattern": ...}``. Names: ``auto`` (default: numbers when
    both sides are one, else normalised text), ``exact``, ``numeric``, ``math`` (math-verify),
    ``regex`` (needs ``pattern``; its first group, else the whole match, is the answer), ``none``
    (no generation accuracy).
    """
    if spec is None:
        spec = {"name": "auto"}
    if isinstance(spec, str):
        spec = {"name": spec}
    spec = dict(spec)
    name, pattern = spec.pop("name", "auto"), spec.pop("pattern", None)
    if spec:
        raise ValueError(f"grader: unknown key(s) {sorted(spec)}; expected name and pattern")
    if name not in GRADERS:
        raise ValueError(f"grader: unknown name {name!r}; expected one of {list(GRADERS)}")
    if (pattern is not None) != (name == "regex"):
        raise ValueError(
            "grader: 'pattern' is required by the regex grader and used by no other, "
            f"got name={name!r}, pattern={pattern!r}"
        )
    if name == "regex":
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"grader: pattern {pattern!r} is not a valid regex: {exc}") from exc
        return functools.partial(grade_regex, pattern=compiled)
    return {
        "auto": grade_generic,
        "exact": grade_exact,
        "numeric": grade_numeric,
        "math": grade_math_answer,
        "none": None,
    }[name]


def grade_detail(source: str, response: str, sample: Any, *, grader=None, **options) -> Grade:
    """Grade ``response`` for ``sample`` by its ``source``; ``options`` reach the APPS sandbox
    (``timeout_s``, ``memory_mb``). ``grader`` (a :func:`make_grader` spec or the function it
    returns) grades generic sources; GSM8K, MATH, reasoning-gym and APPS keep their own."""
    source = str(source or "")
    if source == "gsm8k":
        return grade_gsm8k(response, sample)
    if source == "math" or source.startswith("math/"):
        return grade_math(response, sample)
    if source.startswith("reasoning_gym/"):
        return grade_reasoning_gym(response, sample, task=source.split("/", 1)[1])
    if source == "apps" or source.startswith("apps/"):
        return grade_apps(response, sample, **options)
    fn = grader if callable(grader) else make_grader(grader)
    if fn is None:
        raise ValueError("grader 'none' grades nothing: skip generation accuracy instead")
    return fn(response, sample)


def grade(source: str, response: str, sample: Any, **options) -> float:
    """1.0 correct / 0.0 wrong (APPS: fraction of test cases passed)."""
    return grade_detail(source, response, sample, **options).score


def apps_strict(response: str, sample: Any, **options) -> float:
    """APPS strict accuracy: 1.0 when every test case passes."""
    return float(grade_apps(response, sample, **options).correct)
