"""Airflow DAGs with one task per method-round: grouping by namespace and the written DAG file."""

import ast
import os

import pytest
from kedro.pipeline import Node, Pipeline

from p3_pruning.orchestration import group_by_round, task_key, write_dag
from p3_pruning.pipeline_registry import configured_rounds

pytest.importorskip("kedro_airflow")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")


def _f(*args):
    return args[0] if args else 0


def read_dag(path):
    """``({task_id: ("namespaces" | "node_names", [...])}, {(upstream, downstream)})`` of a DAG file."""
    tree = ast.parse(path.read_text())
    tasks, edges = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if isinstance(deco, ast.Call) and getattr(deco.func, "id", None) == "task":
                    task_id = next(k.value.value for k in deco.keywords if k.arg == "task_id")
                    call = node.body[0].value
                    (kw,) = call.keywords
                    tasks[task_id] = (kw.arg, [e.value for e in kw.value.elts])
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.RShift):
            edges.add((node.left.slice.value, node.right.slice.value))
    return tasks, edges


def test_task_key_is_the_round_of_a_node():
    assert task_key("p3.round_2", "score") == "p3.round_2"
    assert task_key("p3.round_2.inner", "x") == "p3.round_2"
    assert task_key("p3.seed_7.round_2", "score") == "p3.seed_7.round_2"  # a study: per round
    assert task_key("p3.seed_7.final", "evaluate") == "p3.seed_7.final"
    assert task_key("compare", "report") == "compare"
    assert task_key(None, "split") == "split"


def test_grouping_follows_namespaces_not_node_names():
    rounds = [
        Pipeline(
            [
                Node(_f, "prev", "s", name="a"),
                Node(_f, "s", "t", name="b", namespace="inner"),
                Node(_f, "t", "adapter", name=f"any_{e}"),
            ],
            namespace=f"m.round_{e}",
            inputs={"prev": "pool" if e == 1 else f"m.round_{e - 1}.adapter"},
        )
        for e in range(1, 12)
    ]
    pipe = Pipeline([Node(_f, None, "pool", name="make_pool")]) + sum(rounds, Pipeline([]))
    groups = {g.name: g for g in group_by_round(pipe)}
    assert set(groups) == {"make_pool"} | {f"m.round_{e}" for e in range(1, 12)}
    for e in range(1, 12):
        g = groups[f"m.round_{e}"]
        assert g.type == "namespace" and len(g.nodes) == 3  # round_1 does not swallow round_10/11
        assert all(n.startswith(f"m.round_{e}.") for n in g.nodes)
        assert g.dependencies == (["make_pool"] if e == 1 else [f"m.round_{e - 1}"])


def test_groups_sharing_an_in_memory_dataset_are_merged():
    pipe = Pipeline(
        [
            Node(_f, None, "raw", name="load"),
            Node(_f, "raw", "clean", name="validate"),
            Node(_f, "clean", "m.round_1.out", name="work", namespace="m.round_1"),
            Node(_f, "m.round_1.out", "m.round_2.out", name="work2", namespace="m.round_2"),
        ]
    )
    groups = {g.name: g for g in group_by_round(pipe, memory_datasets={"raw", "m.round_1.out"})}
    assert set(groups) == {"load_validate", "m.round_1_m.round_2"}
    merged = groups["m.round_1_m.round_2"]
    assert merged.type == "nodes" and merged.nodes == ["m.round_1.work", "m.round_2.work2"]
    assert merged.dependencies == ["load_validate"]


def test_p3_dag_has_one_task_per_round_in_order(tmp_path):
    rounds = configured_rounds()
    path = write_dag("p3", target_dir=tmp_path)
    assert path.name == "p3_pruning_p3_dag.py"
    text = path.read_text()
    assert 'dag_id="p3-pruning-p3"' in text and "max_active_runs=1" in text
    tasks, edges = read_dag(path)

    round_ids = [f"p3-round-{e}" for e in range(1, rounds + 1)]
    for e, task_id in enumerate(round_ids, start=1):
        assert tasks[task_id] == ("namespaces", [f"p3.round_{e}"])
    assert not [t for t in tasks if "round" in t and t not in round_ids]
    # each round after the previous one, never the other way round
    for earlier, later in zip(round_ids, round_ids[1:], strict=False):
        assert (earlier, later) in edges
        assert (later, earlier) not in edges
    # the data tasks come before round 1 and run by node name
    data = [t for t in tasks if t not in round_ids]
    assert data and all(tasks[t][0] == "node_names" for t in data)
    upstream_of_round_1 = {a for a, b in edges if b == round_ids[0]}
    assert upstream_of_round_1 and upstream_of_round_1 <= set(data)
    assert not {b for a, b in edges if a in round_ids} & set(data)


def test_compare_dag_has_every_method_round(tmp_path):
    from p3_pruning.pipelines.rounds import METHODS

    rounds = configured_rounds()
    tasks, edges = read_dag(write_dag("compare", target_dir=tmp_path))
    for method in METHODS:
        for e in range(1, rounds + 1):
            assert tasks[f"{method}-round-{e}"] == ("namespaces", [f"{method}.round_{e}"])
            if e > 1:
                assert (f"{method}-round-{e - 1}", f"{method}-round-{e}") in edges
