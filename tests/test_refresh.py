"""Incremental refresh and candidates that keep the budget, on synthetic difficulties (no model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from p3_pruning import pacing, strategies
from p3_pruning.refresh import incremental_scores, score_until_admitted, stale_values

N = 300


def _table(ids, difficulty, status=None) -> pd.DataFrame:
    d = np.asarray(difficulty, dtype=float)
    return pd.DataFrame(
        {
            "sample_id": ids,
            "round": 1,
            "difficulty": d,
            "n_actions": 2,
            "n_tokens": 10,
            "action_probs": [[1 - x, 1 - x] for x in d],
            "status": status if status is not None else ["ok"] * len(d),
            "reason": "",
            "truncated": False,
        }
    )


class Policy:
    """The 'current model': every sample's true difficulty now; counts what it is asked to score."""

    def __init__(self, truth: np.ndarray, ids):
        self.truth, self.ids, self.calls = truth, np.asarray(ids), []

    def __call__(self, rows):
        rows = np.asarray(rows)
        self.calls.append(rows)
        emb = np.tile(self.truth[rows, None], (1, 3)).astype(np.float32)
        return _table(self.ids[rows], self.truth[rows]), emb


@pytest.fixture()
def world():
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in range(N)]
    old = rng.uniform(0.2, 0.8, N)  # last round's scores
    truth = old - 0.05 + rng.normal(0, 0.01, N)  # the policy learnt: everything 0.05 easier
    trained = rng.choice(N, 60, replace=False)
    # training-pass values: read mid-round (between old and now), so they too are stale
    train = _table([ids[i] for i in trained], truth[trained] + 0.02).assign(step=0)
    status = ["ok"] * N
    status[5] = "not_candidate"
    status[6] = "too_long"
    old[[5, 6]] = np.inf
    return ids, old, truth, trained, train, status


def test_stale_values_take_the_training_pass_for_trained_samples(world):
    ids, old, truth, trained, train, status = world
    stale = stale_values(_table(ids, old, status), train, round_index=1)
    assert (stale.loc[trained, "kind"] == "train_pass").all()
    np.testing.assert_allclose(stale.loc[trained, "difficulty"], truth[trained] + 0.02)
    assert stale.loc[5, "kind"] == "unscored" and stale.loc[6, "kind"] == "failed"
    assert (stale.loc[trained, "measured_round"] == 1).all()


def test_incremental_rescores_the_band_a_drift_sample_and_the_unscored_only(world):
    ids, old, truth, trained, train, status = world
    policy = Policy(truth, ids)
    p = pacing.percentile(1, 3)
    scores, emb, info = incremental_scores(
        _table(ids, old, status),
        np.zeros((N, 3), np.float32),
        train,
        policy,
        percentile=p,
        round_index=1,
        seed=0,
    )
    rescored = np.concatenate(policy.calls)
    assert len(set(rescored)) == len(rescored) == info["score_rescored"]
    assert info["score_rescored"] < 0.45 * N  # the point: most of the pool is not rescored
    assert 5 in rescored and 6 not in rescored  # never scored: rescored; failed encoding: kept
    assert scores.loc[6, "status"] == "too_long" and np.isinf(scores.loc[6, "difficulty"])
    # the reasons add up, and each row says where its value came from
    counts = scores["measured"].value_counts()
    assert counts.sum() == N
    assert info["score_rescored"] == sum(counts.get(r, 0) for r in ("margin", "drift", "unscored"))
    assert counts["margin"] >= 0.2 * N * 0.9  # the band: about 2 × 10 percentile points
    assert info["score_rescored_drift"] >= 8 * 2
    # the drift of each kind is measured (truth − stale: −0.05 for old scores, −0.02 train pass)
    assert info["score_drift_reused"] == pytest.approx(-0.05, abs=0.01)
    assert info["score_drift_train_pass"] == pytest.approx(-0.02, abs=0.01)
    # rescored rows carry the fresh value and embedding, the others the shifted stale value
    fresh = scores["measured"].isin(["margin", "drift", "unscored"]).to_numpy()
    np.testing.assert_allclose(scores.loc[fresh, "difficulty"], truth[fresh])
    np.testing.assert_allclose(emb[fresh, 0], truth[fresh], rtol=1e-6)
    assert (emb[~fresh] == 0).all()
    assert (scores.loc[fresh, "measured_round"] == 2).all()
    # the eligible set is (almost) that of a full rescoring
    finite = np.isfinite(scores["difficulty"].to_numpy())
    full = truth.copy()
    full[[5, 6]] = [truth[5], np.inf]
    mask_inc, _ = pacing.eligible(scores["difficulty"].to_numpy(), 1, 3)
    mask_full, _ = pacing.eligible(full, 1, 3)
    agree = (mask_inc == mask_full)[finite].mean()
    assert agree > 0.97, agree


def test_incremental_is_seeded(world):
    ids, old, truth, trained, train, status = world
    runs = []
    for seed in (0, 0, 1):
        policy = Policy(truth, ids)
        incremental_scores(
            _table(ids, old, status),
            np.zeros((N, 3)),
            train,
            policy,
            percentile=70,
            round_index=1,
            seed=seed,
        )
        runs.append(np.sort(np.concatenate(policy.calls)))
    assert np.array_equal(runs[0], runs[1]) and not np.array_equal(runs[0], runs[2])


@pytest.mark.parametrize(
    ("candidates", "budget", "round_index"), [(0.5, 60, 0), (0.2, 40, 0), (0.3, 90, 1)]
)
def test_candidates_keep_the_budget_while_the_pool_can_cover_it(candidates, budget, round_index):
    rng = np.random.default_rng(3)
    ids = np.array([f"s{i}" for i in range(150)])
    truth = rng.uniform(0, 1, 150)
    rounds = 2
    p = pacing.percentile(round_index, rounds)
    assert p / 100 * 150 >= budget  # the pool covers the budget
    first = np.sort(rng.choice(150, int(candidates * 150), replace=False))
    policy = Policy(truth, ids)
    rows, scores, emb, extensions = score_until_admitted(
        150, first, policy, percentile=p, k=budget, seed=0, round_index=round_index
    )
    assert extensions >= 1  # the first candidates alone would have left a shortfall
    assert np.array_equal(rows, np.sort(rows)) and set(first) <= set(rows)
    np.testing.assert_array_equal(scores["sample_id"], ids[rows])
    # the round as the pipeline runs it: the rest +inf, threshold, DPP pick
    d = np.full(150, np.inf)
    d[rows] = truth[rows]
    table = _table(ids, d)
    features = np.zeros((150, 3), np.float32)
    features[rows] = emb
    features[:, 1] = rng.normal(size=150)  # some spread for the DPP
    eligible, _ = strategies.threshold("p3", table, round_index=round_index, rounds=rounds)
    _, info = strategies.pick(
        "p3",
        table,
        features,
        eligible=eligible,
        round_index=round_index,
        rounds=rounds,
        budget=budget,
        seed=0,
    )
    assert info["shortfall"] == 0 and info["selected"] == budget


def test_candidates_stop_at_the_pool_when_it_cannot_cover_the_budget():
    truth = np.linspace(0, 1, 50)
    policy = Policy(truth, [f"s{i}" for i in range(50)])
    rows, _, _, _ = score_until_admitted(
        50, np.arange(10), policy, percentile=45, k=40, seed=0, round_index=0
    )
    assert np.array_equal(rows, np.arange(50))  # everything scored, no row twice
    assert sum(len(c) for c in policy.calls) == 50
