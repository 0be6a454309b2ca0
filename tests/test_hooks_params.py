"""What the child MLflow runs of a round are tagged and parametrised with, arms included."""

from __future__ import annotations

from p3_pruning.hooks import MlflowRoundsHook

RUN = {
    "seed": 3,
    "budget": 0.4,
    "rounds": 2,
    "scoring": {"segmenter": "newline", "embed": "prompt", "candidates": None, "refresh": "full"},
    "pacing": {"start": 45, "end": 95},
    "selection": {"quality": "difficulty"},
    "study": {
        "methods": ["p3", "random"],
        "seeds": [0, 1],
        "arms": {
            "p3_incremental": {"method": "p3", "scoring": {"refresh": "incremental"}},
            "random_matched": {"method": "random", "budget": 0.9},
        },
    },
}


def _params(namespace: str) -> tuple[dict, dict]:
    hook = MlflowRoundsHook()
    hook.params = RUN
    return hook._params(namespace, "2")


def test_a_method_logs_the_run_settings():
    params, tags = _params("p3.seed_1.round_2")
    assert (params["method"], params["arm"], params["seed"]) == ("p3", "p3", "1")
    assert params["scoring.refresh"] == "full" and params["budget"] == "0.4"
    assert params["pacing.start"] == "45" and tags["method"] == "p3"


def test_an_arm_logs_its_method_and_its_merged_settings():
    params, tags = _params("p3_incremental.seed_0.round_2")
    assert (params["method"], params["arm"]) == ("p3", "p3_incremental")
    assert (tags["method"], tags["arm"]) == ("p3", "p3_incremental")
    assert params["scoring.refresh"] == "incremental"  # the arm's override
    assert params["scoring.segmenter"] == "newline"  # the run's, merged under it
    matched, _ = _params("random_matched.seed_1.round_2")
    assert (matched["method"], matched["budget"]) == ("random", "0.9")
    assert "scoring.refresh" not in matched  # random does not score


def test_the_base_model_has_no_method_settings():
    params, _ = _params("base.final")
    assert params["method"] == params["arm"] == "base" and "regime" not in params


def test_the_runs_environment_reaches_the_pipeline_registry(monkeypatch):
    """``--env`` wins over an inherited KEDRO_ENV: the registry unrolls the run's environment."""
    from types import SimpleNamespace

    from p3_pruning.hooks import ConfigCheckHook

    monkeypatch.setenv("KEDRO_ENV", "study_cpu")  # inherited from the shell
    ConfigCheckHook().after_context_created(SimpleNamespace(env="regime_noisy", params={}))
    import os

    assert os.environ["KEDRO_ENV"] == "regime_noisy"
