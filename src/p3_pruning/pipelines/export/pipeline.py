"""``export``: each round's selection → ``<method>.round_<e>.export`` (records.jsonl, hf/, manifest.json)."""

from __future__ import annotations

from collections.abc import Iterable

from kedro.pipeline import Node, Pipeline

from p3_pruning.pipelines.common import bind

from . import nodes


def create_pipeline(methods: Iterable[str], rounds: int, **kwargs) -> Pipeline:
    """One export node per method and round, reading ``<method>.round_<e>.selection``."""
    if rounds < 1:
        raise ValueError(f"rounds must be ≥ 1, got {rounds}")
    steps = []
    for method in methods:
        export = bind(nodes.export_round, method=method)
        for e in range(1, rounds + 1):
            steps.append(
                Node(
                    func=export,
                    inputs={
                        "pool": "train_pool",
                        "selection": f"{method}.round_{e}.selection",
                        "data": "params:data",
                        "seed": "params:seed",
                        "budget": "params:budget",
                        "export": "params:export",
                    },
                    outputs=f"{method}.round_{e}.export",
                    name=f"export_{method}_round_{e}",
                    tags=["export"],
                )
            )
    return Pipeline(steps)
