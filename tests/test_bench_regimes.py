"""One line per regime (benchmarks/bench_regimes.py): named by the pool, paired by seed."""

from __future__ import annotations

import importlib.util
import json

import pandas as pd
import pytest

from p3_pruning.workspace import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location(
    "bench_regimes", PROJECT_ROOT / "benchmarks" / "bench_regimes.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
study = bench.bench_study

VERSION = "2026-01-02T00.00.00.000Z"


def _write(workspace, relpath, write_one):
    folder = workspace / relpath / VERSION
    folder.mkdir(parents=True)
    write_one(folder / relpath.name)


def workspace(tmp_path, name, accuracies, origins=None, selections=None):
    """A finished study: results for ``accuracies`` ``{(arm, seed): accuracy}``, a train pool of
    six rows (with ``origins`` as its origin column when given), and per (arm, seed) a round-1
    summary and selection (``selections``: ``{(arm, seed): [sample ids]}``)."""
    ws = tmp_path / name
    ids = ["a", "b", "c", "d", "a~dup1", "b~dup1"]
    pool = pd.DataFrame({"sample_id": ids})
    if origins is not None:
        pool["origin"] = origins
    rows = [
        {"method": m, "seed": float(s), "accuracy": a, "n_eval": 100, "total_flops": 4.0}
        for (m, s), a in accuracies.items()
    ]
    for row in rows:
        row["total_flops"] = 6.0 if row["method"] == "p3" else 4.0
    rows.append({"method": "base", "seed": float("nan"), "accuracy": 0.1, "n_eval": 100})
    _write(ws, study.RESULTS, lambda p: pd.DataFrame(rows).to_csv(p, index=False))
    _write(ws, study.SPLITS[0], lambda p: pool.to_parquet(p))
    _write(ws, study.SPLITS[1], lambda p: pd.DataFrame({"sample_id": ["x"]}).to_parquet(p))
    for (arm, seed), chosen in (selections or {}).items():
        kinds = dict(zip(ids, origins, strict=True))
        picked = [kinds[i] for i in chosen]
        summary = {"method": arm, "seed": seed, "round": 1}
        for origin in set(origins):
            summary[f"audit_pool_share/{origin}"] = origins.count(origin) / len(origins)
            summary[f"audit_selected_share/{origin}"] = picked.count(origin) / len(picked)
            if origin != "clean":
                summary[f"audit_auroc/{origin}"] = 0.5
        chain = study.REPORTING / f"{arm}.seed_{seed}" / "round_1"
        _write(ws, chain / "summary.json", lambda p, s=summary: p.write_text(json.dumps(s)))
        selection = study.SELECTIONS / f"{arm}.seed_{seed}" / "round_1" / "selection.parquet"
        _write(ws, selection, lambda p, c=chosen: pd.DataFrame({"sample_id": c}).to_parquet(p))
    return ws


def test_each_regime_is_named_by_its_pool_and_paired_by_seed(tmp_path, capsys):
    clean = workspace(
        tmp_path,
        "clean",
        {("p3", 0): 0.30, ("random", 0): 0.20, ("p3", 1): 0.20, ("random", 1): 0.30},
    )
    origins = ["clean"] * 4 + ["duplicate"] * 2
    dup_a = workspace(
        tmp_path,
        "dup_a",
        {("p3", 0): 0.40, ("random", 0): 0.30},
        origins,
        {("p3", 0): ["a", "a~dup1"], ("random", 0): ["a", "b"]},
    )
    dup_b = workspace(
        tmp_path,
        "dup_b",
        {("p3", 1): 0.50, ("random", 1): 0.30, ("p3", 2): 0.50},  # seed 2 has no pair
        origins,
        {("p3", 1): ["b", "b~dup1"], ("random", 1): ["c", "d"]},
    )
    rows = bench.main([[clean], [dup_a, dup_b]])
    first, second = rows
    assert first["regime"] == "clean" and first["seeds"] == 2 and first["ahead"] == 1
    assert first["diff"] == pytest.approx(0.0) and first["flops_ratio"] == pytest.approx(1.5)
    assert first["audit"] == {} and first["distinct"] == {}
    assert second["regime"] == "duplicate 33 %" and second["seeds"] == 2
    assert second["arm_accuracy"] == pytest.approx(0.45)  # paired seeds only: seed 2 is left out
    assert second["diff"] == pytest.approx(0.15) and second["ahead"] == 2
    # p3 took a problem and its copy each time: one distinct problem in two rows
    assert second["distinct"] == {"p3": [0.5], "random": [1.0]}
    assert second["audit"]["duplicate"]["p3"] == [[0.5, 0.5]]
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| pool | paired seeds | p3 | random | p3 − random")
    assert out[2].startswith("| clean | 2 | 25.0 % | 25.0 % | +0.0 (")
    assert (
        "| duplicate 33 % | 2 | 45.0 % | 30.0 % | +15.0 (" in out[3]
        and "| 2 of 2 | 1.50× | duplicate: 33.3 → 50.0 (random 0.0), AUROC 0.50; "
        "distinct problems per row 50.0 (random 100.0) |"
        in out[3]
    )


def test_an_arm_that_did_not_run_is_named(tmp_path):
    ws = workspace(tmp_path, "a", {("p3", 0): 0.3, ("random", 0): 0.2})
    with pytest.raises(ValueError, match="no 'p3_easy' results"):
        bench.regime_row([ws], arm="p3_easy")


def test_the_pooled_line_takes_every_regimes_paired_seeds():
    rows = [
        {"arm": "a", "reference": "b", "differences": [0.01, 0.03]},
        {"arm": "a", "reference": "b", "differences": [-0.02, 0.02, 0.06]},
    ]
    line = bench.pooled_line(rows)
    assert line.startswith("All 2 pools together, 5 paired (pool, seed) runs: a − b +2.0 points (")
    assert line.endswith("a ahead on 4 of 5")
    assert bench.pooled_line(rows[:1]) == ""
