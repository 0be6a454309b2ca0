"""The DPP kernel in feature space, shared by the exact and the stochastic greedy MAP.

Kedro-free. ``Kernel`` holds the validated inputs of L = diag(q)(F Fᵀ + ridge·I)diag(q) without
building it: F (n, d), q² and ‖f_i‖² (n,). ``Projector`` holds P = F_Sᵀ (F_S F_Sᵀ + ridge·I)⁻¹ F_S
(d, d) as a sum of rank-1 terms u uᵀ, the newest ones in a buffer. ``ArrayOps`` runs the few array
operations both greedy loops need on numpy (CPU) or torch (other devices).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

BLOCK = 64  # rank-1 updates of P are buffered and applied as one (d, b) x (b, d) product
CHUNK = 8192  # rows per chunk for the few full passes that need float64 temporaries


class ArrayOps:
    """The few array operations the greedy loops need, on numpy (CPU) or torch (other devices).

    On CPU everything goes through numpy (unless ``numpy_on_cpu`` is False: the torch code path,
    the one CUDA takes, then runs on CPU tensors): its BLAS runs the small per-step products about
    twice as fast as torch (no per-call threading overhead) and the passes over F at least as fast.
    """

    def __init__(self, device: torch.device, *, numpy_on_cpu: bool = True):
        self.device = device
        self.cpu = device.type == "cpu" and numpy_on_cpu
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


@dataclass(frozen=True)
class Kernel:
    """L = diag(q)(F Fᵀ + ridge·I)diag(q) in feature form (built by ``Kernel.build``).

    ``F``: (n, d) float32 or float64 features (numpy on CPU, else a torch tensor on the device);
    ``q2``: (n,) float64 q²; ``sqnorm``: (n,) float64 ‖f_i‖²; ``ops`` the array operations.
    """

    F: object
    q2: object
    sqnorm: object
    ridge: float
    ops: ArrayOps

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.F.shape)

    @property
    def scale(self) -> float:
        """max_i ‖f_i‖² + ridge, the largest diagonal entry of F Fᵀ + ridge·I (0 when n = 0)."""
        return float((self.sqnorm + self.ridge).max()) if len(self.sqnorm) else 0.0

    @classmethod
    def build(cls, features, quality, *, ridge: float, device=None, numpy_on_cpu: bool = True):
        """Validate ``features`` (n, d) and ``quality`` (n,) or None (all ones); see ``greedy_map``.

        float64 features stay float64, any other dtype becomes float32. A read-only array (e.g.
        ``np.load(..., mmap_mode="r")``) is used in place, never copied.
        """
        dev = _pick_device(features, device)
        F = _to_tensor(features, dev)
        if F.ndim != 2:
            raise ValueError(f"features must be 2-D (n, d), got shape {tuple(F.shape)}")
        if F.dtype != torch.float64:
            F = F.to(torch.float32)
        F = F.contiguous()
        n = F.shape[0]
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
        ops = ArrayOps(dev, numpy_on_cpu=numpy_on_cpu)
        return cls(ops.arr(F), ops.arr(q.square()), ops.arr(sqnorm), float(ridge), ops)


def _to_tensor(x, device: torch.device) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device)
    a = np.asarray(x)
    with warnings.catch_warnings():
        # a read-only array (a memory-mapped .npy) is shared, not copied; nothing here writes to it
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.as_tensor(a).to(device)


def _pick_device(features, device) -> torch.device:
    if device not in (None, "auto"):
        return torch.device(device)
    if isinstance(features, torch.Tensor):
        return features.device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _row_sqnorms(F: torch.Tensor) -> torch.Tensor:
    """‖f_i‖² (n,) in float64, computed in chunks (no (n, d) float64 temporary)."""
    out = torch.empty(F.shape[0], dtype=torch.float64, device=F.device)
    cpu = F.device.type == "cpu"
    for s in range(0, F.shape[0], CHUNK):
        if cpu:
            block = F[s : s + CHUNK].numpy()
            out[s : s + CHUNK] = torch.from_numpy(
                np.einsum("ij,ij->i", block, block, dtype=np.float64)
            )
        else:
            out[s : s + CHUNK] = F[s : s + CHUNK].to(torch.float64).square().sum(1)
    return out


class Projector:
    """P = Σ u uᵀ (d, d) float64, with the newest rank-1 terms kept in a (b, d) buffer."""

    def __init__(self, d: int, ops: ArrayOps):
        self.ops = ops
        self.P = ops.zeros(d, d)
        self.buf = ops.zeros(BLOCK, d)
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

    def residual(self, f, sqnorm: float, ridge: float, base=None):
        """(P f, ‖f‖² + ridge − fᵀ P f) for one row f (d,) float64, in float64."""
        pf = self.apply(f, base=base)
        return pf, float(sqnorm) + ridge - float(f @ pf)

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
        if self.count == BLOCK:
            self.P += self.buf.T @ self.buf
            self.count = 0
            self._P_low = None


def why_no_gain(q2: np.ndarray, picked: list[int]) -> str:
    """Stop reason once no remaining item has a positive gain: "pool" (none left), "rank" (items
    with q > 0 are left but the picks span the features) or "quality" (only q = 0 items left)."""
    rest = np.ones(len(q2), dtype=bool)
    rest[picked] = False
    if not rest.any():
        return "pool"
    return "rank" if bool((q2[rest] > 0).any()) else "quality"


def unit_u(f, pf, r: float):
    """The new rank-1 term of P for a pick f with P f = ``pf`` and residual r: (f − P f) / √r."""
    return (f - pf) / math.sqrt(r)
