"""Greedy MAP for a low-rank DPP kernel, in feature space (never builds the n×n kernel).

Kedro-free. Kernel over n items with features F (n, d) and quality q (n,):

    L = diag(q) · (F Fᵀ + ridge · I) · diag(q)

Greedy MAP (Chen, Zhang & Zhou, NeurIPS 2018) adds, at each step, the item with the largest gain
det(L_{S+i}) / det(L_S) = q_i² · r_i, where r_i is the residual of item i in the kernel S = F Fᵀ +
ridge·I after projecting out the picked set. Chen et al. keep an (n, |S|) matrix of Cholesky rows;
because S is low rank plus ridge, the same quantities live in d-space:

    P   = F_Sᵀ (F_S F_Sᵀ + ridge·I)⁻¹ F_S   (d, d)  = I − ridge · (ridge·I + F_Sᵀ F_S)⁻¹ when ridge > 0
    r_i = ‖f_i‖² + ridge − f_iᵀ P f_i

and adding item j is a rank-1 update: u = (I − P) f_j / √r_j, P ← P + u uᵀ, r_i ← r_i − (f_i·u)².
Memory O(n·d), independent of k; time O(k·n·d).

Exact mode applies the r_i updates in blocks: the gains of all n items are refreshed once per
block of up to 64 picks with one (n, d)·(d, b) product (F is read once per block, at matrix-product
speed, instead of one memory-bound matvec per pick). Between refreshes the stale gains are upper
bounds (gains only shrink as S grows: log det is submodular), so the exact gains of the few
thousand stale-best items, kept current from the pending u's, decide each pick for certain when the
best of them beats every other item's stale gain; otherwise the block is refreshed early. The picks
are those of updating every gain at every step (up to floating-point ties).

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

``mode="stochastic"``: stochastic greedy (Mirzasoleiman et al., 2015, "lazier than lazy greedy"):
each step draws (seeded) a random subset of ceil((n / k) · log(1 / delta)) remaining candidates and
takes the best of them, with exact gains through P in O(d²) each; no per-step pass over F. The
subsets of up to ``_BLOCK`` consecutive steps are drawn together so that their P-parts are one
matrix product; each step adds the rank-1 terms picked since (a candidate picked meanwhile is
masked out of the later subsets of its block). With a ridge, a pick's u comes from its row of
that product, and at the block's end the block's u's and residuals are recomputed exactly in
float64 at once (a Cholesky factorisation of the block's Gram matrix in the kernel conditioned on
the earlier picks: the sequential rank-1 updates in one step), so P and log det are float64-exact.
Lazy within a subset: any gain computed earlier bounds that item's later gains, so the candidates
whose bounds cannot reach the subset's best are skipped; the picks are those of evaluating every
candidate (up to float32 near-ties: the bounds carry a 1e-5 relative margin above the rounding of
float32 quadratic forms).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

DEFAULT_RIDGE = 1e-3
MODES = ("exact", "stochastic")
_BLOCK = 64  # rank-1 updates of P are buffered and applied as one (d, b) x (b, d) product
# stale-best items whose exact gains are tracked between gain updates: n / 25, within [256, 8192]
_LAZY_TOP = (256, 25, 8192)
# margin of the stochastic mode's gain bounds, relative to q²(‖f‖² + ridge): (float32, float64)
# rows; float32 quadratic forms over d ≤ a few thousand terms round well below 1e-5
_LAZY_MARGIN = (1e-5, 1e-12)
_LAZY_STOCHASTIC = True  # tests switch it off: every candidate of every subset is evaluated
_SUBSET_ROWS = 1 << 14  # most candidates drawn at once in stochastic mode (memory: rows x d)
_CHUNK = 8192  # rows per chunk for the few full passes that need float64 temporaries
_NUMPY_ON_CPU = True  # tests switch it off to run the torch code path (the CUDA one) on CPU


def _to_tensor(x, device: torch.device) -> torch.Tensor:
    t = x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.to(device)


def _pick_device(features, device) -> torch.device:
    if device not in (None, "auto"):
        return torch.device(device)
    if isinstance(features, torch.Tensor):
        return features.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _Ops:
    """The few array operations the greedy loops need, on numpy (CPU) or torch (other devices).

    On CPU everything goes through numpy: its BLAS runs the small per-step products about twice
    as fast as torch (no per-call threading overhead) and the passes over F at least as fast.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.cpu = device.type == "cpu" and _NUMPY_ON_CPU
        self.f64 = np.float64 if self.cpu else torch.float64

    def arr(self, t: torch.Tensor):
        return t.numpy() if self.cpu else t

    def zeros(self, *shape):
        if self.cpu:
            return np.zeros(shape, dtype=np.float64)
        return torch.zeros(shape, dtype=torch.float64, device=self.device)

    def cast(self, a, like):
        return a.astype(like.dtype) if self.cpu else a.to(like.dtype)

    def f64_of(self, a):
        return a.astype(np.float64) if self.cpu else a.to(torch.float64)

    def take(self, a, idx: np.ndarray):
        return a[idx] if self.cpu else a[torch.as_tensor(idx, device=self.device)]

    def host(self, a) -> np.ndarray:
        return a if self.cpu else a.cpu().numpy()


class _Projector:
    """P = Σ u uᵀ (d, d) float64, with the newest rank-1 terms kept in a (b, d) buffer."""

    def __init__(self, d: int, ops: _Ops):
        self.ops = ops
        self.P = ops.zeros(d, d)
        self.buf = ops.zeros(_BLOCK, d)
        self.count = 0
        self._P_low = self._buf_low = None

    def apply(self, f, base=None, upto=None):
        """P f for f (d,) float64 (or P F for the columns of F (d, b)), with the first ``upto``
        buffered terms (default: all); ``base``: the folded part P_f f when already known (a row
        of ``project_rows``)."""
        out = self.P @ f if base is None else base
        count = self.count if upto is None else upto
        if count:
            b = self.buf[:count]
            out = out + b.T @ (b @ f)
        return out

    def project_rows(self, G):
        """(g_iᵀ P g_i (m,) float64, G P_f (m, d)) for the rows of G (m, d), P_f the folded part
        of P (without the buffer), the product in the precision of G.

        float32 rows use float32 copies of P (refreshed at each flush) and of the buffer: error
        ~1e-6 against unit-norm rows, far below the ridge; float64 rows are computed in float64.
        """
        ops = self.ops
        if G.dtype == self.P.dtype:
            Y = G @ self.P
        else:
            if self._P_low is None:
                self._P_low = ops.cast(self.P, G)
            Y = G @ self._P_low
        out = (Y * G).sum(1, dtype=ops.f64)
        if self.count:
            out += self.quad_buffer(G)
        return out, Y

    def quad_rows(self, G):
        """g_iᵀ P g_i for the rows of G (m, d) → (m,) float64."""
        return self.project_rows(G)[0]

    def quad_buffer(self, G, start: int = 0):
        """The buffered part of g_iᵀ P g_i as float64: Σ over the pending u's (from the
        ``start``-th on) of (g_i · u)²."""
        ops = self.ops
        if start >= self.count:
            return ops.zeros(G.shape[0])
        if G.dtype == self.buf.dtype:
            return ((G @ self.buf[start : self.count].T) ** 2).sum(1)
        if self._buf_low is None:
            self._buf_low = ops.cast(self.buf, G)
        return ((G @ self._buf_low[start : self.count].T) ** 2).sum(1, dtype=ops.f64)

    def add(self, u, fold: bool = True) -> None:
        """Buffer the term u uᵀ; a full buffer is folded into P unless ``fold`` is False (the
        caller then rewrites buffered terms with ``put_rows`` and calls ``fold_full``)."""
        self.count += 1
        self.put_rows(self.count - 1, u[None])
        if fold:
            self.fold_full()

    def put_rows(self, start: int, U) -> None:
        """Write the terms U (b, d) into buffer slots start … start + b − 1."""
        self.buf[start : start + len(U)] = U
        if self._buf_low is not None:
            self._buf_low[start : start + len(U)] = U

    def fold_full(self) -> None:
        if self.count == _BLOCK:
            self.P += self.buf.T @ self.buf
            self.count = 0
            self._P_low = None


def _row_sqnorms(F: torch.Tensor) -> torch.Tensor:
    """‖f_i‖² (n,) in float64, computed in chunks (no (n, d) float64 temporary)."""
    out = torch.empty(F.shape[0], dtype=torch.float64, device=F.device)
    cpu = F.device.type == "cpu"
    for s in range(0, F.shape[0], _CHUNK):
        if cpu:
            block = F[s : s + _CHUNK].numpy()
            out[s : s + _CHUNK] = torch.from_numpy(
                np.einsum("ij,ij->i", block, block, dtype=np.float64)
            )
        else:
            out[s : s + _CHUNK] = F[s : s + _CHUNK].to(torch.float64).square().sum(1)
    return out


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
        features: (n, d) float32 or float64 array/tensor F (other dtypes are cast to float32).
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
    dev = _pick_device(features, device)
    F = _to_tensor(features, dev)
    if F.ndim != 2:
        raise ValueError(f"features must be 2-D (n, d), got shape {tuple(F.shape)}")
    if F.dtype != torch.float64:
        F = F.to(torch.float32)
    F = F.contiguous()
    n, d = F.shape
    if quality is None:
        q = torch.ones(n, dtype=torch.float64, device=dev)
    else:
        q = _to_tensor(quality, dev).to(torch.float64).reshape(-1)
        if q.shape[0] != n:
            raise ValueError(
                f"quality must have shape ({n},) like features' rows, got {q.shape[0]}"
            )
        if not bool(torch.isfinite(q).all()) or bool((q < 0).any()):
            raise ValueError("quality must be finite and >= 0")
    sqnorm = _row_sqnorms(F)
    if not bool(torch.isfinite(sqnorm).all()):
        bad = int((~torch.isfinite(sqnorm)).nonzero()[0])
        raise ValueError(f"features must be finite; row {bad} is not")

    ops = _Ops(dev)
    q2 = ops.arr(q.square())
    sqnorm = ops.arr(sqnorm)
    scale = float((sqnorm + ridge).max()) if n else 0.0
    show = progress if progress is not None else (k * n * d > 2e10)
    bar = tqdm(total=min(k, n), desc=f"greedy MAP ({mode})", disable=not show, leave=False)
    if mode == "exact":
        picks, log_det, reason = _exact(
            F, q2, sqnorm, float(ridge), min(k, n), rank_tol * scale, bar, ops
        )
        sample_size = 0
    else:
        sample_size = max(1, math.ceil(n / max(k, 1) * math.log(1 / delta)))
        picks, log_det, reason = _stochastic(
            F,
            q2,
            sqnorm,
            float(ridge),
            min(k, n),
            rank_tol * scale,
            bar,
            ops,
            size=sample_size,
            seed=seed,
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
            {
                "rank": "the picks span the features (ridge=0 limits plain greedy MAP to rank(F))",
                "quality": "only zero-quality items remain",
                "pool": "fewer items than k",
            }[reason],
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


def _why_no_gain(q2: np.ndarray, picked: list[int]) -> str:
    """Stop reason once no remaining item has a positive gain."""
    rest = np.ones(len(q2), dtype=bool)
    rest[picked] = False
    if not rest.any():
        return "pool"
    return "rank" if bool((q2[rest] > 0).any()) else "quality"


def _exact(F, q2, sqnorm, ridge, k, tol, bar, ops):
    """Exact greedy with blocked gain updates (same picks as updating every gain every step).

    Gains of all n items are brought up to date once per block of ``_BLOCK`` picks with one
    (n, d) x (d, b) product, instead of one matvec per pick: F is read once per block. Between
    updates the stale gains are upper bounds (gains only shrink as S grows), so a pick is certain
    when its exact gain, computed for the ``_LAZY_TOP`` stale-best items from the pending u's,
    beats the stale gain of every other item; otherwise the block is flushed early.
    """
    n, d = F.shape
    xp = np if ops.cpu else torch
    Fx = ops.arr(F)
    gain = q2 * (sqnorm + ridge)  # (n,) float64 q_i² r_i as of the last update; picked: -inf
    floor = ops.zeros(n)  # 0, or -inf once picked
    pending = ops.zeros(_BLOCK, d)  # u's not yet applied to ``gain``
    c = 0
    low, frac, high = _LAZY_TOP
    m = min(max(low, n // frac), high, n - 1)
    proj = _Projector(d, ops)
    picks: list[int] = []
    log_det = 0.0
    top = top_G = top_gain = top_q2 = None
    bound = 0.0

    def refresh_top():
        nonlocal top, top_G, top_gain, top_q2, bound
        if m <= 0:
            top = None
            return
        if ops.cpu:
            part = np.argpartition(-gain, m)[: m + 1]
            bound = float(gain[part[m]])  # the (m+1)-th largest stale gain
            top = part[:m]
        else:
            vals, inds = torch.topk(gain, m + 1)
            bound, top = float(vals[m]), inds[:m]
        top_G = ops.f64_of(Fx[top])  # (m, d)
        top_gain = gain[top]  # their exact gains, kept current from the pending u's
        top_q2 = q2[top]

    def flush():
        nonlocal c
        if c:
            if ops.cpu:  # (c, n): the one pass over F per block
                E = pending[:c].astype(Fx.dtype, copy=False) @ Fx.T
                corr = np.square(E, out=E).sum(0, dtype=np.float64)
            else:
                corr = (F @ pending[:c].T.to(F.dtype)).square_().sum(1, dtype=torch.float64)
            xp.subtract(gain, q2 * corr, out=gain)
            xp.maximum(gain, floor, out=gain)  # clamp residuals at 0; picked items stay -inf
            c = 0
        refresh_top()

    refresh_top()
    for _ in range(k):
        j = -1
        if c and top is not None:
            best = float(top_gain.max())
            if best > bound and best > 0:
                ties = top[ops.host(top_gain == best)] if ops.cpu else top[top_gain == best]
                j = int(ties.min())  # lowest index wins ties
        if j < 0:
            if c:
                flush()  # otherwise the gains are up to date
            j = int(xp.argmax(gain))  # first maximum: lowest index wins ties
        if not float(gain[j]) > 0:
            return picks, log_det, _why_no_gain(ops.host(q2), picks)
        fj = ops.f64_of(Fx[j])
        pf = proj.apply(fj)
        r = float(sqnorm[j]) + ridge - float(fj @ pf)  # exact residual of the pick, float64
        if r <= tol:
            return picks, log_det, "rank"
        picks.append(j)
        log_det += math.log(float(q2[j]) * r)
        u = (fj - pf) / math.sqrt(r)
        proj.add(u)
        floor[j] = -math.inf
        gain[j] = -math.inf
        pending[c] = u
        if top is not None:
            z = top_G @ u
            top_gain -= top_q2 * (z * z)
            top_gain[top == j] = -math.inf
        c += 1
        if c == _BLOCK:
            flush()
        bar.update()
    return picks, log_det, "budget"


def _stochastic(F, q2, sqnorm, ridge, k, tol, bar, ops, *, size, seed):
    """Stochastic greedy: the best of a seeded random subset of the remaining candidates per step.

    The subsets of the next steps up to the projector's next flush (≤ ``_BLOCK`` steps, at most
    ``_SUBSET_ROWS`` candidates) are drawn together, and their quadratic forms against the current
    P computed in one (b·h, d) x (d, d) product; each step then adds only the rank-1 terms added
    since the block began (h x that many).
    A candidate picked earlier in its block is masked out of the later subsets it was drawn into.

    Lazy evaluation inside each subset: every gain computed so far bounds that item's later gains
    (gains only shrink), so only the h candidates of a subset with the largest bounds enter the
    block product. When the best of them does not beat the bound of the rest, the rest whose bound
    reaches it are evaluated at that step. The pick is the subset's best either way (the bounds
    carry a margin above the float32 rounding of the products); h follows the last block's needs.
    """
    n, d = F.shape
    Fx = ops.arr(F)
    q2h, sqh = ops.host(q2), ops.host(sqnorm)
    proj = _Projector(d, ops)
    rng = np.random.default_rng(seed)
    # Zero-gain items (q = 0, or a zero row with ridge 0) are never candidates: exact greedy would
    # only reach them after every positive item, and stops there instead of picking them.
    gain0 = q2h * (sqh + ridge)  # the gains with nothing picked
    pool = np.flatnonzero(gain0 > 0).astype(np.int64)
    where = np.full(n, -1, dtype=np.int64)
    where[pool] = np.arange(len(pool))
    m = len(pool)
    picked = np.zeros(n, dtype=bool)
    picks: list[int] = []
    log_det = 0.0
    # upper bounds of the gains: the first is exact (P = 0); each evaluation lowers it, plus a
    # margin well above the rounding of a float32 (or float64) quadratic form
    margin = gain0 * _LAZY_MARGIN[Fx.dtype == ops.f64]
    bound = gain0 + margin
    head = size  # candidates per subset in the block product
    # Residuals stay >= ridge, so with a ridge well above the rank tolerance and the float64
    # rounding no pick can exhaust the rank: a pick's u is then taken from the block product (its
    # row G P_f, in the rows' precision) instead of an O(d²) float64 product per pick, and the
    # block's u's are made exact together at its end (``settle``), before P or log det use them.
    in_block = ridge > max(10 * tol, 1e-6 * (float(sqh.max(initial=0.0)) + ridge))

    def gains(idx: np.ndarray, exact: bool = True) -> np.ndarray:
        """Current gains of ``idx``: in float64, or (exact=False) in the precision of the subsets."""
        G = ops.take(Fx, idx)
        r = sqh[idx] + ridge - ops.host(proj.quad_rows(ops.f64_of(G) if exact else G))
        return q2h[idx] * np.maximum(r, 0.0)

    def residual(j: int, base=None):
        fj = ops.f64_of(Fx[j])
        pf = proj.apply(fj, base=base)
        r = float(sqh[j]) + ridge - float(fj @ pf)
        return fj, pf, max(r, ridge) if in_block else r

    def settle(first: int, c0: int) -> None:
        """Make the u's of the block's picks (buffer slots c0…) exact, in float64: with V the
        rows (I − P₀) f_j for P₀ the projector at the block's start, the Gram matrix
        M = V F_bᵀ + ridge·I of the block is L Lᵀ, the u's are the rows of L⁻¹ V and the
        residuals are L_jj² (one Cholesky instead of a rank-1 update per pick)."""
        nonlocal log_det
        block = picks[first:]
        if in_block and block:
            Fb = ops.f64_of(ops.take(Fx, np.asarray(block)))  # (b, d)
            V = Fb - proj.apply(Fb.T, upto=c0).T
            M = V @ Fb.T
            M = (M + M.T) / 2
            M[range(len(block)), range(len(block))] += ridge
            r, U = _cholesky_rows(M, V)
            log_det += float(np.log(q2h[block] * r).sum())
            proj.put_rows(c0, U)
        proj.fold_full()

    while len(picks) < k:
        if m == 0:
            return picks, log_det, _why_no_gain(q2h, picks)
        # the steps up to the projector's next flush, with at most _SUBSET_ROWS candidates in all
        c0 = proj.count  # pending terms already in the block's products
        steps = min(_BLOCK - c0, k - len(picks), max(1, _SUBSET_ROWS // min(size, m)))
        if m > size:
            # uniform subsets: draws with replacement, redrawn without where a value repeats
            ids = np.sort(rng.integers(0, m, size=(steps, size)), axis=1)
            for t in np.flatnonzero((ids[:, 1:] == ids[:, :-1]).any(axis=1)):
                ids[t] = rng.choice(m, size=size, replace=False)
            ids = np.sort(pool[ids], axis=1)
        else:  # every remaining candidate, at every step of the block
            ids = np.broadcast_to(np.sort(pool[:m]), (steps, m))
        s = ids.shape[1]
        h = min(head, s)
        ub = bound[ids]  # (steps, s), as of the block's start
        if h < s:
            order = np.argsort(-ub, axis=1, kind="stable")
            cols = np.sort(order[:, :h], axis=1)  # ascending columns keep ids sorted
            rest_ub = np.take_along_axis(ub, order[:, h : h + 1], axis=1)[:, 0]
            cand = np.take_along_axis(ids, cols, axis=1)
        else:
            cols, rest_ub, cand = None, None, ids  # every candidate is in the head
        rows = ops.take(Fx, cand.reshape(-1))
        base, Y = proj.project_rows(rows)  # Y: the rows' P_f parts, also the picks' (in_block)
        base = ops.host(base)
        flat = cand.reshape(-1)
        const = (sqh[flat] + ridge - base).reshape(steps, h)  # residuals as of the block's start
        weight = q2h[flat].reshape(steps, h)
        first = len(picks)
        seen = np.empty((steps, h))  # the head's gains, for the bounds (applied after the block)
        best_of = np.empty(steps)
        for t in range(steps):
            idx = cand[t]
            if proj.count > c0:
                pending = proj.quad_buffer(rows[t * h : (t + 1) * h], start=c0)
                g = weight[t] * (const[t] - ops.host(pending))
            else:
                g = weight[t] * const[t]
            if len(picks) > first:
                g[picked[idx]] = -math.inf  # picked earlier in this block
            b = int(np.argmax(g))  # first maximum: lowest index wins ties (idx is sorted)
            best = float(g[b])
            seen[t] = g
            if cols is not None and not best > rest_ub[t]:  # the rest may hold a better one
                rest = np.ones(s, dtype=bool)
                rest[cols[t]] = False
                rest &= ub[t] >= best
                more = ids[t][rest]
                if len(more):
                    gm = gains(more, exact=False)
                    gm[picked[more]] = -math.inf
                    bound[more] = np.minimum(bound[more], np.maximum(gm, 0.0) + margin[more])
                    idx, g = np.concatenate([idx, more]), np.concatenate([g, gm])
                    best = float(g.max())
                    b = int(np.argmin(np.where(g == best, idx, n)))  # lowest index among ties
            best_of[t] = best
            j = int(idx[b])
            usable = best > 0
            if usable:
                row = t * h + b if b < h else None  # the pick's row in the block product
                fj, pf, r = residual(j, None if row is None or not in_block else ops.f64_of(Y[row]))
                usable = r > tol
            if not usable:
                # the sample holds no usable item: look at every remaining candidate before stopping
                p = _best_remaining(pool[:m], gains)
                if p < 0:
                    settle(first, c0)
                    return picks, log_det, "rank"
                j = int(pool[p])
                fj, pf, r = residual(j)
                if r <= tol:
                    settle(first, c0)
                    return picks, log_det, "rank"
            picks.append(j)
            picked[j] = True
            if not in_block:
                log_det += math.log(q2h[j] * r)
            proj.add((fj - pf) / math.sqrt(r), fold=False)
            m -= 1
            p, last = where[j], pool[m]  # swap-remove j from pool[:m]
            pool[p], pool[m] = last, j
            where[last], where[j] = p, m
            bar.update()
            if m == 0:
                break
        settle(first, c0)
        done = t + 1  # steps of this block run (fewer when the pool ran out)
        np.minimum.at(bound, cand[:done], np.maximum(seen[:done], 0.0) + margin[cand[:done]])
        if _LAZY_STOCHASTIC:  # enough for ~90 % of the last block's steps to need no more
            needed = (ub[:done] >= best_of[:done, None]).sum(1)
            q90 = (done - 1) * 9 // 10
            head = max(1, int(np.partition(needed, q90)[q90]) + 1)
    return picks, log_det, "budget"


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
    for s in range(0, len(cands), _CHUNK):
        idx = cands[s : s + _CHUNK]
        g = gains(idx)
        top = np.flatnonzero(g == g.max())
        i = int(top[np.argmin(idx[top])])
        if g[i] > best_gain or (g[i] == best_gain > 0 and idx[i] < cands[best]):
            best, best_gain = s + i, float(g[i])
    return best
