"""Bad parameters stop `kedro run` before the first node: nothing is written, every key is named."""

from __future__ import annotations

import pytest

from conftest import tiny_run
from p3_pruning.config import ConfigError
from p3_pruning.workspace import make_workspace, run_pipeline

TINY = {"model": tiny_run()["model"]}


def test_bad_parameters_fail_before_any_dataset_is_written(tmp_path):
    ws = make_workspace(tmp_path / "ws", TINY)
    bad = {"budget": 0, "training": {"learning_rate": "abc"}, "pacing": {"schedule": "cubic"}}
    with pytest.raises(ConfigError) as info:
        run_pipeline(ws, "p3", runtime_params=bad)
    keys = {key for key, _, _ in info.value.problems}
    assert {"budget", "training.learning_rate", "pacing.schedule"} <= keys
    written = [p for p in (ws / "data").rglob("*") if p.is_file()]
    assert written == []


def test_rounds_given_at_run_time_must_match_the_dag(tmp_path):
    ws = make_workspace(tmp_path / "ws", TINY)
    with pytest.raises(ConfigError, match="rounds: found 5"):
        run_pipeline(ws, "p3", runtime_params={"rounds": 5})
    assert not [p for p in (ws / "data").rglob("*") if p.is_file()]


def test_a_budget_over_a_file_sources_pool_stops_the_run_after_the_split(tmp_path):
    """The default source's pool size is known from the config; a file's only after the split. Either
    way a budget larger than the pool is refused before anything is scored."""
    import json

    raw = tmp_path / "train.jsonl"
    raw.write_text(
        "\n".join(
            json.dumps(
                {"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"}
            )
            for i in range(12)
        )
        + "\n"
    )
    params = {
        **TINY,
        "budget": 100_000,
        "data": {"source": "gsm8k", "path": str(raw), "split": {"eval_size": 2, "stratify": None}},
    }
    ws = make_workspace(tmp_path / "ws", params)
    with pytest.raises(
        ConfigError, match=r"budget: found 100000; at most the train pool's 10 samples"
    ):
        run_pipeline(ws, "p3")
    assert list((ws / "data" / "03_primary").rglob("train_pool.parquet"))  # the split ran
    assert not [p for p in (ws / "data" / "04_feature").rglob("*") if p.is_file()]  # nothing scored
