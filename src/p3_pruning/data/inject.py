"""Composed pools: a clean train pool turned into a controlled experiment (Kedro-free).

``compose_pool(pool, ...)`` replaces a seeded share of the pool's rows with samples of a known
kind and records each row's kind in an ``origin`` column, so that a selection can be audited
(:mod:`p3_pruning.audit`). The pool keeps its size, so a budget means the same number of samples
with and without composition. Kinds, each a fraction of the composed pool:

- ``noise``: a clean row whose response is made wrong in a plausible way. On the offline default
  task one step's result is moved by a small non-zero integer (±1 … ±3) and the error is carried
  through every later step to the ``Answer:`` line, format unchanged (``12 + 7 = 20`` /
  ``20 - 4 = 16`` / ``Answer: 16``). Any other source: the response (and answer) of another
  sample of the pool — a plausible answer to the wrong question.
- ``duplicate``: a near-duplicate of a kept clean row. Default task: the same problem with its
  terms reordered (``4 - 1 - 7`` → ``-7 + 4 - 1``, ``23 * 47`` → ``47 * 23``), its lead-in
  re-worded and its step solution rewritten for the new order; other sources: a re-worded
  lead-in. ``exact_duplicates: true`` copies the row as it is. A copy's id is its source's id
  with ``~dup<k>`` appended, so ``problem_of`` groups a problem with its copies.
- ``off_task``: samples of other reasoning-gym families (``off_task_tasks``, by default
  ``spell_backward`` and ``letter_counting``) whose question and bare-answer response the
  evaluation never asks for.
- ``too_hard``: problems beyond the model: the default task's generators at levels above its
  level 3 (``too_hard_levels``: longer chains, more digits). Default source only.

Why replace rather than add: the study compares methods at the same budget, and a fraction of
the pool is then the same number of samples in every regime. The eval set is never composed.
No selector reads ``origin``: scoring, thresholds and pickers see only scores and embeddings.
"""

from __future__ import annotations

import json
import re
import zlib

import numpy as np
import pandas as pd
import reasoning_gym

from p3_pruning.data.reasoning import (
    ANSWER_INSTRUCTION,
    STEP_WRITERS,
    chain_sum_steps,
    check_steps,
    generate_default,
    multiply_steps,
)
from p3_pruning.data.schema import SAMPLE_COLUMNS, content_id

ORIGIN = "origin"
CLEAN = "clean"
KINDS = ("noise", "duplicate", "off_task", "too_hard")
ORIGINS = (CLEAN, *KINDS)
DUPLICATE_MARK = "~dup"  # a near-duplicate's id: its source's id, the mark, the copy's number
_DUPLICATE_SUFFIX = re.compile(re.escape(DUPLICATE_MARK) + r"\d+$")
DEFAULT_OFF_TASK = ("spell_backward", "letter_counting")
# Beyond the default's level 3 (two-digit sums of 3-4 terms, two-digit products): five to six
# three-digit terms, three-digit products.
TOO_HARD_LEVELS: dict[str, dict[str, dict[str, int]]] = {
    "chain_sum": {"4": {"min_terms": 5, "max_terms": 6, "min_digits": 3, "max_digits": 3}},
    "products": {"4": {"min_terms": 2, "max_terms": 2, "min_digits": 3, "max_digits": 3}},
}
MAX_ERROR = 3  # a corrupted step is off by 1 … MAX_ERROR
# per-kind streams of one seed: the same seed composes the same pool whatever else is asked
_STREAM = {kind: zlib.crc32(kind.encode()) for kind in ("layout", *KINDS)}
# lead-ins of the default task's questions and the re-wordings a near-duplicate gets
_LEADS = {
    "chain_sum": (
        "State the final answer to the following arithmetic problem:",
        ("Work out the value of this expression:", "Compute the following:"),
    ),
    "products": (
        "Solve the following multiplication:",
        ("Work out this product:", "Multiply:"),
    ),
}
_GENERIC_LEADS = ("Please answer the following.\n", "Here is a task for you.\n")


def compose_pool(
    pool: pd.DataFrame,
    *,
    seed: int = 0,
    noise: float = 0.0,
    duplicate: float = 0.0,
    off_task: float = 0.0,
    too_hard: float = 0.0,
    exact_duplicates: bool = False,
    off_task_tasks: tuple[str, ...] | list[str] = DEFAULT_OFF_TASK,
    too_hard_levels: dict | None = None,
    default_source: bool = True,
) -> pd.DataFrame:
    """The pool with ``origin`` added (and, with any fraction > 0, rows replaced as the module says).

    Fractions are of ``len(pool)`` (rounded to the nearest integer) and must sum to less than 1.
    ``default_source``: the pool is the offline default task (its step solutions can be
    corrupted and reordered, its levels extended); otherwise the generic kinds apply and
    ``too_hard`` is refused. Deterministic per ``seed``; the rows come out in a seeded order.
    """
    fractions = {"noise": noise, "duplicate": duplicate, "off_task": off_task, "too_hard": too_hard}
    for kind, value in fractions.items():
        if isinstance(value, bool) or not 0 <= float(value) < 1:
            raise ValueError(f"data.inject.{kind} must be a fraction in [0, 1), got {value!r}")
    if sum(fractions.values()) >= 1:
        raise ValueError(
            f"data.inject fractions must sum to < 1 (some clean rows), got {fractions}"
        )
    if too_hard and not default_source:
        raise ValueError("data.inject.too_hard needs the default source (its levels are extended)")
    n = len(pool)
    counts = {kind: int(np.floor(value * n + 0.5)) for kind, value in fractions.items()}
    out = pool.copy()
    out[ORIGIN] = CLEAN
    if not any(counts.values()):
        return out

    rng = _rng(seed, "layout")
    replaced = counts["duplicate"] + counts["off_task"] + counts["too_hard"]
    order = rng.permutation(n)
    kept = out.iloc[np.sort(order[replaced:])].reset_index(drop=True)
    kept = _corrupt(kept, counts["noise"], _rng(seed, "noise"), default_source)
    parts = [kept]
    if counts["duplicate"]:
        parts.append(
            _duplicates(kept, counts["duplicate"], _rng(seed, "duplicate"), exact_duplicates)
        )
    if counts["off_task"]:
        parts.append(_off_task(counts["off_task"], seed, tuple(off_task_tasks)))
    if counts["too_hard"]:
        parts.append(_too_hard(counts["too_hard"], seed, too_hard_levels or TOO_HARD_LEVELS))
    composed = pd.concat(parts, ignore_index=True)
    clash = composed["sample_id"].duplicated()
    if clash.any():
        raise ValueError(
            f"composed pool repeats sample_id {composed['sample_id'][clash].iloc[0]!r}"
        )
    shuffle = _rng(seed, "layout").permutation(len(composed))
    return composed.iloc[shuffle].reset_index(drop=True)


def origin_counts(pool: pd.DataFrame) -> dict[str, int]:
    """Rows per origin (every origin of ``ORIGINS`` present, zeros included); all clean without
    an ``origin`` column."""
    if ORIGIN not in pool.columns:
        return {CLEAN: len(pool), **{kind: 0 for kind in KINDS}}
    found = pool[ORIGIN].value_counts().to_dict()
    return {origin: int(found.get(origin, 0)) for origin in ORIGINS}


def problem_of(sample_id: str) -> str:
    """The id of the problem a row poses: a near-duplicate's source id, any other row's own id."""
    return _DUPLICATE_SUFFIX.sub("", str(sample_id))


def _rng(seed: int, kind: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), _STREAM[kind]])


# ---------------------------------------------------------------------------- noise
def _corrupt(kept: pd.DataFrame, count: int, rng, default_source: bool) -> pd.DataFrame:
    """``count`` clean rows of ``kept`` made wrong (in place of a copy); origin ``noise``."""
    if count == 0:
        return kept
    out = kept.copy()
    rows = np.sort(rng.choice(len(out), size=count, replace=False))
    if default_source:
        for row in rows:
            task = _task(out.iloc[row])
            response, answer = corrupt_steps(task, out.at[row, "response"], rng)
            out.at[row, "response"], out.at[row, "answer"] = response, str(answer)
    else:  # each chosen row takes the response of the next chosen row (a cycle: none keeps its own)
        donors = (
            np.roll(rows, 1)
            if count > 1
            else rng.choice(np.setdiff1d(np.arange(len(out)), rows), size=1)
        )
        responses = out["response"].to_numpy()[donors].copy()
        answers = out["answer"].to_numpy()[donors].copy()
        out.loc[rows, "response"] = responses
        out.loc[rows, "answer"] = answers
    out.loc[rows, "sample_id"] = [f"{sid}~noise" for sid in out.loc[rows, "sample_id"]]
    out.loc[rows, ORIGIN] = "noise"
    return out


def corrupt_steps(task: str, response: str, rng: np.random.Generator) -> tuple[str, int]:
    """A default-task step solution with one step's result off by ±1 … ±3, carried to the answer.

    chain_sum: the running total after a random step is moved, and every later total with it.
    products (two factors): a random partial product is moved and the running sums follow; a
    one-line product moves its only result. Returns ``(response, wrong_answer)``.
    """
    lines = response.split("\n")
    error = int(rng.integers(1, MAX_ERROR + 1)) * (1 if rng.random() < 0.5 else -1)
    if task == "chain_sum":
        steps = lines[:-1]
        at = int(rng.integers(len(steps)))
        expression = _chain_expression(steps)
        fixed, _ = chain_sum_steps(expression)
        out, total = [], None
        for i, step in enumerate(fixed):
            left, result = step.rsplit(" = ", 1)
            first, rest = left.split(" ", 1)
            value = int(result) + (error if i >= at else 0)
            first = str(total) if total is not None else first
            out.append(f"{first} {rest} = {value}")
            total = value
        return "\n".join([*out, f"Answer: {total}"]), total
    if task == "products":
        a, b = (int(t) for t in lines[0].split(" = ")[0].split(" * "))
        steps, _ = multiply_steps(a, b)
        if len(steps) == 1:
            value = a * b + error
            return f"{a} * {b} = {value}\nAnswer: {value}", value
        parts = [int(p.split(" * ")[1]) for p in steps[0].split(" = ")[1].split(" + ")]
        partials = [a * p for p in parts]
        partials[int(rng.integers(len(partials)))] += error
        out = [steps[0], *(f"{a} * {p} = {q}" for p, q in zip(parts, partials, strict=True))]
        total = partials[0]
        for q in partials[1:]:
            out.append(f"{total} + {q} = {total + q}")
            total += q
        return "\n".join([*out, f"Answer: {total}"]), total
    raise ValueError(f"no corruption rule for task {task!r}; known: {sorted(STEP_WRITERS)}")


def _chain_expression(steps: list[str]) -> str:
    """``"12 + 7 - 4"`` back from running-sum steps ``["12 + 7 = 19", "19 - 4 = 15"]``."""
    first = steps[0].split(" = ")[0]
    rest = [" ".join(step.split(" = ")[0].split(" ")[1:]) for step in steps[1:]]
    return " ".join([first, *rest])


# ------------------------------------------------------------------------- duplicates
def _duplicates(kept: pd.DataFrame, count: int, rng, exact: bool) -> pd.DataFrame:
    """``count`` near-duplicates (or exact copies) of clean rows of ``kept`` (with replacement
    once every clean row has one); origin ``duplicate``."""
    clean = np.flatnonzero(kept[ORIGIN].to_numpy() == CLEAN)
    if len(clean) == 0:
        raise ValueError(
            "data.inject.duplicate needs clean rows to copy; lower the other fractions"
        )
    picks = rng.permutation(clean)
    if count > len(clean):
        picks = np.concatenate([picks, rng.choice(clean, size=count - len(clean))])
    rows = []
    for copy, row in enumerate(picks[:count]):
        record = kept.iloc[row].to_dict()
        if not exact:
            record = _near_duplicate(record, rng)
        record["sample_id"] = f"{kept.iloc[row]['sample_id']}{DUPLICATE_MARK}{copy}"
        record[ORIGIN] = "duplicate"
        rows.append(record)
    return pd.DataFrame(rows, columns=kept.columns)


def _near_duplicate(record: dict, rng) -> dict:
    """The same problem re-worded (and, on the default task, its terms reordered)."""
    task = _task(record)
    if task not in _LEADS:
        lead = _GENERIC_LEADS[int(rng.integers(len(_GENERIC_LEADS)))]
        return {**record, "prompt": lead + record["prompt"]}
    meta = json.loads(record["meta"])
    expression = meta["entry"]["metadata"]["expression"]
    reordered = _reorder(task, expression, rng)
    steps, result = STEP_WRITERS[task](reordered)
    response = "\n".join([*steps, f"Answer: {result}"])
    if check_steps(response) != int(record["answer"]):
        raise ValueError(f"reordering {expression!r} changed its value")
    lead, rewordings = _LEADS[task]
    question = meta["entry"]["question"].replace(expression, reordered)
    question = question.replace(lead, rewordings[int(rng.integers(len(rewordings)))])
    return {**record, "prompt": f"{question} {ANSWER_INSTRUCTION}", "response": response}


def _reorder(task: str, expression: str, rng) -> str:
    """The expression's terms in another order, same value (a positive term first when possible)."""
    if task == "products":
        factors = expression.split(" * ")
        return " * ".join(factors[::-1])
    tokens = expression.split()
    terms = [int(tokens[0])] + [
        int(t) * (1 if op == "+" else -1) for op, t in zip(tokens[1::2], tokens[2::2], strict=True)
    ]
    order = list(rng.permutation(len(terms)))
    if len(terms) > 1 and order == list(range(len(terms))):
        order = order[1:] + order[:1]
    positive = [i for i in order if terms[i] >= 0]
    if positive:  # start with a non-negative term, keep the rest of the order
        order.remove(positive[0])
        order.insert(0, positive[0])
    text = str(terms[order[0]])
    for i in order[1:]:
        text += f" {'-' if terms[i] < 0 else '+'} {abs(terms[i])}"
    return text


# ------------------------------------------------------------------- off task, too hard
def _off_task(count: int, seed: int, tasks: tuple[str, ...]) -> pd.DataFrame:
    """``count`` samples of other reasoning-gym families, bare-answer responses; origin ``off_task``."""
    if not tasks:
        raise ValueError("data.inject.off_task_tasks is empty")
    quotas = [count // len(tasks) + (i < count % len(tasks)) for i in range(len(tasks))]
    rows = []
    for task, quota in zip(tasks, quotas, strict=True):
        if not quota:
            continue
        dataset = reasoning_gym.create_dataset(
            task, seed=zlib.crc32(f"{seed}/off_task/{task}".encode()), size=quota * 20
        )
        seen: set[str] = set()
        for index in range(len(dataset)):
            entry = dataset[index]
            if entry["question"] in seen:
                continue
            seen.add(entry["question"])
            prompt = entry["question"]
            rows.append(
                {
                    "sample_id": f"{task}-{content_id(prompt)}",
                    "source": f"reasoning_gym/{task}",
                    "prompt": prompt,
                    "response": str(entry["answer"]),
                    "answer": str(entry["answer"]),
                    "tests": None,
                    "level": "off_task",
                    "meta": json.dumps({"task": task, "seed": seed}),
                    ORIGIN: "off_task",
                }
            )
            if len(seen) == quota:
                break
        if len(seen) < quota:
            raise ValueError(f"off-task family {task!r} gave only {len(seen)} of {quota} problems")
    return pd.DataFrame(rows, columns=[*SAMPLE_COLUMNS, ORIGIN])


def _too_hard(count: int, seed: int, levels: dict) -> pd.DataFrame:
    """``count`` default-task problems at the levels above the default's; origin ``too_hard``."""
    frame = generate_default(count, zlib.crc32(f"{seed}/too_hard".encode()), levels=levels)
    frame["sample_id"] = frame["sample_id"] + "~hard"
    frame[ORIGIN] = "too_hard"
    return frame


def _task(record) -> str:
    source = str(record["source"])
    return source.split("/", 1)[1] if source.startswith("reasoning_gym/") else source
