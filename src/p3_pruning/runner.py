"""A runner for studies run in batches: one seed finished before the next begins.

Kedro's ``SequentialRunner`` runs nodes in topological *levels*: every chain's round-1 scoring,
then every chain's round-1 selection, and so on. A study of 8 seeds therefore finishes nothing
until its last hour, and a batch stopped half way leaves every chain half done.
``SeedFirstRunner`` runs the same nodes, one at a time, in a topological order that prefers the
lowest seed among the ready nodes (``seed_first_order``): the data first, then seed 0's shared
scoring, chains and evaluations, then seed 1's, …, then what belongs to no seed (the base model's
evaluation, the report). Stopped at any point, it leaves whole seeds behind, and
``--only-missing-outputs`` takes up from the seed it was in::

    kedro run --pipeline study --env regime_noisy --runner p3_pruning.runner.SeedFirstRunner

Every node reads its inputs from the catalog and seeds itself, so the order changes when results
appear, not what they are (tested against ``SequentialRunner`` on the tiny study).
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict

from kedro.pipeline import Pipeline
from kedro.pipeline.node import Node
from kedro.runner import SequentialRunner

from p3_pruning import namespaces


def _own_seed(node: Node) -> float:
    """The study seed in a node's namespace (``<arm>.seed_<s>…``); +inf when it names none."""
    if not node.namespace:
        return math.inf
    seed = namespaces.parse(node.namespace).seed
    return math.inf if seed is None else seed


def seed_first_order(pipeline: Pipeline) -> list[Node]:
    """``pipeline``'s nodes in a topological order that, among the nodes whose parents have run,
    always takes one serving the lowest seed (ties: Kedro's own order). A node serves its own
    seed; a node outside every seed serves the lowest seed among the nodes that need it (the data
    and an arm's settings serve seed 0, the report none)."""
    kedro_order = pipeline.nodes
    rank = {node: i for i, node in enumerate(kedro_order)}
    children = defaultdict(list)
    for node, parents in pipeline.node_dependencies.items():
        for parent in parents:
            children[parent].append(node)
    serves = {}
    for node in reversed(kedro_order):  # children first
        own = _own_seed(node)
        serves[node] = (
            own if own < math.inf else min((serves[c] for c in children[node]), default=math.inf)
        )
    waiting = {node: len(parents) for node, parents in pipeline.node_dependencies.items()}
    ready = [(serves[n], rank[n]) for n in kedro_order if waiting[n] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, i = heapq.heappop(ready)
        node = kedro_order[i]
        order.append(node)
        for child in children[node]:
            waiting[child] -= 1
            if waiting[child] == 0:
                heapq.heappush(ready, (serves[child], rank[child]))
    return order


class _InOrder:
    """``pipeline`` whose ``nodes`` come in ``order``; everything else is the pipeline's own."""

    def __init__(self, pipeline: Pipeline, order: list[Node]):
        self._pipeline = pipeline
        self._order = order

    @property
    def nodes(self) -> list[Node]:
        return list(self._order)

    def __getattr__(self, name):
        return getattr(self._pipeline, name)


class SeedFirstRunner(SequentialRunner):
    """``SequentialRunner`` in :func:`seed_first_order` (module doc)."""

    def _run(self, pipeline, catalog, hook_manager=None, run_id=None):
        return super()._run(
            _InOrder(pipeline, seed_first_order(pipeline)), catalog, hook_manager, run_id
        )
