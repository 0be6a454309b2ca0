import hashlib
import logging
import math

import numpy as np
import pytest
import torch

from p3_pruning.dpp import exact_greedy, greedy_map, greedy_map_reference, log_det_path
from p3_pruning.dpp import kernel as dpp_kernel
from p3_pruning.dpp.kernel import Kernel
from p3_pruning.dpp.stochastic import sample_size, stochastic_greedy

torch.set_num_threads(2)


def replay_reference(F, q, ridge, picks, k, *, tie_tol=1e-6):
    """``greedy_map_reference`` along ``picks``: each must be the reference's argmax at its step or
    tie with it (|log gain − log best| ≤ tie_tol), and the run must end where the reference stops
    (a step past the picks takes the reference's own argmax). Returns the reference's log det."""

    def choose(t, gain):
        best = int(np.argmax(gain))
        if t >= len(picks):
            return best
        j = int(picks[t])
        assert gain[j] > 0 and abs(math.log(gain[j]) - math.log(gain[best])) <= tie_tol, (
            f"step {t}: picked {j} (gain {gain[j]:.12g}) but the best is {best} "
            f"(gain {gain[best]:.12g})"
        )
        return j

    idx, log_det = greedy_map_reference(F, q, k, ridge=ridge, choose=choose)
    np.testing.assert_array_equal(idx, picks)
    return log_det


def assert_same_picks_up_to_ties(F, q, ridge, got, expected, rel=1e-4):
    """``got`` and ``expected`` agree, or split first where the two picks' gains (in float64 after
    the common prefix) are within ``rel`` of each other: a floating-point near-tie."""
    split = np.flatnonzero(got[: len(expected)] != expected[: len(got)])
    if split.size == 0:
        assert len(got) == len(expected)
        return
    i = int(split[0])
    ga, gb = (_gain_after(F, q, ridge, got[:i], j) for j in (got[i], expected[i]))
    assert abs(ga - gb) <= rel * max(ga, gb), (i, ga, gb)


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
    ref_log_det = replay_reference(F, q, ridge, idx, k)  # quality ties: near-ties of gains
    assert log_det == pytest.approx(ref_log_det, rel=1e-9, abs=1e-7)
    assert ref_log_det == pytest.approx(_logdet(F, q, ridge, idx), rel=1e-9, abs=1e-7)
    if ridge == 0:
        assert len(idx) == min(d, (q > 0).sum()) and info["stop_reason"] == "rank"
        assert info["stopped_early"]
    else:
        assert len(idx) == k and not info["stopped_early"] and info["stop_reason"] == "budget"


@pytest.mark.parametrize("ridge", [1e-3, 0.0])
def test_reference_is_greedy_on_determinants(ridge):
    # the reference against the definition: each step adds the item that maximises det(L_S+i)
    rng = np.random.default_rng(14)
    F = unit_rows(rng, 25, 6)
    q = quality_with_ties_and_zeros(rng, 25)
    idx, log_det = greedy_map_reference(F, q, 12, ridge=ridge)
    chosen: list[int] = []
    while len(chosen) < (12 if ridge else 6):  # rank(F) = 6: with ridge 0 greedy MAP stops there
        best = max(
            (i for i in range(25) if i not in chosen and q[i] > 0),
            key=lambda i: _logdet(F, q, ridge, np.array(chosen + [i])),
        )
        chosen.append(best)
    assert idx.tolist() == chosen
    assert log_det == pytest.approx(_logdet(F, q, ridge, idx), rel=1e-9)


def test_matches_reference_with_unnormalised_features_and_uniform_quality():
    rng = np.random.default_rng(7)
    F = rng.standard_normal((300, 12)) * rng.uniform(0.1, 3.0, size=(300, 1))
    idx, log_det = greedy_map(F, None, 100, ridge=0.05)
    ref_idx, ref_log_det = greedy_map_reference(F, None, 100, ridge=0.05)
    np.testing.assert_array_equal(idx, ref_idx)
    assert log_det == pytest.approx(ref_log_det, rel=1e-9)


def test_picks_are_those_recorded_before_the_stochastic_mode_moved_to_its_own_module():
    # float64 picks and log det of the code as it stood before dpp.py was split (sha256 of the
    # int64 indices); a change of picks or rounding shows here first
    rng = np.random.default_rng(21)
    F = unit_rows(rng, 1500, 24)
    q = rng.uniform(0.1, 1.0, 1500)
    recorded = {
        "exact": ("26a7588ac608d224", [934, 697, 525, 1081], -1908.8925730157468),
        "stochastic": ("44bfa89baffd3a30", [507, 1414, 1283, 737], -1915.6964544804068),
    }
    for mode, (digest, first, ld) in recorded.items():
        idx, log_det = greedy_map(F, q, 300, mode=mode, seed=4)
        assert idx[:4].tolist() == first
        assert hashlib.sha256(idx.tobytes()).hexdigest()[:16] == digest, mode
        assert log_det == pytest.approx(ld, rel=1e-12)


@pytest.mark.parametrize("lazy_top", [(2, 10**9, 2), (10**6, 1, 10**6)])
def test_blocked_updates_do_not_change_the_picks(lazy_top):
    # a tiny lazy set forces early refreshes; a huge one tracks every item between refreshes
    rng = np.random.default_rng(11)
    F = unit_rows(rng, 700, 12)
    q = quality_with_ties_and_zeros(rng, 700)
    expected, ld = greedy_map(F, q, 200)
    got, ld2, reason = exact_greedy(Kernel.build(F, q, ridge=1e-3), 200, lazy_top=lazy_top)
    np.testing.assert_array_equal(got, expected)
    replay_reference(F, q, 1e-3, got, 200)
    assert ld2 == pytest.approx(ld, rel=1e-9) and reason == "budget"


def test_float32_input_matches_reference_up_to_float32_ties():
    rng = np.random.default_rng(3)
    F = unit_rows(rng, 500, 32).astype(np.float32)
    q = rng.uniform(0.2, 1.0, 500)
    idx, log_det = greedy_map(F, q, 200, ridge=1e-3)
    ref = replay_reference(F.astype(np.float64), q, 1e-3, idx, 200, tie_tol=1e-4)
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


def test_memory_mapped_features_are_read_in_place(tmp_path):
    rng = np.random.default_rng(15)
    F = unit_rows(rng, 2000, 16).astype(np.float32)
    q = rng.uniform(0.1, 1.0, 2000)
    np.save(tmp_path / "features.npy", F)
    mapped = np.load(tmp_path / "features.npy", mmap_mode="r")
    kernel = Kernel.build(mapped, q, ridge=1e-3)
    assert np.shares_memory(kernel.F, mapped)  # no copy of the features
    for mode in ("exact", "stochastic"):
        idx, log_det = greedy_map(mapped, q, 200, mode=mode)
        idx_mem, log_det_mem = greedy_map(F, q, 200, mode=mode)
        np.testing.assert_array_equal(idx, idx_mem)
        assert log_det == log_det_mem


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
    project_rows = dpp_kernel.Projector.project_rows  # every quadratic form against P uses it

    def counting(self, G):
        evaluated.append(G.shape[0])
        return project_rows(self, G)

    monkeypatch.setattr(dpp_kernel.Projector, "project_rows", counting)
    kernel, size = Kernel.build(F, q, ridge=1e-3), sample_size(n, k, 0.01)
    runs = {}
    for lazy in (True, False):
        evaluated.clear()
        runs[lazy] = (stochastic_greedy(kernel, k, size=size, seed=5, lazy=lazy), sum(evaluated))
    (lazy_out, lazy_rows), (full_out, full_rows) = runs[True], runs[False]
    a, b = np.asarray(lazy_out[0]), np.asarray(full_out[0])
    assert lazy_out[2] == full_out[2] and len(a) == len(b)
    if dtype == np.float64:
        np.testing.assert_array_equal(a, b)
        assert lazy_out[1] == full_out[1]
    else:  # float32 products of other shapes round differently: a split only at a near-tie
        assert_same_picks_up_to_ties(F, q, 1e-3, a, b)
    assert lazy_rows < 0.8 * full_rows if saves else lazy_rows <= full_rows


@pytest.mark.parametrize("rows", [10**6, 450])
def test_stochastic_with_whole_pool_subsets_is_exact_greedy(rows):
    # a tiny delta makes every subset the whole remaining pool, so stochastic greedy must pick as
    # exact greedy does; a small row budget splits the blocks between flushes (3 subsets each)
    rng = np.random.default_rng(13)
    F = unit_rows(rng, 150, 10)
    q = quality_with_ties_and_zeros(rng, 150)
    size = sample_size(150, 60, 1e-30)
    assert size >= 150
    idx, log_det, reason = stochastic_greedy(
        Kernel.build(F, q, ridge=1e-3), 60, size=size, seed=0, subset_rows=rows
    )
    ref_log_det = replay_reference(F, q, 1e-3, idx, 60)
    assert reason == "budget" and log_det == pytest.approx(ref_log_det, rel=1e-9)


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
def test_torch_code_path_gives_the_same_picks(mode):
    # the code path CUDA takes, run on CPU tensors
    rng = np.random.default_rng(9)
    F = unit_rows(rng, 800, 20)
    q = quality_with_ties_and_zeros(rng, 800)

    def run(features, numpy_on_cpu):
        kernel = Kernel.build(features, q, ridge=1e-3, numpy_on_cpu=numpy_on_cpu)
        assert kernel.ops.cpu == numpy_on_cpu
        if mode == "exact":
            return exact_greedy(kernel, 50)
        return stochastic_greedy(kernel, 50, size=sample_size(800, 50, 0.01), seed=3)

    for features in (F, F.astype(np.float32)):
        expected = run(features, True)
        got = run(torch.as_tensor(features), False)
        np.testing.assert_array_equal(got[0], expected[0])
        assert got[1] == pytest.approx(expected[1], rel=1e-9)
        assert got[2] == expected[2] == "budget"
    # and greedy_map itself takes that mode's path with the same picks
    idx, _ = greedy_map(F, q, 50, mode=mode, seed=3)
    np.testing.assert_array_equal(idx, run(F, True)[0])


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_det_path_is_every_shorter_runs_log_det_bit_for_bit(dtype):
    rng = np.random.default_rng(4)
    F = rng.standard_normal((700, 12)).astype(dtype)
    q = rng.uniform(0.1, 1, 700)
    picks, _ = greedy_map(F, q, 150, ridge=1e-3)
    path = log_det_path(F, q, picks, ridge=1e-3)
    for k in (1, 7, 64, 65, 129, 150):  # across the 64-pick blocks of the exact mode
        shorter, log_det = greedy_map(F, q, k, ridge=1e-3)
        assert list(shorter) == list(picks[:k]) and path[k - 1] == log_det
    # any order of any items: the log det of each prefix (here against a dense determinant)
    some = [5, 600, 42, 7]
    L = (
        np.diag(q)
        @ (F.astype(np.float64) @ F.T.astype(np.float64) + 1e-3 * np.eye(700))
        @ np.diag(q)
    )
    for t in range(len(some)):
        sub = L[np.ix_(some[: t + 1], some[: t + 1])]
        assert log_det_path(F, q, some, ridge=1e-3)[t] == pytest.approx(
            np.linalg.slogdet(sub)[1], rel=1e-6
        )
    # ridge 0 past rank(F) = 12: no positive gain, -inf from there on
    past = log_det_path(F, q, list(picks[:14]), ridge=0.0)
    assert np.isfinite(past[:12]).all() and np.isneginf(past[12:]).all()
