"""The APPS judge: grade a program on APPS ``input_output`` test cases, one sandboxed run per case.

``run_test_cases(code, tests, ...) -> list[TestCaseResult]``; the comparisons are public
(``normalise_lines``, ``stdout_matches``, ``return_value_matches``) so graders and tests can use them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from p3_pruning.sandbox.runner import (
    DEFAULT_MAX_OUTPUT_BYTES,
    Limits,
    SandboxResult,
    run_sandboxed,
)

RESULT_MARK = "\x1ep3-sandbox-result "  # prefixes the JSON return value in call mode (bootstrap.py)


@dataclass(frozen=True)
class TestCaseResult:
    """One APPS test case: ``passed``; ``status`` is ``passed``, ``wrong_answer`` or the sandbox status
    of a failed run; ``reason`` in words; ``expected``/``got`` as compared; ``run`` the raw result."""

    __test__ = False  # not a pytest class

    index: int
    passed: bool
    status: str
    reason: str
    run: SandboxResult
    expected: object = None
    got: object = None


def run_test_cases(
    code: str,
    tests: dict | str,
    *,
    timeout_s: float = 4.0,
    memory_mb: int = 512,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    kernel_isolation: bool = True,
) -> list[TestCaseResult]:
    """Run ``code`` on APPS ``input_output`` cases, one sandboxed process per case.

    ``tests``: dict or JSON string ``{"inputs": [...], "outputs": [...], "fn_name"?: str}``.
    Without ``fn_name`` each input is the program's stdin (a string or a list of lines) and its
    stdout must equal the output line by line after whitespace normalisation (numbers compared with
    a 1e-6 tolerance). With ``fn_name`` the program defines that function (or ``class Solution``
    with that method); each input is the argument list and the return value must equal the output
    (tuples count as lists; an output wrapped in a one-element list also matches). A case that
    crashes, hangs or floods only fails itself. Other arguments as in ``run_python``.
    """
    spec = _parse_tests(tests)
    limits = Limits.make(
        timeout_s=timeout_s,
        memory_mb=memory_mb,
        max_output_bytes=max_output_bytes,
        kernel_isolation=kernel_isolation,
    )
    results = []
    for i, (inp, expected) in enumerate(zip(spec["inputs"], spec["outputs"], strict=True)):
        if spec["fn_name"] is None:
            stdin = "\n".join(map(str, inp)) + "\n" if isinstance(inp, list) else str(inp)
            run = run_sandboxed(code, mode="exec", stdin=stdin, args=[], limits=limits)
            results.append(_judge_stdio(i, run, expected))
        else:
            call_args = inp if isinstance(inp, list) else [inp]
            payload = json.dumps({"fn_name": spec["fn_name"], "args": call_args})
            run = run_sandboxed(code, mode="call", stdin=payload, args=[], limits=limits)
            results.append(_judge_call(i, run, expected))
    return results


def _parse_tests(tests: dict | str) -> dict:
    if isinstance(tests, str):
        try:
            tests = json.loads(tests)
        except json.JSONDecodeError as exc:
            raise ValueError(f"run_test_cases: tests is not valid JSON: {exc}") from exc
    if not isinstance(tests, dict):
        raise ValueError(f"run_test_cases: tests must be a dict, got {type(tests).__name__}")
    missing = [k for k in ("inputs", "outputs") if k not in tests]
    if missing:
        raise ValueError(f"run_test_cases: tests lacks key(s) {missing}; found {sorted(tests)}")
    inputs, outputs = tests["inputs"], tests["outputs"]
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise ValueError("run_test_cases: tests['inputs'] and tests['outputs'] must be lists")
    if len(inputs) != len(outputs):
        raise ValueError(
            f"run_test_cases: {len(inputs)} inputs but {len(outputs)} outputs; they must pair up"
        )
    fn_name = tests.get("fn_name") or None
    if fn_name is not None and not (isinstance(fn_name, str) and fn_name.isidentifier()):
        raise ValueError(f"run_test_cases: fn_name must be an identifier, got {fn_name!r}")
    return {"inputs": inputs, "outputs": outputs, "fn_name": fn_name}


def _failed(i: int, run: SandboxResult, expected: object) -> TestCaseResult:
    return TestCaseResult(i, False, run.status, run.reason, run, expected=expected)


def normalise_lines(text: str | list) -> list[str]:
    """Output text (or a list of lines) as lines with runs of whitespace collapsed to one space,
    ends stripped, and empty lines at the start and end dropped."""
    if isinstance(text, list):
        text = "\n".join(map(str, text))
    lines = [" ".join(line.split()) for line in str(text).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    return lines


def _tokens_match(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


def stdout_matches(got: str, expected: str | list) -> bool:
    """True when ``got`` equals ``expected`` line by line after ``normalise_lines`` (tokens that are
    numbers may differ by 1e-6, relative or absolute)."""
    g, e = normalise_lines(got), normalise_lines(expected)
    if g == e:
        return True
    if len(g) != len(e):
        return False
    for gl, el in zip(g, e, strict=True):
        gt, et = gl.split(" "), el.split(" ")
        if len(gt) != len(et) or not all(_tokens_match(a, b) for a, b in zip(gt, et, strict=True)):
            return False
    return True


def _listify(x: object) -> object:
    if isinstance(x, (list, tuple)):
        return [_listify(v) for v in x]
    if isinstance(x, dict):
        return {k: _listify(v) for k, v in x.items()}
    return x


def _values_match(got: object, expected: object) -> bool:
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(map(_values_match, got, expected))
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(
            _values_match(got[k], expected[k]) for k in got
        )
    if isinstance(got, bool) or isinstance(expected, bool):
        return got is expected
    if isinstance(got, (int, float)) and isinstance(expected, (int, float)):
        return got == expected or math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)
    return type(got) is type(expected) and got == expected


def return_value_matches(got: object, expected: object) -> bool:
    """APPS call-based comparison: tuples count as lists, and an expected value wrapped in a
    one-element list (the usual APPS encoding) also matches the bare value."""
    got, expected = _listify(got), _listify(expected)
    if _values_match(got, expected):
        return True
    return isinstance(expected, list) and len(expected) == 1 and _values_match(got, expected[0])


def _judge_stdio(i: int, run: SandboxResult, expected: object) -> TestCaseResult:
    if not run.ok:
        return _failed(i, run, expected)
    if run.stdout_truncated:
        return TestCaseResult(i, False, "output_limit", "stdout was truncated", run, expected)
    if stdout_matches(run.stdout, expected):
        return TestCaseResult(i, True, "passed", "output matches", run, expected, run.stdout)
    got = normalise_lines(run.stdout)
    exp = normalise_lines(expected)
    where = next(
        (k for k, (a, b) in enumerate(zip(got, exp, strict=False)) if a != b),
        min(len(got), len(exp)),
    )
    reason = f"output differs at line {where + 1} ({len(got)} lines, expected {len(exp)})"
    return TestCaseResult(i, False, "wrong_answer", reason, run, expected, run.stdout)


def _judge_call(i: int, run: SandboxResult, expected: object) -> TestCaseResult:
    if not run.ok:
        return _failed(i, run, expected)
    marked = [ln for ln in run.stdout.split("\n") if ln.startswith(RESULT_MARK)]
    if not marked:
        reason = "the program exited before the function returned"
        return TestCaseResult(i, False, "error", reason, run, expected)
    got = json.loads(marked[-1][len(RESULT_MARK) :])
    if "repr" in got:
        reason = f"return value is not plain data: {got['repr'][:200]}"
        return TestCaseResult(i, False, "wrong_answer", reason, run, expected, got["repr"])
    value = got["value"]
    if return_value_matches(value, expected):
        return TestCaseResult(i, True, "passed", "return value matches", run, expected, value)
    reason = f"returned {_short(value)}, expected {_short(expected)}"
    return TestCaseResult(i, False, "wrong_answer", reason, run, expected, value)


def _short(x: object, n: int = 120) -> str:
    s = repr(x)
    return s if len(s) <= n else s[: n - 3] + "..."
