"""The round template's shape per method regime, without running anything (fast)."""

from __future__ import annotations

import pytest

from p3_pruning.methods import METHODS
from p3_pruning.namespaces import round_namespace as round_name
from p3_pruning.pipelines.rounds.pipeline import create_pipeline


def steps(method: str, round_: int, rounds: int = 3, seed=None) -> dict[str, set[str]]:
    """``{step name: inputs}`` of one round."""
    ns = round_name(method, round_ - 1, seed)
    pipe = create_pipeline(method, rounds, seed)
    return {n.name.removeprefix(ns + "."): set(n.inputs) for n in pipe.nodes if n.namespace == ns}


def test_p3_rounds_show_every_step_of_the_method():
    for e in (1, 2, 3):
        ns = f"p3.round_{e}"
        got = steps("p3", e)
        assert set(got) == {
            "score",
            "threshold",
            "dpp_select",
            "finetune",
            "evaluate",
            "summarize",
            "view_selection",
        }
        assert f"{ns}.scores" in got["threshold"] and "params:pacing" in got["threshold"]
        assert {f"{ns}.eligible", f"{ns}.embeddings", f"{ns}.scores"} <= got["dpp_select"]
        assert f"{ns}.selection" in got["finetune"]
        if e > 1:
            prev = f"p3.round_{e - 1}"
            assert f"{prev}.adapter" in got["score"] and f"{prev}.adapter" in got["finetune"]
            assert f"{prev}.scores" in got["threshold"]  # the trend term's d_{e-1}
        else:
            assert not any(".adapter" in i for i in got["score"])


@pytest.mark.parametrize(
    ("method", "expected"),
    [
        ("spl", {"score", "threshold", "pick"}),
        ("dpp", {"score", "dpp_select"}),
        ("random", {"pick"}),
        ("full", {"pick"}),
    ],
)
def test_baselines_reuse_the_steps_they_have(method, expected):
    for e in (1, 2):
        got = steps(method, e)
        assert set(got) == expected | {"finetune", "evaluate", "summarize", "view_selection"}, (
            method,
            e,
        )
    if method in ("random", "full"):
        assert "train_pool" in steps(method, 1)["pick"]


@pytest.mark.parametrize(
    ("method", "round_", "tables"),
    [
        ("p3", 2, {"scores", "eligible"}),
        ("dpp", 1, {"scores"}),
        ("random", 1, set()),
        ("static", 2, {"eligible"}),  # and round 1's scores
    ],
)
def test_the_selection_view_reads_the_tables_the_method_has(method, round_, tables):
    ns = round_name(method, round_ - 1)
    got = steps(method, round_)["view_selection"]
    expected = {"train_pool", f"{ns}.selection"} | {f"{ns}.{t}" for t in tables}
    if method == "static":
        expected.add("static.round_1.scores")
    assert got == expected


def test_static_and_curriculum_score_once_and_reuse_round_1():
    for method, select in (("static", "dpp_select"), ("curriculum", "pick")):
        assert set(steps(method, 1)) >= {"score", "threshold", select}
        later = steps(method, 2)
        assert "score" not in later
        assert f"{method}.round_1.scores" in later["threshold"]
        assert f"{method}.round_1.scores" in later[select]


def test_study_rounds_carry_the_seed_in_the_namespace_and_bind_it():
    got = steps("p3", 2, seed=7)
    assert "p3.seed_7.round_1.adapter" in got["finetune"]
    assert "params:seed" not in got["finetune"] and "params:seed" not in got["dpp_select"]
    assert "params:seed" in steps("p3", 2)["finetune"]


def test_every_method_builds_and_chains_through_its_adapters():
    for method in METHODS:
        pipe = create_pipeline(method, 3)
        free = pipe.inputs()
        assert {"train_pool", "eval_set"} <= free
        assert not any(".round_" in name for name in free), (method, free)


def test_a_study_scores_round_1_once_per_seed_for_every_scoring_method():
    import warnings

    from p3_pruning.pipelines.study.pipeline import create_pipeline as study

    methods = ["p3", "spl", "dpp", "static", "curriculum", "random", "full"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Kedro's note on dots in dataset names
        pipe = study(methods, [0, 4], rounds=3)
    scorers = sorted(n.name for n in pipe.nodes if n.name.endswith("round_1.score"))
    assert scorers == ["base.seed_0.round_1.score", "base.seed_4.round_1.score"]
    free = pipe.inputs()
    assert not any(".round_" in name for name in free), free
    for method in ("p3", "spl", "dpp", "static", "curriculum"):
        for seed in (0, 4):
            ns = round_name(method, 0, seed)
            first = {n.name: set(n.inputs) for n in pipe.nodes if n.namespace == ns}
            shared = f"base.seed_{seed}.round_1.scores"
            assert any(shared in inputs for inputs in first.values()), (method, seed)
            assert f"{ns}.score" not in first
            assert f"base.seed_{seed}.round_1.score_info" in first[f"{ns}.summarize"]
    # the trend term of round 2 reads the shared round-1 scores; round 2 rescores on its own
    second = {n.name: set(n.inputs) for n in pipe.nodes if n.namespace == "p3.seed_4.round_2"}
    assert "base.seed_4.round_1.scores" in second["p3.seed_4.round_2.threshold"]
    assert "p3.seed_4.round_1.adapter" in second["p3.seed_4.round_2.score"]
    # outside a study each method scores its own round 1, as before
    assert "score" in steps("p3", 1) and "score" in steps("dpp", 1)
