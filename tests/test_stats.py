import math
import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from p3_pruning.stats import (
    accuracy_compute_plot,
    accuracy_plot,
    binomial_stderr,
    difficulty_by_level_plot,
    difficulty_level_spearman,
    difficulty_levels,
    mean_ci,
    paired_difference,
    parse_level,
    study_table,
)

T975_2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (tables)
T975_3 = 3.182446305284263


def test_mean_ci_matches_the_hand_computed_t_interval():
    ci = mean_ci([0.2, 0.3, 0.4])
    assert ci.n == 3 and ci.mean == pytest.approx(0.3) and ci.sd == pytest.approx(0.1)
    half = T975_2 * 0.1 / math.sqrt(3)
    assert ci.half_width == pytest.approx(half, rel=1e-9)
    assert (ci.low, ci.high) == pytest.approx((0.3 - half, 0.3 + half))
    assert mean_ci([0.2, 0.3, 0.4], confidence=0.9).half_width < half


def test_mean_ci_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")
    x = np.array([0.11, 0.18, 0.25, 0.09, 0.3])
    ci = mean_ci(x)
    low, high = scipy_stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy_stats.sem(x))
    assert (ci.low, ci.high) == pytest.approx((low, high), rel=1e-12)


def test_one_seed_has_no_interval_and_nan_values_are_dropped():
    one = mean_ci([0.4])
    assert one.n == 1 and one.mean == 0.4
    assert math.isnan(one.half_width) and math.isnan(one.low) and math.isnan(one.high)
    none = mean_ci([])
    assert none.n == 0 and math.isnan(none.mean)
    assert mean_ci([0.2, float("nan"), 0.4]) == mean_ci([0.2, 0.4])
    with pytest.raises(ValueError, match="confidence"):
        mean_ci([0.1, 0.2], confidence=95)


def test_intervals_shrink_with_more_seeds():
    rng = np.random.default_rng(0)
    draws = rng.normal(0.3, 0.05, 64)
    widths = [mean_ci(draws[:n]).half_width for n in (2, 4, 8, 16, 64)]
    assert all(a > b for a, b in zip(widths, widths[1:], strict=False))
    # same spread, more seeds: the t quantile and the √n both shrink the interval
    assert mean_ci([0.2, 0.4] * 4).half_width < mean_ci([0.2, 0.4]).half_width


def test_binomial_stderr():
    assert binomial_stderr(0.3, 100) == pytest.approx(math.sqrt(0.21 / 100))
    assert binomial_stderr(0.0, 10) == 0.0
    assert math.isnan(binomial_stderr(0.5, 0))
    with pytest.raises(ValueError, match="accuracy must be in"):
        binomial_stderr(1.5, 10)


@pytest.fixture
def results():
    """Three methods × three seeds (random misses seed 3), with levels and compute."""
    rows = [
        ("p3", 1, 0.30, 0.5, 100, 10.0),
        ("p3", 2, 0.35, 0.6, 100, 10.0),
        ("p3", 3, 0.40, 0.7, 100, 12.0),
        ("random", 1, 0.25, 0.4, 100, 8.0),
        ("random", 2, 0.30, 0.5, 100, 8.0),
        ("full", 1, 0.50, 0.8, 500, 40.0),
        ("full", 2, 0.45, 0.7, 500, 40.0),
        ("full", 3, 0.52, 0.9, 500, 44.0),
    ]
    frame = pd.DataFrame(
        rows,
        columns=["method", "seed", "accuracy", "accuracy/chain_sum/1", "samples_trained", "x"],
    )
    frame["total_flops"] = frame.pop("x") * 1e12
    frame["train_seconds"] = frame["total_flops"] / 1e12
    frame["n_eval"] = 128
    return frame


def test_paired_difference_uses_the_seeds_both_methods_ran(results):
    diff = paired_difference(results, "p3", "random")
    assert diff.n == 2 and diff.mean == pytest.approx(0.05)  # seeds 1, 2: 0.05, 0.05
    assert diff.sd == pytest.approx(0.0, abs=1e-15)
    full = paired_difference(results, "p3", "full")  # -0.20, -0.10, -0.12
    d = np.array([-0.20, -0.10, -0.12])
    assert full.mean == pytest.approx(d.mean())
    assert full.half_width == pytest.approx(T975_2 * d.std(ddof=1) / math.sqrt(3))
    assert paired_difference(results, "p3", "curriculum").n == 0


def test_pairing_removes_the_seed_to_seed_spread():
    # method = reference + 0.02 on every seed, while seeds themselves vary a lot
    base = np.array([0.1, 0.4, 0.25, 0.6])
    frame = pd.DataFrame(
        {
            "method": ["a"] * 4 + ["b"] * 4,
            "seed": [0, 1, 2, 3] * 2,
            "accuracy": np.r_[base + 0.02 + [0, 0.01, -0.01, 0], base],
        }
    )
    paired = paired_difference(frame, "a", "b")
    assert paired.low > 0  # significant when paired
    a, b = mean_ci(frame["accuracy"][:4]), mean_ci(frame["accuracy"][4:])
    assert a.low < b.high  # the two intervals alone overlap


def test_study_table(results):
    table = study_table(results)
    assert table["method"].tolist() == ["p3", "random", "full"]
    assert list(table.columns[:7]) == [
        "method",
        "n_seeds",
        "mean",
        "sd",
        "ci_low",
        "ci_high",
        "stderr_within",
    ]
    for ref in ("random", "full"):
        for suffix in ("", "_ci_low", "_ci_high"):
            assert f"diff_vs_{ref}{suffix}" in table.columns
    row = table.set_index("method").loc["p3"]
    assert row["n_seeds"] == 3 and row["mean"] == pytest.approx(0.35)
    half = T975_2 * 0.05 / math.sqrt(3)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.35 - half, 0.35 + half))
    within = math.sqrt(np.mean([a * (1 - a) / 128 for a in (0.30, 0.35, 0.40)]))
    assert row["stderr_within"] == pytest.approx(within)
    assert row["diff_vs_random"] == pytest.approx(0.05)
    assert row["diff_vs_full"] == pytest.approx(np.mean([-0.20, -0.10, -0.12]))
    assert row["accuracy/chain_sum/1"] == pytest.approx(0.6)
    assert row["samples_trained"] == 100 and row["n_eval"] == 128
    assert row["total_flops"] == pytest.approx(32e12 / 3)
    assert row["train_seconds"] == pytest.approx(32 / 3)
    ref = table.set_index("method").loc["random"]
    assert ref["diff_vs_random"] == 0 and ref["n_seeds"] == 2
    assert ref["ci_high"] - ref["ci_low"] == pytest.approx(2 * 12.706204736174705 * 0.05 / 2)


def test_study_table_one_seed_and_bad_input(results):
    one = study_table(results[results["seed"] == 1])
    assert (one["n_seeds"] == 1).all()
    assert one["ci_low"].isna().all() and one["diff_vs_random_ci_low"].isna().all()
    assert one.set_index("method").loc["p3", "diff_vs_random"] == pytest.approx(0.05)
    with pytest.raises(ValueError, match="more than one row for method 'p3', seed 1"):
        study_table(pd.concat([results, results.head(1)]))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['seed'\]"):
        study_table(results.drop(columns="seed"))


def test_study_intervals_shrink_with_more_seeds():
    rng = np.random.default_rng(1)
    rows = [
        {"method": m, "seed": s, "accuracy": float(np.clip(mu + rng.normal(0, 0.04), 0, 1))}
        for s in range(12)
        for m, mu in (("p3", 0.3), ("random", 0.25))
    ]
    frame = pd.DataFrame(rows)
    width = {}
    for n in (3, 12):
        t = study_table(frame[frame["seed"] < n]).set_index("method")
        width[n] = t["ci_high"] - t["ci_low"]
    assert (width[12] < width[3]).all()


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), ("3", 3.0), ("Level 3", 3.0), ("L2", 2.0), (2.5, 2.5), ("level 10", 10.0)],
)
def test_parse_level(value, expected):
    assert parse_level(value) == expected


@pytest.mark.parametrize("value", [None, float("nan"), "Level ?", ""])
def test_parse_level_without_a_number(value):
    assert math.isnan(parse_level(value))


def _scores_and_samples(difficulty, levels):
    ids = [f"s{i}" for i in range(len(difficulty))]
    scores = pd.DataFrame({"sample_id": ids, "round": 1, "difficulty": difficulty})
    samples = pd.DataFrame({"sample_id": ids[::-1], "level": list(levels)[::-1]})  # other order
    return scores, samples


def test_spearman_against_scipy_with_ties_and_string_levels():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    level = rng.integers(1, 4, 60)
    difficulty = (level * 0.2 + rng.normal(0, 0.15, 60)).round(1)  # rounding makes ties
    scores, samples = _scores_and_samples(difficulty, [f"Level {v}" for v in level])
    rho = difficulty_level_spearman(scores, samples)
    assert rho == pytest.approx(scipy_stats.spearmanr(difficulty, level).statistic, rel=1e-12)
    assert rho > 0.5


def test_spearman_ignores_failed_samples_and_missing_levels():
    difficulty = [0.1, 0.2, 0.3, 0.4, np.inf, 0.05]
    levels = ["1", "2", "2", "3", "1", None]
    scores, samples = _scores_and_samples(difficulty, levels)
    expected = np.corrcoef([1, 2, 3, 4], [1, 2.5, 2.5, 4])[0, 1]
    assert difficulty_level_spearman(scores, samples) == pytest.approx(expected)


@pytest.mark.parametrize(
    "levels", [["2", "2", "2"], [None, None, None], ["easy", "medium", "hard"]]
)
def test_spearman_is_nan_without_two_levels(levels):
    scores, samples = _scores_and_samples([0.1, 0.5, 0.9], levels)
    assert math.isnan(difficulty_level_spearman(scores, samples))


def test_difficulty_levels_joins_on_sample_id():
    scores, samples = _scores_and_samples([0.1, 0.5, 0.9], ["Level 1", None, "3"])
    table = difficulty_levels(scores, samples)
    assert table["sample_id"].tolist() == ["s0", "s1", "s2"]
    assert table["level"].tolist()[::2] == [1.0, 3.0] and math.isnan(table["level"][1])
    assert list(table.columns) == ["sample_id", "round", "difficulty", "level"]
    with pytest.raises(ValueError, match=r"samples lacks column\(s\) \['level'\]"):
        difficulty_levels(scores, samples.drop(columns="level"))


def test_plots(results):
    table = study_table(results)
    fig = accuracy_plot(table, results)
    ax = fig.axes[0]
    assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == ["p3", "random", "full"]
    assert len(ax.collections) >= 3  # one dot cloud per method
    plt.close(fig)
    fig = accuracy_compute_plot(table)
    assert fig.axes[0].get_xscale() == "log"
    assert [t.get_text() for t in fig.axes[0].texts] == ["p3", "random", "full"]
    plt.close(fig)
    with pytest.raises(ValueError, match="total_seconds"):
        accuracy_compute_plot(table, flops="total_seconds")


def test_difficulty_by_level_plot_draws_one_box_per_round_and_level():
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "round": np.repeat([1, 2], 30),
            "level": np.tile(["Level 1", "Level 2", "Level 3"], 20),
            "difficulty": rng.uniform(0, 1, 60),
        }
    )
    frame.loc[0, "difficulty"] = np.inf
    fig = difficulty_by_level_plot(frame)
    ax = fig.axes[0]
    assert len(ax.patches) == 6  # 2 rounds × 3 levels
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["level 1", "level 2", "level 3"]
    plt.close(fig)
    empty = difficulty_by_level_plot(frame.assign(level=None))
    assert empty.axes[0].texts[0].get_text() == "no sample has a level"
    plt.close(empty)
    # a study whose arms never score the pool (random alone) has no rows to plot
    unscored = difficulty_by_level_plot(pd.DataFrame())
    assert unscored.axes[0].texts[0].get_text() == "no arm scored the pool"
    plt.close(unscored)


def test_importing_the_plotting_modules_leaves_the_backend_alone():
    """Plots are Figures built without pyplot: a notebook's backend survives importing the project."""
    import subprocess
    import sys

    code = (
        "import matplotlib; import p3_pruning.stats, p3_pruning.audit, p3_pruning.sweep; "
        "import p3_pruning.pipelines.rounds.nodes, p3_pruning.pipelines.compare.nodes; "
        "from p3_pruning.audit import audit_plot, audit_table; "
        "fig = audit_plot(audit_table([{'method': 'p3', 'seed': 0, 'round': 1, "
        "'audit_pool_share/clean': 1.0, 'audit_selected_share/clean': 1.0}])); "
        "import matplotlib.pyplot as plt; print(matplotlib.get_backend(), len(plt.get_fignums()))"
    )
    env = {**os.environ, "MPLBACKEND": "svg"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "0"]  # backend unchanged, no figure left with pyplot
