"""``sweep``: the threshold / budget / ridge grid and the schedules on one round's cached scores.

No model call: it reads ``<round>.scores``, ``.embeddings`` and ``.selection`` of the configured
method and round (``sweep.method``, ``sweep.round``; in a study ``seed`` picks
``<method>.seed_<s>.round_<e>``) and writes ``sweep.table``, ``sweep.schedules`` and two heat maps
under ``data/08_reporting/sweep/``. Method and round name the datasets, so they shape the DAG.
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from p3_pruning.pipelines.common import bind
from p3_pruning.pipelines.rounds.pipeline import round_name
from p3_pruning.strategies import SCORING_REGIME

from . import nodes

NAMESPACE = "sweep"


def create_pipeline(method: str = "p3", round: int = 1, seed: int | None = None) -> Pipeline:
    """Sweep ``method``'s round ``round`` (1-based); ``seed``: a study's seed namespace, or None."""
    if method not in SCORING_REGIME:
        raise ValueError(f"unknown method {method!r}; expected one of {tuple(SCORING_REGIME)}")
    regime = SCORING_REGIME[method]
    if regime == "never":
        raise ValueError(
            f"method {method!r} never scores the pool, so it has no cached scores to sweep; "
            "choose one of " + ", ".join(m for m, r in SCORING_REGIME.items() if r != "never")
        )
    if isinstance(round, bool) or not isinstance(round, int) or round < 1:
        raise ValueError(f"round must be an integer >= 1 (1-based), got {round!r}")
    index = round - 1
    here = round_name(method, index, seed)
    scored = here if regime == "rescore" else round_name(method, 0, seed)
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
        inputs["previous_scores"] = f"{round_name(method, index - 1, seed)}.scores"
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
