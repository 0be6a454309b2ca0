"""`study` end to end with the tiny model: methods x seeds, the base model once, the report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_run
from p3_pruning.pipelines.study.nodes import results_table
from p3_pruning.pipelines.study.pipeline import create_pipeline as study_pipeline
from p3_pruning.runner import SeedFirstRunner
from p3_pruning.stats import study_table
from p3_pruning.workspace import latest_version, make_workspace, run_pipeline

pytestmark = pytest.mark.slow

TINY = tiny_run(
    seed=5,
    rounds=2,
    budget=4,
    # a composed pool: a quarter of the 18 training samples wrong (the audit's positive control)
    data={
        "default": {"n": 24, "seed": 2},
        "split": {"eval_size": 6},
        "inject": {"noise": 0.25},
    },
    cheap_eval={"max_samples": 2},
    generation={"max_new_tokens": 8},
    study={
        "methods": ["p3", "random"],
        "seeds": [0, 1],
        "arms": {  # a variant and a matched baseline, on one seed each
            "p3_easy": {"method": "p3", "seeds": [1], "selection": {"quality": "easiness"}},
            "random_matched": {"method": "random", "seeds": [0], "budget": 6},
        },
    },
)


@pytest.fixture(scope="module")
def studied(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("study"), TINY)
    run_pipeline(ws, "study")
    return ws


@pytest.fixture(scope="module")
def studied_seed_first(tmp_path_factory):
    ws = make_workspace(tmp_path_factory.mktemp("study_seed_first"), TINY)
    run_pipeline(ws, "study", runner=SeedFirstRunner())
    return ws


def test_the_seed_first_runner_changes_the_order_not_the_results(studied, studied_seed_first):
    def outcome(ws):
        results = pd.read_csv(latest_version(ws, "data/08_reporting/study/results.csv"))
        columns = ["method", "seed", "accuracy", "samples_trained"]
        accuracy = results[columns].sort_values(["method", "seed"]).reset_index(drop=True)
        selections = {
            folder.parent.parent.name + "/" + folder.parent.name: list(
                pd.read_parquet(latest_version(ws, folder.relative_to(ws)))["sample_id"]
            )
            for folder in sorted((ws / "data/05_model_input").glob("*/round_*/selection.parquet"))
        }
        return accuracy, selections

    (a_accuracy, a_selections), (b_accuracy, b_selections) = map(
        outcome, (studied, studied_seed_first)
    )
    pd.testing.assert_frame_equal(a_accuracy, b_accuracy)
    assert len(a_selections) == 12 and a_selections == b_selections  # 6 chains x 2 rounds


def test_report_has_a_row_per_method_with_intervals_and_compute(studied):
    report = pd.read_csv(latest_version(studied, "data/08_reporting/study/report.csv"))
    assert list(report["method"]) == ["p3", "random", "p3_easy", "random_matched", "base"]
    for column in (
        "n_seeds",
        "mean",
        "ci_low",
        "ci_high",
        "stderr_within",
        "diff_vs_random",
        "diff_vs_random_ci_low",
        "samples_trained",
        "score_flops",
        "train_flops",
        "generation_flops",
        "total_flops",
        "train_seconds",
    ):
        assert column in report, column
    rows = report.set_index("method")
    assert rows.loc["p3", "n_seeds"] == 2 and rows.loc["base", "n_seeds"] == 1
    assert np.isfinite(rows.loc["p3", ["ci_low", "ci_high"]].astype(float)).all()
    assert rows.loc["p3", "samples_trained"] == rows.loc["random", "samples_trained"] == 8
    assert rows.loc["p3", "score_flops"] > 0 and rows.loc["random", "score_flops"] == 0
    assert rows.loc["random", "diff_vs_random"] == 0
    assert any(c.startswith("accuracy/") for c in report.columns)
    for plot in ("accuracy", "compute", "difficulty_by_level"):
        assert latest_version(studied, f"data/08_reporting/study/{plot}.png").stat().st_size > 1000


def test_seeds_live_in_their_own_namespaces(studied):
    results = pd.read_csv(latest_version(studied, "data/08_reporting/study/results.csv"))
    assert sorted(zip(results["method"], results["seed"].fillna(-1), strict=True)) == [
        ("base", -1),
        ("p3", 0),
        ("p3", 1),
        ("p3_easy", 1),
        ("random", 0),
        ("random", 1),
        ("random_matched", 0),
    ]
    a = pd.read_parquet(
        latest_version(studied, "data/05_model_input/p3.seed_0/round_1/selection.parquet")
    )
    b = pd.read_parquet(
        latest_version(studied, "data/05_model_input/p3.seed_1/round_1/selection.parquet")
    )
    assert len(a) == len(b) == 4


def test_arms_run_their_overrides(studied):
    results = pd.read_csv(latest_version(studied, "data/08_reporting/study/results.csv"))
    trained = results.set_index(["method", "seed"])["samples_trained"]
    assert trained[("random_matched", 0)] == 12 and trained[("random", 0)] == 8  # budget 6 vs 4
    report = pd.read_csv(latest_version(studied, "data/08_reporting/study/report.csv"))
    assert "diff_vs_random_mdd" in report and "diff_vs_p3" in report
    summary = pd.read_json(
        latest_version(studied, "data/08_reporting/p3_easy.seed_1/round_2/summary.json"),
        typ="series",
    )
    assert summary["method"] == "p3" and summary["arm"] == "p3_easy"


def test_audit_in_every_round_summary_and_the_report(studied):
    for arm in ("p3.seed_0", "random.seed_1", "p3_easy.seed_1"):
        for e in (1, 2):
            summary = pd.read_json(
                latest_version(studied, f"data/08_reporting/{arm}/round_{e}/summary.json"),
                typ="series",
            )
            assert summary["audit_pool_share/noise"] == pytest.approx(
                5 / 18
            )  # round(0.25 x 18) = 5
            assert 0 <= summary["audit_selected_share/noise"] <= 1
            if arm.startswith("p3"):
                assert 0 <= summary["audit_auroc/noise"] <= 1
    selection = pd.read_parquet(
        latest_version(studied, "data/05_model_input/p3.seed_0/round_1/selection.parquet")
    )
    pool = pd.read_parquet(latest_version(studied, "data/03_primary/train_pool.parquet"))
    origin = dict(zip(pool["sample_id"], pool["origin"], strict=True))
    assert list(selection["origin"]) == [origin[s] for s in selection["sample_id"]]
    audit = pd.read_csv(latest_version(studied, "data/08_reporting/study/audit.csv"))
    assert set(audit["origin"]) == {"clean", "noise"}
    assert set(audit["method"]) == {"p3", "random", "p3_easy", "random_matched"}
    assert audit.loc[audit["method"] == "p3", "seed"].nunique() == 2
    assert latest_version(studied, "data/08_reporting/study/audit.png").stat().st_size > 1000


def _finals(accuracies: dict[str, list[float]]):
    finals = {
        (m, s): {"accuracy": acc, "accuracy_stderr": 0.01, "n_eval": 128}
        for m, values in accuracies.items()
        for s, acc in enumerate(values)
    }
    rounds = {
        key: [{"round": 1, "selected": 10, "train_params": 1000, "train_lora_params": 10}]
        for key in finals
    }
    return results_table(finals, rounds)


def test_intervals_shrink_with_more_seeds():
    # the same spread at every size (0.25, 0.35, 0.30 repeated): only n changes
    draws = {m: [0.25, 0.35, 0.30] * 4 for m in ("p3", "random")}
    widths = []
    for n in (3, 6, 12):
        table = study_table(_finals({m: v[:n] for m, v in draws.items()})).set_index("method")
        widths.append(float(table.loc["p3", "ci_high"] - table.loc["p3", "ci_low"]))
    assert widths[0] > widths[1] > widths[2] > 0


def test_an_arm_that_changes_only_later_rounds_reads_the_shared_round_1_scoring():
    plan = study_pipeline(
        ["p3"],
        [0],
        rounds=2,
        arms={
            "p3_incremental": {"method": "p3", "scoring": {"refresh": "incremental"}},
            "p3_candidates": {"method": "p3", "scoring": {"candidates": 0.5}},
        },
    )
    scorers = {n.name for n in plan.nodes if n.name.endswith(".score")}
    # one base scoring of the pool for p3 and p3_incremental; candidates change round 1: its own
    assert "base.seed_0.round_1.score" in scorers
    assert "p3_incremental.seed_0.round_1.score" not in scorers
    assert "p3_candidates.seed_0.round_1.score" in scorers
    second = next(n for n in plan.nodes if n.name == "p3_incremental.seed_0.round_2.score")
    assert "base.seed_0.round_1.scores" in second.inputs  # the stale values it refreshes
    assert "p3_incremental.seed_0.round_1.train_scores" in second.inputs


def test_with_candidates_an_arm_of_another_budget_scores_its_own_round_1():
    arms = {"p3_b20": {"method": "p3", "budget": 0.2}, "p3_easy": {"method": "p3", "selection": {}}}
    for candidates, own in ((False, False), (True, True)):
        plan = study_pipeline(["p3"], [0], rounds=2, arms=arms, candidates=candidates)
        scorers = {n.name for n in plan.nodes if n.name.endswith(".round_1.score")}
        assert ("p3_b20.seed_0.round_1.score" in scorers) is own  # its top-up needs its budget
        assert "p3_easy.seed_0.round_1.score" not in scorers  # selection: round 1 is the same


def test_a_study_of_unscored_arms_alone_writes_its_report(tmp_path):
    """A compute-matched random run on its own (no arm scores the pool) still gets its report."""
    arms = {"random_matched": {"method": "random", "seeds": [0], "budget": 6}}
    params = {**TINY, "study": {"methods": [], "seeds": [0], "arms": arms}}
    ws = make_workspace(tmp_path, params)
    run_pipeline(ws, "study")
    results = pd.read_csv(latest_version(ws, "data/08_reporting/study/results.csv"))
    assert sorted(results["method"]) == ["base", "random_matched"]
