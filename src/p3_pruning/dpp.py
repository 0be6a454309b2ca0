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
Per step: one pass over F (a matvec, n·d) plus O(n + d²) work; memory O(n·d), independent of k.

Why a ridge: rank(F Fᵀ) ≤ d, so with ridge = 0 every residual is 0 after d picks and plain greedy
MAP must stop. A ridge makes the kernel full rank, so one pass reaches any k; past rank d the gains
are ridge · (1 + f_iᵀ (ridge·I + F_Sᵀ F_S)⁻¹ f_i) · q_i², which still prefer items in directions the
picked set covers least. The default 1e-3 is small against unit-norm rows (the strategies
L2-normalise features), so the first d picks are those of plain greedy MAP up to a 1e-3 perturbation,
and large enough that residuals (≥ ridge) stay far above float32 rounding of the per-step matvec.

Precision: float64 features are computed in float64. float32 features stay float32 for the matvec
(the memory-bound part); P, the residuals, the gains and log det are float64. The picked item's
residual is recomputed exactly in float64 from P (O(d²)) for its log det and for the update.
Residuals are clamped at 0; ties go to the lowest index.

``mode="stochastic"``: stochastic greedy (Mirzasoleiman et al., 2015, "lazier than lazy greedy"):
each step draws (seeded) a random subset of ceil((n / k) · log(1 / delta)) remaining candidates and
takes the best of them, with exact gains through P in O(d²) each; no per-step pass over F.
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
_CHUNK = 8192  # rows per chunk for the few full passes that need float64 temporaries


def _to_tensor(x, name: str, device: torch.device | None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if device is not None:
        t = t.to(device)
    return t


def _pick_device(features, device) -> torch.device:
    if device not in (None, "auto"):
        return torch.device(device)
    if isinstance(features, torch.Tensor):
        return features.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class _Projector:
    """P = Σ u uᵀ (d, d) float64, with the newest rank-1 terms kept in a (b, d) buffer."""

    def __init__(self, d: int, device: torch.device):
        self.P = torch.zeros(d, d, dtype=torch.float64, device=device)
        self.buf = torch.zeros(_BLOCK, d, dtype=torch.float64, device=device)
        self.count = 0
        self._P_low: torch.Tensor | None = None

    def apply(self, f: torch.Tensor) -> torch.Tensor:
        """P f for f (d,) float64."""
        out = self.P @ f
        if self.count:
            b = self.buf[: self.count]
            out += b.T @ (b @ f)
        return out

    def quad_rows(self, G: torch.Tensor) -> torch.Tensor:
        """g_iᵀ P g_i for the rows of G (m, d) → (m,) float64.

        The flushed part uses G's dtype (float32 features: a float32 copy of P refreshed at each
        flush, error ~1e-6 against unit-norm rows); the buffered part is float64.
        """
        if G.dtype == torch.float64:
            out = ((G @ self.P) * G).sum(1)
        else:
            if self._P_low is None:
                self._P_low = self.P.to(G.dtype)
            out = ((G @ self._P_low) * G).sum(1, dtype=torch.float64)
        if self.count:
            out += (G.to(torch.float64) @ self.buf[: self.count].T).square().sum(1)
        return out

    def add(self, u: torch.Tensor) -> None:
        self.buf[self.count] = u
        self.count += 1
        if self.count == _BLOCK:
            self.P.addmm_(self.buf.T, self.buf)
            self.count = 0
            self._P_low = None


def _row_sqnorms(F: torch.Tensor) -> torch.Tensor:
    """‖f_i‖² (n,) in float64, computed in chunks (no (n, d) float64 temporary)."""
    out = torch.empty(F.shape[0], dtype=torch.float64, device=F.device)
    for s in range(0, F.shape[0], _CHUNK):
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
    F = _to_tensor(features, "features", dev)
    if F.ndim != 2:
        raise ValueError(f"features must be 2-D (n, d), got shape {tuple(F.shape)}")
    if F.dtype != torch.float64:
        F = F.to(torch.float32)
    F = F.contiguous()
    n, d = F.shape
    if quality is None:
        q = torch.ones(n, dtype=torch.float64, device=dev)
    else:
        q = _to_tensor(quality, "quality", dev).to(torch.float64).reshape(-1)
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

    q2 = q.square()
    diag = sqnorm + ridge  # S_ii
    scale = float(diag.max()) if n else 0.0
    show = progress if progress is not None else (k * n * d > 2e10)
    bar = tqdm(total=min(k, n), desc=f"greedy MAP ({mode})", disable=not show, leave=False)
    run = _exact if mode == "exact" else _stochastic
    picks, log_det, reason, sample_size = run(
        F,
        q2,
        sqnorm,
        diag,
        float(ridge),
        min(k, n),
        rank_tol * scale,
        bar,
        delta=delta,
        seed=seed,
        k_total=k,
    )
    bar.close()
    if len(picks) < k and reason == "budget":
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


def _exhausted_reason(q2: torch.Tensor, available: torch.Tensor) -> str:
    if not bool(available.any()):
        return "pool"
    return "rank" if bool((q2[available] > 0).any()) else "quality"


def _exact(F, q2, sqnorm, diag, ridge, k, tol, bar, **_):
    """Exact greedy: gains for all n items updated by one matvec per step."""
    n, d = F.shape
    dev = F.device
    e = torch.empty(n, dtype=F.dtype, device=dev)
    e64 = e if F.dtype == torch.float64 else torch.empty(n, dtype=torch.float64, device=dev)
    gain = q2 * diag  # (n,) float64: q_i² r_i
    floor = torch.zeros(n, dtype=torch.float64, device=dev)  # 0, or -inf once picked
    q2v = q2
    if dev.type == "cpu":
        # the O(n) vector work runs several times faster through numpy views than torch on CPU
        xp, e, e64, gain, floor, q2v = (
            np,
            e.numpy(),
            e64.numpy(),
            gain.numpy(),
            floor.numpy(),
            q2.numpy(),
        )
    else:
        xp = torch
    e_out = torch.from_numpy(e) if xp is np else e
    proj = _Projector(d, dev)
    picks: list[int] = []
    log_det = 0.0
    for _ in range(k):
        j = int(xp.argmax(gain))  # first maximum: lowest index wins ties
        if not float(gain[j]) > 0:
            avail = torch.as_tensor(floor == 0, device=dev)
            return picks, log_det, _exhausted_reason(q2, avail), 0
        fj = F[j].to(torch.float64)
        pf = proj.apply(fj)
        r = float(sqnorm[j]) + ridge - float(fj @ pf)
        if r <= tol:
            return picks, log_det, "rank", 0
        picks.append(j)
        log_det += math.log(float(q2v[j]) * r)
        u = (fj - pf) / math.sqrt(r)
        proj.add(u)
        floor[j] = -math.inf
        gain[j] = -math.inf
        torch.mv(F, u.to(F.dtype), out=e_out)  # the one pass over F
        if e64 is not e:
            e64[:] = e
        xp.square(e64, out=e64)
        xp.multiply(e64, q2v, out=e64)
        xp.subtract(gain, e64, out=gain)
        xp.maximum(gain, floor, out=gain)  # clamp residuals at 0, keep picked items at -inf
        bar.update()
    return picks, log_det, "budget", 0


def _stochastic(F, q2, sqnorm, diag, ridge, k, tol, bar, *, delta, seed, k_total):
    """Stochastic greedy: best of a seeded random subset of the remaining candidates per step."""
    n, d = F.shape
    dev = F.device
    proj = _Projector(d, dev)
    rng = np.random.default_rng(seed)
    # Zero-gain items (q = 0, or zero row with ridge 0) are never candidates: they come after
    # every positive item in exact greedy, where greedy stops instead of picking them.
    pool = (q2 * diag > 0).nonzero().flatten().cpu().numpy().astype(np.int64)
    m = len(pool)
    size = max(1, math.ceil(n / max(k_total, 1) * math.log(1 / delta)))
    picks: list[int] = []
    log_det = 0.0
    q2_host = q2.cpu().numpy()

    def residuals(idx: np.ndarray, exact: bool = False) -> torch.Tensor:
        it = torch.as_tensor(idx, device=dev)
        G = F[it].to(torch.float64) if exact else F[it]
        return sqnorm[it] + ridge - proj.quad_rows(G)

    def exact_residual(j: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        fj = F[j].to(torch.float64)
        pf = proj.apply(fj)
        return fj, pf, float(sqnorm[j]) + ridge - float(fj @ pf)

    for _ in range(k):
        if m == 0:
            reason = "pool" if len(picks) == n else _remaining_reason(q2_host, picks, n)
            return picks, log_det, reason, size
        pos = np.sort(rng.choice(m, size=size, replace=False)) if m > size else np.arange(m)
        idx = pool[pos]
        order = np.argsort(idx, kind="stable")  # lowest index wins ties
        pos, idx = pos[order], idx[order]
        gains = q2_host[idx] * residuals(idx).clamp_min(0).cpu().numpy()
        b = int(np.argmax(gains))
        p = int(pos[b])
        fj, pf, r = exact_residual(int(idx[b]))
        if not (gains[b] > 0 and r > tol):
            # the sample holds no usable item: check every remaining candidate before stopping
            p = _best_remaining(pool[:m], q2_host, lambda c: residuals(c, exact=True))
            if p < 0:
                return picks, log_det, "rank", size
            fj, pf, r = exact_residual(int(pool[p]))
            if r <= tol:
                return picks, log_det, "rank", size
        j = int(pool[p])
        picks.append(j)
        log_det += math.log(q2_host[j] * r)
        proj.add((fj - pf) / math.sqrt(r))
        m -= 1
        pool[p], pool[m] = pool[m], pool[p]  # swap-remove
        bar.update()
    return picks, log_det, "budget", size


def _remaining_reason(q2_host, picks, n) -> str:
    rest = np.ones(n, dtype=bool)
    rest[picks] = False
    return "rank" if (q2_host[rest] > 0).any() else "quality"


def _best_remaining(cands: np.ndarray, q2_host, residuals) -> int:
    """Position in ``cands`` of the remaining candidate with the largest gain (lowest index on
    ties), over all of them; -1 when none has a positive gain."""
    best, best_gain = -1, 0.0
    for s in range(0, len(cands), _CHUNK):
        idx = cands[s : s + _CHUNK]
        g = q2_host[idx] * residuals(idx).clamp_min(0).cpu().numpy()
        i = int(np.argmax(g))
        top = np.flatnonzero(g == g[i])
        i = int(top[np.argmin(idx[top])])
        if g[i] > best_gain or (g[i] == best_gain and best >= 0 and idx[i] < cands[best]):
            best, best_gain = s + i, float(g[i])
    return best
