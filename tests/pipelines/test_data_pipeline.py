"""The ``data`` pipeline through a real KedroSession, in a copy of the project's config under tmp.

The workspace (pyproject.toml + conf/base, an empty src/ and data/) makes every output — Parquet files,
versions, the MLflow sqlite store — land in tmp_path, so the repository stays clean.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from p3_pruning.data import QUARANTINE_COLUMNS, SAMPLE_COLUMNS, validate_samples
from p3_pruning.workspace import make_workspace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    path = make_workspace(tmp_path_factory.mktemp("project"))
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(path)
        mp.setattr(sys, "path", list(sys.path))
        mp.setenv("KEDRO_DISABLE_TELEMETRY", "1")
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{path / 'mlflow.db'}")
        bootstrap_project(path)
        yield path


def run_data(project: Path, params: dict) -> None:
    with KedroSession.create(project_path=project, runtime_params=params) as session:
        session.run(pipeline_name="data")
    # kedro-mlflow (2.0.3 with kedro 1.7) leaves its run on mlflow's active-run stack, once per
    # node, until the process exits; pop it so the next session in this process starts its own run.
    while mlflow.active_run() is not None:
        mlflow.end_run()


def latest(project: Path, name: str) -> pd.DataFrame:
    """The newest saved version of a versioned Parquet dataset in data/03_primary."""
    versions = sorted((project / "data" / "03_primary" / f"{name}.parquet").iterdir())
    # the same version was not written into the repository
    assert not (ROOT / "data" / "03_primary" / f"{name}.parquet" / versions[-1].name).exists()
    return pd.read_parquet(versions[-1] / f"{name}.parquet")


def test_default_source_generates_validates_and_splits(project):
    run_data(project, {"data": {"default": {"n": 24}, "split": {"eval_size": 6}}})
    raw = pd.read_parquet(project / "data" / "02_intermediate" / "raw_samples.parquet")
    train, evals = latest(project, "train_pool"), latest(project, "eval_set")
    assert len(raw) == 24 and (len(train), len(evals)) == (18, 6)
    assert list(train.columns) == [*SAMPLE_COLUMNS, "origin"]  # the pool's provenance column
    assert (train["origin"] == "clean").all()  # data.inject is off by default
    assert list(evals.columns) == list(SAMPLE_COLUMNS)
    assert set(train["sample_id"]).isdisjoint(evals["sample_id"])
    assert set(train["sample_id"]) | set(evals["sample_id"]) == set(raw["sample_id"])
    validate_samples(train)
    validate_samples(evals)
    # 6 strata (2 tasks x 3 levels) of 4 samples each: one of each goes to the eval set
    assert evals.groupby(["source", "level"]).size().tolist() == [1] * 6
    quarantine = pd.read_parquet(project / "data" / "02_intermediate" / "quarantine.parquet")
    assert quarantine.empty and list(quarantine.columns) == list(QUARANTINE_COLUMNS)
    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert any(r.data.params.get("data.default.n") == "24" for r in runs)


def test_file_source_with_eval_file_and_quarantine(project):
    raw_dir = project / "data" / "01_raw"
    records = [
        {"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"}
        for i in range(6)
    ]
    lines = [json.dumps(r) for r in records[:4]] + ['{"question": "broken"', "{}"]
    (raw_dir / "train.jsonl").write_text("\n".join(lines) + "\n")
    (raw_dir / "test.jsonl").write_text("\n".join(json.dumps(r) for r in records[4:]) + "\n")
    run_data(
        project,
        {
            "data": {
                "source": "gsm8k",
                "path": str(raw_dir / "train.jsonl"),
                "eval_path": str(raw_dir / "test.jsonl"),
                "on_bad_record": "quarantine",
            }
        },
    )
    train, evals = latest(project, "train_pool"), latest(project, "eval_set")
    assert train["answer"].tolist() == ["1", "2", "3", "4"]
    assert evals["answer"].tolist() == ["5", "6"]
    quarantine = pd.read_parquet(project / "data" / "02_intermediate" / "quarantine.parquet")
    assert quarantine["line"].tolist() == [5, 6]
    assert quarantine["field"].tolist() == ["(record)", "question"]


def test_inject_composes_the_train_pool_only(project):
    """data.inject replaces a seeded share of the train pool; the eval set is the clean run's."""
    sizes = {"default": {"n": 36}, "split": {"eval_size": 12}}
    run_data(project, {"data": sizes})
    clean_evals = latest(project, "eval_set")
    run_data(project, {"data": {**sizes, "inject": {"noise": 0.25, "off_task": 0.25}}})
    train, evals = latest(project, "train_pool"), latest(project, "eval_set")
    pd.testing.assert_frame_equal(evals, clean_evals)
    assert len(train) == 24
    assert train["origin"].value_counts().to_dict() == {"clean": 12, "noise": 6, "off_task": 6}
    assert set(train["sample_id"]).isdisjoint(evals["sample_id"])
