"""``compare``: every method's rounds, every final evaluation (plus the base model) and the report."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from p3_pruning.methods import METHODS
from p3_pruning.namespaces import FINAL, final_namespace, report_key, round_namespace
from p3_pruning.pipelines.common import REPORT_TAG
from p3_pruning.pipelines.evaluate.pipeline import BASE, final_pipeline
from p3_pruning.pipelines.rounds.pipeline import create_pipeline as rounds_pipeline
from p3_pruning.refresh import FULL

from . import nodes


def report_pipeline(methods, rounds: int) -> Pipeline:
    inputs = {report_key(m, None, FINAL): f"{final_namespace(m)}.metrics" for m in (*methods, BASE)}
    for m in methods:
        for e in range(rounds):
            inputs[report_key(m, None, f"round_{e + 1}")] = f"{round_namespace(m, e)}.summary"
    return Pipeline(
        [
            Node(
                nodes.build_report,
                inputs,
                ["report_table", "rounds_table", "accuracy_plot", "threshold_plot", "overlap_plot"],
                name="report",
                tags=[REPORT_TAG],
            )
        ],
        namespace="compare",
        inputs=set(inputs.values()),
    )


def create_pipeline(methods=METHODS, *, rounds: int, refresh: str = FULL, **kwargs) -> Pipeline:
    parts = [rounds_pipeline(m, rounds, refresh=refresh) for m in methods]
    parts += [final_pipeline(m, rounds) for m in (*methods, BASE)]
    parts.append(report_pipeline(methods, rounds))
    return sum(parts, Pipeline([]))
