"""The candidates comparison: two study results tables, paired by seed against full-pool p3."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from p3_pruning.workspace import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location(
    "bench_candidates", PROJECT_ROOT / "benchmarks" / "bench_candidates.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def results(rows) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "method": m,
                "seed": s,
                "accuracy": a,
                "n_eval": 128,
                "score_flops": f,
                "total_flops": 2 * f,
            }
            for m, s, a, f in rows
        ]
    )


def write(workspace, table, version):
    folder = workspace / bench.RESULTS / version
    folder.mkdir(parents=True)
    table.to_csv(folder / bench.RESULTS.name, index=False)


def test_candidates_run_is_paired_with_full_pool_p3_by_seed(tmp_path, capsys):
    full = results(
        [("p3", s, a, 10.0) for s, a in [(0, 0.10), (1, 0.20), (2, 0.30)]]
        + [("random", s, 0.15, 0.0) for s in (0, 1, 2)]
    )
    cand = results([("p3", s, a, 5.0) for s, a in [(0, 0.12), (1, 0.22), (2, 0.32)]])
    write(tmp_path / "a", full.assign(accuracy=0.0), "2026-01-01T00.00.00.000Z")  # older version
    write(tmp_path / "a", full, "2026-01-02T00.00.00.000Z")
    write(tmp_path / "b", cand, "2026-01-02T00.00.00.000Z")
    table = bench.main(tmp_path / "a", tmp_path / "b").set_index("method")
    # every seed 2 points better: the paired difference is exactly +0.02 with a zero-width interval
    row = table.loc[bench.LABEL]
    assert row["diff_vs_p3"] == pytest.approx(0.02)
    assert row["diff_vs_p3_ci_low"] == pytest.approx(0.02)
    assert row["diff_vs_p3_ci_high"] == pytest.approx(0.02)
    assert table.loc["p3", "mean"] == pytest.approx(0.20)  # the newest version was read
    out = capsys.readouterr().out
    assert "score_flops of p3_candidates / p3: 0.50" in out


def test_seeds_missing_from_the_full_run_and_empty_workspaces_are_errors(tmp_path):
    full = results([("p3", 0, 0.1, 1.0)])
    cand = results([("p3", 0, 0.1, 1.0), ("p3", 5, 0.1, 1.0)])
    with pytest.raises(ValueError, match=r"seeds \[5\]"):
        bench.combine(full, cand)
    with pytest.raises(FileNotFoundError, match="no study results"):
        bench.latest_results(tmp_path)
