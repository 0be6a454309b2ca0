"""The p3 pipeline with scoring on a local Ray cluster gives the local run's scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_run
from p3_pruning.workspace import latest_version, make_workspace, run_pipeline

pytest.importorskip("ray")  # the `ray` extra, which scripts/setup.sh installs
pytestmark = pytest.mark.slow

TINY = tiny_run(
    seed=4,
    rounds=1,
    budget=4,
    data={"default": {"n": 20, "seed": 3}, "split": {"eval_size": 4}},
    cheap_eval={"max_samples": 2},
)
RAY = {"address": None, "num_workers": 2, "num_gpus_per_worker": 0, "batch_rows": 6, "num_cpus": 2}


def test_ray_backend_scores_equal_the_local_backend(tmp_path):
    local = make_workspace(tmp_path / "local", TINY)
    run_pipeline(local, "p3")
    spread = make_workspace(
        tmp_path / "ray", {**TINY, "scoring": {**TINY["scoring"], "backend": "ray", "ray": RAY}}
    )
    run_pipeline(spread, "p3")
    rel = "data/04_feature/p3/round_1/scores.parquet"
    a, b = pd.read_parquet(latest_version(local, rel)), pd.read_parquet(latest_version(spread, rel))
    assert list(a["sample_id"]) == list(b["sample_id"])
    assert list(a["status"]) == list(b["status"])
    np.testing.assert_allclose(a["difficulty"], b["difficulty"], atol=1e-6, rtol=0)
    rel = "data/04_feature/p3/round_1/embeddings.npy"
    np.testing.assert_allclose(
        np.load(latest_version(local, rel)), np.load(latest_version(spread, rel)), atol=1e-5
    )
    sel = "data/05_model_input/p3/round_1/selection.parquet"
    pd.testing.assert_frame_equal(
        pd.read_parquet(latest_version(local, sel)), pd.read_parquet(latest_version(spread, sel))
    )
