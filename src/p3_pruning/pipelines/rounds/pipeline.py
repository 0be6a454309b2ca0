"""One round template, unrolled per method and per round under namespaces ``<method>.round_<e>``.

Round e reads round e−1's adapter, so the unrolled chain is the cyclic-per-epoch loop of P3 as an
acyclic Kedro DAG. A round has the method's steps, and only those:

=============  =========================================================================
``p3``         score → threshold → dpp_select → finetune → evaluate → summarize, view_selection
``static``     (round 1: score) → threshold → dpp_select → …  (scores of round 1 reused)
``spl``        score → threshold → pick (uniform among the eligible) → …
``curriculum`` (round 1: score) → threshold (easy→hard window) → pick → …
``dpp``        score → dpp_select (every finite sample) → …
``random``     pick → …       ``full``: pick (everything, shuffled) → …
=============  =========================================================================

Which steps a round has comes from the method registry (:mod:`p3_pruning.methods`: scoring
rescore / once / never, threshold step or not, DPP or uniform pick). In a study the
seed is part of the namespace (``<method>.seed_<s>.round_<e>``) and bound into the nodes, and round 1
of every scoring method reads one shared scoring of the base model per seed
(:func:`base_scoring_pipeline`, ``base.seed_<s>.round_1``): round 1 scores the same pool with the same
model, settings and seed whatever the method, so the scores are the same and are computed once.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from p3_pruning import methods, report_views
from p3_pruning.namespaces import BASE, round_namespace
from p3_pruning.pipelines.common import SUMMARY_TAG, VIEW_TAG, bind
from p3_pruning.refresh import FULL, INCREMENTAL, REFRESH

from . import nodes

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
}


def _score_step(
    round_index: int, seed: int | None, rounds: int | None = None, *, incremental: bool = False
) -> Node:
    """The score step; with ``rounds`` it also reads the pacing block and the budget (candidates
    that keep the budget); ``incremental``: the refresh that reads the last round's scores,
    embeddings and training-pass values (``nodes.score_incremental``)."""
    inputs = {"pool": "train_pool", "model_params": "params:model", "scoring": "params:scoring"}
    bound = {"round_index": round_index}
    if seed is None:
        inputs["seed"] = "params:seed"
    else:
        bound["seed"] = seed
    if rounds is not None:  # in the order of the node function's arguments
        inputs.update(pacing="params:pacing", budget="params:budget")
        bound["rounds"] = rounds
    if round_index > 0:
        inputs["adapter"] = "prev_adapter"
    func = nodes.score
    if incremental:
        inputs.update(
            previous_scores="prev_scores",
            previous_embeddings="prev_embeddings",
            train_scores="prev_train_scores",
        )
        func = nodes.score_incremental
    return Node(
        func=bind(func, **bound),
        inputs=inputs,
        outputs=["scores", "embeddings", "score_info"],
        name="score",
        tags=["score"],
    )


def _threshold_step(method: str, round_index: int, rounds: int, trend: bool) -> Node:
    inputs = {"scores": "scores", "pacing": "params:pacing"}
    if trend:
        inputs["previous_scores"] = "prev_scores"  # for the optional trend term
    return Node(
        func=bind(nodes.threshold, method=method, round_index=round_index, rounds=rounds),
        inputs=inputs,
        outputs=["eligible", "threshold_info"],
        name="threshold",
        tags=["threshold"],
    )


def _select_step(method: str, round_index: int, rounds: int, seed: int | None) -> Node:
    """``dpp_select`` for the DPP methods, ``pick`` for the uniform ones and ``full``."""
    bound = {"method": method, "round_index": round_index, "rounds": rounds}
    inputs = {"selection": "params:selection", "budget": "params:budget"}
    if seed is None:
        inputs["seed"] = "params:seed"
    else:
        bound["seed"] = seed
    traits = methods.get(method)
    if not traits.scores:
        inputs["pool"] = "train_pool"
        func = nodes.pick_unscored
    else:
        inputs["scores"] = "scores"
        inputs["pool"] = "train_pool"  # origin appended after the pick, never read by the selector
        func = nodes.select_scored
        if traits.thresholded:
            inputs["eligible"] = "eligible"
        if traits.needs_embeddings:
            inputs["embeddings"] = "embeddings"
    name = traits.step_name
    return Node(
        func=bind(func, **bound),
        inputs=inputs,
        outputs=["selection", "select_info"],
        name=name,
        tags=[name],
    )


def _finetune_step(
    method: str, round_index: int, seed: int | None, *, measured: bool = False
) -> Node:
    """``measured``: also the training pass's difficulties (``train_scores``), for the next
    round's incremental refresh."""
    first = round_index == 0
    inputs = {
        "pool": "train_pool",
        "chosen": "selection",
        "model_params": "params:model",
        "training": "params:training",
    }
    bound = {"method": method, "round_index": round_index}  # named in a divergence error
    outputs = ["adapter", "train_info"]
    func = nodes.finetune
    if measured:
        inputs["scoring"] = "params:scoring"
        outputs.append("train_scores")
        func = nodes.finetune_measured
    if seed is None:
        inputs["seed"] = "params:seed"
    else:
        bound["seed"] = seed
    func = bind(func, **bound)
    if not first:
        inputs["adapter"] = "prev_adapter"
    return Node(func=func, inputs=inputs, outputs=outputs, name="finetune", tags=["train"])


def _evaluate_step() -> Node:
    return Node(
        func=nodes.evaluate_round,
        inputs={
            "eval_set": "eval_set",
            "adapter": "adapter",
            "model_params": "params:model",
            "options": "params:cheap_eval",
            "scoring": "params:scoring",
        },
        outputs="eval_info",
        name="evaluate",
        tags=["evaluate"],
    )


def _summary_step(
    method: str,
    round_index: int,
    seed: int | None,
    steps: list[Node],
    *,
    shared: bool = False,
    arm: str | None = None,
) -> Node:
    produced = {name for step in steps for name in step.outputs} | (
        {"score_info"} if shared else set()
    )
    inputs = {
        "select_info": "select_info",
        "train_info": "train_info",
        "eval_info": "eval_info",
        "chosen": "selection",
        "budget": "params:budget",
        "pool": "train_pool",  # for the selection audit
    }
    bound = {"method": method, "round_index": round_index}
    if arm is not None and arm != method:
        bound["arm"] = arm
    if seed is None:
        inputs["seed"] = "params:seed"
    else:
        bound["seed"] = seed
    for optional in ("score_info", "threshold_info"):
        if optional in produced:
            inputs[optional] = optional
    if methods.get(method).scores:
        inputs["scores"] = "scores"
    if round_index > 0:
        inputs["previous"] = "prev_selection"
    return Node(
        func=bind(nodes.summarize_round, **bound),
        inputs=inputs,
        outputs=["summary", "difficulty_histogram"],
        name="summarize",
        tags=[SUMMARY_TAG],
    )


def _view_step(method: str, round_index: int, seed: int | None, name: str) -> Node:
    """The selection as a Markdown page a person can read (``report_views``), beside the table."""
    traits = methods.get(method)
    inputs = {"pool": "train_pool", "selection": "selection"}
    if traits.scores:
        inputs["scores"] = "scores"
    if traits.thresholded:
        inputs["eligible"] = "eligible"
    return Node(
        func=bind(report_views.selection_view, title=round_namespace(name, round_index, seed)),
        inputs=inputs,
        outputs="selection_view",
        name="view_selection",
        tags=[VIEW_TAG],
    )


def base_scoring_pipeline(seed: int | None = None, rounds: int | None = None) -> Pipeline:
    """Round 1's scoring step alone (the base model on the pool), under ``base[.seed_<s>].round_1``:
    what every scoring method's round 1 computes, for rounds built with ``shared_first_scores``.
    With ``rounds``, candidates keep the budget (the step reads the pacing block and budget)."""
    ns = round_namespace(BASE, 0, seed)
    step = _score_step(0, seed, rounds)
    return Pipeline(
        [step],
        namespace=ns,
        inputs={"train_pool"},
        parameters={i for i in step.inputs if i.startswith("params:")},
    )


def _with_blocks(step: Node, blocks: dict[str, str]) -> Node:
    """``step`` reading each parameter of ``blocks`` (``"params:selection"``) from the named
    dataset instead (a study arm's merged settings)."""
    inputs = step._inputs  # the dict each step is built with: argument -> dataset
    if not any(v in blocks for v in inputs.values()):
        return step
    return step._copy(inputs={k: blocks.get(v, v) for k, v in inputs.items()})


def round_pipeline(
    method: str,
    round_index: int,
    rounds: int,
    seed: int | None = None,
    *,
    shared_first_scores: bool = False,
    name: str | None = None,
    blocks: dict[str, str] | None = None,
    refresh: str = FULL,
) -> Pipeline:
    """The round template for ``method``'s round ``round_index`` (0-based) of ``rounds``.

    ``seed``: None reads ``params:seed`` (one run per seed); an int binds it and puts it in the
    namespace (the study pipeline). ``shared_first_scores``: round 1's scores, embeddings and
    score info are read from :func:`base_scoring_pipeline`'s outputs for the same seed instead of
    a score step of the method's own. ``name``: the namespace's first part (a study arm; default
    the method). ``blocks``: parameters read from other datasets, ``{"params:budget":
    "random_matched.settings.budget"}`` (a study arm's overrides merged into the run's).
    ``refresh``: the ``scoring.refresh`` the DAG is built for; ``incremental`` gives a rescoring
    method's finetune step a ``train_scores`` output and its later score steps the last round's
    scores, embeddings and train scores as inputs (``full``: the paper's DAG).
    """
    if refresh not in REFRESH:
        raise ValueError(f"unknown scoring.refresh {refresh!r}; expected one of {REFRESH}")
    traits = methods.get(method)
    name = name or method
    blocks = blocks or {}
    regime = traits.scoring
    incremental = refresh == INCREMENTAL and regime == "rescore"
    first = round_index == 0
    steps: list[Node] = []
    mapping: dict[str, str] = {}
    first_scores = round_namespace(BASE if shared_first_scores else name, 0, seed)

    if regime != "never" and first and shared_first_scores:
        mapping.update(
            scores=f"{first_scores}.scores",
            embeddings=f"{first_scores}.embeddings",
            score_info=f"{first_scores}.score_info",
        )
    elif regime == "rescore" or (regime == "once" and first):
        steps.append(_score_step(round_index, seed, rounds, incremental=incremental and not first))
    elif regime == "once":  # static scores: the base model's, computed once in round 1
        mapping.update(scores=f"{first_scores}.scores", embeddings=f"{first_scores}.embeddings")
    if traits.thresholded:
        steps.append(
            _threshold_step(method, round_index, rounds, regime == "rescore" and not first)
        )
    steps.append(_select_step(method, round_index, rounds, seed))
    steps.append(_finetune_step(method, round_index, seed, measured=incremental))
    steps.append(_evaluate_step())
    steps.append(
        _summary_step(method, round_index, seed, steps, shared="score_info" in mapping, arm=name)
    )
    steps.append(_view_step(method, round_index, seed, name))
    steps = [_with_blocks(step, blocks) for step in steps]

    if not first:
        prev = round_namespace(name, round_index - 1, seed)
        mapping.update(prev_adapter=f"{prev}.adapter", prev_selection=f"{prev}.selection")
        scored_prev = first_scores if round_index == 1 else prev
        if regime == "rescore" and (traits.thresholded or incremental):
            mapping["prev_scores"] = f"{scored_prev}.scores"
        if incremental:
            mapping.update(
                prev_embeddings=f"{scored_prev}.embeddings",
                prev_train_scores=f"{prev}.train_scores",
            )
    used = {dataset for step in steps for dataset in step.inputs}
    return Pipeline(
        steps,
        namespace=round_namespace(name, round_index, seed),
        inputs={
            **{dataset: dataset for dataset in GLOBAL_INPUTS},
            **{k: v for k, v in mapping.items() if k in used},
            **{v: v for v in blocks.values() if v in used},
        },
        parameters=PARAMETERS & used,
    )


def create_pipeline(
    method: str,
    rounds: int,
    seed: int | None = None,
    *,
    shared_first_scores: bool = False,
    name: str | None = None,
    blocks: dict[str, str] | None = None,
    refresh: str = FULL,
) -> Pipeline:
    """All ``rounds`` rounds of ``method``, chained through their adapters (``shared_first_scores``,
    ``name``, ``blocks``, ``refresh``: as :func:`round_pipeline`)."""
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds}")
    return sum(
        (
            round_pipeline(
                method,
                e,
                rounds,
                seed,
                shared_first_scores=shared_first_scores,
                name=name,
                blocks=blocks,
                refresh=refresh,
            )
            for e in range(rounds)
        ),
        Pipeline([]),
    )
