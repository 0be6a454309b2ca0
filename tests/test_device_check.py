"""The GPU check's rehearsal: ``bash benchmarks/device_check.sh --cpu`` prepares the payload and runs
benchmarks/bench_gpu.py end to end with the CPU as the device. Checks the table it prints, not its
timings."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from p3_pruning.workspace import PROJECT_ROOT

# Rows of the table, by the start of their "check" cell.
SAME = [
    "scorer fp32: action probabilities",
    "scorer fp32: difficulties",
    "scorer bf16: action probabilities",
    "scorer bf16: difficulties",
    "greedy generation fp32: tokens",
    "greedy_map exact picks",
    "greedy_map stochastic picks",
    "LoRA training step: loss",
]
RATES = [
    "scorer, token_budget 1024",
    "scorer, token_budget 2048",
    "bare batched forward",
    "authors' one forward per action",
    "LoRA training",
    "generation",
]
DPP = ["greedy_map exact, n=20,000", "greedy_map stochastic, n=20,000"]


def parse(table: str) -> list[dict]:
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == ["group", "check", "result", "criterion", "pass"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return [dict(zip(header, cells, strict=True)) for cells in rows]


def find(rows: list[dict], group: str, check: str) -> dict:
    found = [r for r in rows if r["group"] == group and r["check"].startswith(check)]
    assert len(found) == 1, f"expected one {group!r} row {check!r}, got {found}"
    return found[0]


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("device_check")
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "P3_DEVICE_PAYLOAD": str(tmp / "payload"),
        "OUT": str(tmp / "out"),
    }
    proc = subprocess.run(
        ["bash", "benchmarks/device_check.sh", "--cpu", "--threads", "2"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc, tmp


@pytest.mark.slow
def test_stdout_is_one_table_and_the_file_holds_it(check):
    proc, tmp = check
    written = (tmp / "out" / "bench_gpu.md").read_text()
    assert written.count("| group |") == 1 and proc.stdout.count("| group |") == 1
    assert written.strip() in proc.stdout
    log = (tmp / "out" / "bench_gpu.log").read_text()
    assert log.startswith("device cpu") and proc.stdout.endswith("\n" + log)
    size = re.search(r"travels: working tree (\d+) B \+ payload (\d+) B", proc.stdout)
    assert size and 0 < int(size[2]) < 8 * 2**20  # tokenizer + samples: a few MiB


@pytest.mark.slow
def test_every_comparison_passes_and_fp32_is_exact_on_the_cpu(check):
    rows = parse((check[1] / "out" / "bench_gpu.md").read_text())
    for name in SAME:
        row = find(rows, "device = CPU", name)
        assert row["pass"] == "yes", row
        assert row["criterion"], row
    # the device is the CPU again: fp32 results are the same numbers
    for name in SAME[:2] + ["LoRA training step: loss"]:
        result = find(rows, "device = CPU", name)["result"]
        assert re.search(r"diff (of log p |of 1 - d )?0\.0e\+00 ", result), result
    for mode in ("exact", "stochastic"):  # numpy against the torch code path CUDA takes
        row = find(rows, "device = CPU", f"greedy_map {mode} picks (torch path)")
        assert row["result"].split()[1:3] == ["picks", "identical;"], row
    bf16 = find(rows, "device = CPU", "scorer bf16: action probabilities")["result"]
    assert float(re.search(r"log p ([\d.e+-]+)", bf16)[1]) > 0  # bf16 really is another precision
    imports = find(rows, "imports", "packages absent on the device")
    assert imports["pass"] == "yes" and imports["result"] == "none loaded"
    assert not any(r["pass"] == "NO" for r in rows)


@pytest.mark.slow
def test_every_stage_reports_a_rate_an_mfu_and_no_device_memory(check):
    rows = parse((check[1] / "out" / "bench_gpu.md").read_text())
    peak = find(rows, "throughput", "model and peak")["result"]
    assert float(re.search(r"peak ([\d.,]+) TFLOP/s", peak)[1]) > 0
    for name in RATES:
        result = find(rows, "throughput", name)["result"]
        rate = float(re.search(r"([\d,]+) tok/s", result)[1].replace(",", ""))
        mfu = float(re.search(r"MFU ([\d.]+)%", result)[1])
        assert rate > 0 and mfu > 0, result
        assert "peak mem nan GiB" in result  # no CUDA memory on the CPU
    best = find(rows, "throughput", "scorer, best token_budget")["result"]
    assert best.split(":")[0] in {"1024", "2048"} and "the default budget 1024" in best
    for name in ("bare batched forward", "authors' one forward per action"):
        ratio = re.search(r"scorer = ([\d.]+)x this", find(rows, "throughput", name)["result"])
        assert ratio and math.isfinite(float(ratio[1]))
    exact, stochastic = (find(rows, "dpp", name)["result"] for name in DPP)
    assert "500 picks" in exact and "500 picks" in stochastic
    assert re.search(r"log det -?\d", stochastic)
