"""The study ledger: seeds kept past their workspace, pooled only on the same samples, and a seed
that does not reproduce refused (p3_pruning.ledger, bench_study.py --record / --ledger)."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from p3_pruning import ledger
from p3_pruning.workspace import PROJECT_ROOT
from test_bench_study import bench, results, write


def pool(responses=("1", "2", "3")) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": ["a", "b", "c"],
            "prompt": ["1+0", "1+1", "1+2"],
            "response": list(responses),
        }
    )


EVAL = pd.DataFrame({"sample_id": ["x", "y"], "prompt": ["2+2", "2+3"], "answer": ["4", "5"]})


def test_the_fingerprint_follows_content_not_row_order():
    base = ledger.pool_fingerprint(pool(), EVAL)
    assert ledger.pool_fingerprint(pool().iloc[::-1], EVAL) == base
    # a noisy pool keeps its ids and changes a response: another pool
    assert ledger.pool_fingerprint(pool(("1", "9", "3")), EVAL) != base
    assert ledger.pool_fingerprint(pool(), EVAL.iloc[:1]) != base
    with pytest.raises(ValueError, match="train_pool has no sample_id"):
        ledger.pool_fingerprint(pool().drop(columns="sample_id"), EVAL)


def test_recording_is_idempotent_and_refuses_a_seed_that_does_not_reproduce(tmp_path):
    path = tmp_path / "ledger.csv"
    first = ledger.rows(results([("p3", 0, 0.3)]), pool="abc", commit="c1", source="ws1")
    assert len(ledger.record(path, first)) == 2  # p3 seed 0 and the base model
    again = ledger.rows(results([("p3", 0, 0.3), ("p3", 1, 0.4)]), pool="abc", source="ws2")
    written = ledger.record(path, again)
    assert sorted(zip(written["method"], written["seed"].fillna(-1), strict=True)) == [
        ("base", -1),
        ("p3", 0),
        ("p3", 1),
    ]
    assert written.loc[written["seed"] == 0, "source"].item() == "ws1"  # the first record stays
    differs = ledger.rows(results([("p3", 1, 0.5)]), pool="abc")
    with pytest.raises(
        ValueError, match=r"pool abc, method 'p3', seed 1: accuracy 0.4 against 0.5"
    ):
        ledger.record(path, differs)
    # the same (method, seed) on another pool is another result
    other = ledger.rows(results([("p3", 1, 0.5)], base=0.3), pool="def")
    assert len(ledger.record(path, other)) == 5
    with pytest.raises(ValueError, match="seed 0: accuracy"):
        both = pd.concat([first, ledger.rows(results([("p3", 0, 0.9)]), pool="abc")])
        ledger.record(tmp_path / "fresh.csv", both)


def test_a_later_workspace_pools_with_the_ledgers_seeds_of_its_own_samples(tmp_path, capsys):
    path = tmp_path / "ledger.csv"
    early = write(tmp_path / "early", results([("p3", 0, 0.30), ("random", 0, 0.20)]))
    bench.record([early], path)
    recorded = ledger.read(path)
    assert set(recorded["source"]) == {"early"} and recorded["pool"].nunique() == 1
    assert set(recorded["regime"]) == {"clean"}  # the pool has no origin column: nothing injected
    # the early workspace is gone; a later one runs seed 1 on the same samples
    late = write(tmp_path / "late", results([("p3", 1, 0.50), ("random", 1, 0.30)]))
    table = bench.main([late], ledger=path).set_index("method")
    assert table.loc["p3", "n_seeds"] == 2 and table.loc["random", "n_seeds"] == 2
    assert table.loc["p3", "diff_vs_random"] == pytest.approx(0.15)
    assert table.loc["base", "n_seeds"] == 1
    capsys.readouterr()
    # a workspace of other samples takes nothing from the ledger
    other = write(tmp_path / "other", results([("p3", 1, 0.50)]), samples=("a", "b", "d"))
    assert bench.main([other], ledger=path).set_index("method").loc["p3", "n_seeds"] == 1
    # a workspace that holds a recorded seed with another result is refused
    rerun = write(tmp_path / "rerun", results([("p3", 0, 0.31)]))
    with pytest.raises(ValueError, match="the ledger and the workspaces disagree"):
        bench.main([rerun], ledger=path)


def test_bench_regimes_pairs_a_new_arm_with_the_ledgers_reference(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_regimes", PROJECT_ROOT / "benchmarks" / "bench_regimes.py"
    )
    regimes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regimes)
    path = tmp_path / "ledger.csv"
    eight = write(tmp_path / "eight", results([("random", s, 0.2 + s / 100) for s in (0, 1, 2)]))
    bench.record([eight], path)
    matched = write(tmp_path / "m", results([("random_matched", s, 0.3) for s in (0, 1)]))
    with pytest.raises(ValueError, match="no 'random' results"):
        regimes.main([[matched]], arm="random_matched")  # without the ledger: nothing to pair
    (row,) = regimes.main([[matched]], arm="random_matched", ledger=path)
    assert row["seeds"] == 2 and row["ahead"] == 2
    assert row["diff"] == pytest.approx(0.3 - 0.205)
    assert "| clean | 2 | 30.0 % | 20.5 % |" in capsys.readouterr().out


def test_three_workspaces_recording_the_same_base_model_keep_it_once(tmp_path):
    path = tmp_path / "ledger.csv"
    new = pd.concat(
        [ledger.rows(results([("p3", s, 0.3)]), pool="abc", source=f"ws{s}") for s in range(3)]
    )
    written = ledger.record(path, new)
    assert (written["method"] == "base").sum() == 1 and len(written) == 4
    new.loc[new["source"] == "ws2", "accuracy"] = 0.25  # ws2's base model disagrees
    with pytest.raises(ValueError, match="method 'base', seed —: accuracy 0.2 against 0.25"):
        ledger.record(tmp_path / "fresh.csv", new)


def test_a_pool_is_named_by_its_injected_origins():
    shares = ledger.pool_shares(pd.DataFrame({"origin": ["clean"] * 7 + ["noise"] * 3}))
    assert shares == pytest.approx({"clean": 0.7, "noise": 0.3})
    assert ledger.regime_name(shares) == "noise 30 %"
    mixed = {"clean": 0.5, "too_hard": 0.25, "duplicate": 0.25, "off_task": 0.0}
    assert ledger.regime_name(mixed) == "duplicate 25 %, too_hard 25 %"
    assert ledger.regime_name(ledger.pool_shares(pool())) == "clean"


def test_the_summary_says_what_ran_where(tmp_path, capsys):
    path = tmp_path / "ledger.csv"
    noisy = results([("p3", s, 0.2 + s / 10) for s in (0, 1, 2)] + [("random", 0, 0.25)])
    ledger.record(path, ledger.rows(noisy, pool="abc", regime="noise 30 %", source="ws1"))
    clean = results([("random", 1, 0.4)], base=0.3)
    ledger.record(path, ledger.rows(clean, pool="def", regime="clean", source="ws2"))
    table = ledger.summary(ledger.read(path))
    assert table[["regime", "method", "seeds", "seed_list"]].values.tolist() == [
        ["clean", "random", 1, "1"],
        ["clean", "base", 0, "—"],
        ["noise 30 %", "p3", 3, "0 1 2"],
        ["noise 30 %", "random", 1, "0"],
        ["noise 30 %", "base", 0, "—"],
    ]
    assert table.loc[2, "accuracy"] == pytest.approx(0.3) and table.loc[2, "sources"] == "ws1"
    ledger.main([str(path)])
    out = capsys.readouterr().out
    assert "| noise 30 % | abc | p3 | 3 | 0 1 2 | 30.0 % | ws1 |" in out
    with pytest.raises(SystemExit):
        ledger.main([str(tmp_path / "missing.csv")])
    assert "missing.csv: no such ledger" in capsys.readouterr().err


def test_the_committed_ledger_is_consistent():
    """benchmarks/ledger.csv, the regime studies' evidence: one row per (pool, method, seed), every
    accuracy a whole number of correct answers, every row with its pool, regime, source and base
    model, one regime per pool."""
    recorded = ledger.read(PROJECT_ROOT / "benchmarks" / "ledger.csv")
    assert len(recorded) > 0
    keys = ledger._key(recorded)
    assert not keys.duplicated().any(), keys[keys.duplicated()].tolist()
    correct = recorded["accuracy"] * recorded["n_eval"]
    assert ((correct - correct.round()).abs() < 1e-6).all()
    assert recorded["pool"].str.fullmatch(r"[0-9a-f]{12}").all()
    assert recorded["source"].notna().all()
    for pool, rows in recorded.groupby("pool"):
        assert (rows["method"] == "base").sum() == 1, pool
        assert rows["regime"].notna().all() and rows["regime"].nunique() == 1, pool
        assert rows["n_eval"].nunique() == 1, pool
