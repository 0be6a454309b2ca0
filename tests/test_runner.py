"""SeedFirstRunner: the study's nodes one seed at a time (p3_pruning.runner)."""

from __future__ import annotations

from kedro.utils import load_obj

from p3_pruning import namespaces
from p3_pruning.pipelines.study.pipeline import create_pipeline as study_pipeline
from p3_pruning.runner import SeedFirstRunner, seed_first_order


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
