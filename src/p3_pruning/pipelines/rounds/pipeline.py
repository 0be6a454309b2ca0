"""One round template, unrolled per method and per round under namespaces ``<method>.round_<e>``.

Round e reads round e−1's adapter, so the unrolled chain is the cyclic-per-epoch loop of P3 as an
acyclic Kedro DAG. Which steps a round has depends only on the method's scoring regime:

- ``p3``, ``spl``, ``dpp``: rescore the whole pool with the current policy every round;
- ``static``, ``curriculum``: score once with the base model (round 1) and reuse those scores;
- ``random``, ``full``: never score.
"""

from __future__ import annotations

import functools

from kedro.pipeline import Node, Pipeline

from . import nodes

METHODS = ("p3", "spl", "dpp", "random", "full", "static", "curriculum")
RESCORE = frozenset({"p3", "spl", "dpp"})
SCORE_ONCE = frozenset({"static", "curriculum"})
UNSCORED = frozenset({"random", "full"})

GLOBAL_INPUTS = {"train_pool", "eval_set"}
PARAMETERS = {
    "params:model",
    "params:scoring",
    "params:pacing",
    "params:selection",
    "params:training",
    "params:cheap_eval",
    "params:budget",
    "params:seed",
    "params:rounds",
}


def _bind(func, **kwargs):
    """``func`` with keyword arguments fixed, keeping its name for Kedro and kedro-viz."""
    return functools.update_wrapper(functools.partial(func, **kwargs), func)


def round_name(method: str, round_index: int) -> str:
    """Namespace of a round; ``round_index`` is 0-based, names are 1-based."""
    return f"{method}.round_{round_index + 1}"


def round_pipeline(method: str, round_index: int, rounds: int) -> Pipeline:
    """The round template for ``method``'s round ``round_index`` (0-based) of ``rounds``."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    first = round_index == 0
    prev = None if first else round_name(method, round_index - 1)
    scored_here = method in RESCORE or (method in SCORE_ONCE and first)
    where = {"method": method, "round_index": round_index}
    steps = []
    mapping: dict[str, str] = {}

    if scored_here:
        score_inputs = {
            "pool": "train_pool",
            "model_params": "params:model",
            "scoring": "params:scoring",
        }
        if not first:
            score_inputs["adapter"] = "prev_adapter"
        steps.append(
            Node(
                _bind(nodes.score, round_index=round_index),
                score_inputs,
                ["scores", "embeddings", "score_info"],
                name="score",
            )
        )
    elif method in SCORE_ONCE:
        # Static scores: the base model's, computed once in round 1.
        first_round = round_name(method, 0)
        mapping.update(scores=f"{first_round}.scores", embeddings=f"{first_round}.embeddings")

    select_params = {
        "pacing": "params:pacing",
        "selection": "params:selection",
        "budget": "params:budget",
        "seed": "params:seed",
        "configured_rounds": "params:rounds",
    }
    bound = {"method": method, "round_index": round_index, "rounds": rounds}
    if method in UNSCORED:
        steps.append(
            Node(
                _bind(nodes.select_unscored, **bound),
                {"pool": "train_pool", **select_params},
                ["selection", "select_info"],
                name="select",
            )
        )
    else:
        select_inputs = {"scores": "scores", "embeddings": "embeddings", **select_params}
        if method in RESCORE and not first:
            select_inputs["previous_scores"] = "prev_scores"  # for the optional trend term
        steps.append(
            Node(
                _bind(nodes.select, **bound),
                select_inputs,
                ["selection", "select_info"],
                name="select",
            )
        )

    finetune_inputs = {
        "pool": "train_pool",
        "chosen": "selection",
        "model_params": "params:model",
        "training": "params:training",
        "seed": "params:seed",
    }
    if not first:
        finetune_inputs["adapter"] = "prev_adapter"
    steps.append(Node(nodes.finetune, finetune_inputs, ["adapter", "train_info"], name="finetune"))
    steps.append(
        Node(
            nodes.evaluate_round,
            {
                "eval_set": "eval_set",
                "adapter": "adapter",
                "model_params": "params:model",
                "options": "params:cheap_eval",
            },
            "eval_info",
            name="evaluate",
        )
    )

    summary_inputs = {
        "select_info": "select_info",
        "train_info": "train_info",
        "eval_info": "eval_info",
        "chosen": "selection",
    }
    if scored_here:
        summary_inputs["score_info"] = "score_info"
    if method not in UNSCORED:
        summary_inputs["scores"] = "scores"
    if not first:
        summary_inputs["previous"] = "prev_selection"
    steps.append(
        Node(
            _bind(nodes.summarize, **where),
            summary_inputs,
            ["summary", "difficulty_histogram"],
            name="summarize",
        )
    )

    if prev is not None:
        mapping.update(
            prev_adapter=f"{prev}.adapter",
            prev_selection=f"{prev}.selection",
        )
        if method in RESCORE:
            mapping["prev_scores"] = f"{prev}.scores"
    used = {name for step in steps for name in step.inputs}
    return Pipeline(
        steps,
        namespace=round_name(method, round_index),
        inputs={**{name: name for name in GLOBAL_INPUTS}, **mapping},
        parameters=PARAMETERS & used,
    )


def create_pipeline(method: str = "p3", rounds: int = 3, **kwargs) -> Pipeline:
    """All ``rounds`` rounds of ``method``, chained through their adapters."""
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds}")
    return sum((round_pipeline(method, e, rounds) for e in range(rounds)), Pipeline([]))
