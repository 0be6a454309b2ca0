"""Airflow DAGs with one task per method-round, written from the registered Kedro pipelines.

Part of the Kedro shell (imports Kedro). ``kedro airflow create --group-by namespace`` groups nodes on
their FIRST namespace level, so ``p3.round_1`` … ``p3.round_E`` collapse into one task ``p3``. Here a
node's task is its round (``<method>[.seed_<s>].round_<e>``) or final evaluation
(``<method>[.seed_<s>].final``), parsed by :mod:`p3_pruning.namespaces`, whatever its node name;
other namespaced nodes (a report) are a task per namespace; nodes without a namespace (the data pipeline) are one task each. Groups that pass a
dataset the catalog does not persist (a ``MemoryDataset``) are then merged, since separate Airflow
tasks are separate processes. The DAG file is rendered with kedro-airflow's own template, so each
task runs ``KedroSession.run(pipeline_names=[<pipeline>], namespaces=[<method>.round_<e>])``.

    python -m p3_pruning.orchestration --pipeline p3 --env local --target-dir airflow_dags
"""

from __future__ import annotations

import argparse
import graphlib
import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

from kedro.pipeline import GroupedNodes, Pipeline

from p3_pruning import namespaces


def task_key(namespace: str | None, node_name: str) -> str:
    """The task a node belongs to: its round or final evaluation (``p3.seed_7.round_2``), else its
    namespace, else its own name."""
    if not namespace:
        return node_name
    place = namespaces.parse(namespace)
    if place.round is not None:
        return namespaces.round_namespace(place.arm, place.round - 1, place.seed)
    if place.final:
        return namespaces.final_namespace(place.arm, place.seed)
    return namespace


def group_by_round(
    pipeline: Pipeline,
    memory_datasets: Iterable[str] = (),
) -> list[GroupedNodes]:
    """One group per round (``<method>[.seed_<s>].round_<e>``, :func:`task_key`), in topological
    order.

    Groups connected through one of ``memory_datasets`` (outputs that are not persisted) are merged:
    the consumer could not read them from another task. ``dependencies`` of a group are the groups
    whose outputs it reads.
    """
    memory = set(memory_datasets)
    key = {n.name: task_key(n.namespace, n.name) for n in pipeline.nodes}
    parent = {k: k for k in key.values()}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    producer = {out: n.name for n in pipeline.nodes for out in n.outputs}
    for n in pipeline.nodes:
        for name in n.inputs:
            if name in producer and name in memory:
                a, b = root(key[producer[name]]), root(key[n.name])
                if a != b:
                    parent[max(a, b)] = min(a, b)

    members: dict[str, list] = {}
    for n in pipeline.nodes:  # topological order
        members.setdefault(root(key[n.name]), []).append(n)
    names = {}
    for r, nodes in members.items():
        keys = list(dict.fromkeys(key[n.name] for n in nodes))
        names[r] = "_".join(keys)
    groups = []
    for r, nodes in members.items():
        deps: list[str] = []
        for n in nodes:
            for name in n.inputs:
                if name in producer:
                    d = names[root(key[producer[name]])]
                    if d != names[r] and d not in deps:
                        deps.append(d)
        # a namespace group runs with --namespaces; merged or plain node groups by node name
        namespaced = all(n.namespace for n in nodes) and len(set(key[n.name] for n in nodes)) == 1
        groups.append(
            GroupedNodes(
                name=names[r],
                type="namespace" if namespaced else "nodes",
                nodes=[n.name for n in nodes],
                dependencies=deps,
            )
        )
    order = graphlib.TopologicalSorter({g.name: g.dependencies for g in groups})
    try:
        tuple(order.static_order())
    except graphlib.CycleError as exc:
        raise ValueError(
            f"tasks {exc.args[1]} depend on each other in a cycle after merging the groups that share "
            "in-memory datasets: persist those datasets in the catalog"
        ) from exc
    return groups


def memory_datasets(catalog_config: dict, pipeline: Pipeline) -> set[str]:
    """Datasets of ``pipeline`` that ``catalog_config`` does not persist (parameters excluded)."""
    from kedro.io import DataCatalog, MemoryDataset

    catalog = DataCatalog.from_config(catalog_config)
    out = set()
    for name in pipeline.datasets():
        if name == "parameters" or name.startswith("params:"):
            continue
        if name not in catalog or isinstance(catalog.get(name), MemoryDataset):
            out.add(name)
    return out


@contextmanager
def _cwd(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def write_dag(
    pipeline_name: str = "__default__",
    *,
    project_path: str | Path = ".",
    env: str = "local",
    target_dir: str | Path = "airflow_dags",
    conf_source: str = "",
    jinja_file: str | Path | None = None,
    **dag_config,
) -> Path:
    """Write the Airflow DAG file of ``pipeline_name``, one task per method-round; return its path.

    Same file name, template and settings as ``kedro airflow create`` (``conf/<env>/airflow.yml``:
    ``default`` and per-pipeline blocks; ``dag_config`` overrides them), but the ``dag_id`` is the
    file's stem (``p3_pruning_p3``), so the DAGs of several pipelines can share a DAG folder. ``max_active_runs`` defaults
    to 1: a round reads the latest saved version of the previous round's outputs, so two DAG runs at
    once would read each other's.
    """
    import jinja2
    import kedro_airflow
    from kedro.config import MissingConfigException, OmegaConfigLoader
    from kedro.framework.project import pipelines, settings
    from kedro.framework.startup import bootstrap_project
    from slugify import slugify

    project_path = Path(project_path).resolve()
    with _cwd(project_path):  # the pipeline registry reads `rounds` from ./conf
        metadata = bootstrap_project(project_path)
        pipeline = pipelines.get(pipeline_name)
        if pipeline is None:
            raise KeyError(
                f"pipeline {pipeline_name!r} is not registered; have {sorted(pipelines)}"
            )
        loader = OmegaConfigLoader(
            conf_source=str(project_path / settings.CONF_SOURCE),
            base_env="base",
            default_run_env="local",
            env=env,
            config_patterns={"airflow": ["airflow*", "airflow/**"]},
        )
        catalog_config = loader["catalog"]
        try:
            airflow_config = loader["airflow"]
        except MissingConfigException:
            airflow_config = {}
    config = {
        "max_active_runs": 1,
        **airflow_config.get("default", {}),
        **airflow_config.get(pipeline_name, {}),
        **dag_config,
    }
    groups = group_by_round(pipeline, memory_datasets(catalog_config, pipeline))

    template_path = Path(
        jinja_file or Path(kedro_airflow.__file__).parent / "airflow_dag_template.j2"
    ).resolve()
    jinja = jinja2.Environment(
        autoescape=True,
        loader=jinja2.FileSystemLoader(template_path.parent),
        lstrip_blocks=True,
    )
    jinja.filters["slugify"] = slugify
    package = metadata.package_name
    dag_name = package + (f"_{env}" if env != "local" else "")
    dag_name += f"_{pipeline_name}" if pipeline_name != "__default__" else ""
    folder = Path(target_dir)
    folder = folder if folder.is_absolute() else project_path / folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dag_name}_dag.py"
    jinja.get_template(template_path.name).stream(
        dag_name=dag_name,  # kedro-airflow passes the package name: one dag_id for every pipeline
        node_objs=groups,
        env=env,
        pipeline_name=pipeline_name,
        package_name=package,
        pipeline=pipeline,
        conf_source=conf_source,
        **config,
    ).dump(str(path))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write an Airflow DAG, one task per method-round.")
    parser.add_argument("--pipeline", "-p", default="__default__")
    parser.add_argument("--env", "-e", default="local")
    parser.add_argument("--target-dir", "-t", default="airflow_dags")
    parser.add_argument("--conf-source", default="", help="conf folder the Airflow workers read")
    parser.add_argument(
        "--jinja-file", "-j", default=None, help="template (default kedro-airflow's)"
    )
    args = parser.parse_args(argv)
    path = write_dag(
        args.pipeline,
        env=args.env,
        target_dir=args.target_dir,
        conf_source=args.conf_source,
        jinja_file=args.jinja_file,
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
