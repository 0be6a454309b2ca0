"""Stochastic greedy MAP for the feature-space DPP kernel (``greedy_map(mode="stochastic")``).

Kedro-free. Stochastic greedy (Mirzasoleiman et al., 2015, "lazier than lazy greedy"): each step
draws (seeded) a random subset of ceil((n / k) · log(1 / delta)) remaining candidates and takes the
best of them, with exact gains through P (see ``p3_pruning.dpp``) in O(d²) each; no per-step pass
over F.

Blocks: the subsets of up to ``BLOCK`` consecutive steps (at most ``SUBSET_ROWS`` candidates) are
drawn together so that their P-parts are one matrix product; each step adds the rank-1 terms picked
since (a candidate picked meanwhile is masked out of the later subsets of its block). With a ridge,
a pick's u comes from its row of that product, and at the block's end the block's u's and residuals
are recomputed exactly in float64 at once (a Cholesky factorisation of the block's Gram matrix in
the kernel conditioned on the earlier picks: the sequential rank-1 updates in one step), so P and
log det are float64-exact.

Lazy within a subset: any gain computed earlier bounds that item's later gains (gains only shrink),
so the candidates whose bounds cannot reach the subset's best are skipped; the picks are those of
evaluating every candidate (up to float32 near-ties: the bounds carry a 1e-5 relative margin above
the rounding of float32 quadratic forms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from p3_pruning.dpp.kernel import BLOCK, CHUNK, Kernel, Projector, unit_u, why_no_gain

SUBSET_ROWS = 1 << 14  # most candidates drawn at once (memory: rows x d)
# margin of the gain bounds, relative to q²(‖f‖² + ridge): (float32, float64) rows; float32
# quadratic forms over d ≤ a few thousand terms round well below 1e-5
LAZY_MARGIN = (1e-5, 1e-12)


def sample_size(n: int, k: int, delta: float) -> int:
    """Candidates per step: ceil((n / k) · log(1 / delta)), at least 1."""
    return max(1, math.ceil(n / max(k, 1) * math.log(1 / delta)))


def stochastic_greedy(
    kernel: Kernel,
    k: int,
    *,
    size: int,
    seed: int,
    rank_tol: float = 1e-9,
    bar=None,
    lazy: bool = True,
    subset_rows: int = SUBSET_ROWS,
):
    """Stochastic greedy: the best of a seeded random subset of ``size`` remaining candidates per
    step, up to k picks. Returns (picks, log_det, "budget" | "rank" | "quality" | "pool").

    The subsets of the next steps up to the projector's next flush (≤ ``BLOCK`` steps, at most
    ``subset_rows`` candidates) are drawn together, and their quadratic forms against the current
    P computed in one (b·h, d) x (d, d) product; each step then adds only the rank-1 terms added
    since the block began (h x that many).

    Lazy evaluation inside each subset: every gain computed so far bounds that item's later gains,
    so only the h candidates of a subset with the largest bounds enter the block product. When the
    best of them does not beat the bound of the rest, the rest whose bound reaches it are evaluated
    at that step. The pick is the subset's best either way; h follows the last block's needs
    (``lazy=False`` keeps h at ``size``: every candidate is evaluated in the block product).
    """
    run = _StochasticGreedy(kernel, rank_tol * kernel.scale, size, seed, lazy, subset_rows)
    while len(run.picks) < k:
        if run.m == 0:
            return run.picks, run.log_det, why_no_gain(run.q2, run.picks)
        if not run.block(k, bar):
            return run.picks, run.log_det, "rank"
    return run.picks, run.log_det, "budget"


@dataclass
class _Block:
    """The subsets of one block and their products against P as of the block's start."""

    c0: int  # pending terms already in the block's products
    first: int  # picks made before the block
    ids: np.ndarray  # (steps, s) every drawn candidate, rows sorted
    ub: np.ndarray  # (steps, s) their gain bounds as of the block's start
    cols: np.ndarray | None  # (steps, h) columns of ids in the head (None: all of them)
    rest_ub: np.ndarray | None  # (steps,) the largest bound outside the head
    cand: np.ndarray  # (steps, h) the head
    rows: object  # (steps·h, d) their features
    Y: object  # (steps·h, d) their P_f parts
    const: np.ndarray  # (steps, h) residuals as of the block's start
    weight: np.ndarray  # (steps, h) q²
    seen: np.ndarray  # (steps, h) the head's gains, for the bounds (applied after the block)
    best_of: np.ndarray  # (steps,) each step's best gain


class _StochasticGreedy:
    """State of one stochastic run: the remaining pool, the gain bounds and the projector."""

    def __init__(self, kernel: Kernel, tol: float, size: int, seed: int, lazy: bool, rows: int):
        ops = self.ops = kernel.ops
        n, d = kernel.shape
        self.F, self.ridge, self.tol, self.size = kernel.F, kernel.ridge, tol, size
        self.lazy, self.subset_rows = lazy, rows
        self.q2, self.sq = ops.host(kernel.q2), ops.host(kernel.sqnorm)
        self.proj = Projector(d, ops)
        self.rng = np.random.default_rng(seed)
        # Zero-gain items (q = 0, or a zero row with ridge 0) are never candidates: exact greedy
        # would only reach them after every positive item, and stops there instead of picking them.
        gain0 = self.q2 * (self.sq + self.ridge)  # the gains with nothing picked
        self.pool = np.flatnonzero(gain0 > 0).astype(np.int64)  # pool[:m]: the remaining ones
        self.where = np.full(n, -1, dtype=np.int64)
        self.where[self.pool] = np.arange(len(self.pool))
        self.m = len(self.pool)
        self.picked = np.zeros(n, dtype=bool)
        self.picks: list[int] = []
        self.log_det = 0.0
        # upper bounds of the gains: the first is exact (P = 0); each evaluation lowers it, plus a
        # margin well above the rounding of a float32 (or float64) quadratic form
        self.margin = gain0 * LAZY_MARGIN[self.F.dtype == ops.f64]
        self.bound = gain0 + self.margin
        self.head = size  # candidates per subset in the block product
        # Residuals stay >= ridge, so with a ridge well above the rank tolerance and the float64
        # rounding no pick can exhaust the rank: a pick's u is then taken from the block product
        # (its row G P_f, in the rows' precision) instead of an O(d²) float64 product per pick,
        # and the block's u's are made exact together at its end (``settle``), before P or log
        # det use them.
        scale = float(self.sq.max(initial=0.0)) + self.ridge
        self.in_block = self.ridge > max(10 * tol, 1e-6 * scale)

    def gains(self, idx: np.ndarray, exact: bool = True) -> np.ndarray:
        """Current gains of ``idx``: in float64, or (exact=False) in the precision of F."""
        ops = self.ops
        G = ops.take(self.F, idx)
        r = self.sq[idx] + self.ridge - ops.host(self.proj.quad_rows(ops.f64_of(G) if exact else G))
        return self.q2[idx] * np.maximum(r, 0.0)

    def residual(self, j: int, base=None):
        """(f_j, P f_j, r_j) in float64; within a block r_j is at least the ridge."""
        fj = self.ops.f64_of(self.F[j])
        pf, r = self.proj.residual(fj, self.sq[j], self.ridge, base=base)
        return fj, pf, max(r, self.ridge) if self.in_block else r

    def draw(self, steps: int) -> np.ndarray:
        """(steps, s) sorted subsets of the remaining pool, uniform: draws with replacement,
        redrawn without where a value repeats (every remaining item when m ≤ size)."""
        size, m, rng = self.size, self.m, self.rng
        if m > size:
            ids = np.sort(rng.integers(0, m, size=(steps, size)), axis=1)
            for t in np.flatnonzero((ids[:, 1:] == ids[:, :-1]).any(axis=1)):
                ids[t] = rng.choice(m, size=size, replace=False)
            return np.sort(self.pool[ids], axis=1)
        return np.broadcast_to(np.sort(self.pool[:m]), (steps, m))

    def start_block(self, k: int) -> _Block:
        """Draw the block's subsets, choose each one's head and project the heads onto P."""
        ops, proj = self.ops, self.proj
        c0 = proj.count
        steps = min(
            BLOCK - c0, k - len(self.picks), max(1, self.subset_rows // min(self.size, self.m))
        )
        ids = self.draw(steps)
        s = ids.shape[1]
        h = min(self.head, s)
        ub = self.bound[ids]
        if h < s:
            order = np.argsort(-ub, axis=1, kind="stable")
            cols = np.sort(order[:, :h], axis=1)  # ascending columns keep ids sorted
            rest_ub = np.take_along_axis(ub, order[:, h : h + 1], axis=1)[:, 0]
            cand = np.take_along_axis(ids, cols, axis=1)
        else:
            cols, rest_ub, cand = None, None, ids  # every candidate is in the head
        rows = ops.take(self.F, cand.reshape(-1))
        base, Y = proj.project_rows(rows)  # Y: the rows' P_f parts, also the picks' (in_block)
        base = ops.host(base)
        flat = cand.reshape(-1)
        return _Block(
            c0=c0,
            first=len(self.picks),
            ids=ids,
            ub=ub,
            cols=cols,
            rest_ub=rest_ub,
            cand=cand,
            rows=rows,
            Y=Y,
            const=(self.sq[flat] + self.ridge - base).reshape(steps, h),
            weight=self.q2[flat].reshape(steps, h),
            seen=np.empty((steps, h)),
            best_of=np.empty(steps),
        )

    def block(self, k: int, bar) -> bool:
        """Run one block of steps; False when the rank is exhausted (the run stops)."""
        blk = self.start_block(k)
        for t in range(len(blk.cand)):
            chosen = self.step(blk, t)
            if chosen is None:
                self.settle(blk)
                return False
            self.take(*chosen)
            if bar is not None:
                bar.update()
            if self.m == 0:
                break
        self.settle(blk)
        self.fold_bounds(blk, t + 1)  # steps of this block run (fewer when the pool ran out)
        return True

    def step(self, blk: _Block, t: int):
        """The pick of step t: (j, f_j, P f_j, r_j), or None when no usable item is left."""
        h = blk.cand.shape[1]
        idx = blk.cand[t]
        if self.proj.count > blk.c0:
            pending = self.proj.quad_buffer(blk.rows[t * h : (t + 1) * h], start=blk.c0)
            g = blk.weight[t] * (blk.const[t] - self.ops.host(pending))
        else:
            g = blk.weight[t] * blk.const[t]
        if len(self.picks) > blk.first:
            g[self.picked[idx]] = -math.inf  # picked earlier in this block
        b = int(np.argmax(g))  # first maximum: lowest index wins ties (idx is sorted)
        best = float(g[b])
        blk.seen[t] = g
        if blk.cols is not None and not best > blk.rest_ub[t]:  # the rest may hold a better one
            idx, g, best, b = self.widen(blk, t, idx, g, best, b)
        blk.best_of[t] = best
        j = int(idx[b])
        if best > 0:
            row = t * h + b if b < h else None  # the pick's row in the block product
            base = None if row is None or not self.in_block else self.ops.f64_of(blk.Y[row])
            fj, pf, r = self.residual(j, base)
            if r > self.tol:
                return j, fj, pf, r
        # the sample holds no usable item: look at every remaining candidate before stopping
        p = _best_remaining(self.pool[: self.m], self.gains)
        if p < 0:
            return None
        j = int(self.pool[p])
        fj, pf, r = self.residual(j)
        return None if r <= self.tol else (j, fj, pf, r)

    def widen(self, blk: _Block, t: int, idx, g, best: float, b: int):
        """Evaluate the candidates of subset t outside the head whose bound reaches ``best``;
        returns the subset's (idx, g, best, position of the best) with them."""
        s = blk.ids.shape[1]
        rest = np.ones(s, dtype=bool)
        rest[blk.cols[t]] = False
        rest &= blk.ub[t] >= best
        more = blk.ids[t][rest]
        if len(more):
            gm = self.gains(more, exact=False)
            gm[self.picked[more]] = -math.inf
            self.bound[more] = np.minimum(self.bound[more], np.maximum(gm, 0.0) + self.margin[more])
            idx, g = np.concatenate([idx, more]), np.concatenate([g, gm])
            best = float(g.max())
            b = int(np.argmin(np.where(g == best, idx, len(self.picked))))  # lowest index on ties
        return idx, g, best, b

    def take(self, j: int, fj, pf, r: float) -> None:
        """Add item j: its term into the projector's buffer, out of the pool."""
        self.picks.append(j)
        self.picked[j] = True
        if not self.in_block:
            self.log_det += math.log(self.q2[j] * r)
        self.proj.add(unit_u(fj, pf, r), fold=False)
        self.m -= 1
        p, last = self.where[j], self.pool[self.m]  # swap-remove j from pool[:m]
        self.pool[p], self.pool[self.m] = last, j
        self.where[last], self.where[j] = p, self.m

    def settle(self, blk: _Block) -> None:
        """Make the u's of the block's picks (buffer slots c0…) exact, in float64: with V the
        rows (I − P₀) f_j for P₀ the projector at the block's start, the Gram matrix
        M = V F_bᵀ + ridge·I of the block is L Lᵀ, the u's are the rows of L⁻¹ V and the
        residuals are L_jj² (one Cholesky instead of a rank-1 update per pick)."""
        ops, proj = self.ops, self.proj
        block = self.picks[blk.first :]
        if self.in_block and block:
            Fb = ops.f64_of(ops.take(self.F, np.asarray(block)))  # (b, d)
            V = Fb - proj.apply(Fb.T, upto=blk.c0).T
            M = V @ Fb.T
            M = (M + M.T) / 2
            M[range(len(block)), range(len(block))] += self.ridge
            r, U = _cholesky_rows(M, V)
            self.log_det += float(np.log(self.q2[block] * r).sum())
            proj.put_rows(blk.c0, U)
        proj.fold_full()

    def fold_bounds(self, blk: _Block, done: int) -> None:
        """Lower the bounds of the heads evaluated in the block's first ``done`` steps; with
        ``lazy``, size the next heads so that ~90 % of these steps would need no more."""
        cand = blk.cand[:done]
        np.minimum.at(self.bound, cand, np.maximum(blk.seen[:done], 0.0) + self.margin[cand])
        if self.lazy:
            needed = (blk.ub[:done] >= blk.best_of[:done, None]).sum(1)
            q90 = (done - 1) * 9 // 10
            self.head = max(1, int(np.partition(needed, q90)[q90]) + 1)


def _cholesky_rows(M, V):
    """For M = L Lᵀ (b, b) float64 and V (b, d): (the residuals L_jj² (b,) on the host, L⁻¹ V)
    — the sequential Gram-Schmidt of a block of picks in one factorisation."""
    if isinstance(M, np.ndarray):  # numpy's LAPACK: torch.linalg on CPU is slower at this size
        L = np.linalg.cholesky(M)
        return np.square(np.diagonal(L)), np.linalg.solve(L, V)
    L = torch.linalg.cholesky(M)
    U = torch.linalg.solve_triangular(L, V, upper=False)
    return L.diagonal().square().cpu().numpy(), U


def _best_remaining(cands: np.ndarray, gains) -> int:
    """Position in ``cands`` of the candidate with the largest gain over all of them (lowest index
    on ties); -1 when none has a positive gain."""
    best, best_gain = -1, 0.0
    for s in range(0, len(cands), CHUNK):
        idx = cands[s : s + CHUNK]
        g = gains(idx)
        top = np.flatnonzero(g == g.max())
        i = int(top[np.argmin(idx[top])])
        if g[i] > best_gain or (g[i] == best_gain > 0 and idx[i] < cands[best]):
            best, best_gain = s + i, float(g[i])
    return best
