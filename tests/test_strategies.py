import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

from p3_pruning import pacing
from p3_pruning.strategies import (
    METHODS,
    SELECTION_COLUMNS,
    curriculum_percentile,
    dpp_features,
    resolve_budget,
    run_strategy,
    select,
)

torch.set_num_threads(2)
N, D, CLUSTERS = 400, 16, 8


@pytest.fixture(scope="module")
def pool():
    """Scores (with ties and failed samples) and clustered float32 embeddings in the same order."""
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0.0, 1.0, N).round(2)  # rounding makes ties
    difficulty[rng.choice(N, 12, replace=False)] = np.inf
    scores = pd.DataFrame({"sample_id": [f"s{i:04d}" for i in range(N)], "difficulty": difficulty})
    labels = rng.integers(0, CLUSTERS, N)
    centres = rng.standard_normal((CLUSTERS, D)) * 4
    embeddings = (centres[labels] + rng.standard_normal((N, D))).astype(np.float32)
    return scores, embeddings, labels


def run(method, pool, **kw):
    scores, embeddings, _ = pool
    args = dict(round_index=1, rounds=3, budget=60, seed=7)
    args.update(kw)
    return run_strategy(method, scores, embeddings, **args)


@pytest.mark.parametrize("method", METHODS)
def test_every_strategy_respects_budget_uniqueness_and_determinism(method, pool):
    scores = pool[0]
    sel, info = run(method, pool)
    again, _ = run(method, pool)
    pd.testing.assert_frame_equal(sel, again)
    assert list(sel.columns) == SELECTION_COLUMNS
    assert sel["sample_id"].is_unique
    assert set(sel["sample_id"]) <= set(scores["sample_id"])
    assert (sel["round"] == 2).all()
    assert sel["pick_order"].tolist() == list(range(len(sel)))
    lookup = scores.set_index("sample_id")["difficulty"]
    np.testing.assert_array_equal(sel["difficulty"].to_numpy(), lookup[sel["sample_id"]].to_numpy())
    expected = N if method == "full" else 60
    assert len(sel) == expected == info["selected"] == info["budget"]
    assert info["shortfall"] == 0 and info["pool"] == N and info["finite"] == N - 12
    assert all(isinstance(v, (int, float)) for v in info.values())


@pytest.mark.parametrize("method", ["spl", "random", "full", "curriculum"])
def test_randomised_strategies_change_with_seed_and_round(method, pool):
    a, _ = run(method, pool)
    b, _ = run(method, pool, seed=8)
    c, _ = run(method, pool, round_index=2)
    assert a["sample_id"].tolist() != b["sample_id"].tolist()
    assert a["sample_id"].tolist() != c["sample_id"].tolist()


@pytest.mark.parametrize("method", ["p3", "static", "spl"])
def test_thresholded_strategies_pick_only_eligible(method, pool):
    scores = pool[0]
    for e in range(3):
        sel, info = run(method, pool, round_index=e)
        mask, tau = pacing.eligible(scores["difficulty"].to_numpy(), e, 3)
        eligible_ids = set(scores["sample_id"][mask])
        assert set(sel["sample_id"]) <= eligible_ids
        assert info["threshold"] == tau and (sel["threshold"] == tau).all()
        assert info["percentile"] == pytest.approx(45 + 50 * e / 3)
        assert info["eligible"] == mask.sum()
        assert np.isfinite(sel["difficulty"]).all() and (sel["difficulty"] <= tau).all()


def test_p3_and_static_are_the_same_rule(pool):
    a, ia = run("p3", pool)
    b, ib = run("static", pool)
    pd.testing.assert_frame_equal(a, b)
    assert ia == ib and math.isfinite(ia["dpp_log_det"])


def test_p3_prefers_harder_samples_inside_the_eligible_set(pool):
    p3, _ = run("p3", pool)
    spl, _ = run("spl", pool)
    assert p3["difficulty"].mean() > spl["difficulty"].mean()


def test_dpp_covers_more_clusters_than_picking_by_quality(pool):
    scores, embeddings, labels = pool
    finite = np.isfinite(scores["difficulty"].to_numpy())
    # give one cluster all the high qualities: quality order alone would stay inside it
    d = np.where(labels == 0, 0.6, 0.5) + np.random.default_rng(1).uniform(0, 0.05, N)
    d[~finite] = np.inf
    skewed = scores.assign(difficulty=d)
    sel, _ = run_strategy(
        "dpp", skewed, embeddings, round_index=0, rounds=1, budget=CLUSTERS, seed=0
    )
    by_quality = np.argsort(-np.where(finite, d, -1))[:CLUSTERS]
    picked = labels[scores["sample_id"].isin(sel["sample_id"]).to_numpy()]
    assert len(set(labels[by_quality])) == 1
    assert len(set(picked)) >= CLUSTERS - 1


def test_dpp_method_uses_the_whole_finite_pool(pool):
    sel, info = run("dpp", pool, budget=1.0)
    assert info["eligible"] == N - 12 and len(sel) == N - 12
    assert np.isfinite(sel["difficulty"]).all() and sel["threshold"].isna().all()
    assert info["shortfall"] == 12 and math.isnan(info["percentile"])


def test_shortfall_takes_all_eligible_and_is_recorded(pool, caplog):
    scores = pool[0]
    mask, _ = pacing.eligible(scores["difficulty"].to_numpy(), 0, 3)
    with caplog.at_level(logging.WARNING, logger="p3_pruning.strategies"):
        sel, info = run("p3", pool, round_index=0, budget=300)
    assert len(sel) == mask.sum() == info["eligible"] == info["selected"]
    assert info["shortfall"] == 300 - mask.sum() and "shortfall" in caplog.text
    assert set(sel["sample_id"]) == set(scores["sample_id"][mask])


@pytest.mark.parametrize("method", ["p3", "spl", "dpp"])
def test_equal_difficulties_are_reported(pool, caplog, method):
    # a model collapsed to uniform predictions gives every sample the same difficulty
    scores, embeddings, _ = pool
    flat = scores.assign(difficulty=np.where(np.isfinite(scores["difficulty"]), 0.9999, np.inf))
    with caplog.at_level(logging.WARNING, logger="p3_pruning.strategies"):
        run(method, (flat, embeddings, None))
    assert f"{method} round 2: all 388 finite difficulties are equal (0.9999)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="p3_pruning.strategies"):
        run(method, pool)
    assert "are equal" not in caplog.text


def test_ridge_zero_reruns_the_dpp_until_the_budget_is_met(pool):
    sel, info = run("p3", pool, budget=50, ridge=0.0)
    assert len(sel) == 50 and sel["sample_id"].is_unique
    assert info["dpp_stopped_early"] == 1 and info["dpp_passes"] >= 50 // D
    sel, info = run("p3", pool, budget=50)
    assert info["dpp_stopped_early"] == 0 and info["dpp_passes"] == 1


def test_stochastic_dpp_mode_is_deterministic_and_eligible(pool):
    a, ia = run("p3", pool, dpp_mode="stochastic")
    b, _ = run("p3", pool, dpp_mode="stochastic")
    exact, ie = run("p3", pool)
    pd.testing.assert_frame_equal(a, b)
    assert (a["difficulty"] <= ia["threshold"]).all()
    assert abs(ia["dpp_log_det"] - ie["dpp_log_det"]) <= 0.05 * abs(ie["dpp_log_det"])
    assert len(exact) == len(a) == 60


def test_curriculum_windows_widen_to_the_whole_pool(pool):
    scores = pool[0]
    d = scores["difficulty"].to_numpy()
    thresholds = []
    for e in range(4):
        sel, info = run("curriculum", pool, round_index=e, rounds=4, start=25)
        w = 25 + 75 * e / 3
        assert info["percentile"] == pytest.approx(w) == curriculum_percentile(e, 4, start=25)
        assert info["threshold"] == pytest.approx(np.percentile(d[np.isfinite(d)], w))
        assert (sel["difficulty"] <= info["threshold"]).all()
        thresholds.append(info["threshold"])
    assert thresholds == sorted(thresholds) and thresholds[-1] == d[np.isfinite(d)].max()
    assert curriculum_percentile(0, 1, start=25) == 100.0


def test_random_ignores_scores_and_full_takes_everything(pool):
    scores, embeddings, _ = pool
    sel, info = run_strategy("random", scores, None, round_index=0, rounds=2, budget=0.25, seed=3)
    assert len(sel) == 100 and sel["threshold"].isna().all()
    sel, info = run_strategy("full", scores, None, round_index=0, rounds=2, budget=5, seed=3)
    assert sorted(sel["sample_id"]) == sorted(scores["sample_id"]) and info["budget"] == N
    assert sel["sample_id"].tolist() != scores["sample_id"].tolist()  # shuffled


def test_random_and_full_accept_a_never_scored_pool(pool):
    scores = pool[0].assign(difficulty=np.nan)
    for method, size in (("random", 30), ("full", N)):
        sel, info = run_strategy(method, scores, None, round_index=0, rounds=1, budget=30, seed=0)
        assert len(sel) == size and sel["sample_id"].is_unique
        assert sel["difficulty"].isna().all() and info["finite"] == 0
    with pytest.raises(ValueError, match="NaN"):
        run_strategy("spl", scores, None, round_index=0, rounds=1, budget=30, seed=0)


def test_trend_term_from_previous_scores_table(pool):
    scores = pool[0]
    rng = np.random.default_rng(2)
    previous = scores.assign(difficulty=scores["difficulty"] + rng.normal(0, 0.2, N))
    previous = previous.sample(frac=1.0, random_state=0)  # row order must not matter
    sel, info = run("spl", pool, alpha=0.5, previous=previous)
    prev_aligned = previous.set_index("sample_id")["difficulty"][scores["sample_id"]].to_numpy()
    mask, tau = pacing.eligible(
        scores["difficulty"].to_numpy(), 1, 3, previous=prev_aligned, alpha=0.5
    )
    assert info["threshold"] == pytest.approx(tau)
    assert set(sel["sample_id"]) <= set(scores["sample_id"][mask])


def test_all_failed_scores_select_nothing(pool):
    scores, embeddings, _ = pool
    failed = scores.assign(difficulty=np.inf)
    for method in ("p3", "spl", "dpp", "curriculum"):
        sel, info = run_strategy(
            method, failed, embeddings, round_index=0, rounds=2, budget=10, seed=0
        )
        assert len(sel) == 0 and info["eligible"] == 0 and info["shortfall"] == 10
        assert list(sel.columns) == SELECTION_COLUMNS


def test_select_returns_the_table_of_run_strategy(pool):
    scores, embeddings, _ = pool
    kw = dict(round_index=0, rounds=2, budget=20, seed=1)
    pd.testing.assert_frame_equal(
        select("p3", scores, embeddings, **kw), run_strategy("p3", scores, embeddings, **kw)[0]
    )


def test_budget_resolution():
    assert resolve_budget(30, 100) == 30
    assert resolve_budget(0.25, 10) == 3 and resolve_budget(0.01, 10) == 1
    assert resolve_budget(1.0, 7) == 7 and resolve_budget(0.5, 0) == 0
    for bad in (-1, 0.0, 1.5, True, "10"):
        with pytest.raises(ValueError, match="budget"):
            resolve_budget(bad, 10)


def test_dpp_features_are_zscored_and_unit_rows():
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 6)).astype(np.float32) * [1, 10, 100, 1, 1, 1] + 5
    X[:, 5] = 3.0  # constant column
    F = dpp_features(X)
    assert F.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(F, axis=1), 1.0, rtol=1e-5)
    assert np.all(F[:, 5] == 0)
    Z = (X[:, :5] - X[:, :5].mean(0)) / X[:, :5].std(0)
    np.testing.assert_allclose(F[:, :5], Z / np.linalg.norm(Z, axis=1, keepdims=True), atol=1e-5)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(method="p4"), "method"),
        (dict(start_pct=40), "unknown selection options"),
        (dict(scores=pd.DataFrame({"sample_id": ["a"]})), "difficulty"),
        (dict(scores=pd.DataFrame({"sample_id": ["a", "a"], "difficulty": [0.1, 0.2]})), "dup"),
        (dict(scores=pd.DataFrame({"sample_id": ["a"], "difficulty": [np.nan]})), "NaN"),
        (dict(embeddings=np.zeros((3, 4))), "embeddings"),
        (dict(embeddings=None), "embeddings"),
        (dict(round_index=5), "round_index"),
        (dict(seed=-1), "seed"),
        (dict(budget=2.0), "budget"),
    ],
)
def test_bad_input_is_named(pool, change, match):
    scores, embeddings, _ = pool
    args = dict(
        method="p3",
        scores=scores,
        embeddings=embeddings,
        round_index=0,
        rounds=2,
        budget=10,
        seed=0,
    )
    args.update(change)
    method, scores, embeddings = args.pop("method"), args.pop("scores"), args.pop("embeddings")
    with pytest.raises(ValueError, match=match):
        run_strategy(method, scores, embeddings, **args)
