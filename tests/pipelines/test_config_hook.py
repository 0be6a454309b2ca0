"""Bad parameters stop `kedro run` before the first node: nothing is written, every key is named."""

from __future__ import annotations

import pytest

from p3_pruning.config import ConfigError
from p3_pruning.workspace import PROJECT_ROOT, make_workspace, run_pipeline

TINY = {
    "model": {"name_or_path": "tiny-random", "cache_dir": str(PROJECT_ROOT / "data" / "06_models")}
}


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
