"""`compare` end to end with the tiny model on a fresh workspace (nothing run before): every method,
2 rounds, report, versions, MLflow runs you can filter, the result table.

Also: resuming a run that died in round 2 reproduces an uninterrupted run, and kedro-viz builds.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from conftest import tiny_run
from p3_pruning.methods import METHODS, names
from p3_pruning.workspace import latest_version, make_workspace, run_pipeline

pytestmark = pytest.mark.slow

ROUNDS = 2
BUDGET = 6
POOL = 32
TINY = tiny_run(
    seed=3,
    rounds=ROUNDS,
    budget=BUDGET,
    data={"default": {"n": POOL + 8, "seed": 1}, "split": {"eval_size": 8}},
)


def versions(ws: Path, relative: str) -> list[str]:
    return sorted(p.name for p in (ws / relative).iterdir())


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("compare"), TINY)
    with pytest.MonkeyPatch.context() as mp:
        printed = []
        mp.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
        run_pipeline(ws, "compare")  # no `data` run first: compare starts with it
    (ws / "printed.txt").write_text("\n".join(printed))
    return ws


def test_the_run_ends_with_a_result_table(compared):
    text = (compared / "printed.txt").read_text()
    header, *rows = text.splitlines()
    assert header.split()[:3] == ["run", "accuracy", "n_eval"] and "train_s" in header
    assert sorted(row.split()[0] for row in rows) == sorted([*METHODS, "base"])
    p3 = next(row for row in rows if row.startswith("p3 "))
    assert "%" in p3 and f" {BUDGET * ROUNDS} " in p3


def test_threshold_writes_the_eligible_table(compared):
    for method in names(threshold=("pacing", "window")):
        for e in (1, 2):
            path = latest_version(
                compared, f"data/05_model_input/{method}/round_{e}/eligible.parquet"
            )
            eligible = pd.read_parquet(path)
            assert list(eligible.columns) == [
                "sample_id",
                "difficulty",
                "threshold",
                "percentile",
                "eligible",
            ]
            assert len(eligible) == POOL
            sel = pd.read_parquet(
                latest_version(
                    compared, f"data/05_model_input/{method}/round_{e}/selection.parquet"
                )
            )
            assert set(sel["sample_id"]) <= set(eligible.loc[eligible["eligible"], "sample_id"])
    for method in ("dpp", "random", "full"):
        assert not (compared / f"data/05_model_input/{method}/round_1/eligible.parquet").exists()


def test_mlflow_filter_by_method_returns_exactly_its_child_runs(compared):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{compared / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(
            experiment_names=["p3_pruning"], filter_string="params.method = 'p3'"
        )
    finally:
        mlflow.set_tracking_uri(None)
    assert sorted(runs["tags.mlflow.runName"]) == ["p3.final", "p3.round_1", "p3.round_2"]
    rounds = runs[runs["params.round"] != "final"]
    assert set(rounds["params.seed"]) == {str(TINY["seed"])}
    assert set(rounds["params.budget"]) == {str(BUDGET)} and set(rounds["params.rounds"]) == {"2"}
    assert set(rounds["params.selector"]) == {"dpp"} and "params.pacing.start" in runs


def test_report_covers_every_method_and_the_base_model(compared):
    report = pd.read_csv(latest_version(compared, "data/08_reporting/compare/report.csv"))
    assert sorted(report["method"]) == sorted([*METHODS, "base"])
    assert report["accuracy"].between(0, 1).all()
    used = report.set_index("method")["samples_used"]
    for method in METHODS:
        expected = POOL * ROUNDS if method == "full" else BUDGET * ROUNDS
        assert used[method] == expected, method
    assert (report.set_index("method").loc[list(METHODS), "train_seconds"] > 0).all()
    for plot in ("accuracy", "threshold", "overlap"):
        assert (
            latest_version(compared, f"data/08_reporting/compare/{plot}.png").stat().st_size > 1000
        )


def test_rounds_write_versioned_outputs_in_their_layers(compared):
    for method in METHODS:
        for e in (1, 2):
            base = f"{method}/round_{e}"
            assert len(versions(compared, f"data/05_model_input/{base}/selection.parquet")) == 1
            assert (
                latest_version(compared, f"data/06_models/{base}/adapter") / "adapter_config.json"
            ).exists()
            summary = json.loads(
                latest_version(compared, f"data/08_reporting/{base}/summary.json").read_text()
            )
            assert summary["method"] == method and summary["round"] == e
    # only rescoring methods score after round 1; static scores come from the base model once
    assert (compared / "data/04_feature/p3/round_2/scores.parquet").exists()
    assert not (compared / "data/04_feature/static/round_2").exists()
    assert not (compared / "data/04_feature/random/round_1").exists()


def test_p3_selects_only_eligible_and_static_reuses_base_scores(compared):
    for e in (1, 2):
        sel = pd.read_parquet(
            latest_version(compared, f"data/05_model_input/p3/round_{e}/selection.parquet")
        )
        scores = pd.read_parquet(
            latest_version(compared, f"data/04_feature/p3/round_{e}/scores.parquet")
        )
        assert len(sel) == BUDGET and sel["sample_id"].is_unique
        assert (sel["difficulty"] <= sel["threshold"]).all()
        assert set(sel["sample_id"]) <= set(scores["sample_id"])
    base = pd.read_parquet(
        latest_version(compared, "data/04_feature/static/round_1/scores.parquet")
    )
    sel2 = pd.read_parquet(
        latest_version(compared, "data/05_model_input/static/round_2/selection.parquet")
    )
    merged = sel2.merge(base, on="sample_id", suffixes=("", "_base"))
    assert len(merged) == len(sel2)
    assert (merged["difficulty"] == merged["difficulty_base"]).all()


def test_mlflow_has_a_child_run_per_method_round_with_metrics(compared):
    client = MlflowClient(tracking_uri=f"sqlite:///{compared / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("p3_pruning")
    runs = client.search_runs([experiment.experiment_id], max_results=500)
    by_name = {r.info.run_name: r for r in runs}
    parents = {r.data.tags.get("mlflow.parentRunId") for r in runs} - {None}
    name = f"compare · budget {BUDGET} · seed {TINY['seed']}"  # the pipeline and its settings
    compare_parent = [r for r in runs if r.info.run_id in parents and r.info.run_name == name]
    assert len(compare_parent) == 1
    parent_id = compare_parent[0].info.run_id
    for method in METHODS:
        for e in (1, 2):
            run = by_name[f"{method}.round_{e}"]
            assert run.data.tags["mlflow.parentRunId"] == parent_id
            assert run.data.metrics["selected"] == (POOL if method == "full" else BUDGET)
            assert "train_loss" in run.data.metrics and "eval_nll" in run.data.metrics
            artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
            assert {"selection.csv"} <= artifacts
        assert f"{method}/accuracy" in compare_parent[0].data.metrics
    p3 = by_name["p3.round_2"].data.metrics
    for key in (
        "threshold",
        "eligible",
        "difficulty_q50",
        "overlap_prev",
        "score_seconds",
        "dpp_log_det",
    ):
        assert key in p3, key
    assert "difficulty_histogram.png" in {
        a.path for a in client.list_artifacts(by_name["p3.round_1"].info.run_id)
    }
    report_files = {a.path for a in client.list_artifacts(parent_id, "report")}
    assert "report/report.csv" in report_files


def test_resume_after_a_failed_round_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    from p3_pruning.pipelines.rounds import nodes

    params = {**TINY, "seed": 11}
    clean = make_workspace(tmp_path / "clean", params)
    run_pipeline(clean, "data")
    run_pipeline(clean, "p3")

    broken = make_workspace(tmp_path / "broken", params)
    run_pipeline(broken, "data")
    real = nodes.train_round
    calls = []

    def dies_in_round_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("simulated crash in round 2")
        return real(*args, **kwargs)

    monkeypatch.setattr(nodes, "train_round", dies_in_round_2)
    with pytest.raises(Exception, match="simulated crash"):
        run_pipeline(broken, "p3")
    assert not (broken / "data/06_models/p3/round_2/adapter").exists()
    monkeypatch.setattr(nodes, "train_round", real)
    run_pipeline(broken, "p3", only_missing_outputs=True)

    # round 1 was not redone: a single version of its outputs
    assert len(versions(broken, "data/06_models/p3/round_1/adapter")) == 1
    for e in (1, 2):
        rel = f"data/05_model_input/p3/round_{e}/selection.parquet"
        pd.testing.assert_frame_equal(
            pd.read_parquet(latest_version(clean, rel)),
            pd.read_parquet(latest_version(broken, rel)),
        )
    a = json.loads(
        latest_version(clean, "data/07_model_output/p3/round_2/eval_info.json").read_text()
    )
    b = json.loads(
        latest_version(broken, "data/07_model_output/p3/round_2/eval_info.json").read_text()
    )
    assert a["eval_nll"] == pytest.approx(b["eval_nll"], rel=1e-6)


def test_kedro_viz_builds_with_rounds_as_namespaces(tmp_path):
    ws = make_workspace(tmp_path / "viz", TINY)
    proc = subprocess.run(
        [sys.executable, "-m", "kedro", "viz", "build"],
        cwd=ws,
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "KEDRO_DISABLE_TELEMETRY": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    main = json.loads((ws / "build" / "api" / "main").read_text())
    names = {n.get("name") for n in main["nodes"]} | {n.get("id") for n in main["nodes"]}
    assert any("p3.round_1" in str(n) for n in names)
    assert any("p3.round_2" in str(n) for n in names)
