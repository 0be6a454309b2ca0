"""The DPP's greedy MAP as Chen, Zhang & Zhou (NeurIPS 2018) write it, on the dense n×n kernel.

The readable spec that :func:`p3_pruning.dpp.greedy_map` (feature space, never n×n) is tested and
benchmarked against: O(n²) memory, small n only.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_RIDGE = 1e-3  # L = diag(q)(F Fᵀ + ridge·I)diag(q); see p3_pruning.dpp.greedy on why a ridge


def greedy_map_reference(
    features, quality, k: int, *, ridge: float = DEFAULT_RIDGE, rank_tol: float = 1e-9, choose=None
):
    """Chen, Zhang & Zhou (2018) fast greedy MAP on the dense kernel: the spec ``greedy_map`` meets.

    Builds L = diag(q)(F Fᵀ + ridge·I)diag(q) (n, n) in float64 and keeps one Cholesky row of L_S
    per pick: O(n²) memory, for tests and benchmarks at small n. Same stopping rules and ties
    (lowest index) as ``greedy_map``. Returns (indices (m,) int64, log det L[indices, indices]).

    ``choose(step, gains) -> j`` replaces the argmax when given (tests replay another run's picks
    through it, each checked against the gains of that step).
    """
    F = np.asarray(features, dtype=np.float64)
    n = len(F)
    q = np.ones(n) if quality is None else np.asarray(quality, dtype=np.float64)
    L = F @ F.T
    L[np.diag_indices(n)] += ridge
    L *= q[:, None]
    L *= q[None, :]
    tol = rank_tol * float((np.einsum("ij,ij->i", F, F) + ridge).max(initial=0.0))
    gain = np.diag(L).copy()  # det(L_{S+i}) / det(L_S) for S = ∅
    C = np.zeros((min(k, n), n))  # C[t]: the t-th Cholesky row, so that L_S = C_Sᵀ C_S on S
    picks: list[int] = []
    log_det = 0.0
    for t in range(min(k, n)):
        j = int(np.argmax(gain)) if choose is None else choose(t, gain)  # lowest index wins ties
        if not gain[j] > 0 or gain[j] <= tol * q[j] ** 2:  # only q = 0 items, or rank exhausted
            break
        picks.append(j)
        log_det += math.log(gain[j])
        C[t] = (L[j] - C[:t, j] @ C[:t]) / math.sqrt(gain[j])
        gain -= C[t] * C[t]
        gain[j] = -np.inf
    return np.asarray(picks, dtype=np.int64), log_det
