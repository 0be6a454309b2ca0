"""``study``: every method of ``study.methods`` × every seed of ``study.seeds`` (namespaces
``<method>.seed_<s>.round_<e>`` and ``<method>.seed_<s>.final``, from the same round template), the
base model's evaluation once, and the report in ``data/08_reporting/study/``. Round 1's scoring (the
base model on the pool) is the same for every method of a seed: it runs once per seed
(``base.seed_<s>.round_1``) and every scoring method's round 1 reads it."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from p3_pruning.pipelines.common import REPORT_TAG
from p3_pruning.pipelines.evaluate.pipeline import BASE, final_pipeline
from p3_pruning.pipelines.rounds.pipeline import base_scoring_pipeline, round_name
from p3_pruning.pipelines.rounds.pipeline import create_pipeline as rounds_pipeline
from p3_pruning.strategies import SCORING_REGIME

from . import nodes

SEP = nodes.KEY_SEP


def report_pipeline(methods, seeds, rounds: int) -> Pipeline:
    inputs = {f"{BASE}{SEP}none{SEP}final": f"{BASE}.final.metrics", "train_pool": "train_pool"}
    for m in methods:
        for s in seeds:
            inputs[f"{m}{SEP}{s}{SEP}final"] = f"{m}.seed_{s}.final.metrics"
            for e in range(rounds):
                inputs[f"{m}{SEP}{s}{SEP}round_{e + 1}"] = f"{round_name(m, e, s)}.summary"
    # difficulty by level: the first seed of each method that rescores (round 1: the shared scoring)
    for m in (m for m in methods if SCORING_REGIME[m] == "rescore"):
        for e in range(rounds):
            scored_by = round_name(m if e else BASE, e, seeds[0])
            inputs[f"{m}{SEP}{seeds[0]}{SEP}scores{SEP}{e + 1}"] = f"{scored_by}.scores"
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
                ],
                name="report",
                tags=[REPORT_TAG],
            )
        ],
        namespace="study",
        inputs=set(inputs.values()),
    )


def create_pipeline(methods, seeds, *, rounds: int) -> Pipeline:
    methods, seeds = list(methods), [int(s) for s in seeds]
    if not methods or not seeds:
        raise ValueError("study.methods and study.seeds must each name at least one entry")
    parts = []
    for s in seeds:  # round 1 of every scoring method: one base-model scoring per seed
        if any(SCORING_REGIME[m] != "never" for m in methods):
            parts.append(base_scoring_pipeline(s))
    for m in methods:
        for s in seeds:
            rounds_of = rounds_pipeline(m, rounds, seed=s, shared_first_scores=True)
            parts += [rounds_of, final_pipeline(m, rounds, seed=s)]
    parts += [final_pipeline(BASE, rounds), report_pipeline(methods, seeds, rounds)]
    return sum(parts, Pipeline([]))
