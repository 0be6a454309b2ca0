"""SeedFirstRunner: the study's nodes one seed at a time, and ``--only-missing-outputs`` that reruns
what is downstream (p3_pruning.runner)."""

from __future__ import annotations

from kedro.io import AbstractDataset, DataCatalog
from kedro.pipeline import Pipeline
from kedro.pipeline import node as make_node
from kedro.runner import SequentialRunner
from kedro.utils import load_obj

from p3_pruning import namespaces
from p3_pruning.pipelines.study.pipeline import create_pipeline as study_pipeline
from p3_pruning.runner import SeedFirstRunner, seed_first_order, stale_nodes


def _seed(node):
    return namespaces.parse(node.namespace).seed if node.namespace else None


def _plan():
    arms = {"p3_easy": {"method": "p3", "seeds": [1, 2], "selection": {"quality": "easiness"}}}
    return study_pipeline(["p3", "random"], [0, 1, 2], rounds=2, arms=arms)


def test_every_node_of_a_seed_runs_before_any_node_of_the_next():
    plan = _plan()
    order = seed_first_order(plan)
    assert sorted(order) == sorted(plan.nodes)  # the same nodes, each once
    position = {node: i for i, node in enumerate(order)}
    for node, parents in plan.node_dependencies.items():  # still a topological order
        assert all(position[p] < position[node] for p in parents), node.name
    seeds = [_seed(n) for n in order]
    seeded = [s for s in seeds if s is not None]
    assert seeded == sorted(seeded) and set(seeded) == {0, 1, 2}
    last_seeded = max(i for i, s in enumerate(seeds) if s is not None)
    assert all(s is None for s in seeds[last_seeded:][1:])  # the report and base model after
    # Kedro's own order runs level by level: seed 1 starts before seed 0 is done
    kedro_seeds = [_seed(n) for n in plan.nodes if _seed(n) is not None]
    assert kedro_seeds != sorted(kedro_seeds)


def test_kedro_run_finds_it_by_its_path():
    assert load_obj("p3_pruning.runner.SeedFirstRunner", "kedro.runner") is SeedFirstRunner


class _Stored(AbstractDataset):
    """A persistent dataset kept in a dict (what is in the dict exists)."""

    def __init__(self, store, name):
        self._store, self._name = store, name

    def load(self):
        return self._store[self._name]

    def save(self, data):
        self._store[self._name] = data

    def _exists(self):
        return self._name in self._store

    def _describe(self):
        return {"name": self._name}


def _identity(x):
    return x


def _count(*seeds):
    return len(seeds)


def _names(pipeline):
    return sorted(n.name for n in pipeline.nodes)


def _batch_study(store):
    """data → one chain per seed (in memory between its two nodes) → a report over every seed."""
    nodes = [make_node(_identity, "raw", "data", name="data")]
    for seed in (0, 1):
        nodes += [
            make_node(_identity, "data", f"s{seed}.scored", name=f"s{seed}.score"),
            make_node(_identity, f"s{seed}.scored", f"s{seed}.result", name=f"s{seed}.train"),
        ]
    nodes.append(make_node(_count, ["s0.result", "s1.result"], "report", name="report"))
    persistent = ["data", "s0.result", "s1.result", "report"]
    catalog = DataCatalog({name: _Stored(store, name) for name in persistent})
    catalog["raw"] = 7
    return Pipeline(nodes), catalog


def test_only_missing_outputs_reruns_what_is_downstream_of_a_missing_output():
    store = {"data": 7, "s0.result": 7, "report": 1}  # seed 1 added to a finished study
    pipeline, catalog = _batch_study(store)
    # Kedro's rule: seed 1's chain (and the in-memory step it needs), not the report
    kedro = SequentialRunner()._filter_pipeline_for_missing_outputs(pipeline, catalog)
    assert _names(kedro) == ["s1.score", "s1.train"]
    # here: the report as well, and nothing of seed 0 (its result is on disk)
    assert _names(stale_nodes(pipeline, catalog)) == ["report", "s1.score", "s1.train"]
    SeedFirstRunner().run(pipeline, catalog, only_missing_outputs=True)
    assert store["report"] == 2
    # nothing missing: nothing runs
    assert stale_nodes(pipeline, catalog).nodes == []
    # a missing upstream output reruns all below it, and the in-memory steps they need
    del store["data"]
    assert _names(stale_nodes(pipeline, catalog)) == _names(pipeline)
