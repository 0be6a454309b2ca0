"""``sweep``: the threshold / budget / ridge grid and the schedules on one round's cached scores.

No model call: it reads ``<round>.scores``, ``.embeddings`` and ``.selection`` of the configured
method and round (``sweep.method``, ``sweep.round``; in a study ``seed`` picks
``<method>.seed_<s>.round_<e>``) and writes ``sweep.table``, ``sweep.schedules`` and two heat maps
under ``data/08_reporting/sweep/``. Method and round name the datasets, so they shape the DAG.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from p3_pruning import methods
from p3_pruning.namespaces import round_namespace
from p3_pruning.pipelines.common import bind

from . import nodes

NAMESPACE = "sweep"


def create_pipeline(method: str = methods.P3, round: int = 1, seed: int | None = None) -> Pipeline:
    """Sweep ``method``'s round ``round`` (1-based); ``seed``: a study's seed namespace, or None."""
    regime = methods.get(method).scoring
    if regime == "never":
        raise ValueError(
            f"method {method!r} never scores the pool, so it has no cached scores to sweep; "
            "choose one of " + ", ".join(methods.names(scoring=("rescore", "once")))
        )
    if isinstance(round, bool) or not isinstance(round, int) or round < 1:
        raise ValueError(f"round must be an integer >= 1 (1-based), got {round!r}")
    index = round - 1
    here = round_namespace(method, index, seed)
    scored = here if regime == "rescore" else round_namespace(method, 0, seed)
    inputs = {
        "scores": f"{scored}.scores",
        "embeddings": f"{scored}.embeddings",
        "configured": f"{here}.selection",
        "sweep": "params:sweep",
        "pacing": "params:pacing",
        "selection": "params:selection",
        "budget": "params:budget",
        "rounds": "params:rounds",
    }
    bound = {"method": method, "round_index": index}
    if seed is None:
        inputs["seed"] = "params:seed"
    else:
        bound["seed"] = seed
    if regime == "rescore" and index > 0:
        inputs["previous_scores"] = f"{round_namespace(method, index - 1, seed)}.scores"
    external = {v for k, v in inputs.items() if not v.startswith("params:")}
    return Pipeline(
        [
            Node(
                func=bind(nodes.run_sweep, **bound),
                inputs=inputs,
                outputs=["table", "schedules"],
                name="sweep",
            ),
            Node(
                func=nodes.heatmaps,
                inputs="table",
                outputs=["log_det_heatmap", "difficulty_heatmap"],
                name="heatmaps",
            ),
        ],
        namespace=NAMESPACE,
        inputs=external,
        parameters={v for v in inputs.values() if v.startswith("params:")},
    )
