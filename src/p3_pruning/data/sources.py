"""File and hub loaders: GSM8K, MATH, APPS, Alpaca, chat and generic records → the samples table.

Formats (``source``): ``gsm8k``, ``math``, ``apps``; ``alpaca`` (``instruction``, optional ``input``,
``output``: the Stanford Alpaca JSON loads as is); ``chat`` (OpenAI/HF ``messages`` with
``role``/``content``, or ShareGPT ``conversations`` with ``from``/``value``; several turns); ``jsonl``
(any records with a column mapping). Containers (read by ``p3_pruning.data.readers``): ``.jsonl``,
``.json``, ``.parquet`` (optionally gzipped), a Hugging Face ``datasets`` folder written by
``save_to_disk``, or a hub id when online.

``load_samples(path, source, on_bad_record=..., columns=...) -> (samples, quarantined)``. Every bad
record either raises a ``DataError`` naming file, line (1-based record number) and field, or — with
``on_bad_record="quarantine"`` — lands in the quarantine table with its reason. Nothing is dropped
silently: counts are logged.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from p3_pruning.answers import gsm8k_answer, last_boxed
from p3_pruning.data.readers import FILE, RECORD, BadRecord, raw_records
from p3_pruning.data.schema import DataError, content_id, quarantine_frame, samples_frame

log = logging.getLogger(__name__)

SOURCES = ("gsm8k", "math", "apps", "jsonl", "alpaca", "chat")
ON_BAD_RECORD = ("raise", "quarantine")
ID_FIELDS = ("id", "problem_id", "idx", "unique_id", "task_id")
# `columns` keys per source (canonical or format field → the record's field name)
COLUMN_KEYS = {
    "jsonl": ("prompt", "response", "answer", "tests", "level", "sample_id", "source"),
    "alpaca": ("instruction", "input", "output", "answer", "level", "sample_id", "source"),
    "chat": ("messages", "answer", "level", "sample_id", "source"),
}
# Turn keys and role names: OpenAI/HF (role/content) and ShareGPT (from/value: human, gpt).
TURN_KEYS = (("role", "content"), ("from", "value"))
ROLE_NAMES = {
    "system": "system",
    "user": "user",
    "human": "user",
    "assistant": "assistant",
    "gpt": "assistant",
}
META_FIELD_CHARS = 200  # generic sources: longer unmapped fields are not copied into meta


# ----------------------------------------------------------------------------- field access
def _get(record: dict, key: str):
    """``record[key]``; a dotted key (``doc.question``) walks nested objects when not a plain key."""
    if key in record or "." not in key:
        return record.get(key)
    value = record
    for part in key.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(record: dict, key: str, *, required: bool = True) -> str | None:
    """A string field; required ones must be present and non-blank."""
    value = _get(record, key)
    if _is_missing(value):
        if required:
            raise BadRecord(key, "missing required field")
        return None
    if not isinstance(value, str):
        raise BadRecord(key, f"expected a string, found {type(value).__name__}")
    if not value.strip():
        if required:
            raise BadRecord(key, "empty required field")
        return None
    return value


def _label(record: dict, key: str) -> str | None:
    """An optional short label (answer, level): string, integer or float → str; else an error."""
    value = _get(record, key)
    if _is_missing(value):
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise BadRecord(key, f"expected a string or number, found {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _record_id(record: dict, keys: tuple[str, ...]) -> tuple[str, str] | None:
    """``(field, id)`` from the first id field present, or None."""
    for key in keys:
        value = _get(record, key)
        if _is_missing(value):
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise BadRecord(key, f"expected a string or integer id, found {type(value).__name__}")
        text = str(value).strip()
        if not text:
            raise BadRecord(key, "empty id")
        return key, text
    return None


_JSON_NAMES = {
    dict: "object",
    list: "list",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _json_field(record: dict, key: str, expected: type | tuple[type, ...]) -> object:
    """A field holding JSON text (or the already-decoded value) of the ``expected`` type."""
    value = _get(record, key)
    if _is_missing(value) or (isinstance(value, str) and not value.strip()):
        raise BadRecord(key, "missing required field")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise BadRecord(key, f"unparseable JSON ({exc.msg} at char {exc.pos})") from exc
    if not isinstance(value, expected):
        kinds = expected if isinstance(expected, tuple) else (expected,)
        names = " or ".join(_JSON_NAMES.get(t, t.__name__) for t in kinds)
        found = _JSON_NAMES.get(type(value), type(value).__name__)
        raise BadRecord(key, f"expected a JSON {names}, found {found}")
    return value


# ----------------------------------------------------------------------------- parsers
# A parser turns one record into the canonical fields (without sample_id/source) plus its id.
Parsed = dict


def _parse_gsm8k(record: dict, _: dict) -> Parsed:
    question = _text(record, "question")
    answer_text = _text(record, "answer")
    parsed = gsm8k_answer(answer_text)
    if parsed is None:
        raise BadRecord("answer", "no final '#### <number>' line")
    steps, number = parsed
    return {
        "id": _record_id(record, ID_FIELDS),
        "prompt": question.strip(),
        "response": "\n".join([*steps, f"#### {number}"]),
        "answer": number,
        "tests": None,
        "level": _label(record, "level"),
        "meta": {},
    }


def _parse_math(record: dict, _: dict) -> Parsed:
    problem = _text(record, "problem")
    solution = _text(record, "solution")
    answer = last_boxed(solution)
    if answer is None:
        raise BadRecord("solution", "no \\boxed{...} or \\fbox{...} final answer")
    kind = _text(record, "type", required=False)
    return {
        "id": _record_id(record, ID_FIELDS),
        "prompt": problem.strip(),
        "response": solution.strip(),
        "answer": answer,
        "tests": None,
        "level": _text(record, "level", required=False),
        "meta": {"type": kind.strip()} if kind else {},
    }


def _parse_apps(record: dict, _: dict) -> Parsed:
    question = _text(record, "question")
    solutions = _json_field(record, "solutions", list)
    if not solutions:
        raise BadRecord("solutions", "empty list: no reference solution")
    if not all(isinstance(s, str) for s in solutions):
        raise BadRecord("solutions", "expected a JSON list of code strings")
    if not solutions[0].strip():
        raise BadRecord("solutions", "first solution is empty")
    io = _json_field(record, "input_output", dict)
    for key in ("inputs", "outputs"):
        if not isinstance(io.get(key), list):
            raise BadRecord("input_output", f"'{key}' must be a list")
    if len(io["inputs"]) != len(io["outputs"]):
        raise BadRecord(
            "input_output",
            f"{len(io['inputs'])} inputs but {len(io['outputs'])} outputs",
        )
    tests = {"inputs": io["inputs"], "outputs": io["outputs"]}
    if io.get("fn_name") is not None:
        if not isinstance(io["fn_name"], str):
            raise BadRecord("input_output", "'fn_name' must be a string")
        tests["fn_name"] = io["fn_name"]
    starter = _text(record, "starter_code", required=False)
    prompt = question.strip() + (f"\n\n{starter.rstrip()}" if starter else "")
    url = _text(record, "url", required=False)
    return {
        "id": _record_id(record, ID_FIELDS),
        "prompt": prompt,
        "response": solutions[0].rstrip(),
        "answer": None,
        "tests": json.dumps(tests),
        "level": _text(record, "difficulty", required=False),
        "meta": {"n_solutions": len(solutions), **({"url": url} if url else {})},
    }


def _generic_tests(record: dict, key: str) -> str | None:
    """Optional code tests: a JSON object/list, or text holding one; stored as JSON text."""
    value = _get(record, key)
    if _is_missing(value):
        return None
    if isinstance(value, str):
        value = _json_field(record, key, (dict, list))
    if not isinstance(value, (dict, list)):
        raise BadRecord(key, f"expected a JSON object or list, found {type(value).__name__}")
    return json.dumps(value)


def _extra_fields(record: dict, used: set[str]) -> dict:
    """Other short scalar fields of a record, which travel along in meta (e.g. a category label)."""
    return {
        k: v
        for k, v in record.items()
        if k not in used
        and isinstance(v, (str, int, float, bool))
        and not _is_missing(v)
        and len(str(v)) <= META_FIELD_CHARS
    }


def _id_of(record: dict, columns: dict) -> tuple[tuple[str, ...], tuple[str, str] | None]:
    """The id field(s) looked at and ``(field, id)`` found; a mapped ``sample_id`` is required."""
    id_keys = (columns["sample_id"],) if columns["sample_id"] else ID_FIELDS
    record_id = _record_id(record, id_keys)
    if columns["sample_id"] and record_id is None:
        raise BadRecord(columns["sample_id"], "missing required field (mapped as sample_id)")
    return id_keys, record_id


def _parse_alpaca(record: dict, columns: dict) -> Parsed:
    """Alpaca: the prompt is the instruction, then a blank line and the input when there is one."""
    instruction = _text(record, columns["instruction"])
    extra_input = _text(record, columns["input"], required=False)
    output = _text(record, columns["output"])
    id_keys, record_id = _id_of(record, columns)
    prompt = instruction.strip() + (f"\n\n{extra_input.strip()}" if extra_input else "")
    used = {columns[k] for k in ("instruction", "input", "output", "answer", "level")}
    extra = _extra_fields(record, used | set(id_keys))
    return {
        "id": record_id,
        "prompt": prompt,
        "response": output.strip(),
        "answer": _label(record, columns["answer"]),
        "tests": None,
        "level": _label(record, columns["level"]),
        "meta": {"fields": extra} if extra else {},
    }


def _turns(record: dict, key: str) -> list[dict]:
    """A conversation field → ``[{"role", "content"}]`` (roles normalised, contents stripped).

    Turns are ``{"role", "content"}`` (OpenAI/HF) or ``{"from", "value"}`` (ShareGPT, roles
    ``human``/``gpt``); every problem is named ``<key>[i].<field>``.
    """
    value = _get(record, key)
    if isinstance(value, str) and value.strip():
        value = _json_field(record, key, list)
    if _is_missing(value) or (isinstance(value, list) and not value):
        raise BadRecord(key, "missing required field (a list of turns)")
    if not isinstance(value, list):
        raise BadRecord(key, f"expected a list of turns, found {type(value).__name__}")
    turns = []
    for i, turn in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(turn, dict):
            raise BadRecord(where, f"expected an object, found {type(turn).__name__}")
        keys = next(((r, c) for r, c in TURN_KEYS if r in turn), None)
        if keys is None:
            raise BadRecord(where, "no 'role' (OpenAI/HF) or 'from' (ShareGPT) key")
        role_key, content_key = keys
        role = turn[role_key]
        if not isinstance(role, str) or role.strip().lower() not in ROLE_NAMES:
            raise BadRecord(
                f"{where}.{role_key}",
                f"unknown role {role!r}; expected system, user, assistant (ShareGPT: human, gpt)",
            )
        content = turn.get(content_key)
        if _is_missing(content):
            raise BadRecord(f"{where}.{content_key}", "missing content")
        if not isinstance(content, str):
            raise BadRecord(
                f"{where}.{content_key}", f"expected a string, found {type(content).__name__}"
            )
        if not content.strip():
            raise BadRecord(f"{where}.{content_key}", "empty content")
        if ROLE_NAMES[role.strip().lower()] == "system" and i > 0:
            raise BadRecord(f"{where}.{role_key}", "a system turn may only come first")
        turns.append({"role": ROLE_NAMES[role.strip().lower()], "content": content.strip()})
    return turns


def _parse_chat(record: dict, columns: dict) -> Parsed:
    """A conversation: ``messages`` keeps every turn; prompt/response are its last exchange.

    Turns after the last assistant turn have nothing to learn from: they are left out and counted
    in ``meta.trimmed_turns``.
    """
    key = columns["messages"] or next(
        (k for k in ("messages", "conversations") if k in record), "messages"
    )
    turns = _turns(record, key)
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    if last is None:
        raise BadRecord(key, "no assistant turn")
    trimmed, turns = len(turns) - last - 1, turns[: last + 1]
    users = [t["content"] for t in turns[:last] if t["role"] == "user"]
    if not users:
        raise BadRecord(key, "no user turn before the last assistant turn")
    id_keys, record_id = _id_of(record, columns)
    extra = _extra_fields(record, {key, columns["answer"], columns["level"], *id_keys})
    messages = json.dumps(turns, ensure_ascii=False)
    meta = {"turns": len(turns), **({"trimmed_turns": trimmed} if trimmed else {})}
    return {
        "id": record_id,
        "key": content_id(messages),
        "prompt": users[-1],
        "response": turns[last]["content"],
        "answer": _label(record, columns["answer"]),
        "tests": None,
        "level": _label(record, columns["level"]),
        "messages": messages,
        "meta": {**meta, **({"fields": extra} if extra else {})},
    }


def _parse_generic(record: dict, columns: dict) -> Parsed:
    prompt = _text(record, columns["prompt"])
    response = _text(record, columns["response"])
    tests = _generic_tests(record, columns["tests"])
    id_keys, record_id = _id_of(record, columns)
    used = {columns[k] for k in ("prompt", "response", "answer", "tests", "level")} | set(id_keys)
    extra = _extra_fields(record, used)
    return {
        "id": record_id,
        "prompt": prompt.strip(),
        "response": response.strip(),
        "answer": _label(record, columns["answer"]),
        "tests": tests,
        "level": _label(record, columns["level"]),
        "meta": {"fields": extra} if extra else {},
    }


_PARSERS: dict[str, Callable[[dict, dict], Parsed]] = {
    "gsm8k": _parse_gsm8k,
    "math": _parse_math,
    "apps": _parse_apps,
    "jsonl": _parse_generic,
    "alpaca": _parse_alpaca,
    "chat": _parse_chat,
}


# ----------------------------------------------------------------------------- entry point
def _columns(source: str, columns: dict | None, path: str | Path) -> dict:
    """The field name of every ``COLUMN_KEYS[source]`` key (default: the key itself).

    ``sample_id`` stays None unless mapped (id fields are then looked up in ``ID_FIELDS``), chat's
    ``messages`` stays None unless mapped (``messages``, else ``conversations``), and ``source`` is
    the label written into the samples' ``source`` (default: the file's stem).
    """
    allowed = COLUMN_KEYS[source]
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(allowed))
    if unknown:
        raise ValueError(
            f"columns: unknown key(s) {unknown} for source {source!r}; allowed keys are {list(allowed)}"
        )
    for key, value in columns.items():
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"columns[{key!r}] must be a non-empty string, got {value!r}")
    out = {k: columns.get(k) or k for k in allowed}
    for key in ("sample_id", "messages"):
        if key in allowed:
            out[key] = columns.get(key)
    out["source"] = columns.get("source") or Path(str(path)).name.split(".")[0]
    return out


def load_samples(
    path: str | Path,
    source: str,
    *,
    on_bad_record: str = "raise",
    columns: dict | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load a dataset file (or hub id) into the canonical samples table.

    ``source``: ``gsm8k``, ``math``, ``apps``, ``alpaca``, ``chat`` or ``jsonl``. ``columns`` maps
    a source's fields to the record's where their names differ, dotted for nested ones
    (``COLUMN_KEYS``): ``jsonl`` — ``prompt``, ``response``, ``answer``, ``tests``, ``level``,
    ``sample_id``; ``alpaca`` — ``instruction``, ``input``, ``output``, ``answer``, ``level``,
    ``sample_id``; ``chat`` — ``messages`` (default ``messages``, else ``conversations``),
    ``answer``, ``level``, ``sample_id``. ``columns["source"]`` is the label written into
    ``source`` (default the file's stem). ``chat`` samples carry the whole conversation in a
    ``messages`` column (see ``p3_pruning.data.schema``).

    Files: ``.jsonl``, ``.json`` (one object or a list), ``.parquet``, optionally gzipped, or a
    ``datasets.save_to_disk`` folder. A missing path that looks like
    ``owner/name[:config][@split]`` is loaded from the hub when the network is available.

    Returns ``(samples, quarantined)``; ``quarantined`` has ``file, line, field, reason, record`` and
    is empty unless ``on_bad_record="quarantine"``. With ``"raise"`` the first bad record raises a
    ``DataError`` naming file, line and field. Whole-file problems (missing, empty, unreadable)
    always raise.
    """
    options, label, parse = _resolve(path, source, on_bad_record, columns)
    file = str(path)
    rows, bad_rows, n_records = _parse_records(path, source, parse, options, label, on_bad_record)
    if n_records == 0:
        raise DataError("file is empty: no records", file=file, line=1, field=FILE)
    _log_counts(file, source, n_records, rows, bad_rows)
    optional = ("messages",) if source == "chat" else ()
    return samples_frame(rows, optional=optional), quarantine_frame(bad_rows)


def _resolve(
    path: str | Path, source: str, on_bad_record: str, columns: dict | None
) -> tuple[dict, str, Callable[[dict, dict], Parsed]]:
    """``(options, label, parse)``: the column mapping, the ``source`` label written, the parser."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}")
    if on_bad_record not in ON_BAD_RECORD:
        raise ValueError(
            f"on_bad_record must be one of {list(ON_BAD_RECORD)}, got {on_bad_record!r}"
        )
    if columns and source not in COLUMN_KEYS:
        raise ValueError(
            f"columns is only used with source='jsonl', 'alpaca' or 'chat', not {source!r}"
        )
    options = _columns(source, columns, path) if source in COLUMN_KEYS else {}
    return options, options.get("source", source), _PARSERS[source]


def _parse_records(
    path: str | Path,
    source: str,
    parse: Callable[[dict, dict], Parsed],
    options: dict,
    label: str,
    on_bad_record: str,
) -> tuple[list[dict], list[dict], int]:
    """``(rows, bad_rows, n_records)``: a samples row per good record and a quarantine row per bad
    one; with ``on_bad_record="raise"`` the first bad record raises a ``DataError`` instead."""
    file = str(path)
    rows, bad_rows, seen = [], [], {}
    n_records = 0
    for line, raw, record, bad in tqdm(
        raw_records(path), desc=f"load {source}", unit="rec", disable=None
    ):
        n_records += 1
        try:
            if bad is not None:
                raise bad
            parsed = parse(record, options)
            sample_id = _sample_id(parsed, label, seen)
        except BadRecord as exc:
            if on_bad_record == "raise":
                raise DataError(exc.reason, file=file, line=line, field=exc.field) from None
            bad_rows.append(
                {
                    "file": file,
                    "line": line,
                    "field": exc.field,
                    "reason": exc.reason,
                    "record": raw,
                }
            )
            continue
        seen[sample_id] = line
        rows.append(_sample_row(parsed, sample_id, label, file, line))
    return rows, bad_rows, n_records


def _sample_id(parsed: Parsed, label: str, seen: dict[str, int]) -> str:
    """``<label>-<id>`` (the content id when the record has none); a repeat of a ``seen`` one is a
    ``BadRecord`` naming the line it was first seen at."""
    key = (
        parsed["id"][1]
        if parsed["id"]
        else parsed.get("key") or content_id(parsed["prompt"], parsed["response"])
    )
    sample_id = f"{label}-{key}"
    if sample_id in seen:
        field = parsed["id"][0] if parsed["id"] else RECORD
        same = "conversation" if "messages" in parsed else "prompt and response"
        what = f"id {key!r}" if parsed["id"] else f"record (same {same})"
        raise BadRecord(field, f"duplicate {what}, first seen at line {seen[sample_id]}")
    return sample_id


def _sample_row(parsed: Parsed, sample_id: str, label: str, file: str, line: int) -> dict:
    """One row of the samples table; ``meta``: the file name and line, then the parser's meta."""
    meta = {"file": Path(file).name, "line": line, **parsed["meta"]}
    return {
        "sample_id": sample_id,
        "source": label,
        "prompt": parsed["prompt"],
        "response": parsed["response"],
        "answer": parsed["answer"],
        "tests": parsed["tests"],
        "level": parsed["level"],
        "meta": json.dumps(meta, ensure_ascii=False),
        **({"messages": parsed["messages"]} if "messages" in parsed else {}),
    }


def _log_counts(file: str, source: str, n_records: int, rows: list, bad_rows: list) -> None:
    """Records read, samples kept and quarantined; the quarantine reasons counted by kind."""
    log.info(
        "%s: %d records → %d samples, %d quarantined (source %s)",
        file,
        n_records,
        len(rows),
        len(bad_rows),
        source,
    )
    if bad_rows:
        counts = Counter(f"{r['field']}: {r['reason'].split(' (')[0]}" for r in bad_rows)
        log.warning(
            "%s: quarantined %d of %d records: %s",
            file,
            len(bad_rows),
            n_records,
            "; ".join(f"{k} ×{v}" for k, v in counts.most_common()),
        )
