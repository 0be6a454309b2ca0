"""The study report: accuracy over seeds with intervals, paired differences, compute, difficulty vs level."""

from __future__ import annotations

import math

import pandas as pd

from p3_pruning import stats
from p3_pruning.audit import audit_plot, audit_table
from p3_pruning.compute import run_compute
from p3_pruning.methods import P3, REFERENCES
from p3_pruning.namespaces import FINAL, parse_report_key


def results_table(
    finals: dict[tuple[str, int | None], dict], rounds: dict[tuple[str, int | None], list[dict]]
) -> pd.DataFrame:
    """One row per (method, seed): final accuracy, per-level accuracy, samples trained, compute.

    FLOPs use the parameter counts the finetune node recorded (``train_params``: matmul
    parameters, ``train_lora_params``: the adapter's); the base model row counts its generation.
    """
    known = [s for summaries in rounds.values() for s in summaries if "train_params" in s]
    params = int(known[0]["train_params"]) if known else 0
    lora = int(known[0]["train_lora_params"]) if known else 0
    rows = []
    base_last = sorted(finals.items(), key=lambda item: item[0][0] == "base")  # stable: study order
    for (method, seed), final in base_last:
        summaries = sorted(rounds.get((method, seed), []), key=lambda s: s["round"])
        row = {
            "method": method,
            "seed": seed,
            "accuracy": float(final["accuracy"]),
            "accuracy_stderr": float(final.get("accuracy_stderr", math.nan)),
            "n_eval": int(final["n_eval"]),
            "rounds": len(summaries),
            "samples_trained": int(sum(s.get("selected", 0) for s in summaries)),
            **{k: float(v) for k, v in final.items() if k.startswith("accuracy/")},
            **run_compute(summaries, params, lora, final=final),
        }
        if summaries:
            row["final_eval_nll"] = float(summaries[-1].get("eval_nll", math.nan))
        rows.append(row)
    return pd.DataFrame(rows)


def _split(inputs: dict) -> tuple[dict, dict, dict]:
    finals, rounds, scores = {}, {}, {}
    pool = inputs.get("train_pool")
    for key, value in inputs.items():
        parsed = parse_report_key(key)  # <arm>__<seed>__final | round_<e> | scores__<e>
        if parsed is None:
            continue
        method, seed, what, rest = parsed
        if what == FINAL:
            finals[(method, seed)] = value
        elif what.startswith("round_"):
            rounds.setdefault((method, seed), []).append(value)
        elif what == "scores":
            scores[(method, seed, int(rest[0]))] = value
    return finals, rounds, {"pool": pool, "scores": scores}


def build_study_report(**inputs):
    """Report table, long results table, three plots, and the selection audit (one row per arm,
    seed, round and origin; ``audit.audit_summary`` averages it) with its plot, from every final
    and round of the study."""
    finals, rounds, level_inputs = _split(inputs)
    results = results_table(finals, rounds)
    table = stats.study_table(results, references=(*REFERENCES, P3))
    accuracy = stats.accuracy_plot(table, results)
    compute = stats.accuracy_compute_plot(table)
    frames = []
    for (method, seed, round_), frame in sorted(level_inputs["scores"].items()):
        part = stats.difficulty_levels(
            frame.assign(round=round_, method=method), level_inputs["pool"]
        )
        frames.append(part.assign(seed=seed))
    levels = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    by_level = stats.difficulty_by_level_plot(levels)
    audit = audit_table(
        [{**s, "method": arm, "seed": seed} for (arm, seed), ss in rounds.items() for s in ss]
    )
    return table, results, accuracy, compute, by_level, audit, audit_plot(audit)
