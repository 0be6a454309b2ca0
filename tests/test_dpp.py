import logging
import math

import numpy as np
import pytest
import torch

from p3_pruning import dpp
from p3_pruning.dpp import greedy_map

torch.set_num_threads(2)


def dense_reference_check(F, q, ridge, picks, k, *, tie_tol=1e-6, stop_tol=1e-10):
    """Chen, Zhang & Zhou (2018) fast greedy MAP on the dense kernel, replayed along ``picks``.

    Builds L = diag(q)(F Fᵀ + ridge I)diag(q) (n, n) and keeps the Cholesky rows C (t, n) and the
    residual gains d² (n,). At every step the candidate under test must be the reference's argmax,
    or tie with it: |log d²_mine − log d²_best| ≤ tie_tol. A run shorter than k must end where the
    reference has nothing left above ``stop_tol`` (relative to max L_ii). Returns log det L_S.
    """
    F = np.asarray(F, dtype=np.float64)
    n = len(q)
    L = q[:, None] * (F @ F.T + ridge * np.eye(n)) * q[None, :]
    C = np.zeros((max(len(picks), 1), n))
    d2 = np.diag(L).copy()
    scale = d2.max()
    chosen = np.zeros(n, dtype=bool)
    for t, j in enumerate(picks):
        assert not chosen[j], f"item {j} picked twice"
        avail = np.where(chosen, -np.inf, d2)
        best = int(np.argmax(avail))
        assert d2[best] > stop_tol * scale, f"step {t}: the reference would have stopped"
        if j != best:
            assert d2[j] > 0 and abs(math.log(d2[j]) - math.log(d2[best])) <= tie_tol, (
                f"step {t}: picked {j} (gain {d2[j]:.12g}) but the best is {best} "
                f"(gain {d2[best]:.12g})"
            )
        e = (L[j] - C[:t].T @ C[:t, j]) / math.sqrt(d2[j])
        C[t] = e
        d2 = d2 - e**2
        chosen[j] = True
    if len(picks) < k and not chosen.all():
        rest = d2[~chosen]
        assert rest.max() <= 1e-8 * scale, f"stopped at {len(picks)} with gain {rest.max()} left"
    if len(picks) == 0:
        return 0.0
    sign, logdet = np.linalg.slogdet(L[np.ix_(picks, picks)])
    assert sign > 0
    return logdet


def unit_rows(rng, n, d):
    F = rng.standard_normal((n, d))
    return F / np.linalg.norm(F, axis=1, keepdims=True)


def quality_with_ties_and_zeros(rng, n):
    q = rng.choice([0.25, 0.5, 0.75, 1.0], size=n)  # heavy ties
    untied = rng.random(n) < 0.3
    q[untied] = rng.uniform(0.1, 1.0, size=untied.sum())
    q[rng.random(n) < 0.15] = 0.0
    return q


@pytest.mark.parametrize(
    "n, d, k, ridge",
    [
        (60, 8, 40, 1e-3),
        (60, 8, 40, 0.0),
        (400, 24, 150, 1e-3),
        (400, 24, 150, 0.0),
        (400, 24, 150, 0.1),
        (2000, 48, 120, 1e-3),
        (2000, 16, 60, 0.0),
    ],
)
def test_matches_dense_chen_reference(n, d, k, ridge):
    rng = np.random.default_rng(n + d + int(ridge * 1e4))
    F = unit_rows(rng, n, d)
    q = quality_with_ties_and_zeros(rng, n)
    idx, log_det, info = greedy_map(F, q, k, ridge=ridge, return_info=True)
    assert idx.dtype == np.int64 and len(set(idx.tolist())) == len(idx)
    ref_log_det = dense_reference_check(F, q, ridge, idx.tolist(), k)
    assert log_det == pytest.approx(ref_log_det, rel=1e-9, abs=1e-7)
    if ridge == 0:
        assert len(idx) == min(d, (q > 0).sum()) and info["stop_reason"] == "rank"
        assert info["stopped_early"]
    else:
        assert len(idx) == k and not info["stopped_early"] and info["stop_reason"] == "budget"


def test_matches_reference_with_unnormalised_features_and_uniform_quality():
    rng = np.random.default_rng(7)
    F = rng.standard_normal((300, 12)) * rng.uniform(0.1, 3.0, size=(300, 1))
    idx, log_det = greedy_map(F, None, 100, ridge=0.05)
    assert log_det == pytest.approx(
        dense_reference_check(F, np.ones(300), 0.05, idx.tolist(), 100), rel=1e-9
    )


@pytest.mark.parametrize("lazy_top", [(2, 10**9, 2), (10**6, 1, 10**6)])
def test_blocked_updates_do_not_change_the_picks(monkeypatch, lazy_top):
    # a tiny lazy set forces early refreshes; a huge one tracks every item between refreshes
    rng = np.random.default_rng(11)
    F = unit_rows(rng, 700, 12)
    q = quality_with_ties_and_zeros(rng, 700)
    expected, ld = greedy_map(F, q, 200)
    monkeypatch.setattr(dpp, "_LAZY_TOP", lazy_top)
    got, ld2 = greedy_map(F, q, 200)
    dense_reference_check(F, q, 1e-3, got.tolist(), 200)
    assert ld2 == pytest.approx(ld, rel=1e-9)


def test_float32_input_matches_reference_up_to_float32_ties():
    rng = np.random.default_rng(3)
    F = unit_rows(rng, 500, 32).astype(np.float32)
    q = rng.uniform(0.2, 1.0, 500)
    idx, log_det = greedy_map(F, q, 200, ridge=1e-3)
    ref = dense_reference_check(F.astype(np.float64), q, 1e-3, idx.tolist(), 200, tie_tol=1e-4)
    assert log_det == pytest.approx(ref, rel=1e-6)


def test_zero_quality_items_come_last_then_greedy_stops_and_reports(caplog):
    rng = np.random.default_rng(1)
    F = unit_rows(rng, 100, 10)
    q = np.where(np.arange(100) % 2 == 0, 0.0, rng.uniform(0.5, 1, 100))
    with caplog.at_level(logging.WARNING, logger="p3_pruning.dpp"):
        idx, log_det, info = greedy_map(F, q, 80, ridge=1e-3, return_info=True)
    assert len(idx) == 50 and (q[idx] > 0).all()
    assert info == {**info, "stopped_early": True, "stop_reason": "quality", "selected": 50}
    assert "quality" in caplog.text
    assert math.isfinite(log_det)


def test_rank_stop_is_logged(caplog):
    F = unit_rows(np.random.default_rng(2), 50, 5)
    with caplog.at_level(logging.WARNING, logger="p3_pruning.dpp"):
        idx, _, info = greedy_map(F, None, 20, ridge=0.0, return_info=True)
    assert len(idx) == 5 and info["stop_reason"] == "rank" and "rank" in caplog.text
    # the default 2-tuple
    out = greedy_map(F, None, 3)
    assert len(out) == 2 and len(out[0]) == 3


def test_ties_go_to_the_lowest_index():
    F = np.eye(6)[[0, 1, 0, 1, 2, 2]]  # duplicates tie exactly
    idx, _ = greedy_map(F, None, 3, ridge=0.0)
    assert idx.tolist() == [0, 1, 4]


def test_k_larger_than_pool_and_k_zero():
    F = unit_rows(np.random.default_rng(4), 10, 4)
    idx, _, info = greedy_map(F, None, 25, return_info=True)
    assert sorted(idx.tolist()) == list(range(10)) and info["stop_reason"] == "pool"
    idx, log_det = greedy_map(F, None, 0)
    assert len(idx) == 0 and log_det == 0.0


def test_accepts_tensors_that_require_grad_and_empty_pools():
    F = torch.randn(30, 5, requires_grad=True)
    idx, _ = greedy_map(F, torch.rand(30), 4)
    assert len(idx) == 4
    idx, log_det, info = greedy_map(np.zeros((0, 5)), None, 3, return_info=True)
    assert len(idx) == 0 and log_det == 0.0 and info["stop_reason"] == "pool"


def test_never_builds_the_n_by_n_kernel():
    # a dense kernel for n = 300,000 would need 720 GB
    F = np.random.default_rng(5).standard_normal((300_000, 4), dtype=np.float32)
    idx, log_det = greedy_map(F, None, 6, ridge=1e-3)
    assert len(idx) == 6 and math.isfinite(log_det)


def test_diversity_covers_more_clusters_than_top_quality():
    rng = np.random.default_rng(6)
    centres = unit_rows(rng, 10, 32) * 5
    labels = np.repeat(np.arange(10), 40)
    F = centres[labels] + rng.standard_normal((400, 32)) * 0.3
    q = 1.0 - 0.05 * labels + rng.uniform(0, 0.01, 400)  # cluster 0 has the best quality
    top = np.argsort(-q)[:10]
    idx, _ = greedy_map(F, q, 10)
    assert len(set(labels[top])) == 1
    assert len(set(labels[idx])) >= 9


@pytest.mark.parametrize("ridge", [1e-3, 0.0])
def test_stochastic_is_deterministic_per_seed_and_close_to_exact(ridge):
    rng = np.random.default_rng(8)
    F = unit_rows(rng, 3000, 16).astype(np.float32)
    q = rng.uniform(0.5, 1.0, 3000)
    q[:100] = 0.0
    k = 300 if ridge else 50
    a, la, info = greedy_map(F, q, k, ridge=ridge, mode="stochastic", seed=1, return_info=True)
    b, lb = greedy_map(F, q, k, ridge=ridge, mode="stochastic", seed=1)
    c, _ = greedy_map(F, q, k, ridge=ridge, mode="stochastic", seed=2)
    np.testing.assert_array_equal(a, b)
    assert la == lb and not np.array_equal(a, c)
    assert len(set(a.tolist())) == len(a) and (q[a] > 0).all()
    assert info["sample_size"] == math.ceil(3000 / k * math.log(100))
    _, le = greedy_map(F, q, k, ridge=ridge)
    if ridge:
        assert len(a) == k
        assert abs(la - le) <= 0.05 * abs(le)
    else:
        assert len(a) == 16 and info["stop_reason"] == "rank"
    # its log det is the true log det of its picks, in float64 (the u's a block takes from its
    # float32 product are made exact at the block's end: left as they are, this is off by ~1e-7)
    assert la == pytest.approx(_logdet(F, q, ridge, a), rel=1e-10)


@pytest.mark.parametrize(
    "n, k, dtype, saves",
    [(3000, 600, np.float32, True), (1500, 400, np.float64, True), (300, 290, np.float32, False)],
)
def test_stochastic_lazy_subsets_give_the_same_picks_with_fewer_evaluations(
    monkeypatch, n, k, dtype, saves
):
    # the gain bounds may only skip candidates that cannot be a subset's best; the last case runs
    # out of pool (m <= sample size: every remaining item is a candidate at every step). Subsets
    # are drawn alike either way, so the runs agree up to a float32 near-tie.
    rng = np.random.default_rng(12)
    F = unit_rows(rng, n, 16).astype(dtype)
    q = quality_with_ties_and_zeros(rng, n)
    evaluated = []
    project_rows = dpp._Projector.project_rows  # every quadratic form against P goes through it

    def counting(self, G):
        evaluated.append(G.shape[0])
        return project_rows(self, G)

    monkeypatch.setattr(dpp._Projector, "project_rows", counting)
    runs = {}
    for lazy in (True, False):
        monkeypatch.setattr(dpp, "_LAZY_STOCHASTIC", lazy)
        evaluated.clear()
        runs[lazy] = (
            greedy_map(F, q, k, mode="stochastic", seed=5, return_info=True),
            sum(evaluated),
        )
    (lazy_out, lazy_rows), (full_out, full_rows) = runs[True], runs[False]
    a, b = lazy_out[0], full_out[0]
    assert lazy_out[2] == full_out[2] and len(a) == len(b)
    if dtype == np.float64:
        np.testing.assert_array_equal(a, b)
        assert lazy_out[1] == full_out[1]
    else:  # float32 products of other shapes round differently: a split only at a near-tie
        split = np.flatnonzero(a != b)
        if split.size:
            i = int(split[0])
            ga, gb = (_gain_after(F, q, 1e-3, a[:i], j) for j in (a[i], b[i]))
            assert abs(ga - gb) <= 1e-4 * max(ga, gb), (i, ga, gb)
    assert lazy_rows < 0.8 * full_rows if saves else lazy_rows <= full_rows


@pytest.mark.parametrize("rows", [10**6, 450])
def test_stochastic_with_whole_pool_subsets_is_exact_greedy(monkeypatch, rows):
    # a tiny delta makes every subset the whole remaining pool, so stochastic greedy must pick as
    # exact greedy does; a small row budget splits the blocks between flushes (3 subsets each)
    monkeypatch.setattr(dpp, "_SUBSET_ROWS", rows)
    rng = np.random.default_rng(13)
    F = unit_rows(rng, 150, 10)
    q = quality_with_ties_and_zeros(rng, 150)
    idx, log_det, info = greedy_map(F, q, 60, mode="stochastic", delta=1e-30, return_info=True)
    assert info["sample_size"] >= 150
    ref = dense_reference_check(F, q, 1e-3, idx.tolist(), 60)
    assert len(idx) == 60 and log_det == pytest.approx(ref, rel=1e-9)


def _gain_after(F, q, ridge, prefix, j):
    """q_j² times the residual of item j in F Fᵀ + ridge·I after the items ``prefix`` (float64)."""
    G, f = F[prefix].astype(np.float64), F[j].astype(np.float64)
    kS = G @ f
    r = f @ f + ridge - kS @ np.linalg.solve(G @ G.T + ridge * np.eye(len(prefix)), kS)
    return q[j] ** 2 * r


def _logdet(F, q, ridge, idx):
    G = F[idx].astype(np.float64)
    L = q[idx, None] * (G @ G.T + ridge * np.eye(len(idx))) * q[None, idx]
    return np.linalg.slogdet(L)[1]


@pytest.mark.parametrize("mode", ["exact", "stochastic"])
def test_torch_code_path_gives_the_same_picks(monkeypatch, mode):
    # the code path CUDA takes, run on CPU tensors
    rng = np.random.default_rng(9)
    F = unit_rows(rng, 800, 20)
    q = quality_with_ties_and_zeros(rng, 800)
    for features in (F, F.astype(np.float32)):
        expected = greedy_map(features, q, 50, mode=mode, seed=3, return_info=True)
        monkeypatch.setattr(dpp, "_NUMPY_ON_CPU", False)
        got = greedy_map(torch.as_tensor(features), q, 50, mode=mode, seed=3, return_info=True)
        monkeypatch.setattr(dpp, "_NUMPY_ON_CPU", True)
        np.testing.assert_array_equal(got[0], expected[0])
        assert got[1] == pytest.approx(expected[1], rel=1e-9)
        assert got[2] == expected[2]


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((np.zeros(5), None, 2), {}, "2-D"),
        ((np.zeros((5, 2)), np.ones(4), 2), {}, "quality"),
        ((np.zeros((5, 2)), -np.ones(5), 2), {}, "quality"),
        ((np.full((5, 2), np.nan), None, 2), {}, "row 0"),
        ((np.zeros((5, 2)), None, -1), {}, "k"),
        ((np.zeros((5, 2)), None, 2), {"ridge": -1.0}, "ridge"),
        ((np.zeros((5, 2)), None, 2), {"mode": "lazy"}, "mode"),
        ((np.zeros((5, 2)), None, 2), {"mode": "stochastic", "delta": 1.5}, "delta"),
    ],
)
def test_bad_arguments_are_named(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        greedy_map(*args, **kwargs)
