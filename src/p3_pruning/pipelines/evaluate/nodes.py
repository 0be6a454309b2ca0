"""Final-evaluation nodes: batched greedy generation on the eval set, then each task's grader."""

from __future__ import annotations

import time

import pandas as pd

from p3_pruning.adapters import LoraAdapter
from p3_pruning.evaluation import evaluate_generation
from p3_pruning.pipelines.rounds.nodes import policy_model


def final_evaluate(
    eval_set: pd.DataFrame,
    model_params: dict,
    generation: dict,
    adapter: LoraAdapter | None = None,
    *,
    method: str,
):
    """Generate on the eval set with the final adapter (or the base model) and grade every answer."""
    model, tokenizer = policy_model(model_params, adapter, merge=True)
    start = time.perf_counter()
    per_sample, summary = evaluate_generation(model, tokenizer, eval_set, **generation)
    seconds = time.perf_counter() - start
    overall = summary.loc[summary["scope"] == "all"].iloc[0]
    metrics = {
        "method": method,
        "accuracy": float(overall["accuracy"]),
        "accuracy_stderr": float(overall["stderr"]),
        "mean_score": float(overall["mean_score"]),
        "n_eval": int(overall["n"]),
        "generation_seconds": seconds,
    }
    for row in summary[summary["scope"] != "all"].itertuples():
        group = "/".join(str(v) for v in (row.source, row.level) if v is not None and v == v)
        metrics[f"accuracy/{group}"] = float(row.accuracy)
    return per_sample, summary, metrics
