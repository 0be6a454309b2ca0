"""`scoring.refresh: incremental` through the `p3` pipeline and as a `study` arm, with the tiny model."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from p3_pruning.workspace import PROJECT_ROOT, latest_version, make_workspace, run_pipeline

pytestmark = pytest.mark.slow

TINY = {
    "seed": 3,
    "rounds": 3,
    "budget": 6,
    "model": {"name_or_path": "tiny-random", "cache_dir": str(PROJECT_ROOT / "data" / "06_models")},
    "data": {"default": {"n": 40, "seed": 2}, "split": {"eval_size": 6}},
    "scoring": {
        "progress": False,
        "max_length": 256,
        "token_budget": 2048,
        "refresh": "incremental",
        "incremental": {"margin": 10, "drift_fraction": 0.1, "min_drift": 2},
    },
    "training": {"batch_size": 4, "max_length": 256, "progress": False},
    "cheap_eval": {"max_samples": 2, "progress": False},
    "generation": {"max_new_tokens": 4, "batch_size": 8, "progress": False},
    "study": {
        "methods": ["p3"],
        "seeds": [0],
        "arms": {"p3_incremental": {"method": "p3", "scoring": {"refresh": "incremental"}}},
    },
}


def _summary(ws, name, e):
    return json.loads(
        latest_version(ws, f"data/08_reporting/{name}/round_{e}/summary.json").read_text()
    )


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("incremental"), TINY)
    run_pipeline(ws, "p3")
    return ws


def test_p3_rounds_rescore_part_of_the_pool_and_say_why(ran):
    pool = 34
    first = _summary(ran, "p3", 1)
    assert first["score_candidates"] == pool and "score_rescored" not in first
    for e in (2, 3):
        s = _summary(ran, "p3", e)
        parts = ("score_rescored_margin", "score_rescored_drift", "score_rescored_unscored")
        assert s["score_rescored"] == sum(s[k] for k in parts)
        assert (
            s["score_rescored"] + s["score_train_pass"] + s["score_reused"] + s["score_failed"]
            <= pool
        )
        assert 0 < s["score_rescored"] < pool
        assert s["score_train_pass"] > 0  # the last round's selection, read off its training pass
        assert s["score_reused_tokens"] > 0 and s["score_tokens"] > 0
        assert s["selected"] == 6 and s["shortfall"] == 0
        scores = pd.read_parquet(
            latest_version(ran, f"data/04_feature/p3/round_{e}/scores.parquet")
        )
        assert (
            scores["measured"]
            .isin(["margin", "drift", "unscored", "train_pass", "reused", "failed"])
            .all()
        )
        assert int((scores["measured_round"] == e).sum()) == s["score_rescored"]
    trained = pd.read_parquet(latest_version(ran, "data/06_models/p3/round_1/train_scores.parquet"))
    chosen = pd.read_parquet(
        latest_version(ran, "data/05_model_input/p3/round_1/selection.parquet")
    )
    assert sorted(trained["sample_id"]) == sorted(chosen["sample_id"])
    assert (trained["status"] == "ok").all()


def test_a_study_runs_full_and_incremental_p3_side_by_side(tmp_path_factory):
    params = {**TINY, "rounds": 2, "scoring": {**TINY["scoring"], "refresh": "full"}}
    ws = make_workspace(tmp_path_factory.mktemp("incremental_study"), params)
    run_pipeline(ws, "study")
    full = _summary(ws, "p3.seed_0", 2)
    inc = _summary(ws, "p3_incremental.seed_0", 2)
    assert "score_rescored" not in full and inc["score_rescored"] < full["score_candidates"]
    assert inc["score_tokens"] < full["score_tokens"]
    report = pd.read_csv(latest_version(ws, "data/08_reporting/study/report.csv")).set_index(
        "method"
    )
    assert report.loc["p3_incremental", "score_flops"] < report.loc["p3", "score_flops"]
    assert (
        report.loc["p3_incremental", "score_reused_flops"]
        > 0
        == report.loc["p3", "score_reused_flops"]
    )
