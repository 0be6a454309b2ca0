"""The offline default dataset: reasoning-gym arithmetic with step-by-step solutions written here.

``generate_default(n, seed) -> samples`` draws ``chain_sum`` and ``products`` problems, balanced over
task × level, and writes each reference response one step per line, ending with ``Answer: <n>``:

- chain_sum: running sums, ``12 + 7 = 19`` / ``19 - 4 = 15`` / ``Answer: 15``.
- products: place-value split of the second factor, partial products, then running sums,
  ``23 * 47 = 23 * 40 + 23 * 7`` / ``23 * 40 = 920`` / ``23 * 7 = 161`` / ``920 + 161 = 1081`` /
  ``Answer: 1081``.

Every step is re-evaluated and the result compared with the generator's answer; a mismatch raises.
Three levels per task, from short easy sums to long multi-digit ones (docs/method.md, offline default
data); ``benchmarks/bench_train_eval.py`` prints what one LoRA round gains on them.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable

import pandas as pd
import reasoning_gym
from tqdm.auto import tqdm

from p3_pruning.data.schema import content_id, samples_frame

# Within reach of a 135M model in one LoRA pass: level 1 is one operation on one-digit numbers
# (~100-200 distinct problems per task, so a level holds at most that many samples), level 3 what
# the model almost never solves untrained.
DEFAULT_LEVELS: dict[str, dict[str, dict[str, int]]] = {
    "chain_sum": {
        "1": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "2": {"min_terms": 2, "max_terms": 3, "min_digits": 1, "max_digits": 2},
        "3": {"min_terms": 3, "max_terms": 4, "min_digits": 2, "max_digits": 2},
    },
    "products": {
        "1": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1},
        "2": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2},
        "3": {"min_terms": 2, "max_terms": 2, "min_digits": 2, "max_digits": 2},
    },
}
ANSWER_INSTRUCTION = "End your reply with a line 'Answer: <number>'."
MAX_DRAWS_PER_SAMPLE = 50  # draws allowed per wanted sample before a level counts as exhausted


# ----------------------------------------------------------------------------- step writers
def chain_sum_steps(expression: str) -> tuple[list[str], int]:
    """Running-sum steps for ``"12 + 7 - 4"``: ``["12 + 7 = 19", "19 - 4 = 15"]`` and 15."""
    tokens = expression.split()
    total = int(tokens[0])
    steps = []
    for op, term in zip(tokens[1::2], tokens[2::2], strict=True):
        value = int(term)
        if op == "+":
            new = total + value
        elif op == "-":
            new = total - value
        else:
            raise ValueError(f"chain_sum expression {expression!r}: unexpected operator {op!r}")
        steps.append(f"{total} {op} {term} = {new}")
        total = new
    return steps, total


def _place_values(number: int) -> list[int]:
    """Non-zero place-value parts, most significant first: 407 → [400, 7]; -47 → [-40, -7]."""
    sign = -1 if number < 0 else 1
    digits = str(abs(number))
    return [sign * int(d) * 10 ** (len(digits) - 1 - i) for i, d in enumerate(digits) if d != "0"]


def multiply_steps(a: int, b: int) -> tuple[list[str], int]:
    """Place-value steps for ``a * b``: split b, one partial product per line, then running sums."""
    parts = _place_values(b)
    if len(parts) <= 1:
        return [f"{a} * {b} = {a * b}"], a * b
    steps = [f"{a} * {b} = " + " + ".join(f"{a} * {p}" for p in parts)]
    partials = [a * p for p in parts]
    steps += [f"{a} * {p} = {q}" for p, q in zip(parts, partials, strict=True)]
    total = partials[0]
    for q in partials[1:]:
        steps.append(f"{total} + {q} = {total + q}")
        total += q
    return steps, total


def products_steps(expression: str) -> tuple[list[str], int]:
    """Steps for ``"23 * 47"`` (or more factors, multiplied left to right) and the product."""
    factors = [int(t) for t in expression.split(" * ")]
    total, steps = factors[0], []
    for factor in factors[1:]:
        more, total = multiply_steps(total, factor)
        steps += more
    return steps, total


STEP_WRITERS: dict[str, Callable[[str], tuple[list[str], int]]] = {
    "chain_sum": chain_sum_steps,
    "products": products_steps,
}


# ----------------------------------------------------------------------------- checking
def _evaluate(side: str) -> int:
    """Value of ``"23 * 40 + 23 * 7"``-style integer arithmetic (``*`` before ``+``/``-``)."""
    tokens = side.split()
    if not tokens or len(tokens) % 2 == 0:
        raise ValueError(f"malformed arithmetic {side!r}")
    total, sign, product = 0, 1, int(tokens[0])
    for op, term in zip(tokens[1::2], tokens[2::2], strict=True):
        if op == "*":
            product *= int(term)
        elif op in ("+", "-"):
            total += sign * product
            sign, product = (1 if op == "+" else -1), int(term)
        else:
            raise ValueError(f"unexpected operator {op!r} in {side!r}")
    return total + sign * product


def check_steps(response: str) -> int:
    """Re-evaluate every step line (all sides of each ``=`` agree) and return the ``Answer:`` value."""
    lines = response.split("\n")
    if not lines or not lines[-1].startswith("Answer: "):
        raise ValueError(f"response does not end with an 'Answer: ' line: {response!r}")
    for line in lines[:-1]:
        values = {_evaluate(side) for side in line.split("=")}
        if len(values) != 1:
            raise ValueError(f"step {line!r} is false")
    return int(lines[-1].removeprefix("Answer: "))


# ----------------------------------------------------------------------------- generation
def _cells(tasks, levels) -> list[tuple[str, str, dict]]:
    if not tasks:
        raise ValueError("tasks is empty: give at least one of " + str(sorted(STEP_WRITERS)))
    cells = []
    for task in tasks:
        if task not in STEP_WRITERS:
            raise ValueError(
                f"task {task!r} has no step-solution writer; supported: {sorted(STEP_WRITERS)}"
            )
        if not isinstance(levels, dict) or not levels.get(task):
            raise ValueError(f"levels has no entry for task {task!r}; give {{level: config}}")
        for level, config in levels[task].items():
            if not isinstance(config, dict):
                raise ValueError(f"levels[{task!r}][{level!r}] must be a mapping, got {config!r}")
            reserved = {"seed", "size"} & set(config)
            if reserved:
                raise ValueError(f"levels[{task!r}][{level!r}] must not set {sorted(reserved)}")
            cells.append((task, str(level), dict(config)))
    return cells


def _sample(task: str, level: str, seed: int, entry: dict) -> dict:
    expression = entry["metadata"]["expression"]
    steps, result = STEP_WRITERS[task](expression)
    response = "\n".join([*steps, f"Answer: {result}"])
    if check_steps(response) != int(entry["answer"]):
        raise ValueError(
            f"{task} level {level}: step solution of {expression!r} gives {result}, "
            f"generator says {entry['answer']}"
        )
    prompt = f"{entry['question']} {ANSWER_INSTRUCTION}"
    meta = {
        "task": task,
        "level": level,
        "seed": seed,
        "entry": {k: entry[k] for k in ("question", "answer", "metadata")},
    }
    return {
        "sample_id": f"{task}-{content_id(prompt)}",
        "source": f"reasoning_gym/{task}",
        "prompt": prompt,
        "response": response,
        "answer": str(entry["answer"]),
        "tests": None,
        "level": level,
        "meta": json.dumps(meta),
    }


def generate_default(
    n: int,
    seed: int,
    *,
    tasks: list[str] | tuple[str, ...] | None = None,
    levels: dict[str, dict[str, dict]] | None = None,
    fill: bool = False,
) -> pd.DataFrame:
    """``n`` distinct samples balanced over task × level (remainder to the first cells).

    ``fill``: a cell that runs out of distinct problems (level 1 of ``products`` has 100) gives
    what it has and its shortfall moves to the cells after it, instead of raising; a large eval set
    then stays within the same levels, with fewer of the small cell's problems.

    ``levels``: ``{task: {level: generator config}}`` (default ``DEFAULT_LEVELS``); ``tasks``: which
    of its tasks to use (default all). Deterministic per ``seed``; ``sample_id`` is
    ``<task>-<sha1(prompt)[:12]>``, so the same problem has the same id in every run. Questions are
    unique across the whole table (duplicates are redrawn), so no problem can be in both the train
    pool and the eval set.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    levels = DEFAULT_LEVELS if levels is None else levels
    tasks = list(levels) if tasks is None else list(tasks)
    cells = _cells(tasks, levels)
    quotas = [n // len(cells) + (i < n % len(cells)) for i in range(len(cells))]

    rows, seen, carried = [], set(), 0
    progress = tqdm(total=n, desc="generate default", unit="sample", disable=None)
    for position, ((task, level, config), quota) in enumerate(zip(cells, quotas, strict=True)):
        quota += carried
        carried = 0
        if quota == 0:
            continue
        draws = MAX_DRAWS_PER_SAMPLE * quota
        cell_seed = zlib.crc32(f"{seed}/{task}/{level}".encode())
        try:
            dataset = reasoning_gym.create_dataset(task, seed=cell_seed, size=draws, **config)
        except (TypeError, AssertionError) as exc:
            raise ValueError(
                f"levels[{task!r}][{level!r}] = {config}: invalid config ({exc})"
            ) from exc
        taken = 0
        for index in range(draws):
            entry = dataset[index]
            if entry["question"] in seen:
                continue
            seen.add(entry["question"])
            rows.append(_sample(task, level, seed, entry))
            progress.update()
            taken += 1
            if taken == quota:
                break
        if taken < quota and fill and position < len(cells) - 1:
            carried = quota - taken
            continue
        if taken < quota:
            raise ValueError(
                f"{task} level {level} ({config}) gave only {taken} distinct problems in {draws} "
                f"draws, {quota} wanted: widen the level or lower n"
            )
    progress.close()
    return samples_frame(rows)
