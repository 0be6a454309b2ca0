"""Run the project in a scratch folder with parameter overrides (tests, benchmarks, experiments).

A workspace is a copy of ``conf/base`` and ``pyproject.toml`` plus empty ``src/`` and ``data/`` trees, so every
relative path (data layers, ``mlflow.db``) lands inside it and the repository stays untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LAYERS = (
    "01_raw",
    "02_intermediate",
    "03_primary",
    "04_feature",
    "05_model_input",
    "06_models",
    "07_model_output",
    "08_reporting",
)
# where the data pipeline writes the splits (conf/base/catalog_data.yml), relative to a workspace
TRAIN_POOL = Path("data/03_primary/train_pool.parquet")
EVAL_SET = Path("data/03_primary/eval_set.parquet")


def make_workspace(
    dest: str | Path, parameters: dict | None = None, *, source: Path = PROJECT_ROOT
) -> Path:
    """Copy the project's config into ``dest`` and write ``parameters`` to ``conf/local/parameters.yml``."""
    dest = Path(dest)
    if not (source / "conf" / "base").is_dir():
        raise FileNotFoundError(
            f"no conf/base under {source}: make_workspace needs a source checkout"
        )
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source / "conf" / "base", dest / "conf" / "base", dirs_exist_ok=True)
    (dest / "conf" / "local").mkdir(parents=True, exist_ok=True)
    shutil.copy2(source / "pyproject.toml", dest / "pyproject.toml")
    (dest / "src").mkdir(exist_ok=True)  # Kedro wants the source dir; the installed package is used
    for layer in LAYERS:
        (dest / "data" / layer).mkdir(parents=True, exist_ok=True)
    if parameters:
        (dest / "conf" / "local" / "parameters.yml").write_text(
            yaml.safe_dump(parameters, sort_keys=False)
        )
    return dest


def latest_version(workspace: str | Path, relpath: str | Path) -> Path:
    """The newest version of a Kedro versioned dataset ``relpath`` (``<relpath>/<version>/<name>``).

    A file or, for folder datasets (adapters, exports), a folder. Versions are timestamps, so the
    last in sorted order is the newest. FileNotFoundError naming the folder when there is none
    (the pipeline that writes it has not run there).
    """
    relpath = Path(relpath)
    folder = Path(workspace) / relpath
    versions = (
        sorted(p for p in folder.iterdir() if (p / relpath.name).exists())
        if folder.is_dir()
        else []
    )
    if not versions:
        raise FileNotFoundError(
            f"no version of {relpath} under {folder}: run its pipeline there first"
        )
    return versions[-1] / relpath.name


@contextlib.contextmanager
def inside(path: str | Path):
    """Temporarily make ``path`` the working directory (pipelines are built from its config)."""
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield Path(path)
    finally:
        os.chdir(previous)


def run_pipeline(
    workspace: str | Path,
    pipeline: str | None = None,
    *,
    runtime_params: dict | None = None,
    **run_kwargs,
) -> dict:
    """``kedro run --pipeline`` inside ``workspace``; returns the free outputs of the run."""
    import mlflow
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    workspace = Path(workspace).resolve()
    with inside(workspace):
        bootstrap_project(workspace)
        try:
            with KedroSession.create(
                project_path=workspace, runtime_params=runtime_params
            ) as session:
                return session.run(pipeline_names=[pipeline] if pipeline else None, **run_kwargs)
        finally:
            # kedro-mlflow can leave its run on mlflow's active-run stack (also when a node fails);
            # close it so the next run in this process opens its own.
            while mlflow.active_run() is not None:
                mlflow.end_run()
