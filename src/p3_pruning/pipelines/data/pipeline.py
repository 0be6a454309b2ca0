"""``data``: raw samples → validated → split → ``train_pool`` (composed when ``data.inject`` asks:
an ``origin`` column on every row) + ``eval_set`` (and a ``quarantine`` table)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                func=nodes.ingest_samples,
                inputs="params:data",
                outputs=["raw_samples", "raw_eval_samples", "quarantine"],
                name="load",
            ),
            Node(
                func=nodes.validate,
                inputs=["raw_samples", "raw_eval_samples"],
                outputs=["samples", "eval_samples"],
                name="validate",
            ),
            Node(
                func=nodes.split,
                inputs=["samples", "eval_samples", "params:data.split"],
                outputs=["split_train_pool", "eval_set"],
                name="split",
            ),
            Node(
                func=nodes.compose,
                inputs=["split_train_pool", "params:data.inject", "params:data.source"],
                outputs="train_pool",
                name="compose",
            ),
        ]
    )
