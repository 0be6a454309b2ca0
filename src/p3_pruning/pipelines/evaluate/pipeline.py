"""Final evaluation per method under the namespace ``<method>.final`` (``base.final``: no adapter)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from p3_pruning.namespaces import final_namespace, round_namespace
from p3_pruning.pipelines.common import FINAL_TAG, bind
from p3_pruning.pipelines.rounds.pipeline import BASE

from . import nodes


def final_pipeline(method: str, rounds: int, seed: int | None = None) -> Pipeline:
    """Evaluate ``method``'s last-round adapter (``base``: the untuned model) under
    ``<method>.final`` (``<method>.seed_<s>.final`` in a study)."""
    inputs = {
        "eval_set": "eval_set",
        "model_params": "params:model",
        "generation": "params:generation",
        "scoring": "params:scoring",
    }
    mapping = {"eval_set": "eval_set"}
    if method != BASE:
        inputs["adapter"] = "adapter"
        mapping["adapter"] = f"{round_namespace(method, rounds - 1, seed)}.adapter"
    return Pipeline(
        [
            Node(
                bind(nodes.final_evaluate, method=method),
                inputs,
                ["responses", "metrics_table", "metrics"],
                name="evaluate",
                tags=[FINAL_TAG],
            )
        ],
        namespace=final_namespace(method, seed),
        inputs=mapping,
        parameters={"params:model", "params:generation", "params:scoring"},
    )


def create_pipeline(methods, rounds: int, include_base: bool = True, **kwargs) -> Pipeline:
    """Final evaluation of ``methods`` (and of the base model as the reference)."""
    targets = [*methods, BASE] if include_base else list(methods)
    return sum((final_pipeline(m, rounds) for m in targets), Pipeline([]))
