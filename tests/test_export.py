"""Exported selections: the original records in pick order, JSONL + datasets folder + manifest, and
reloading gives the same records and the same samples."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest

from p3_pruning.data import DataError, generate_default, load_samples
from p3_pruning.data.export import export_selection, read_export, write_export
from p3_pruning.datasets.export_dataset import ExportDataset

DATA = Path(__file__).parent / "data"


def selection_of(pool: pd.DataFrame, picks: list[int], round_=2, threshold=0.5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": pool["sample_id"].iloc[picks].tolist(),
            "round": round_,
            "pick_order": range(len(picks)),
            "difficulty": np.linspace(0.1, 0.4, len(picks)),
            "threshold": threshold,
        }
    )


@pytest.mark.parametrize(
    ("name", "source"),
    [("alpaca_data.json", "alpaca"), ("chat.jsonl", "chat"), ("sharegpt.json", "chat")],
)
def test_export_gives_back_the_original_records_in_pick_order(tmp_path, name, source):
    path = tmp_path / name
    shutil.copy(DATA / name, path)
    pool, _ = load_samples(path, source)
    picks = [len(pool) - 1, 0] if len(pool) > 2 else [1, 0]
    data = {"source": source, "path": str(path), "columns": None}
    records, manifest = export_selection(
        pool, selection_of(pool, picks), data=data, method="p3", seed=7, budget=2
    )
    raw = path.read_text()
    originals = (
        [json.loads(line) for line in raw.splitlines()]
        if name.endswith(".jsonl")
        else json.loads(raw)
    )
    assert records == [originals[i] for i in picks]
    assert manifest["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert {
        k: manifest[k] for k in ("method", "round", "seed", "budget", "threshold", "n_records")
    } == {"method": "p3", "round": 2, "seed": 7, "budget": 2, "threshold": 0.5, "n_records": 2}
    assert manifest["sample_ids"] == pool["sample_id"].iloc[picks].tolist()

    folder = write_export(records, manifest, tmp_path / "out")
    again, manifest_again = read_export(folder)
    assert again == records and manifest_again == manifest
    assert datasets.load_from_disk(str(folder / "hf")).to_list() == records
    # the export loads as the same samples, from the JSONL and from the datasets folder
    for exported in (folder / "records.jsonl", folder / "hf"):
        reloaded, _ = load_samples(exported, source)
        columns = ["prompt", "response", *(["messages"] if source == "chat" else [])]
        pd.testing.assert_frame_equal(
            reloaded[columns], pool.iloc[picks][columns].reset_index(drop=True)
        )


def test_a_changed_source_file_is_refused(tmp_path):
    path = tmp_path / "alpaca_data.json"
    shutil.copy(DATA / "alpaca_data.json", path)
    pool, _ = load_samples(path, "alpaca")
    records = json.loads(path.read_text())
    records[3]["output"] = "A different answer."
    path.write_text(json.dumps(records))
    data = {"source": "alpaca", "path": str(path), "columns": None}
    with pytest.raises(DataError, match="file changed") as info:
        export_selection(pool, selection_of(pool, [3]), data=data, method="p3", seed=0, budget=1)
    assert (info.value.file, info.value.line, info.value.field) == (str(path), 4, "response")


def test_default_source_exports_sample_rows_and_messages_format(tmp_path):
    pool = generate_default(12, seed=0)
    data = {"source": "default", "path": None}
    sel = selection_of(pool, [5, 2, 9], round_=1, threshold=float("nan"))
    records, manifest = export_selection(pool, sel, data=data, method="random", seed=0, budget=3)
    assert [r["sample_id"] for r in records] == pool["sample_id"].iloc[[5, 2, 9]].tolist()
    assert records[0]["meta"] == json.loads(pool["meta"].iloc[5])
    assert manifest["threshold"] is None and manifest["source"]["sha256"] is None
    messages, _ = export_selection(
        pool, sel, data=data, method="random", seed=0, budget=3, format="messages"
    )
    assert messages[1] == {
        "messages": [
            {"role": "user", "content": pool["prompt"].iloc[2]},
            {"role": "assistant", "content": pool["response"].iloc[2]},
        ]
    }


def test_chat_messages_format_keeps_every_turn(tmp_path):
    pool, _ = load_samples(DATA / "sharegpt.json", "chat")
    data = {"source": "chat", "path": str(DATA / "sharegpt.json")}
    records, _ = export_selection(
        pool, selection_of(pool, [0]), data=data, method="p3", seed=0, budget=1, format="messages"
    )
    assert records == [{"messages": json.loads(pool["messages"].iloc[0])}]


def test_selection_outside_the_pool_is_named():
    pool = generate_default(6, seed=0)
    sel = selection_of(pool, [0]).assign(sample_id="nope")
    with pytest.raises(KeyError, match="not in the train pool"):
        export_selection(pool, sel, data={"source": "default"}, method="p3", seed=0, budget=1)


def test_export_dataset_is_versioned_and_round_trips(tmp_path):
    from kedro.io.core import Version

    pool, _ = load_samples(DATA / "chat.jsonl", "chat")
    data = {"source": "chat", "path": str(DATA / "chat.jsonl")}
    records, manifest = export_selection(
        pool, selection_of(pool, [2, 4]), data=data, method="p3", seed=0, budget=2
    )
    dataset = ExportDataset(filepath=str(tmp_path / "export"), version=Version(None, None))
    assert not dataset.exists()
    dataset.save({"records": records, "manifest": manifest})
    assert dataset.exists()
    assert dataset.load() == {"records": records, "manifest": manifest}
    (version,) = list((tmp_path / "export").iterdir())
    assert sorted(p.name for p in (version / "export").iterdir()) == [
        "hf",
        "manifest.json",
        "records.jsonl",
    ]
