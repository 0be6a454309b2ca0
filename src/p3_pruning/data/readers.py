"""Reading the containers: raw records from files, hub datasets and ``save_to_disk`` folders.

``raw_records(path)`` yields one ``(line, raw text, record, bad)`` per record of a ``.jsonl`` /
``.ndjson``, ``.json`` (one object or a list) or ``.parquet`` file, each optionally gzipped, of a
Hugging Face ``datasets`` folder written by ``save_to_disk``, or of a hub dataset
(``owner/name[:config][@split]``) when no such path exists. A record that cannot be read (invalid
UTF-8 or JSON, not an object) is not dropped: it comes as a ``BadRecord`` entry with record None,
for the loader to raise or quarantine. Whole-file problems (missing, empty, unreadable) raise a
``DataError``. What the fields of a record mean is the loaders' business (``data.sources``).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from p3_pruning.data.schema import RECORD_PREVIEW_CHARS, DataError

RECORD = "(record)"  # field name for problems with the record as a whole
FILE = "(file)"  # field name for problems with the file as a whole


class BadRecord(Exception):
    """One record is unusable: which field and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


# Each item: (line, raw text, record or None, BadRecord or None).
RawRecord = tuple[int, str, dict | None, BadRecord | None]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?(:[\w.-]+)?(@[\w.\[\]:%+-]+)?$")
_FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".parquet", ".pq", ".gz")


def looks_like_hub_id(path: str) -> bool:
    """Whether ``path`` reads as a hub id ``owner/name[:config][@split]`` and not a file name."""
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


def _disk_records(folder: Path) -> Iterator[RawRecord]:
    """Rows of a ``datasets`` folder written by ``save_to_disk`` (a ``DatasetDict``: its ``train``
    split, or its only split)."""
    if not any((folder / name).exists() for name in ("dataset_info.json", "dataset_dict.json")):
        raise DataError(
            "is a directory but not a Hugging Face datasets folder (no dataset_info.json or "
            "dataset_dict.json); expected a .jsonl, .json or .parquet file or a save_to_disk folder",
            file=str(folder),
            line=1,
            field=FILE,
        )
    import datasets  # noqa: PLC0415 - only for datasets folders

    try:
        rows = datasets.load_from_disk(str(folder))
    except Exception as exc:  # corrupt arrow files, version mismatches: reported the same way
        raise DataError(
            f"unreadable datasets folder ({exc})", file=str(folder), line=1, field=FILE
        ) from exc
    if isinstance(rows, datasets.DatasetDict):
        splits = list(rows)
        if "train" not in rows and len(splits) != 1:
            raise DataError(
                f"datasets folder holds splits {splits} and none is 'train'; give the split's "
                f"folder (e.g. {folder / splits[0]})",
                file=str(folder),
                line=1,
                field=FILE,
            )
        rows = rows["train" if "train" in rows else splits[0]]
    for number, row in enumerate(rows, start=1):
        record = {k: _normalise(v) for k, v in dict(row).items()}
        yield number, _preview(record), record, None


def raw_records(path: str | Path) -> Iterator[RawRecord]:
    """Every record of ``path`` (a file, a ``save_to_disk`` folder or a hub id), in order."""
    local = Path(path).expanduser()
    if not local.exists():
        if looks_like_hub_id(str(path)):
            yield from _hub_records(str(path))
            return
        raise DataError("file not found", file=str(path), line=1, field=FILE)
    if local.is_dir():
        yield from _disk_records(local)
        return
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
