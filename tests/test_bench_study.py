"""Pooling studies: more seeds from several workspaces, one table (benchmarks/bench_study.py)."""

from __future__ import annotations

import importlib.util

import pandas as pd
import pytest

from p3_pruning import stats
from p3_pruning.workspace import PROJECT_ROOT, latest_version

_spec = importlib.util.spec_from_file_location(
    "bench_study", PROJECT_ROOT / "benchmarks" / "bench_study.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

VERSION = "2026-01-02T00.00.00.000Z"


def results(rows, base=0.2) -> pd.DataFrame:
    seeded = [
        {
            "method": m,
            "seed": float(s),
            "accuracy": a,
            "n_eval": 100,
            "accuracy/1": a + 0.1,
            "accuracy/2": a - 0.1,
            "samples_trained": 10,
            "score_flops": 1.0 if m == "p3" else 0.0,
            "train_flops": 2.0,
            "eval_flops": 1.0,
            "generation_flops": 1.0,
            "total_flops": 5.0 if m == "p3" else 4.0,
            "total_seconds": 9.0,
        }
        for m, s, a in rows
    ]
    base_row = {"method": "base", "seed": float("nan"), "accuracy": base, "n_eval": 100}
    return pd.DataFrame([*seeded, base_row])


def write(workspace, table, samples=("a", "b", "c")):
    for relpath, frame in (
        (bench.RESULTS, table),
        (bench.SPLITS[0], pd.DataFrame({"sample_id": list(samples)})),
        (bench.SPLITS[1], pd.DataFrame({"sample_id": ["x", "y"]})),
    ):
        folder = workspace / relpath / VERSION
        folder.mkdir(parents=True)
        if relpath.suffix == ".csv":
            frame.to_csv(folder / relpath.name, index=False)
        else:
            frame.to_parquet(folder / relpath.name)
    return workspace


def test_two_studies_pool_their_seeds_into_one_table(tmp_path, capsys):
    a = write(tmp_path / "a", results([("p3", 0, 0.30), ("random", 0, 0.20)]))
    b = write(tmp_path / "b", results([("p3", 1, 0.50), ("random", 1, 0.30)]))
    table = bench.main([a, b]).set_index("method")
    assert table.loc["p3", "n_seeds"] == 2 and table.loc["random", "n_seeds"] == 2
    assert table.loc["p3", "mean"] == pytest.approx(0.40)
    # paired by seed: +0.10 and +0.20
    assert table.loc["p3", "diff_vs_random"] == pytest.approx(0.15)
    assert table.loc["base", "n_seeds"] == 1  # kept once
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| method | seeds | accuracy") and "L1 / L2 %" in out[0]
    rows = [line.split(" | ")[0] for line in out[2:]]
    assert rows == ["| base", "| p3", "| random"]
    p3 = next(line for line in out if line.startswith("| p3 "))
    assert "| 40.0 % |" in p3 and "+15.0 (" in p3 and "1.25×" in p3


def test_studies_that_cannot_be_pooled_are_refused(tmp_path):
    a = results([("p3", 0, 0.3)])
    with pytest.raises(ValueError, match=r"method 'p3', seed 0"):
        stats.merge_results([a, results([("p3", 0, 0.4)])])
    with pytest.raises(ValueError, match="'base' rows disagree"):
        stats.merge_results([a, results([("p3", 1, 0.4)], base=0.25)])
    with pytest.raises(ValueError, match="at least one"):
        stats.merge_results([])
    first = write(tmp_path / "a", a)
    other = write(tmp_path / "b", results([("p3", 1, 0.4)]), samples=("a", "b", "d"))
    with pytest.raises(ValueError, match="train_pool.parquet differs"):
        bench.load([first, other])


def test_latest_version_reads_the_newest_and_names_a_missing_folder(tmp_path):
    for version in ("2026-01-01T00.00.00.000Z", VERSION):
        (tmp_path / "t.csv" / version).mkdir(parents=True)
        (tmp_path / "t.csv" / version / "t.csv").write_text(version)
    assert latest_version(tmp_path, "t.csv").read_text() == VERSION
    with pytest.raises(FileNotFoundError, match="no version of missing.csv"):
        latest_version(tmp_path, "missing.csv")


def test_audit_is_pooled_from_the_round_summaries(tmp_path):
    """The audit table comes from every chain's round summaries (newest version), over workspaces."""
    import json

    def summary(ws, chain, round_, selected):
        folder = ws / "data/08_reporting" / chain / f"round_{round_}" / "summary.json" / VERSION
        folder.mkdir(parents=True)
        record = {
            "method": chain.split(".")[0],
            "round": round_,
            "audit_pool_share/clean": 0.7,
            "audit_pool_share/noise": 0.3,
            "audit_selected_share/clean": 1 - selected,
            "audit_selected_share/noise": selected,
            "audit_auroc/noise": 0.75,
        }
        (folder / "summary.json").write_text(json.dumps(record))

    a, b = tmp_path / "a", tmp_path / "b"
    summary(a, "p3.seed_0", 1, 0.1)
    summary(b, "p3.seed_1", 1, 0.3)
    summary(a, "random.seed_0", 1, 0.3)
    audit = bench.load_audit([a, b])
    assert sorted(zip(audit["method"], audit["seed"], audit["origin"], strict=True))[:2] == [
        ("p3", 0, "clean"),
        ("p3", 0, "noise"),
    ]
    text = bench.audit_markdown(audit)
    assert "| noise | p3 | 1 | 2 | 30.0 | 20.0 | 0.75 |" in text  # two seeds: (10 + 30) / 2
    assert "| noise | random | 1 | 1 | 30.0 | 30.0 | 0.75 |" in text


def test_variants_of_p3_are_compared_with_its_selections_seed_by_seed(tmp_path):
    import json

    def round_(ws, chain, e, method, ids, scored):
        summary = {
            "method": method,
            "score_candidates": scored,
            "score_tokens": 100 * scored,  # 100 tokens a scored sample
            "selected": len(ids),
            "train_n_input_tokens": 50 * len(ids),
            "train_params": 1000,
            "train_lora_params": 0,
        }
        if chain.startswith("p3_incremental") and e > 1:
            summary["score_rescored"] = scored
        for relpath, write_one in (
            (
                bench.REPORTING / chain / f"round_{e}" / "summary.json",
                lambda p: p.write_text(json.dumps(summary)),
            ),
            (
                bench.SELECTIONS / chain / f"round_{e}" / "selection.parquet",
                lambda p: pd.DataFrame({"sample_id": ids}).to_parquet(p),
            ),
        ):
            folder = tmp_path / ws / relpath / VERSION
            folder.mkdir(parents=True)
            write_one(folder / relpath.name)

    for seed, p3_ids, inc_ids in ((0, "abcd", "abce"), (1, "abcd", "abcd")):
        round_("a", f"p3.seed_{seed}", 2, "p3", list(p3_ids), 10)
        round_("a", f"p3_incremental.seed_{seed}", 2, "p3", list(inc_ids), 4)
        round_("a", f"random.seed_{seed}", 2, "random", list("wxyz"), 0)
    table = bench.overlap_table(bench.load_selections([tmp_path / "a"]))
    assert list(table["arm"]) == ["p3_incremental"]  # random runs another method
    row = table.iloc[0]
    assert (row["seeds"], row["overlap"], row["min"], row["scored"]) == (2, 0.875, 0.75, 4)
    assert "| p3_incremental | 2 | 2 | 87.5 (75.0) | 4 |" in bench.overlap_markdown(table)
    for seed in (0, 1):
        round_("a", f"p3.seed_{seed}", 1, "p3", list("abcd"), 10)
    costs = bench.cost_model_markdown(bench.load_selections([tmp_path / "a"]), pool=1000)
    # scoring 1,000 x 100 tokens at 2P against training 0.2 x 1,000 x 50 tokens at 4P: 5x;
    # the incremental arm read 4 of 10 samples' tokens in round 2: 0.4 x 5 = 2x
    assert (
        "| budget 20 % | budget 10 % |" in costs
        and "| full (p3) | 100 % | 5.00× | 10.00× |" in costs
    )
    assert "| p3_incremental (rounds 2+, 2 rounds) | 40 % | 2.00× | 4.00× |" in costs


def test_redundancy_of_selections_is_read_off_the_selection_tables(tmp_path):
    import json

    def round_(chain, ids, duplicates=0.5):
        summary = {"method": chain.split(".")[0], "audit_pool_share/duplicate": duplicates}
        for relpath, write_one in (
            (
                bench.REPORTING / chain / "round_1" / "summary.json",
                lambda p: p.write_text(json.dumps(summary)),
            ),
            (
                bench.SELECTIONS / chain / "round_1" / "selection.parquet",
                lambda p: pd.DataFrame({"sample_id": ids}).to_parquet(p),
            ),
        ):
            folder = tmp_path / relpath / VERSION
            folder.mkdir(parents=True)
            write_one(folder / relpath.name)

    round_("p3.seed_0", ["a", "b", "c", "d"])
    round_("p3.seed_1", ["a", "a~dup0", "c", "d"])
    round_("random.seed_0", ["a", "a~dup0", "c", "c~dup3"])
    round_("spl.seed_0", ["a", "a~dup0"], duplicates=0)  # no near-duplicates in its pool
    table = bench.distinct_table(bench.load_selections([tmp_path]))
    assert list(table["arm"]) == ["p3", "random"]
    text = bench.distinct_markdown(table)
    assert "| p3 | 1 | 2 | 87.5 (75.0 – 100.0) |" in text
    assert "| random | 1 | 1 | 50.0 (50.0 – 50.0) |" in text


def test_pairs_compare_arms_the_main_table_does_not(tmp_path, capsys):
    rows = [("p3_b20", 0, 0.30), ("random_b20", 0, 0.25), ("p3_b20", 1, 0.40)]
    rows += [("random_b20", 1, 0.25), ("random", 0, 0.2), ("random", 1, 0.2)]
    a = write(tmp_path / "a", results(rows))
    bench.main([a], [("p3_b20", "random_b20")])
    out = capsys.readouterr().out
    assert "| p3_b20 | random_b20 | 35.0 % | 25.0 % | +10.0 (" in out
    with pytest.raises(ValueError, match="no arm 'p3_b10'"):
        bench.pairs_markdown(bench.load([a]), [("p3_b10", "random_b20")])
