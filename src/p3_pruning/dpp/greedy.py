"""Greedy MAP for a low-rank DPP kernel, in feature space (never builds the n×n kernel).

Kedro-free. Kernel over n items with features F (n, d) and quality q (n,):

    L = diag(q) · (F Fᵀ + ridge · I) · diag(q)

Greedy MAP (Chen, Zhang & Zhou, NeurIPS 2018) adds, at each step, the item with the largest gain
det(L_{S+i}) / det(L_S) = q_i² · r_i, where r_i is the residual of item i in the kernel S = F Fᵀ +
ridge·I after projecting out the picked set. ``greedy_map_reference`` (:mod:`p3_pruning.dpp.reference`)
is that algorithm as Chen et al. write it, on the dense kernel with its (|S|, n) Cholesky rows: the
readable spec, for tests and benchmarks. Because S is low rank plus ridge, ``greedy_map`` keeps the same quantities in d-space:

    P   = F_Sᵀ (F_S F_Sᵀ + ridge·I)⁻¹ F_S   (d, d)  = I − ridge · (ridge·I + F_Sᵀ F_S)⁻¹ when ridge > 0
    r_i = ‖f_i‖² + ridge − f_iᵀ P f_i

and adding item j is a rank-1 update: u = (I − P) f_j / √r_j, P ← P + u uᵀ, r_i ← r_i − (f_i·u)².
Memory O(n·d), independent of k; time O(k·n·d) (``p3_pruning.dpp.kernel`` holds F, q and P).

Exact mode applies the r_i updates in blocks: the gains of all n items are refreshed once per
block of up to 64 picks with one (n, d)·(d, b) product (F is read once per block, at matrix-product
speed, instead of one memory-bound matvec per pick). Between refreshes the stale gains are upper
bounds (gains only shrink as S grows: log det is submodular), so the exact gains of the few
thousand stale-best items, kept current from the pending u's, decide each pick for certain when the
best of them beats every other item's stale gain; otherwise the block is refreshed early. The picks
are those of updating every gain at every step (up to floating-point ties).

``mode="stochastic"`` is stochastic greedy (Mirzasoleiman et al., 2015): the best of a seeded random
subset of the remaining candidates per step, no per-step pass over F (``p3_pruning.dpp.stochastic``).

Why a ridge: rank(F Fᵀ) ≤ d, so with ridge = 0 every residual is 0 after d picks and plain greedy
MAP must stop. A ridge makes the kernel full rank, so one pass reaches any k; past rank d the gains
are ridge · (1 + f_iᵀ (ridge·I + F_Sᵀ F_S)⁻¹ f_i) · q_i², which still prefer items in directions the
picked set covers least. The default 1e-3 is small against unit-norm rows (the strategies
L2-normalise features), so the first d picks are those of plain greedy MAP up to a 1e-3 perturbation,
and large enough that residuals (≥ ridge) stay far above the float32 rounding of the pass over F.

Precision: float64 features are computed in float64. float32 features stay float32 for the pass
over F; P, the residuals, the gains and log det are float64. The picked item's
residual is recomputed exactly in float64 from P (O(d²)) for its log det and for the update.
Residuals are clamped at 0; ties go to the lowest index.

Features that do not fit in memory: pass a memory-mapped float32 array (``np.load(path,
mmap_mode="r")`` of an ``.npy``, as the embeddings are stored); it is read in place, never copied.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from p3_pruning.dpp import reference
from p3_pruning.dpp import stochastic as dpp_stochastic
from p3_pruning.dpp.kernel import BLOCK, Kernel, Projector, unit_u, why_no_gain

log = logging.getLogger(__name__)

DEFAULT_RIDGE = reference.DEFAULT_RIDGE
MODES = ("exact", "stochastic")
# stale-best items whose exact gains are tracked between gain updates: n / 25, within [256, 8192]
LAZY_TOP = (256, 25, 8192)
_STOPS = {
    "rank": "the picks span the features (ridge=0 limits plain greedy MAP to rank(F))",
    "quality": "only zero-quality items remain",
    "pool": "fewer items than k",
}


def greedy_map(
    features,
    quality,
    k: int,
    *,
    ridge: float = DEFAULT_RIDGE,
    device=None,
    mode: str = "exact",
    delta: float = 0.01,
    seed: int = 0,
    rank_tol: float = 1e-9,
    return_info: bool = False,
    progress: bool | None = None,
):
    """Greedy MAP of L = diag(q)(F Fᵀ + ridge·I)diag(q) up to k items.

    Args:
        features: (n, d) float32 or float64 array/tensor F (other dtypes are cast to float32); a
            memory-mapped array is read in place.
        quality: (n,) non-negative q, or None for all ones. q_i = 0 gives item i zero gain.
        k: number of items wanted.
        ridge: ε ≥ 0 added to the diagonal of F Fᵀ (see module doc for the default).
        device: torch device; None → the features tensor's device, else CUDA when present, else CPU.
        mode: "exact" or "stochastic" (stochastic greedy; ``delta`` and ``seed`` apply).
        rank_tol: stop when the best residual r_j ≤ rank_tol · max_i(‖f_i‖² + ε) (rank exhausted).
        return_info: also return an info dict (plain values) as a third item.
        progress: tqdm bar; None → only for large problems.

    Returns:
        indices: (m,) int64, m ≤ k, in pick order; log_det: float, log det L[indices, indices]
        (0.0 when m = 0); and with ``return_info``: {"requested", "selected", "stopped_early",
        "stop_reason" ("budget" | "rank" | "quality" | "pool"), "mode", "ridge", "sample_size"}.

    Greedy stops before k only when no remaining item has a positive gain: "rank" (ridge = 0 and
    the picks span the features: the plain greedy MAP limit rank(F) ≤ d), "quality" (only q = 0
    items remain; they are never picked: their gain and the determinant would be 0), or "pool"
    (k > n). It then logs a warning and reports it in the info.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    if not (isinstance(ridge, (int, float, np.floating)) and math.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"ridge must be a finite number >= 0, got {ridge!r}")
    if mode == "stochastic" and not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta!r}")
    kernel = Kernel.build(features, quality, ridge=ridge, device=device)
    n, d = kernel.shape
    show = progress if progress is not None else (k * n * d > 2e10)
    bar = tqdm(total=min(k, n), desc=f"greedy MAP ({mode})", disable=not show, leave=False)
    sample_size = 0
    if mode == "exact":
        picks, log_det, reason = exact_greedy(kernel, min(k, n), rank_tol=rank_tol, bar=bar)
    else:
        sample_size = dpp_stochastic.sample_size(n, k, delta)
        picks, log_det, reason = dpp_stochastic.stochastic_greedy(
            kernel, min(k, n), size=sample_size, seed=seed, rank_tol=rank_tol, bar=bar
        )
    bar.close()
    if reason == "budget" and len(picks) < k:
        reason = "pool"
    if reason != "budget":
        log.warning(
            "greedy MAP stopped after %d of %d picks (%s): %s",
            len(picks),
            k,
            reason,
            _STOPS[reason],
        )
    indices = np.asarray(picks, dtype=np.int64)
    if not return_info:
        return indices, log_det
    info = {
        "requested": int(k),
        "selected": len(picks),
        "stopped_early": len(picks) < k,
        "stop_reason": reason,
        "mode": mode,
        "ridge": float(ridge),
        "sample_size": int(sample_size),
    }
    return indices, log_det, info


def log_det_path(
    features, quality, picks, *, ridge: float = DEFAULT_RIDGE, rank_tol: float = 1e-9, device=None
):
    """log det L[S_t, S_t] for every prefix S_t = picks[:t + 1] of an ordered selection: (m,) float64.

    The greedy run's own arithmetic, replayed on the picks alone (O(m·d²), no pass over F): each
    pick's residual from P in float64, its term added to P. For the picks of an exact
    ``greedy_map`` run on the same features, quality and ridge, the values are that run's, bit for
    bit: entry t is the log det a run with k = t + 1 returns (the exact picks for k are the first k
    of any longer run's). -inf from the first pick with no positive gain on, or whose residual is
    at most ``rank_tol`` · max_i(‖f_i‖² + ε) (where greedy stops: the picks span the features).
    """
    kernel = Kernel.build(features, quality, ridge=ridge, device=device)
    tol = rank_tol * kernel.scale
    proj = Projector(kernel.shape[1], kernel.ops)
    path = np.full(len(picks), -math.inf)
    total = 0.0
    for t, j in enumerate(np.asarray(picks, dtype=np.int64)):
        fj = kernel.ops.f64_of(kernel.F[j])
        pf, r = proj.residual(fj, kernel.sqnorm[j], kernel.ridge)
        gain = float(kernel.q2[j]) * r
        if not gain > 0 or r <= tol:
            break
        total += math.log(gain)
        path[t] = total
        proj.add(unit_u(fj, pf, r))
    return path


def exact_greedy(
    kernel: Kernel,
    k: int,
    *,
    rank_tol: float = 1e-9,
    bar=None,
    lazy_top: tuple[int, int, int] = LAZY_TOP,
):
    """Exact greedy with blocked gain updates (same picks as updating every gain every step).

    Gains of all n items are brought up to date once per block of ``BLOCK`` picks with one
    (n, d) x (d, b) product, instead of one matvec per pick: F is read once per block. Between
    updates the stale gains are upper bounds (gains only shrink as S grows), so a pick is certain
    when its exact gain, computed for the stale-best items (``lazy_top``: n / frac within
    [low, high]) from the pending u's, beats the stale gain of every other item; otherwise the
    block is flushed early. Returns (picks, log_det, "budget" | "rank" | "quality" | "pool").
    """
    return _ExactGreedy(kernel, rank_tol * kernel.scale, lazy_top).run(k, bar)


class _ExactGreedy:
    """State of one exact run: the (stale) gains, the pending u's and the top set."""

    def __init__(self, kernel: Kernel, tol: float, lazy_top: tuple[int, int, int]):
        ops = self.ops = kernel.ops
        self.kernel, self.tol = kernel, tol
        n, d = kernel.shape
        self.xp = np if ops.cpu else torch
        # (n,) float64 q_i² r_i as of the last update; picked: -inf
        self.gain = kernel.q2 * (kernel.sqnorm + kernel.ridge)
        self.floor = ops.zeros(n)  # 0, or -inf once picked
        self.pending = ops.zeros(BLOCK, d)  # u's not yet applied to ``gain``
        self.c = 0
        low, frac, high = lazy_top
        self.m = min(max(low, n // frac), high, n - 1)
        self.proj = Projector(d, ops)
        self.picks: list[int] = []
        self.log_det = 0.0
        self.top = self.top_G = self.top_gain = self.top_q2 = None
        self.bound = 0.0

    def refresh_top(self) -> None:
        """The m stale-best items, their rows and exact gains; ``bound``: the (m+1)-th gain."""
        m, ops, gain = self.m, self.ops, self.gain
        if m <= 0:
            self.top = None
            return
        if ops.cpu:
            part = np.argpartition(-gain, m)[: m + 1]
            self.bound = float(gain[part[m]])  # the (m+1)-th largest stale gain
            self.top = part[:m]
        else:
            vals, inds = torch.topk(gain, m + 1)
            self.bound, self.top = float(vals[m]), inds[:m]
        self.top_G = ops.f64_of(self.kernel.F[self.top])  # (m, d)
        self.top_gain = gain[self.top]  # their exact gains, kept current from the pending u's
        self.top_q2 = self.kernel.q2[self.top]

    def flush(self) -> None:
        """Apply the pending u's to every gain (the one pass over F per block)."""
        c, F, q2, gain = self.c, self.kernel.F, self.kernel.q2, self.gain
        if c:
            if self.ops.cpu:  # (c, n)
                E = self.pending[:c].astype(F.dtype, copy=False) @ F.T
                corr = np.square(E, out=E).sum(0, dtype=np.float64)
            else:
                corr = (F @ self.pending[:c].T.to(F.dtype)).square_().sum(1, dtype=torch.float64)
            self.xp.subtract(gain, q2 * corr, out=gain)
            self.xp.maximum(gain, self.floor, out=gain)  # clamp at 0; picked items stay -inf
            self.c = 0
        self.refresh_top()

    def choose(self) -> int:
        """The next pick: from the top set when certain, else the argmax after a flush."""
        if self.c and self.top is not None:
            best = float(self.top_gain.max())
            if best > self.bound and best > 0:
                ties = self.top[self.top_gain == best]
                return int(ties.min())  # lowest index wins ties
        if self.c:
            self.flush()  # otherwise the gains are up to date
        return int(self.xp.argmax(self.gain))  # first maximum: lowest index wins ties

    def add(self, j: int, fj, pf, r: float) -> None:
        """Take item j with residual r: its term into P, the pending u's and the top set."""
        self.picks.append(j)
        self.log_det += math.log(float(self.kernel.q2[j]) * r)
        u = unit_u(fj, pf, r)
        self.proj.add(u)
        self.floor[j] = -math.inf
        self.gain[j] = -math.inf
        self.pending[self.c] = u
        if self.top is not None:
            z = self.top_G @ u
            self.top_gain -= self.top_q2 * (z * z)
            self.top_gain[self.top == j] = -math.inf
        self.c += 1
        if self.c == BLOCK:
            self.flush()

    def run(self, k: int, bar):
        kernel = self.kernel
        self.refresh_top()
        for _ in range(k):
            j = self.choose()
            if not float(self.gain[j]) > 0:
                return self.picks, self.log_det, why_no_gain(kernel.ops.host(kernel.q2), self.picks)
            fj = kernel.ops.f64_of(kernel.F[j])
            pf, r = self.proj.residual(fj, kernel.sqnorm[j], kernel.ridge)  # exact, float64
            if r <= self.tol:
                return self.picks, self.log_det, "rank"
            self.add(j, fj, pf, r)
            if bar is not None:
                bar.update()
        return self.picks, self.log_det, "budget"
