"""The canonical ``samples`` table: columns, the data error, and validation.

Every source (reasoning-gym generators, GSM8K, MATH, APPS, generic files) ends up as a DataFrame with
exactly these columns, one row per sample:

- ``sample_id`` (str, unique, stable across runs), ``source`` (str), ``prompt`` (str), ``response`` (str)
- ``answer`` (str or null), ``tests`` (JSON str or null), ``level`` (str or null)
- ``meta`` (JSON object as str)

Optional column ``messages`` (JSON str or null), present when a source yields conversations (``chat``):
the whole conversation as ``[{"role": "system"|"user"|"assistant", "content": str}, ...]`` with at
least one assistant turn and a system turn only first. For such a row ``prompt`` is the last user
turn before the final assistant turn and ``response`` that final assistant turn (so tools that see
one exchange, like generation, see the last one), while scoring and training read every turn of
``messages``. Single-turn rows have ``messages`` null; tables from single-turn sources have no
``messages`` column at all.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

SAMPLE_COLUMNS = ("sample_id", "source", "prompt", "response", "answer", "tests", "level", "meta")
REQUIRED_TEXT = ("sample_id", "source", "prompt", "response")
NULLABLE_TEXT = ("answer", "tests", "level")
OPTIONAL_COLUMNS = ("messages",)
ROLES = ("system", "user", "assistant")
QUARANTINE_COLUMNS = ("file", "line", "field", "reason", "record")
RECORD_PREVIEW_CHARS = 500


class DataError(ValueError):
    """A bad input file, record or table; the message names the file, line (record) and field."""

    def __init__(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.reason, self.file, self.line, self.field = reason, file, line, field
        where = []
        if file is not None:
            where.append(f"file {file}")
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {reason}" if where else reason)


def content_id(*parts: str, length: int = 12) -> str:
    """A stable short hash of text parts (sha1 hex prefix), used when a record has no id."""
    digest = hashlib.sha1("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:length]


def empty_samples() -> pd.DataFrame:
    """A samples table with no rows and the canonical columns."""
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in SAMPLE_COLUMNS})


def empty_quarantine() -> pd.DataFrame:
    """A quarantine table with no rows: ``file, line, field, reason, record``."""
    frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in QUARANTINE_COLUMNS})
    frame["line"] = frame["line"].astype("int64")
    return frame


def samples_frame(rows: list[dict], *, optional: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows (dicts with the canonical keys) → samples table with the canonical column order.

    ``optional``: optional columns (``OPTIONAL_COLUMNS``) to add after the canonical ones; a row
    without the key gets null there.
    """
    # object columns keep None for missing values (pandas would otherwise turn them into NaN)
    columns = (*SAMPLE_COLUMNS, *optional)
    return pd.DataFrame({c: pd.Series([r.get(c) for r in rows], dtype=object) for c in columns})


def conversation_problem(messages) -> tuple[str, str] | None:
    """``(where, reason)`` of the first problem of a decoded ``messages`` value, None when it is valid.

    Valid: a list of ``{"role", "content"}`` objects, roles in ``ROLES``, a system turn only first,
    contents non-empty strings, at least one assistant turn. ``where`` is ``messages[i].<key>``.
    """
    if not isinstance(messages, list) or not messages:
        return "messages", "expected a non-empty list of turns"
    for i, turn in enumerate(messages):
        if not isinstance(turn, dict):
            return f"messages[{i}]", f"expected an object, found {type(turn).__name__}"
        role, content = turn.get("role"), turn.get("content")
        if role not in ROLES:
            return f"messages[{i}].role", f"unknown role {role!r}; expected one of {list(ROLES)}"
        if role == "system" and i > 0:
            return f"messages[{i}].role", "a system turn may only come first"
        if not isinstance(content, str):
            return f"messages[{i}].content", f"expected a string, found {type(content).__name__}"
        if not content.strip():
            return f"messages[{i}].content", "empty content"
    if not any(turn["role"] == "assistant" for turn in messages):
        return "messages", "no assistant turn"
    return None


def conversation(value: str | None) -> list[dict] | None:
    """The turns of a ``messages`` cell (JSON text), or None for a single-turn row."""
    if _missing(value):
        return None
    return json.loads(value)


def quarantine_frame(rows: list[dict]) -> pd.DataFrame:
    """Rows (dicts with ``file, line, field, reason, record``) → quarantine table."""
    if not rows:
        return empty_quarantine()
    frame = pd.DataFrame(rows).loc[:, list(QUARANTINE_COLUMNS)]
    frame["line"] = frame["line"].astype("int64")
    return frame.reset_index(drop=True)


def _missing(value) -> bool:
    return value is None or (not isinstance(value, (str, list, dict)) and bool(pd.isna(value)))


def validate_samples(samples: pd.DataFrame) -> pd.DataFrame:
    """Check the canonical columns, their types and ``sample_id`` uniqueness; return a clean copy.

    Raises ``DataError`` naming the column and row (1-based) of the first problem found. Missing
    nullable values are normalised to ``None``; extra columns are kept after the canonical ones.
    """
    if not isinstance(samples, pd.DataFrame):
        raise DataError(f"samples must be a pandas DataFrame, got {type(samples).__name__}")
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise DataError(
            f"samples table lacks column(s) {missing}; expected {list(SAMPLE_COLUMNS)}, "
            f"found {list(samples.columns)}",
            field=missing[0],
        )
    extra = [c for c in samples.columns if c not in SAMPLE_COLUMNS]
    out = samples.loc[:, list(SAMPLE_COLUMNS) + extra].astype(object).reset_index(drop=True)

    for column in REQUIRED_TEXT:
        for row, value in enumerate(out[column]):
            if _missing(value) or not isinstance(value, str) or not value.strip():
                found = "missing" if _missing(value) else repr(value)[:60]
                raise DataError(
                    f"expected a non-empty string, found {found}", line=row + 1, field=column
                )
    for column in (*NULLABLE_TEXT, "meta"):
        values = []
        for row, value in enumerate(out[column]):
            if _missing(value):
                if column == "meta":
                    raise DataError(
                        "expected a JSON object string, found missing", line=row + 1, field=column
                    )
                values.append(None)
                continue
            if not isinstance(value, str):
                raise DataError(
                    f"expected a string or null, found {type(value).__name__}",
                    line=row + 1,
                    field=column,
                )
            if column in ("tests", "meta"):
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise DataError(
                        f"not valid JSON ({exc.msg})", line=row + 1, field=column
                    ) from exc
                if column == "meta" and not isinstance(parsed, dict):
                    raise DataError(
                        f"expected a JSON object, found {type(parsed).__name__}",
                        line=row + 1,
                        field=column,
                    )
            values.append(value)
        out[column] = pd.Series(values, dtype=object)

    if "messages" in out.columns:
        out["messages"] = pd.Series(
            [_checked_messages(v, row) for row, v in enumerate(out["messages"])], dtype=object
        )

    duplicated = out["sample_id"].duplicated(keep="first")
    if duplicated.any():
        row = int(duplicated.to_numpy().nonzero()[0][0])
        sid = out["sample_id"].iloc[row]
        first = int((out["sample_id"] == sid).to_numpy().nonzero()[0][0])
        raise DataError(
            f"duplicate sample_id {sid!r} (first at row {first + 1}); "
            f"{int(duplicated.sum())} duplicate(s) in all",
            line=row + 1,
            field="sample_id",
        )
    return out


def _checked_messages(value, row: int) -> str | None:
    """A ``messages`` cell: null, or JSON text of a valid conversation (see ``conversation_problem``)."""
    if _missing(value):
        return None
    if not isinstance(value, str):
        raise DataError(
            f"expected JSON text or null, found {type(value).__name__}",
            line=row + 1,
            field="messages",
        )
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg})", line=row + 1, field="messages") from exc
    problem = conversation_problem(parsed)
    if problem is not None:
        raise DataError(problem[1], line=row + 1, field=problem[0])
    return value
