"""Final-evaluation nodes: batched greedy generation on the eval set, then each task's grader."""

from __future__ import annotations

import time

import pandas as pd

from p3_pruning.adapters import LoraAdapter
from p3_pruning.chat import DEFAULT_SYSTEM, prompt_text
from p3_pruning.evaluation import evaluate_generation
from p3_pruning.models import load_model, policy_model
from p3_pruning.pipelines.rounds.nodes import NODE_SCORING_KEYS


def final_evaluate(
    eval_set: pd.DataFrame,
    model_params: dict,
    generation: dict,
    scoring: dict,
    adapter: LoraAdapter | None = None,
    *,
    method: str,
):
    """Generate on the eval set with the final adapter (or the base model) and grade every answer.

    With ``generation.grader: none`` nothing is generated: held-out NLL and difficulty only, the
    difficulty by the pool's scoring rule (``params:scoring``).
    """
    options = {k: v for k, v in generation.items() if k not in ("backend", "ray")}
    options["scoring_options"] = {
        k: v for k, v in scoring.items() if k not in (*NODE_SCORING_KEYS, "progress")
    }
    if generation["backend"] == "ray":  # one merged replica per Ray worker, same grader per block
        from p3_pruning.distributed.ray_engine import evaluate_generation_on_ray

        start = time.perf_counter()  # the workers' start-up and model loads count: Ray's cost
        per_sample, summary = evaluate_generation_on_ray(
            model_params, adapter, eval_set, ray=generation["ray"], **options
        )
        tokenizer = load_model(**model_params)[1]
    else:
        model, tokenizer = policy_model(model_params, adapter, merge=True)
        start = time.perf_counter()
        per_sample, summary = evaluate_generation(model, tokenizer, eval_set, **options)
    seconds = time.perf_counter() - start
    prompt_tokens, new_tokens = generation_tokens(tokenizer, eval_set, per_sample, options)
    overall = summary.loc[summary["scope"] == "all"].iloc[0]
    metrics = {
        "method": method,
        "accuracy": float(overall["accuracy"]),
        "accuracy_stderr": float(overall["stderr"]),
        "mean_score": float(overall["mean_score"]),
        "n_eval": int(overall["n"]),
        "generation_seconds": seconds,
        "generation_prompt_tokens": prompt_tokens,
        "generation_new_tokens": new_tokens,
    }
    for row in summary[summary["scope"] != "all"].itertuples():
        group = "/".join(str(v) for v in (row.source, row.level) if v is not None and v == v)
        metrics[f"accuracy/{group}"] = float(row.accuracy)
    return per_sample, summary, metrics


def generation_tokens(
    tokenizer, eval_set: pd.DataFrame, per_sample: pd.DataFrame, generation: dict
):
    """Tokens the final generation read and wrote, for compute accounting: the chat-formatted prompts
    and the decoded responses re-tokenized (a close count of what the decoder produced)."""
    system = generation.get("system", DEFAULT_SYSTEM)
    prompts = [prompt_text(tokenizer, p, system=system) for p in eval_set["prompt"]]
    prompt_tokens = sum(
        len(ids) for ids in tokenizer(prompts, add_special_tokens=False)["input_ids"]
    )
    responses = [r or "" for r in per_sample.get("response", pd.Series([], dtype=object))]
    new_tokens = sum(
        len(ids) for ids in tokenizer(responses, add_special_tokens=False)["input_ids"]
    )
    return int(prompt_tokens), int(new_tokens)
