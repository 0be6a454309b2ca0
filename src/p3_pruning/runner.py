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

With ``--only-missing-outputs`` it also reruns every node downstream of one that runs
(:func:`stale_nodes`). Kedro's own rule runs a node when one of its outputs is missing and, upward,
what that node needs, but never downward: seeds added to a finished study ran and left the old
report standing, which still counted the old seeds. Here a node whose inputs are recomputed is
recomputed too, as ``make`` would: the report takes in every seed on disk.
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


def _children(pipeline: Pipeline) -> defaultdict[Node, list[Node]]:
    """Each node's direct children in ``pipeline`` (the nodes that read one of its outputs)."""
    children = defaultdict(list)
    for node, parents in pipeline.node_dependencies.items():
        for parent in parents:
            children[parent].append(node)
    return children


def seed_first_order(pipeline: Pipeline) -> list[Node]:
    """``pipeline``'s nodes in a topological order that, among the nodes whose parents have run,
    always takes one serving the lowest seed (ties: Kedro's own order). A node serves its own
    seed; a node outside every seed serves the lowest seed among the nodes that need it (the data
    and an arm's settings serve seed 0, the report none)."""
    kedro_order = pipeline.nodes
    rank = {node: i for i, node in enumerate(kedro_order)}
    children = _children(pipeline)
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


def _persistent(dataset: str, catalog) -> bool:
    """Whether ``dataset`` is kept between runs (not a MemoryDataset the run creates)."""
    return dataset in catalog and not getattr(catalog.get(dataset), "_EPHEMERAL", False)


def _made_by_the_run(dataset: str, catalog) -> bool:
    """Whether ``dataset`` exists only once a node makes it: in memory, or persistent and absent."""
    return not _persistent(dataset, catalog) or not catalog.exists(dataset)


def stale_nodes(pipeline: Pipeline, catalog) -> Pipeline:
    """The nodes of ``pipeline`` that ``--only-missing-outputs`` must run, ``make``-like: those with
    a persistent output missing (or no outputs), every node downstream of them, and, upward, every
    node whose output one of those needs and is not on disk (in memory, or missing)."""
    missing = [
        node.name
        for node in pipeline.nodes
        if not node.outputs
        or any(
            _persistent(dataset, catalog) and not catalog.exists(dataset)
            for dataset in node.outputs
        )
    ]
    if not missing:
        return Pipeline([])
    run = set(pipeline.from_nodes(*missing).nodes)
    children = _children(pipeline)
    for node in reversed(pipeline.nodes):  # children first, so one pass reaches every ancestor
        if node not in run and any(
            _made_by_the_run(dataset, catalog)
            for child in children[node]
            if child in run
            for dataset in set(node.outputs) & set(child.inputs)
        ):
            run.add(node)
    return pipeline.filter(node_names=[node.name for node in run])


class SeedFirstRunner(SequentialRunner):
    """``SequentialRunner`` in :func:`seed_first_order`; ``--only-missing-outputs`` runs
    :func:`stale_nodes` (module doc)."""

    def run(self, pipeline, catalog, hook_manager=None, run_id=None, only_missing_outputs=False):
        if only_missing_outputs:
            pipeline = stale_nodes(pipeline, catalog)
            self._logger.info(
                "--only-missing-outputs: %d node(s) to run (missing outputs and what is "
                "downstream of them)",
                len(pipeline.nodes),
            )
        return super().run(pipeline, catalog, hook_manager, run_id, only_missing_outputs=False)

    def _run(self, pipeline, catalog, hook_manager=None, run_id=None):
        return super()._run(
            _InOrder(pipeline, seed_first_order(pipeline)), catalog, hook_manager, run_id
        )
