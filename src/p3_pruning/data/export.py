"""Export a round's selection as a dataset any trainer reads: the original records, in selection order.

Kedro-free. ``export_selection(pool, selection, data=...) -> (records, manifest)``;
``write_export(records, manifest, folder)`` writes ``records.jsonl``, a Hugging Face ``datasets``
folder ``hf/`` (``datasets.load_from_disk``) and ``manifest.json``; ``read_export(folder)`` reads
them back.

Records (``format``):
- ``input`` (default): each selected sample's original record, re-read from the file it was loaded
  from (``data.path``) by its record number (``meta.line``) and re-parsed to check that it still gives
  the sample's prompt and response (a changed file raises instead of exporting the wrong records).
  Alpaca exports as Alpaca, ShareGPT as ShareGPT, GSM8K as GSM8K. The offline default has no file:
  its records are the samples table's rows (``meta`` decoded).
- ``messages``: ``{"messages": [...]}`` per sample (the conversation, or the user prompt and the
  reference response), TRL's conversational format.

The manifest holds ``method``, ``round``, ``seed``, ``budget``, ``threshold``, ``n_records``,
``format``, the source (``source``, ``path``, ``sha256`` of the file's bytes, or of every file of a
datasets folder) and ``sample_ids`` in export order.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pandas as pd

from p3_pruning.data.readers import BadRecord
from p3_pruning.data.readers import raw_records as _raw_records
from p3_pruning.data.schema import SAMPLE_COLUMNS, DataError, conversation
from p3_pruning.data.sources import _PARSERS, COLUMN_KEYS, _columns

FORMATS = ("input", "messages")
RECORDS_FILE, HF_FOLDER, MANIFEST_FILE = "records.jsonl", "hf", "manifest.json"


def selected_samples(pool: pd.DataFrame, selection: pd.DataFrame) -> pd.DataFrame:
    """The pool rows of ``selection``, in pick order."""
    chosen = selection.sort_values("pick_order", kind="stable")
    missing = sorted(set(chosen["sample_id"]) - set(pool["sample_id"]))
    if missing:
        raise KeyError(
            f"selection names {len(missing)} sample_id(s) not in the train pool, e.g. {missing[:3]}"
        )
    return pool.set_index("sample_id").loc[chosen["sample_id"]].reset_index()


def source_hash(path: str | Path) -> str | None:
    """sha256 of a file's bytes, or of a folder's files (relative names and bytes, sorted); None for
    a path that is not on disk (a hub id)."""
    path = Path(path).expanduser()
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    if not path.is_dir():
        return None
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode() + b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


def source_records(
    samples: pd.DataFrame, path: str | Path, source: str, *, columns: dict | None = None
) -> list[dict]:
    """Every sample's original record (row order), re-read from ``path`` by ``meta.line``.

    Each record is parsed again with the loader's rules and must give the sample's prompt and
    response (and conversation); otherwise a ``DataError`` names the file and record.
    """
    file = str(path)
    options = _columns(source, columns, path) if source in COLUMN_KEYS else {}
    lines = []
    for sample_id, meta in zip(samples["sample_id"], samples["meta"], strict=True):
        info = json.loads(meta)
        if info.get("file") != Path(file).name or not isinstance(info.get("line"), int):
            raise DataError(
                f"sample {sample_id!r} was not loaded from this file (meta file "
                f"{info.get('file')!r}, line {info.get('line')!r})",
                file=file,
                field="meta",
            )
        lines.append(info["line"])
    wanted = set(lines)
    found: dict[int, dict] = {}
    for line, _, record, bad in _raw_records(path):
        if line not in wanted:
            continue
        if bad is not None:
            raise DataError(f"no longer a readable record ({bad.reason})", file=file, line=line)
        found[line] = record
    by_line = dict(zip(lines, samples.to_dict("records"), strict=True))
    for line, sample in by_line.items():
        if line not in found:
            raise DataError(
                "record not found: the file has fewer records now", file=file, line=line
            )
        _check_same(found[line], sample, source, options, file, line)
    return [found[line] for line in lines]


def _check_same(record: dict, sample: dict, source: str, options: dict, file: str, line: int):
    try:
        parsed = _PARSERS[source](record, options)
    except BadRecord as exc:
        raise DataError(exc.reason, file=file, line=line, field=exc.field) from None
    for key in ("prompt", "response", "messages"):
        if key in parsed and parsed[key] != sample.get(key):
            raise DataError(
                f"the record no longer gives sample {sample['sample_id']!r} (its {key} differs): "
                "the file changed since the samples were loaded",
                file=file,
                line=line,
                field=key,
            )


def _sample_record(sample: dict) -> dict:
    """A samples-table row as a plain record (``meta`` decoded)."""
    record = {c: sample[c] for c in SAMPLE_COLUMNS}
    record["meta"] = json.loads(record["meta"])
    return record


def _messages_record(sample: dict) -> dict:
    turns = conversation(sample.get("messages"))
    if turns is None:
        turns = [
            {"role": "user", "content": sample["prompt"]},
            {"role": "assistant", "content": sample["response"]},
        ]
    return {"messages": turns}


def export_selection(
    pool: pd.DataFrame,
    selection: pd.DataFrame,
    *,
    data: dict,
    method: str,
    seed: int,
    budget: int | float,
    format: str = "input",
) -> tuple[list[dict], dict]:
    """``(records, manifest)`` of one round's selection (module doc).

    ``data``: the data parameters the pool was loaded with (``source``, ``path``, ``columns``;
    ``source: default`` for the generated default).
    """
    if format not in FORMATS:
        raise ValueError(f"export format must be one of {list(FORMATS)}, got {format!r}")
    chosen = selected_samples(pool, selection)
    rows = chosen.to_dict("records")
    source, path = data["source"], data.get("path")
    if format == "messages":
        records = [_messages_record(r) for r in rows]
    elif source == "default" or not path:
        records = [_sample_record(r) for r in rows]
    else:
        records = source_records(chosen, path, source, columns=data.get("columns"))
    rounds = selection["round"].unique().tolist()
    thresholds = selection["threshold"].unique().tolist()
    manifest = {
        "method": method,
        "round": int(rounds[0]) if len(rounds) == 1 else [int(r) for r in rounds],
        "seed": int(seed),
        "budget": budget,
        "threshold": _plain_float(thresholds[0]) if len(thresholds) == 1 else None,
        "n_records": len(records),
        "format": format,
        "source": {
            "source": source,
            "path": None if source == "default" else str(path),
            "sha256": None if source == "default" or not path else source_hash(path),
        },
        "sample_ids": chosen["sample_id"].astype(str).tolist(),
    }
    return records, manifest


def _plain_float(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def write_export(records: list[dict], manifest: dict, folder: str | Path) -> Path:
    """Write ``records.jsonl``, the ``hf/`` datasets folder and ``manifest.json`` into ``folder``."""
    import datasets

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / RECORDS_FILE, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    datasets.Dataset.from_list(records).save_to_disk(str(folder / HF_FOLDER))
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    return folder


def read_export(folder: str | Path) -> tuple[list[dict], dict]:
    """``(records, manifest)`` from a folder written by :func:`write_export` (records from the JSONL)."""
    folder = Path(folder)
    text = (folder / RECORDS_FILE).read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    return records, json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
