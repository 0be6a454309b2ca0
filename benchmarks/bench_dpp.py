"""Greedy MAP at scale: time and memory against the matvec floor, a dense kernel, and stochastic mode.

Run: ``.venv/bin/python benchmarks/bench_dpp.py [--quick] [--threads 2] [--deltas 0.01,0.05]`` for the
small and large cases below, or ``... --n 10000,100000,1000000 [--k 10000]`` for the scaling run.

Scaling run (``--n``; d = 576, k = ``--k``, ridge 1e-3): for each n the unit-norm float32 features
are written to an ``.npy`` chunk by chunk and read memory-mapped (``np.load(mmap_mode="r")``, as the
round's embeddings are stored: at n = 1,000,000 they are 2.15 GB), and each (size, mode) runs in a
fresh process so that sizes don't share a heap: the k-matvec floor (timed passes extrapolated to k),
exact and stochastic ``greedy_map``. Prints seconds, the ratio to that size's floor, the process's
peak RSS (ru_maxrss; it counts the mapped feature pages it touched), log det against exact, the
growth exponent of the seconds between sizes, and the goals.

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
Small case (n = 5,000, k = 1,000): ``greedy_map_reference`` (Chen et al.'s fast greedy MAP on the
dense n×n kernel, Cholesky rows) against ``greedy_map`` on the same float64 features (picks
compared) and on float32 features; time ratios of the medians of 3 runs each (the methods taken in turn),
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
import warnings
from functools import partial

import numpy as np
import torch

from p3_pruning.dpp import greedy_map, greedy_map_reference

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


def matvec_floor(F, k: int, passes: int) -> tuple[float, float, str]:
    """Seconds for k passes F @ v at the faster of torch.mv and numpy's gemv, from ``passes``
    timed ones each; returns (extrapolated, timed, which). F: a tensor or a (memory-mapped,
    read-only) array, shared by both."""
    if isinstance(F, torch.Tensor):
        Fn = F.numpy()
    else:
        Fn = F
        with warnings.catch_warnings():  # read-only pages: torch.mv only reads them
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            F = torch.from_numpy(np.asarray(F))
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
            "dense": lambda: greedy_map_reference(F64, q, k, ridge=1e-3),
            "float64": lambda: greedy_map(F64, q, k, ridge=1e-3, progress=False),
            "float32": lambda: greedy_map(F32, q, k, ridge=1e-3, progress=False),
        },
        reps,
    )
    (dense_idx, dense_ld), dense_s = runs["dense"]
    (idx64, ld64), s64 = runs["float64"]
    (idx32, ld32), s32 = runs["float32"]
    same = dense_idx == idx64
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


def write_features(path: str, n: int, d: int, seed: int, chunk: int = 1 << 16) -> None:
    """(n, d) float32 unit-norm Gaussian rows written to an .npy chunk by chunk (the writer never
    holds more than one chunk)."""
    g = torch.Generator().manual_seed(seed)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, chunk):
        F = torch.randn(min(chunk, n - s), d, generator=g, dtype=torch.float32)
        F /= F.norm(dim=1, keepdim=True)
        out[s : s + len(F)] = F.numpy()
    out.flush()
    del out


def floor_passes(n: int, k: int) -> int:
    """Matvecs timed for the floor: ~3e7 rows read in all (about 5 s here), within [20, k]."""
    return int(min(k, max(20, 30_000_000 // n)))


def worker(args) -> None:
    """One (size, mode) in a fresh process: features memory-mapped from ``--features``; prints one
    JSON line with the seconds, the peak RSS (ru_maxrss, which counts the mapped feature pages
    this process touched) and, for greedy_map, log det (the picks go to ``--picks``)."""
    import json

    torch.set_num_threads(args.threads)
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    F = np.load(args.features, mmap_mode="r")
    n = F.shape[0]
    q = np.random.default_rng(args.seed).uniform(0.05, 1.0, n)
    out = {"rss_start": rss_start}
    if args.worker == "floor":
        floor, measured, which = matvec_floor(F, args.k, args.passes)
        out.update(seconds=floor, measured=measured, which=which, passes=args.passes)
    else:
        kwargs = {"mode": args.worker, "delta": args.delta, "seed": args.seed}
        (idx, log_det), secs = timed(
            partial(greedy_map, F, q, args.k, ridge=1e-3, progress=False, **kwargs)
        )
        np.save(args.picks, idx)
        out.update(seconds=secs, log_det=log_det, selected=len(idx))
    out["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(out))


def run_worker(script_args: list[str]) -> dict:
    import json
    import subprocess
    import sys

    cmd = [sys.executable, os.path.abspath(__file__), *script_args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"worker {' '.join(script_args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def scale_case(
    sizes: list[int], d: int, k: int, deltas: list[float], seed: int, threads: int, workdir
) -> None:
    import tempfile

    print(
        f"== scaling: n in {', '.join(f'{n:,}' for n in sizes)}, d={d}, k={k:,}, ridge=1e-3; "
        "float32 unit-norm features written to an .npy and memory-mapped read-only "
        '(np.load(mmap_mode="r")); each (size, mode) in a fresh process; peak RSS = its ru_maxrss, '
        "mapped feature pages included"
    )
    print(
        "load average (1, 5, 15 min) at the start: "
        + ", ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    header = f"{'n':>10} {'mode':<24} {'seconds':>9} {'x floor':>8} {'peak RSS':>9}  notes"
    print(header)
    times: dict[str, list[float]] = {}
    results = []
    with tempfile.TemporaryDirectory(prefix="p3-dpp-bench-", dir=workdir) as tmp:
        for n in sizes:
            path = os.path.join(tmp, f"features_{n}.npy")
            write_features(path, n, d, seed)
            gb = n * d * 4 / GB
            common = ["--features", path, "--k", str(k), "--seed", str(seed)]
            common += ["--threads", str(threads)]
            passes = floor_passes(n, k)
            fl = run_worker(["--worker", "floor", *common, "--passes", str(passes)])
            times.setdefault("floor (k matvecs)", []).append(fl["seconds"])
            print(
                f"{n:>10,} {'floor (k matvecs)':<24} {fl['seconds']:>9.1f} {1.0:>8.2f} "
                f"{fl['peak_rss'] / GB:>8.2f}G  {passes} passes with {fl['which']} timed in "
                f"{fl['measured']:.2f} s, extrapolated to k; features {gb:.2f} GB"
            )
            modes = [("exact", "exact", 0.01)]
            modes += [(f"stochastic delta={dl:g}", "stochastic", dl) for dl in deltas]
            exact = None
            for name, mode, delta in modes:
                picks = os.path.join(tmp, f"picks_{n}_{name.replace(' ', '_')}.npy")
                r = run_worker(["--worker", mode, *common, "--delta", str(delta), "--picks", picks])
                r["picks"] = np.load(picks)
                times.setdefault(name, []).append(r["seconds"])
                notes = f"log det {r['log_det']:.1f}"
                if exact is None:
                    exact = r
                else:
                    rel = abs(r["log_det"] - exact["log_det"]) / abs(exact["log_det"])
                    shared = len(np.intersect1d(r["picks"], exact["picks"])) / max(
                        1, len(r["picks"])
                    )
                    r["speedup"], r["rel"] = exact["seconds"] / r["seconds"], rel
                    notes += (
                        f", {r['speedup']:.1f}x faster than exact, {100 * rel:.3f} % from exact's"
                        f" log det, {shared:.1%} of picks shared"
                    )
                if r["selected"] < k:
                    notes += f"; {r['selected']:,} picks (k > n)"
                elif k == n:
                    notes += "; k = n: every item is picked"
                print(
                    f"{n:>10,} {name:<24} {r['seconds']:>9.1f} {r['seconds'] / fl['seconds']:>8.2f} "
                    f"{r['peak_rss'] / GB:>8.2f}G  {notes}"
                )
                results.append((n, name, r, fl))
            os.remove(path)
    if len(sizes) > 1:
        steps = list(zip(sizes[:-1], sizes[1:], strict=True))
        print("growth exponent of the seconds, log(t2 / t1) / log(n2 / n1):")
        print(f"{'':<26}" + "".join(f"{f'{a:,} -> {b:,}':>22}" for a, b in steps))
        for name, ts in times.items():
            exps = [
                math.log(t2 / t1) / math.log(b / a)
                for (a, b), t1, t2 in zip(steps, ts, ts[1:], strict=False)
            ]
            print(f"{name:<26}" + "".join(f"{e:>22.2f}" for e in exps))
    print(
        "load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    print("goals:")
    for n, name, r, fl in results:
        if name == "exact" and n == max(sizes):
            ratio, peak = r["seconds"] / fl["seconds"], r["peak_rss"] / GB
            print(
                f"  exact at n={n:,}: {ratio:.2f}x the k-matvec floor (goal <= 1.5x: "
                f"{'met' if ratio <= 1.5 else 'NOT met'}), peak RSS {peak:.2f} GB (goal < 4 GB: "
                f"{'met' if peak < 4 else 'NOT met'})"
            )
        if "speedup" in r and n >= 100_000:
            ok = r["speedup"] >= 10 and r["rel"] <= 0.01
            print(
                f"  {name} at n={n:,}: {r['speedup']:.1f}x faster than exact, log det "
                f"{100 * r['rel']:.3f} % from exact (goal >= 10x and <= 1 %: "
                f"{'met' if ok else 'NOT met'})"
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
    ap.add_argument(
        "--n",
        default=None,
        help="scaling run instead of the small/large cases: pool sizes (comma-separated), "
        "e.g. 10000,100000,1000000; d=576, k=--k",
    )
    ap.add_argument("--k", type=int, default=10_000, help="picks in the scaling run")
    ap.add_argument("--workdir", default=None, help="where the scaling run writes its .npy files")
    # one (size, mode) of the scaling run, in a process of its own (used by the scaling run)
    ap.add_argument("--worker", choices=("floor", "exact", "stochastic"), help=argparse.SUPPRESS)
    ap.add_argument("--features", help=argparse.SUPPRESS)
    ap.add_argument("--picks", help=argparse.SUPPRESS)
    ap.add_argument("--delta", type=float, default=0.01, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__} ({args.threads} threads), numpy {np.__version__} "
        f"(its BLAS threads: OPENBLAS_NUM_THREADS, default all), {os.cpu_count()} CPUs"
    )
    if args.n:
        sizes = [int(x) for x in args.n.split(",")]
        deltas = [float(x) for x in args.deltas.split(",")]
        scale_case(sizes, 576, args.k, deltas, args.seed, args.threads, args.workdir)
        return
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
