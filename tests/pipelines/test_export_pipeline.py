"""Alpaca and multi-turn chat files through the Kedro `data` pipeline, scored with the tiny model,
selected by strategies.select, and exported by the `export` pipeline from the catalog."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pytest
from kedro.framework.session import KedroSession
from kedro.runner import SequentialRunner

from p3_pruning import strategies
from p3_pruning.data import load_samples
from p3_pruning.models import load_model
from p3_pruning.pipelines.export import create_pipeline
from p3_pruning.scoring import score_samples
from p3_pruning.workspace import inside, make_workspace, run_pipeline

DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "source"), [("alpaca_data.json", "alpaca"), ("chat.jsonl", "chat")]
)
def test_load_score_select_export(tmp_path, monkeypatch, name, source):
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    raw = f"data/01_raw/{name}"
    params = {
        "data": {"source": source, "path": raw, "split": {"eval_size": 2, "stratify": None}},
        "model": {"name_or_path": "tiny-random"},
        "rounds": 1,
        "budget": 3,
    }
    workspace = make_workspace(tmp_path / "project", params)
    shutil.copy(DATA / name, workspace / raw)
    run_pipeline(workspace, "data")

    with inside(workspace), KedroSession.create(project_path=workspace) as session:
        catalog = session.load_context().catalog
        pool = catalog.load("train_pool")
        model, tok = load_model("tiny-random")
        scores, embeddings = score_samples(model, tok, pool, progress=False)
        assert (scores["status"] == "ok").all()
        assert ("turn_probs" in scores.columns) == (source == "chat")
        selection = strategies.select(
            "p3", scores, embeddings, round_index=0, rounds=1, budget=3, seed=42
        )
        catalog.save("p3.round_1.selection", selection)
        SequentialRunner().run(create_pipeline(methods=("p3",), rounds=1), catalog)
        exported = catalog.load("p3.round_1.export")

    folder = next((workspace / "data/05_model_input/p3/round_1/export").iterdir()) / "export"
    records, manifest = exported["records"], exported["manifest"]
    assert manifest["sample_ids"] == selection.sort_values("pick_order")["sample_id"].tolist()
    # a pool of 4 chats admits 2 at the first percentile (45): the shortfall is taken as it is
    assert manifest["n_records"] == len(selection) == (3 if source == "alpaca" else 2)
    assert manifest["seed"] == 42
    assert manifest["source"]["path"] == raw
    # the records are the file's own, in pick order, and reload as the same samples
    text = (workspace / raw).read_text()
    originals = (
        [json.loads(x) for x in text.splitlines()] if name.endswith("jsonl") else json.loads(text)
    )
    by_line = {json.loads(m)["line"]: i for i, m in enumerate(pool["meta"])}
    lines = [
        json.loads(pool["meta"][pool["sample_id"] == s].iloc[0])["line"]
        for s in manifest["sample_ids"]
    ]
    assert records == [originals[line - 1] for line in lines] and len(by_line) == len(pool)
    assert datasets.load_from_disk(str(folder / "hf")).to_list() == records
    reloaded, _ = load_samples(folder / "records.jsonl", source)
    chosen = pool.set_index("sample_id").loc[manifest["sample_ids"]].reset_index()
    assert reloaded["prompt"].tolist() == chosen["prompt"].tolist()
    assert reloaded["response"].tolist() == chosen["response"].tolist()
    if source == "chat":
        assert reloaded["messages"].tolist() == chosen["messages"].tolist()
