"""tracking: the experiment's kind tag, the parent run's name, compute as MLflow metrics."""

from __future__ import annotations

import doctest

import pytest
from mlflow.tracking import MlflowClient

from p3_pruning import tracking
from p3_pruning.compute import round_compute, run_compute
from p3_pruning.tracking import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    compute_metrics,
    default_run_name,
    mark_experiment,
    parameter_counts,
    parent_run_name,
)


def test_mark_experiment_tags_new_untagged_and_mistagged_experiments_once(tmp_path):
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    bare = client.create_experiment("bare")
    other = client.create_experiment("other", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    assert mark_experiment(client, bare) is True
    assert mark_experiment(client, bare) is False  # already tagged: nothing written
    assert mark_experiment(client, other) is True
    for experiment_id in (bare, other):
        assert client.get_experiment(experiment_id).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND


@pytest.mark.parametrize(
    ("names", "params", "expected"),
    [
        (None, {"budget": 0.45, "seed": 42}, "p3 · budget 0.45 · seed 42"),
        (["__default__"], {"budget": 90, "seed": 0}, "p3 · budget 90 · seed 0"),
        (["compare"], {"budget": 6, "seed": 3}, "compare · budget 6 · seed 3"),
        (["data", "spl"], {"budget": 0.2, "seed": 1}, "data+spl · budget 0.2 · seed 1"),
        (
            ["study"],
            {"budget": 0.45, "seed": 0, "study": {"seeds": [0, 1]}},
            "study · budget 0.45 · seeds 0,1",
        ),
        (["export"], {"seed": 7}, "export · seed 7"),
    ],
)
def test_parent_run_name_says_what_ran_and_with_which_settings(names, params, expected):
    assert parent_run_name(names, params) == expected


def test_default_run_name_is_kedro_mlflows():
    assert default_run_name(None) == "__default__"
    assert default_run_name(["data", "p3"]) == "data+p3"


def test_compute_metrics_are_compute_modules_numbers_per_stage_and_total():
    record = {
        "score_tokens": 1000,
        "train_n_input_tokens": 400,
        "eval_n_input_tokens": 50,
        "eval_score_tokens": 50,
        "generation_prompt_tokens": 30,
        "generation_new_tokens": 20,
    }
    p, lora = 1_000_000, 10_000
    metrics = compute_metrics(round_compute(record, p, lora))
    assert metrics["compute/score_flops"] == 2 * p * 1000
    assert metrics["compute/train_flops"] == (4 * p + 6 * lora) * 400
    assert metrics["compute/eval_flops"] == 2 * p * 100
    assert metrics["compute/generation_flops"] == 2 * p * 50
    assert metrics["compute/total_tokens"] == 1000 + 400 + 100 + 50
    assert metrics["compute/total_flops"] == sum(
        metrics[f"compute/{s}_flops"] for s in ("score", "train", "eval", "generation")
    )
    run = compute_metrics(run_compute([record, record], p, lora), tracking.RUN_PREFIX)
    assert run["run_compute/total_flops"] == 2 * metrics["compute/total_flops"]
    assert set(run) == {k.replace("compute/", "run_compute/") for k in metrics}


def test_parameter_counts_come_from_the_first_record_that_has_them():
    assert parameter_counts(
        [{"score_tokens": 1}, {"train_params": 10, "train_lora_params": 2}]
    ) == (
        10,
        2,
    )
    assert parameter_counts([{"train_params": 10}]) == (10, 0)
    assert parameter_counts([{}]) is None


def test_doctests():
    assert doctest.testmod(tracking).failed == 0
