"""Sandbox cost per program, against a bare interpreter start, and the hostile-program table.

Run: ``.venv/bin/python benchmarks/bench_sandbox.py [--n 30]``. Prints (1) mean seconds per
``print(1)`` run for a plain ``subprocess.run`` of the same interpreter (the reference), the sandbox
with kernel layers and the sandbox with guards only, with ratios to the reference; (2) a Markdown
table of what each hostile program produced in both modes.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from p3_pruning.sandbox import run_python

REPO = Path(__file__).resolve().parents[1]


def _mean_seconds(fn, n: int) -> float:
    fn()  # warm caches
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def overhead(n: int) -> None:
    plain = _mean_seconds(
        lambda: subprocess.run(
            [sys.executable, "-S", "-c", "print(1)"], capture_output=True, check=True
        ),
        n,
    )
    kernel = _mean_seconds(lambda: run_python("print(1)"), n)
    guards = _mean_seconds(lambda: run_python("print(1)", kernel_isolation=False), n)
    print(f"runs per variant: {n}")
    print(f"plain subprocess  : {plain * 1000:7.1f} ms/run  (reference)")
    print(f"sandbox, kernel   : {kernel * 1000:7.1f} ms/run  ratio {kernel / plain:5.2f}x")
    print(f"sandbox, guards   : {guards * 1000:7.1f} ms/run  ratio {guards / plain:5.2f}x")
    print(f"kernel layers: {run_python('pass').isolation}")


def hostile_programs(port: int) -> dict[str, tuple[str, dict]]:
    token = uuid.uuid4().hex[:8]
    return {
        "infinite loop": ("while True:\n    pass", {"timeout_s": 1}),
        "sleep forever": ("import time\ntime.sleep(3600)", {"timeout_s": 1}),
        "fork bomb": ("import os\nwhile True:\n    os.fork()", {"timeout_s": 5}),
        "setsid daemon": (
            "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(600)\n"
            "print('leader done')",
            {},
        ),
        "memory bomb": (
            "chunks = []\nwhile True:\n    chunks.append(bytearray(10 ** 7))",
            {"memory_mb": 128},
        ),
        "10 GB allocation": ("x = bytearray(10 ** 10)", {"memory_mb": 128}),
        "GBs to stdout": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", {}),
        "GBs to a file": (
            "with open('big', 'wb') as f:\n    while True:\n        f.write(b'0' * (1 << 20))",
            {},
        ),
        "write /tmp/...": (f"open('/tmp/p3-escape-{token}', 'w').write('x')", {}),
        "write into the repo": (f"open({str(REPO / f'p3-escape-{token}')!r}, 'w').write('x')", {}),
        "delete a repo file": (f"import os\nos.remove({str(REPO / 'pyproject.toml')!r})", {}),
        "read parent's env": (
            "import os\nprint(open('/proc/%d/environ' % os.getppid()).read())",
            {},
        ),
        "socket to a listening port": (
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)",
            {},
        ),
        "kill its parent": ("import os\nos.kill(os.getppid(), 9)", {}),
        "kill its process group": ("import os\nos.killpg(0, 9)", {}),
        "os._exit(3)": ("import os\nos._exit(3)", {}),
        "deep recursion": ("def f(n):\n    return f(n + 1)\nf(0)", {}),
        "deep recursion, limit raised": (
            "import sys\nsys.setrecursionlimit(10 ** 8)\ndef f(n):\n    return f(n + 1)\nf(0)",
            {"timeout_s": 2, "memory_mb": 128},
        ),
        "ctypes call": ("import ctypes\nctypes.CDLL(None).getpid()", {}),
    }


def table() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        programs = hostile_programs(server.getsockname()[1])
        print("\n| program | kernel layers: status | reason | guards only: status | reason |")
        print("|---|---|---|---|---|")
        for name, (code, kw) in programs.items():
            cells = []
            for kernel in (True, False):
                res = run_python(code, kernel_isolation=kernel, **{"timeout_s": 10, **kw})
                cells += [res.status, res.reason.replace("|", "/")[:110]]
            print(f"| {name} | " + " | ".join(cells) + " |")
    alive = run_python("print('still here')")
    print(f"\nafter all of them: {alive.status} {alive.stdout.strip()!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=30, help="runs per variant for the overhead")
    overhead(parser.parse_args().n)
    table()
