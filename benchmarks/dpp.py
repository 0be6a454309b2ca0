"""Greedy MAP at scale: time and memory against the matvec floor, a dense kernel, and stochastic mode.

Run: ``.venv/bin/python benchmarks/dpp.py [--quick] [--threads 2] [--deltas 0.01,0.05]``.

Large case (default n = 100,000, d = 576, k = 10,000, unit-norm float32 features, ridge 1e-3):
- the floor of exact greedy on this machine: k passes over the n×d features (k matrix-vector
  products, the faster of torch.mv and numpy), timed for a subset of passes in the same run and
  extrapolated to k;
- ``greedy_map(mode="exact")``: seconds, ratio to the floor, peak resident memory during a second
  call (sampled from /proc every 2 ms, which would slow a timed call; ru_maxrss where /proc is
  missing) and its increase over the features already in memory, and the memory a dense n×n
  float64 kernel would need;
- ``greedy_map(mode="stochastic")`` for each ``--deltas`` value (subsets of (n/k)·log(1/δ)):
  seconds, speed-up over exact greedy_map and over the floor (exact greedy as k matvecs; the
  blocked exact mode runs below it), log det relative to exact.
Small case (n = 5,000, k = 1,000): a dense implementation of Chen et al.'s fast greedy MAP written
here (n×n kernel, Cholesky rows) against ``greedy_map`` on the same float64 features (picks compared)
and on float32 features; time ratios of the medians of 3 runs each (the methods taken in turn),
and the multiply-adds of both methods' dominant terms (the ratio of work the time ratio can be
compared with).
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import threading
import time
from functools import partial

import numpy as np
import torch

from p3_pruning.dpp import greedy_map

GB = 1024**3


class PeakRSS:
    """Peak resident set size of this process while the block runs, sampled every 2 ms."""

    def __init__(self):
        self._page = os.sysconf("SC_PAGE_SIZE")
        self._proc = os.path.exists("/proc/self/statm")

    def current(self) -> int:
        if self._proc:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def __enter__(self):
        self.before = self.current()
        self.peak = self.before
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, self.current())
                time.sleep(0.002)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.current())


def unit_features(n: int, d: int, seed: int) -> torch.Tensor:
    """(n, d) float32 Gaussian rows scaled to unit norm, built without float64 temporaries."""
    g = torch.Generator().manual_seed(seed)
    F = torch.randn(n, d, generator=g, dtype=torch.float32)
    F /= F.norm(dim=1, keepdim=True)
    return F


def matvec_floor(F: torch.Tensor, k: int, passes: int) -> tuple[float, float, str]:
    """Seconds for k passes F @ v at the faster of torch.mv and numpy's gemv, from ``passes``
    timed ones each; returns (extrapolated, timed, which)."""
    Fn = F.numpy()
    out = torch.empty(F.shape[0], dtype=F.dtype)
    best = None
    for name, mv in (("torch.mv", lambda v: torch.mv(F, v, out=out)), ("numpy", lambda v: Fn @ v)):
        v = torch.randn(F.shape[1], dtype=F.dtype)
        vec = v if name == "torch.mv" else v.numpy()
        for _ in range(3):
            mv(vec)
        t = time.perf_counter()
        for i in range(passes):
            v[i % F.shape[1]] += 1.0  # a different vector each pass (vec shares v's memory)
            mv(vec)
        timed = time.perf_counter() - t
        if best is None or timed < best[1]:
            best = (timed * k / passes, timed, name)
    return best


def dense_chen(F: np.ndarray, q: np.ndarray, k: int, ridge: float) -> tuple[list[int], float]:
    """Chen, Zhang & Zhou (2018) fast greedy MAP on the dense n×n kernel (float64)."""
    n = len(q)
    L = F @ F.T
    L[np.diag_indices(n)] += ridge
    L *= q[:, None]
    L *= q[None, :]
    C = np.zeros((k, n))
    d2 = np.diag(L).copy()
    picks: list[int] = []
    log_det = 0.0
    for t in range(k):
        j = int(np.argmax(d2))
        if not d2[j] > 1e-10:
            break
        picks.append(j)
        log_det += math.log(d2[j])
        e = (L[j] - C[:t, j] @ C[:t]) / math.sqrt(d2[j])
        C[t] = e
        d2 -= e * e
        d2[j] = -np.inf
    return picks, log_det


def timed(fn, **kwargs):
    """(the call's output, its seconds)."""
    t = time.perf_counter()
    out = fn(**kwargs)
    return out, time.perf_counter() - t


def interleaved(fns: dict, reps: int) -> dict:
    """{name: (the first call's output, the median seconds of ``reps`` calls)}, the calls of the
    different functions taken in turn, so that a machine slowing down or speeding up over the
    runs weighs on all of them alike."""
    outs, times = {}, {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            out, secs = timed(fn)
            outs.setdefault(name, out)
            times[name].append(secs)
    return {name: (outs[name], float(np.median(times[name]))) for name in fns}


def peak_of(fn) -> PeakRSS:
    """Peak memory of one more call, in a run of its own: the sampling thread takes the GIL every
    2 ms, which slows a Python-heavy loop by ~15 %, so timed runs go without it."""
    with PeakRSS() as mem:
        fn()
    return mem


def large_case(n: int, d: int, k: int, passes: int, seed: int, deltas: list[float]) -> None:
    print(f"== large case: n={n:,} d={d} k={k:,} float32 features, ridge=1e-3")
    F = unit_features(n, d, seed)
    q = np.random.default_rng(seed).uniform(0.05, 1.0, n)
    floor, measured, which = matvec_floor(F, k, passes)
    print(
        f"floor (k matvecs over F): {floor:.1f} s "
        f"[{passes} passes with {which} timed in {measured:.2f} s, extrapolated to k={k:,}]"
    )
    exact = partial(greedy_map, F, q, k, ridge=1e-3, progress=False)
    (idx, log_det), secs = timed(exact)
    assert len(idx) == k
    mem = peak_of(exact)
    print(
        f"exact greedy_map: {secs:.1f} s = {secs / floor:.2f}x the floor (goal <= 1.5x); "
        f"peak RSS {mem.peak / GB:.3f} GB, +{(mem.peak - mem.before) / GB:.3f} GB over the "
        f"{F.numel() * 4 / GB:.3f} GB of features (goal <= 1 GB peak); log det {log_det:.1f}"
    )
    print(f"dense n x n float64 kernel would need {n * n * 8 / GB:,.1f} GB")
    for delta in deltas:
        stochastic = partial(
            greedy_map,
            F,
            q,
            k,
            ridge=1e-3,
            mode="stochastic",
            delta=delta,
            seed=seed,
            progress=False,
        )
        (idx_s, log_det_s, info), secs_s = timed(stochastic, return_info=True)
        mem_s = peak_of(stochastic)
        rel = abs(log_det_s - log_det) / abs(log_det)
        print(
            f"stochastic greedy_map (delta={delta:g}, {info['sample_size']} candidates/step): "
            f"{secs_s:.2f} s, {secs / secs_s:.1f}x faster than exact greedy_map and "
            f"{floor / secs_s:.1f}x faster than the k-matvec floor (goal >= 10x); log det "
            f"{log_det_s:.1f}, {100 * rel:.3f} % from exact (goal <= 1 %); "
            f"{len(np.intersect1d(idx, idx_s)) / k:.1%} of picks shared; "
            f"peak RSS {mem_s.peak / GB:.3f} GB"
        )


def small_case(n: int, d: int, k: int, seed: int, reps: int = 3) -> None:
    print(
        f"== small case: n={n:,} d={d} k={k:,}, ridge=1e-3, against a dense kernel "
        f"(median of {reps} runs each, taken in turn)"
    )
    F32 = unit_features(n, d, seed + 1)
    F64 = F32.numpy().astype(np.float64)
    q = np.random.default_rng(seed + 1).uniform(0.05, 1.0, n)
    runs = interleaved(
        {
            "dense": lambda: dense_chen(F64, q, k, 1e-3),
            "float64": lambda: greedy_map(F64, q, k, ridge=1e-3, progress=False),
            "float32": lambda: greedy_map(F32, q, k, ridge=1e-3, progress=False),
        },
        reps,
    )
    (dense_idx, dense_ld), dense_s = runs["dense"]
    (idx64, ld64), s64 = runs["float64"]
    (idx32, ld32), s32 = runs["float32"]
    same = np.asarray(dense_idx) == idx64
    first_diff = int(np.argmin(same)) if not same.all() else len(same)
    # multiply-adds of each method's dominant terms, for scale: dense builds the symmetric kernel
    # (n²d/2) and its t-th step reads t Cholesky rows of length n (n·k²/2 in all); greedy_map
    # updates n gains with each pick's u (n·k·d) and computes P f and folds u uᵀ per pick (2·k·d²)
    dense_work = n * n * d / 2 + n * k * k / 2
    ours_work = n * k * d + 2 * k * d * d
    print(f"dense Chen et al. (n x n kernel): {dense_s:.2f} s, log det {dense_ld:.3f}")
    print(
        f"multiply-adds (dominant terms): dense {dense_work:.2e}, greedy_map {ours_work:.2e}, "
        f"{dense_work / ours_work:.1f}x fewer (a larger time ratio means a faster arithmetic rate)"
    )
    print(
        f"greedy_map float64: {s64:.2f} s, {dense_s / s64:.1f}x faster than dense (goal >= 5x); "
        f"log det {ld64:.3f}; picks identical to dense for the first {first_diff} of {k}"
    )
    print(
        f"greedy_map float32: {s32:.2f} s, {dense_s / s32:.1f}x faster than dense; "
        f"log det {ld32:.3f} ({100 * abs(ld32 - dense_ld) / abs(dense_ld):.4f} % from dense)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="n=20,000 k=2,000; small n=2,000 k=400")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passes", type=int, default=300, help="matvecs timed for the floor")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-large", action="store_true")
    ap.add_argument(
        "--deltas", default="0.01,0.05", help="stochastic mode's delta values (comma-separated)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__} ({args.threads} threads), numpy {np.__version__} "
        f"(its BLAS threads: OPENBLAS_NUM_THREADS, default all), {os.cpu_count()} CPUs"
    )
    if args.quick:
        large, small = (20_000, 576, 2_000), (2_000, 576, 400)
    else:
        large, small = (100_000, 576, 10_000), (5_000, 576, 1_000)
    small_case(*small, seed=args.seed)
    if not args.skip_large:
        deltas = [float(x) for x in args.deltas.split(",")]
        large_case(*large, passes=min(args.passes, large[2]), seed=args.seed, deltas=deltas)


if __name__ == "__main__":
    main()
