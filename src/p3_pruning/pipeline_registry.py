"""Project pipelines: ``data``, one per method, ``evaluate``, ``compare`` and ``__default__``."""

from __future__ import annotations

import os
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings
from kedro.pipeline import Pipeline

from p3_pruning.pipelines import compare, data, evaluate, rounds
from p3_pruning.strategies import METHODS


def configured_rounds(conf_source: str | Path | None = None) -> int:
    """The ``rounds`` parameter, read from the project's config when the pipelines are built.

    The number of rounds is the shape of the DAG, so it is fixed before any run starts; ``--params``
    cannot change it (the round nodes check that the value they receive matches).
    """
    source = Path(conf_source or Path.cwd() / settings.CONF_SOURCE)
    if not source.exists():
        return 3
    loader = OmegaConfigLoader(
        conf_source=str(source),
        base_env="base",
        default_run_env="local",
        merge_strategy=settings.CONFIG_LOADER_ARGS.get("merge_strategy"),
        env=os.environ.get("KEDRO_ENV"),
    )
    return int(loader["parameters"].get("rounds", 3))


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline that trains starts with ``data``: it is cheap and seeded (the same samples, the
    same split every time), so any pipeline runs on a fresh clone, and ``--only-missing-outputs``
    skips it when its outputs exist."""
    n_rounds = configured_rounds()
    data_pipeline = data.create_pipeline()
    pipelines: dict[str, Pipeline] = {"data": data_pipeline}
    for method in METHODS:
        pipelines[method] = data_pipeline + rounds.create_pipeline(method=method, rounds=n_rounds)
    pipelines["evaluate"] = evaluate.create_pipeline(methods=("p3",), rounds=n_rounds)
    pipelines["compare"] = data_pipeline + compare.create_pipeline(rounds=n_rounds)
    # The default run evaluates P3's last adapter only: the base model's reference evaluation
    # (in `evaluate` and `compare`) rambles to the token limit and would double the CPU time.
    pipelines["__default__"] = pipelines["p3"] + evaluate.create_pipeline(
        ("p3",), n_rounds, include_base=False
    )
    return pipelines
