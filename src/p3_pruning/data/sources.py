"""File and hub loaders: GSM8K, MATH, APPS and generic JSONL/JSON/Parquet → the samples table.

``load_samples(path, source, on_bad_record=..., columns=...) -> (samples, quarantined)``. Every bad
record either raises a ``DataError`` naming file, line (1-based record number) and field, or — with
``on_bad_record="quarantine"`` — lands in the quarantine table with its reason. Nothing is dropped
silently: counts are logged.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from p3_pruning.answers import gsm8k_answer, last_boxed
from p3_pruning.data.schema import (
    RECORD_PREVIEW_CHARS,
    DataError,
    content_id,
    quarantine_frame,
    samples_frame,
)

log = logging.getLogger(__name__)

SOURCES = ("gsm8k", "math", "apps", "jsonl")
ON_BAD_RECORD = ("raise", "quarantine")
ID_FIELDS = ("id", "problem_id", "idx", "unique_id", "task_id")
GENERIC_KEYS = ("prompt", "response", "answer", "tests", "level", "sample_id", "source")
META_FIELD_CHARS = 200  # generic sources: longer unmapped fields are not copied into meta
RECORD = "(record)"  # field name for problems with the record as a whole
FILE = "(file)"  # field name for problems with the file as a whole


class BadRecord(Exception):
    """One record is unusable: which field and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


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


def _parse_generic(record: dict, columns: dict) -> Parsed:
    prompt = _text(record, columns["prompt"])
    response = _text(record, columns["response"])
    tests = _generic_tests(record, columns["tests"])
    id_keys = (columns["sample_id"],) if columns["sample_id"] else ID_FIELDS
    record_id = _record_id(record, id_keys)
    if columns["sample_id"] and record_id is None:
        raise BadRecord(columns["sample_id"], "missing required field (mapped as sample_id)")
    used = {columns[k] for k in ("prompt", "response", "answer", "tests", "level")} | set(id_keys)
    # other short scalar fields travel along in meta (e.g. a category label)
    extra = {
        k: v
        for k, v in record.items()
        if k not in used
        and isinstance(v, (str, int, float, bool))
        and not _is_missing(v)
        and len(str(v)) <= META_FIELD_CHARS
    }
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
}


# ----------------------------------------------------------------------------- reading files
# Each item: (line, raw text, record or None, BadRecord or None).
RawRecord = tuple[int, str, dict | None, BadRecord | None]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?(:[\w.-]+)?(@[\w.\[\]:%+-]+)?$")
_FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".gz")


def _looks_like_hub_id(path: str) -> bool:
    return (
        bool(_HUB_ID.match(path))
        and path.count("/") <= 1
        and not path.lower().endswith(_FILE_SUFFIXES)
    )


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise DataError(
                f"not a valid gzip file ({exc})", file=str(path), line=1, field=FILE
            ) from exc
    return data


def _normalise(value):
    """Parquet/Arrow cell → plain Python (lists, dicts, str, int, float, None)."""
    if isinstance(value, np.ndarray):
        return [_normalise(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def _preview(record) -> str:
    return json.dumps(record, default=str, ensure_ascii=False)[:RECORD_PREVIEW_CHARS]


def _object_or_bad(obj) -> tuple[dict | None, BadRecord | None]:
    if isinstance(obj, dict):
        return obj, None
    return None, BadRecord(RECORD, f"expected a JSON object, found {type(obj).__name__}")


def _jsonl_records(data: bytes) -> Iterator[RawRecord]:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, chunk in enumerate(data.split(b"\n"), start=1):
        if not chunk.strip():
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raw = chunk.decode("utf-8", errors="replace")[:RECORD_PREVIEW_CHARS]
            yield number, raw, None, BadRecord(RECORD, f"invalid UTF-8 at byte {exc.start}")
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            bad = BadRecord(RECORD, f"invalid JSON ({exc.msg} at char {exc.pos})")
            yield number, text[:RECORD_PREVIEW_CHARS], None, bad
            continue
        record, bad = _object_or_bad(obj)
        yield number, text[:RECORD_PREVIEW_CHARS], record, bad


def _json_records(data: bytes, file: str) -> Iterator[RawRecord]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(
            f"invalid UTF-8 at byte {exc.start}", file=file, line=line, field=FILE
        ) from exc
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if len(lines) > 1 and lines[0].lstrip().startswith("{"):
            yield from _jsonl_records(data)  # JSON Lines saved with a .json name
            return
        raise DataError(
            f"invalid JSON ({exc.msg}, column {exc.colno})", file=file, line=exc.lineno, field=FILE
        ) from exc
    items = obj if isinstance(obj, list) else [obj]
    for number, item in enumerate(items, start=1):
        record, bad = _object_or_bad(item)
        yield number, _preview(item), record, bad


def _parquet_records(path: Path) -> Iterator[RawRecord]:
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise DataError(f"unreadable Parquet ({exc})", file=str(path), line=1, field=FILE) from exc
    for number, row in enumerate(frame.to_dict(orient="records"), start=1):
        record = {k: _normalise(v) for k, v in row.items()}
        yield number, _preview(record), record, None


def _hub_records(name: str) -> Iterator[RawRecord]:
    """Rows of a hub dataset ``owner/name[:config][@split]`` (split defaults to ``train``)."""
    try:
        import datasets  # noqa: PLC0415 - optional, only for hub ids
    except ImportError as exc:
        raise DataError(
            f"file not found: {name}. It looks like a hub dataset id, but loading from the hub needs "
            "network access and the `datasets` package (pip install datasets); otherwise put the "
            "file under data/01_raw and give its path",
            file=name,
            line=1,
            field=FILE,
        ) from exc
    spec, _, split = name.partition("@")
    repo, _, config = spec.partition(":")
    try:
        rows = datasets.load_dataset(repo, config or None, split=split or "train")
    except Exception as exc:  # network, auth, unknown config: all reported the same way
        raise DataError(
            f"could not load hub dataset {repo!r} (config {config or None!r}, split "
            f"{split or 'train'!r}): {exc}",
            file=name,
            line=1,
            field=FILE,
        ) from exc
    for number, row in enumerate(rows, start=1):
        record = {k: _normalise(v) for k, v in dict(row).items()}
        yield number, _preview(record), record, None


def _raw_records(path: str | Path) -> Iterator[RawRecord]:
    local = Path(path).expanduser()
    if not local.exists():
        if _looks_like_hub_id(str(path)):
            yield from _hub_records(str(path))
            return
        raise DataError("file not found", file=str(path), line=1, field=FILE)
    if local.is_dir():
        raise DataError(
            "is a directory; expected a .jsonl, .json or .parquet file",
            file=str(path),
            line=1,
            field=FILE,
        )
    suffixes = [s.lower() for s in local.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = suffixes[-1] if suffixes else ""
    if kind in (".parquet", ".pq"):
        yield from _parquet_records(local)
        return
    if kind not in (".jsonl", ".ndjson", ".json"):
        raise DataError(
            f"unsupported file type {kind or '(no suffix)'!r}; expected .jsonl, .json or .parquet "
            "(optionally gzipped)",
            file=str(path),
            line=1,
            field=FILE,
        )
    data = _read_bytes(local)
    if not data.strip():
        raise DataError("file is empty: no records", file=str(path), line=1, field=FILE)
    if kind == ".json":
        yield from _json_records(data, str(path))
    else:
        yield from _jsonl_records(data)


# ----------------------------------------------------------------------------- entry point
def _generic_columns(columns: dict | None, path: str | Path) -> dict:
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(GENERIC_KEYS))
    if unknown:
        raise ValueError(
            f"columns: unknown key(s) {unknown}; allowed keys are {list(GENERIC_KEYS)}"
        )
    for key, value in columns.items():
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ValueError(f"columns[{key!r}] must be a non-empty string, got {value!r}")
    out = {k: columns.get(k) or k for k in ("prompt", "response", "answer", "tests", "level")}
    out["sample_id"] = columns.get("sample_id")
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

    ``source``: ``gsm8k``, ``math``, ``apps`` or ``jsonl`` (generic: ``columns`` maps canonical
    columns — ``prompt``, ``response``, ``answer``, ``tests``, ``level``, ``sample_id`` — to record
    fields, dotted for nested ones; ``columns["source"]`` is the label written into ``source``,
    default the file's stem). Files: ``.jsonl``, ``.json`` (one object or a list), ``.parquet``,
    optionally gzipped. A missing path that looks like ``owner/name[:config][@split]`` is loaded
    from the hub when the ``datasets`` package and network are available.

    Returns ``(samples, quarantined)``; ``quarantined`` has ``file, line, field, reason, record`` and
    is empty unless ``on_bad_record="quarantine"``. With ``"raise"`` the first bad record raises a
    ``DataError`` naming file, line and field. Whole-file problems (missing, empty, unreadable)
    always raise.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {list(SOURCES)}, got {source!r}")
    if on_bad_record not in ON_BAD_RECORD:
        raise ValueError(
            f"on_bad_record must be one of {list(ON_BAD_RECORD)}, got {on_bad_record!r}"
        )
    if columns and source != "jsonl":
        raise ValueError(f"columns is only used with source='jsonl', not {source!r}")
    options = _generic_columns(columns, path) if source == "jsonl" else {}
    label = options.get("source", source)
    parse = _PARSERS[source]
    file = str(path)

    rows, bad_rows, seen = [], [], {}
    n_records = 0
    for line, raw, record, bad in tqdm(
        _raw_records(path), desc=f"load {source}", unit="rec", disable=None
    ):
        n_records += 1
        try:
            if bad is not None:
                raise bad
            parsed = parse(record, options)
            key = (
                parsed["id"][1]
                if parsed["id"]
                else content_id(parsed["prompt"], parsed["response"])
            )
            sample_id = f"{label}-{key}"
            if sample_id in seen:
                field = parsed["id"][0] if parsed["id"] else RECORD
                what = f"id {key!r}" if parsed["id"] else "record (same prompt and response)"
                raise BadRecord(field, f"duplicate {what}, first seen at line {seen[sample_id]}")
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
        meta = {"file": Path(file).name, "line": line, **parsed["meta"]}
        rows.append(
            {
                "sample_id": sample_id,
                "source": label,
                "prompt": parsed["prompt"],
                "response": parsed["response"],
                "answer": parsed["answer"],
                "tests": parsed["tests"],
                "level": parsed["level"],
                "meta": json.dumps(meta, ensure_ascii=False),
            }
        )

    if n_records == 0:
        raise DataError("file is empty: no records", file=file, line=1, field=FILE)
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
    return samples_frame(rows), quarantine_frame(bad_rows)
