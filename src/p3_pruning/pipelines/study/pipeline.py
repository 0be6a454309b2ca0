"""``study``: every arm × its seeds (namespaces ``<arm>.seed_<s>.round_<e>`` and
``<arm>.seed_<s>.final``, from the same round template), the base model's evaluation once, and the
report in ``data/08_reporting/study/``.

Arms: each method of ``study.methods`` is an arm of its own name over ``study.seeds``; each entry
of ``study.arms`` is a method plus overrides of the round's parameter blocks (``budget``,
``scoring``, ``pacing``, ``selection``, ``training``), over its own ``seeds`` or the study's. An
arm's overrides are merged into the run's blocks by one node per block
(``<arm>.settings.<block>``), so ``--params`` still reaches them. Round 1's scoring (the base
model on the pool) is the same for every arm of a seed that scores with the run's scoring block
(or overrides only what acts from round 2 on, such as ``refresh``): it runs once per seed
(``base.seed_<s>.round_1``) and their round 1 reads it."""

from __future__ import annotations

from typing import NamedTuple

from kedro.pipeline import Node, Pipeline

from p3_pruning.config import ARM_BLOCKS, merge_block
from p3_pruning.methods import get as method_traits
from p3_pruning.namespaces import FINAL, final_namespace, report_key, round_namespace
from p3_pruning.pipelines.common import REPORT_TAG, bind
from p3_pruning.pipelines.evaluate.pipeline import BASE, final_pipeline
from p3_pruning.pipelines.rounds.pipeline import base_scoring_pipeline
from p3_pruning.pipelines.rounds.pipeline import create_pipeline as rounds_pipeline
from p3_pruning.refresh import FULL

from . import nodes


class Arm(NamedTuple):
    """One arm of a study: its name (the namespace's first part), method, overrides and seeds."""

    name: str
    method: str
    overrides: dict
    seeds: tuple[int, ...]


def study_arms(methods, seeds, arms: dict | None = None) -> list[Arm]:
    """The study's arms in order: ``methods`` (plain, over ``seeds``), then ``arms``."""
    out = [Arm(m, m, {}, tuple(int(s) for s in seeds)) for m in methods]
    for name, spec in (arms or {}).items():
        spec = dict(spec)
        own = spec.pop("seeds", None) or seeds
        method = spec.pop("method")
        overrides = {k: v for k, v in spec.items() if k in ARM_BLOCKS and v is not None}
        out.append(Arm(name, method, overrides, tuple(int(s) for s in own)))
    return out


# Scoring keys that act from round 2 on: an arm overriding only these scores round 1 as the run does
ROUND_ONE_NEUTRAL = frozenset({"refresh", "incremental", "progress"})


def shares_first_scores(arm: Arm, candidates: bool = False) -> bool:
    """Whether ``arm``'s round 1 reads the seed's shared base scoring: it scores (its method does),
    and its ``scoring`` override, if any, changes nothing round 1 computes (``refresh: incremental``
    differs from ``full`` only from round 2 on). With ``candidates`` (the run scores a subset,
    topped up until the budget passes the threshold), round 1 also depends on the budget and the
    pacing: an arm overriding either scores its own."""
    own = arm.overrides.get("scoring") or {}
    if candidates and {"budget", "pacing"} & set(arm.overrides):
        return False
    return method_traits(arm.method).scores and set(own) <= ROUND_ONE_NEUTRAL


def settings_pipeline(arm: Arm) -> tuple[Pipeline, dict[str, str]]:
    """One node per overridden block: the run's block with the arm's override merged in, and the
    ``{"params:<block>": "<arm>.settings.<block>"}`` mapping the arm's rounds read them through."""
    steps, blocks = [], {}
    for block, override in arm.overrides.items():
        dataset = f"{arm.name}.settings.{block}"
        steps.append(
            Node(
                func=bind(merge_block, override=override),
                inputs={"base": f"params:{block}"},
                outputs=dataset,
                name=f"{arm.name}_{block}_settings",
                tags=["settings"],
            )
        )
        blocks[f"params:{block}"] = dataset
    return Pipeline(steps), blocks


def report_pipeline(arms: list[Arm], rounds: int, candidates: bool = False) -> Pipeline:
    inputs = {report_key(BASE, None, FINAL): f"{final_namespace(BASE)}.metrics"}
    inputs["train_pool"] = "train_pool"
    for arm in arms:
        for s in arm.seeds:
            inputs[report_key(arm.name, s, FINAL)] = f"{final_namespace(arm.name, s)}.metrics"
            for e in range(rounds):
                key = report_key(arm.name, s, f"round_{e + 1}")
                inputs[key] = f"{round_namespace(arm.name, e, s)}.summary"
    # difficulty by level: the first seed of each arm that rescores (round 1: the shared scoring)
    for arm in (a for a in arms if method_traits(a.method).scoring == "rescore"):
        first = arm.seeds[0]
        for e in range(rounds):
            shared = e == 0 and shares_first_scores(arm, candidates)
            scored_by = round_namespace(BASE if shared else arm.name, e, first)
            inputs[report_key(arm.name, first, "scores", e + 1)] = f"{scored_by}.scores"
    return Pipeline(
        [
            Node(
                func=nodes.build_study_report,
                inputs=inputs,
                outputs=[
                    "report_table",
                    "results_table",
                    "accuracy_plot",
                    "compute_plot",
                    "difficulty_by_level_plot",
                    "audit_table",
                    "audit_plot",
                ],
                name="report",
                tags=[REPORT_TAG],
            )
        ],
        namespace="study",
        inputs=set(inputs.values()),
    )


def arm_refresh(arm: Arm, refresh: str = FULL) -> str:
    """The ``scoring.refresh`` an arm's rounds are built for: its own override, else the run's."""
    return (arm.overrides.get("scoring") or {}).get("refresh") or refresh


def create_pipeline(
    methods,
    seeds,
    *,
    rounds: int,
    arms: dict | None = None,
    refresh: str = FULL,
    candidates: bool = False,
) -> Pipeline:
    """``refresh``: the run's ``scoring.refresh`` (an arm's ``scoring`` override may set its own).
    ``candidates``: whether the run's scoring block sets ``candidates`` (see
    :func:`shares_first_scores`)."""
    all_arms = study_arms(list(methods), [int(s) for s in seeds], arms)
    if not all_arms or not seeds:
        raise ValueError("a study needs at least one arm (study.methods or study.arms) and seed")
    parts = []
    shared_seeds = sorted(
        {s for arm in all_arms if shares_first_scores(arm, candidates) for s in arm.seeds}
    )
    parts += [base_scoring_pipeline(s, rounds) for s in shared_seeds]  # one base scoring per seed
    for arm in all_arms:
        settings, blocks = settings_pipeline(arm)
        parts.append(settings)
        shared = shares_first_scores(arm, candidates)
        for s in arm.seeds:
            rounds_of = rounds_pipeline(
                arm.method,
                rounds,
                seed=s,
                shared_first_scores=shared,
                name=arm.name,
                blocks=blocks,
                refresh=arm_refresh(arm, refresh),
            )
            parts += [rounds_of, final_pipeline(arm.name, rounds, seed=s)]
    parts += [final_pipeline(BASE, rounds), report_pipeline(all_arms, rounds, candidates)]
    return sum(parts, Pipeline([]))
