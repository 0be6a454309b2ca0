import math

import numpy as np
import pytest

from p3_pruning.pacing import eligible, percentile, trend_adjusted


@pytest.mark.parametrize("rounds", [1, 2, 3, 5, 10])
def test_linear_schedule_is_the_paper_formula(rounds):
    for e in range(rounds):
        assert percentile(e, rounds) == pytest.approx(45 + (95 - 45) * e / rounds, abs=1e-12)
        assert percentile(e, rounds, start=10, end=60) == pytest.approx(10 + 50 * e / rounds)


@pytest.mark.parametrize("rounds", [2, 4, 7])
def test_geometric_and_root_schedules_equal_their_formulas(rounds):
    for e in range(rounds):
        x = e / rounds
        assert percentile(e, rounds, schedule="geometric") == pytest.approx(45 * (95 / 45) ** x)
        assert percentile(e, rounds, schedule="root") == pytest.approx(45 + 50 * x**0.5)
        assert percentile(e, rounds, schedule="root", power=3) == pytest.approx(
            45 + 50 * x ** (1 / 3)
        )


@pytest.mark.parametrize("schedule", ["linear", "geometric", "root"])
def test_schedules_start_at_start_grow_and_stay_below_end(schedule):
    values = [percentile(e, 6, start=20, end=90, schedule=schedule) for e in range(6)]
    assert values[0] == pytest.approx(20)
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    assert values[-1] < 90
    # with a single round every schedule is at its start
    assert percentile(0, 1, start=20, end=90, schedule=schedule) == pytest.approx(20)


def test_root_admits_faster_and_geometric_slower_than_linear():
    for e in range(1, 5):
        lin = percentile(e, 5)
        assert percentile(e, 5, schedule="root") > lin > percentile(e, 5, schedule="geometric")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(round_index=3, rounds=3), "round_index"),
        (dict(round_index=-1, rounds=3), "round_index"),
        (dict(round_index=0, rounds=0), "rounds"),
        (dict(round_index=0, rounds=2, start=60, end=50), "start"),
        (dict(round_index=0, rounds=2, schedule="cosine"), "schedule"),
        (dict(round_index=0, rounds=2, start=0, schedule="geometric"), "geometric"),
        (dict(round_index=0, rounds=2, schedule="root", power=0.5), "power"),
    ],
)
def test_bad_schedule_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        percentile(**kwargs)


def test_threshold_is_percentile_of_finite_values_and_ties_are_eligible():
    d = np.array([0.1, 0.2, 0.2, 0.2, 0.5, 0.9, np.inf, 0.3])
    mask, tau = eligible(d, 0, 2, start=50, end=100)
    finite = d[np.isfinite(d)]
    assert tau == pytest.approx(np.percentile(finite, 50))
    assert tau == pytest.approx(0.2)
    np.testing.assert_array_equal(mask, [True, True, True, True, False, False, False, False])


def test_inf_never_eligible_even_at_100_percent():
    d = np.array([0.3, np.inf, 0.7, np.inf])
    mask, tau = eligible(d, 0, 1, start=100, end=100)
    assert tau == pytest.approx(0.7)
    np.testing.assert_array_equal(mask, [True, False, True, False])


def test_all_infinite_or_empty_gives_no_eligible_and_nan_threshold():
    mask, tau = eligible(np.full(5, np.inf), 1, 3)
    assert mask.dtype == bool and not mask.any() and mask.shape == (5,)
    assert math.isnan(tau)
    mask, tau = eligible(np.zeros(0), 0, 1)
    assert mask.shape == (0,) and math.isnan(tau)


def test_eligible_grows_with_rounds():
    d = np.random.default_rng(0).random(1000)
    counts = [eligible(d, e, 4)[0].sum() for e in range(4)]
    assert counts == sorted(counts) and counts[0] < counts[-1]
    assert counts[0] == pytest.approx(450, abs=1)


def test_trend_term_values_and_threshold():
    d = np.array([0.5, 0.4, 0.3, np.inf, 0.2])
    prev = np.array([0.6, 0.2, np.inf, 0.1, 0.2])
    adj = trend_adjusted(d, prev, alpha=0.5)
    # improving samples get easier, worsening ones harder; non-finite pairs keep d_e
    np.testing.assert_allclose(adj, [0.45, 0.5, 0.3, np.inf, 0.2])
    mask, tau = eligible(d, 0, 1, start=50, end=50, previous=prev, alpha=0.5)
    assert tau == pytest.approx(np.percentile([0.45, 0.5, 0.3, 0.2], 50))
    np.testing.assert_array_equal(mask, adj <= tau)
    np.testing.assert_array_equal(trend_adjusted(d, prev, alpha=0.0), d)


def test_bad_difficulty_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        eligible(np.array([0.1, np.nan]), 0, 1)
    with pytest.raises(ValueError, match="-inf"):
        eligible(np.array([0.1, -np.inf]), 0, 1)
    with pytest.raises(ValueError, match="previous"):
        trend_adjusted(np.zeros(3), np.zeros(2), alpha=1.0)
