"""The end-to-end benchmark's table: figures from fake round summaries and final metrics."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest

from p3_pruning.workspace import PROJECT_ROOT

_spec = importlib.util.spec_from_file_location(
    "bench_end_to_end", PROJECT_ROOT / "benchmarks" / "bench_end_to_end.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

P, LORA = 1000, 10


def summary(round_, *, score=0, train=50, eval_=20, selected=5, seconds=1.0):
    record = {
        "round": round_,
        "selected": selected,
        "train_n_input_tokens": train,
        "eval_score_tokens": eval_,
        "train_seconds": seconds,
        "eval_seconds": 0.5,
        "train_params": P,
        "train_lora_params": LORA,
    }
    if score:
        record.update(score_tokens=score, score_seconds=2.0)
    return record


FINAL = {
    "accuracy": 0.25,
    "accuracy_stderr": 0.05,
    "n_eval": 64,
    "generation_seconds": 3.0,
    "generation_prompt_tokens": 30,
    "generation_new_tokens": 10,
}


def test_method_row_turns_tokens_into_flops_per_stage():
    row = bench.method_row(
        "p3", [summary(1, score=100), summary(2, score=100)], FINAL, wall_seconds=12.0
    )
    assert row["samples_trained"] == 10
    assert row["score_flops"] == 2 * 2 * P * 100  # forward, two rounds
    assert row["train_flops"] == 2 * (4 * P + 6 * LORA) * 50  # LoRA: frozen W's backward, no dW
    assert row["eval_flops"] == 2 * 2 * P * 20
    assert row["generation_flops"] == 2 * P * 40  # prompt + new tokens, once (final)
    assert row["total_flops"] == sum(row[f"{s}_flops"] for s in bench.STAGES)
    assert row["total_seconds"] == 2 * (2.0 + 1.0 + 0.5) + 3.0
    assert (row["accuracy"], row["accuracy_stderr"], row["n_eval"]) == (0.25, 0.05, 64)
    assert row["wall_seconds"] == 12.0


def test_ratios_are_against_each_reference_and_nan_for_a_zero_reference():
    rows = {
        "p3": bench.method_row("p3", [summary(1, score=100, selected=5)], FINAL, wall_seconds=6),
        "full": bench.method_row(
            "full", [summary(1, train=500, selected=50)], FINAL, wall_seconds=12
        ),
        "random": bench.method_row("random", [summary(1, selected=5)], FINAL),
    }
    got = bench.ratios(rows)
    assert got["full"]["total_flops"] == pytest.approx(
        rows["p3"]["total_flops"] / rows["full"]["total_flops"]
    )
    assert got["full"]["total_flops"] < 1 < got["random"]["total_flops"]  # scoring costs P3
    assert got["full"]["wall_seconds"] == 0.5
    assert math.isnan(got["random"]["wall_seconds"])  # random's wall time not measured
    text = bench.format_report(rows)
    assert "p3/full: total FLOPs" in text and "p3/random: total FLOPs" in text


def test_missing_keys_and_mixed_parameter_counts_are_named():
    bad = summary(2)
    del bad["train_lora_params"]
    with pytest.raises(KeyError, match=r"p3: .*round\(s\) \[2\].*train_lora_params"):
        bench.method_row("p3", [summary(1), bad], FINAL)
    with pytest.raises(KeyError, match="final metrics have no 'accuracy'"):
        bench.method_row("p3", [summary(1)], {"n_eval": 8})
    other = {**summary(2), "train_params": P + 1}
    with pytest.raises(ValueError, match="parameter counts differ"):
        bench.method_row("p3", [summary(1), other], FINAL)


def test_load_records_reads_the_latest_version_of_each_round(tmp_path):
    base = tmp_path / "data" / "08_reporting" / "p3"
    for version, selected in (("2026-01-01T00.00.00.000Z", 1), ("2026-01-02T00.00.00.000Z", 7)):
        for name, record in (
            ("round_1/summary.json", summary(1, selected=selected)),
            ("final/metrics.json", {**FINAL, "accuracy": selected / 10}),
        ):
            path = base / name / version / name.split("/")[1]
            path.parent.mkdir(parents=True)
            path.write_text(json.dumps(record))
    summaries, final = bench.load_records(tmp_path, "p3", rounds=1)
    assert [s["selected"] for s in summaries] == [7] and final["accuracy"] == 0.7
    with pytest.raises(FileNotFoundError, match="round_2"):
        bench.load_records(tmp_path, "p3", rounds=2)
