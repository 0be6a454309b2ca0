"""Project pipelines: ``data``, one per method, ``evaluate``, ``compare``, ``study``, ``sweep`` and
``__default__``."""

from __future__ import annotations

import os
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings
from kedro.pipeline import Pipeline

from p3_pruning.methods import METHODS, P3
from p3_pruning.pipelines import compare, data, evaluate, export, rounds, study, sweep
from p3_pruning.refresh import FULL


def configured_parameters(conf_source: str | Path | None = None) -> dict:
    """The project's parameters as the config files say (no ``--params``), read when the pipelines
    are built: ``rounds``, ``study`` and ``sweep`` shape the DAG, so they are fixed before any run
    starts (a hook checks that the run's ``rounds`` matches)."""
    source = Path(conf_source or Path.cwd() / settings.CONF_SOURCE)
    if not source.exists():
        raise FileNotFoundError(f"no config folder {source}: run from the project root")
    loader = OmegaConfigLoader(
        conf_source=str(source),
        base_env="base",
        default_run_env="local",
        merge_strategy=settings.CONFIG_LOADER_ARGS.get("merge_strategy"),
        env=os.environ.get("KEDRO_ENV"),
    )
    return dict(loader["parameters"])


def configured_rounds(conf_source: str | Path | None = None) -> int:
    """The ``rounds`` the pipelines are unrolled with."""
    return int(configured_parameters(conf_source)["rounds"])


def register_pipelines() -> dict[str, Pipeline]:
    """Every pipeline that trains starts with ``data``: it is cheap and seeded (the same samples, the
    same split every time), so any pipeline runs on a fresh clone, and ``--only-missing-outputs``
    skips it when its outputs exist."""
    params = configured_parameters()  # read once: rounds, study, sweep and export shape the DAG
    n_rounds = int(params["rounds"])
    refresh = (params.get("scoring") or {}).get("refresh") or FULL  # shapes the score steps
    data_pipeline = data.create_pipeline()
    pipelines: dict[str, Pipeline] = {"data": data_pipeline}
    for method in METHODS:
        pipelines[method] = data_pipeline + rounds.create_pipeline(
            method=method, rounds=n_rounds, refresh=refresh
        )
    pipelines["evaluate"] = evaluate.create_pipeline(methods=(P3,), rounds=n_rounds)
    pipelines["compare"] = data_pipeline + compare.create_pipeline(rounds=n_rounds, refresh=refresh)
    # the rounds' selections of export.methods, joined back to the original records
    exported = (params.get("export") or {}).get("methods") or [P3]
    pipelines["export"] = export.create_pipeline(methods=exported, rounds=n_rounds)
    plan = params.get("study") or {}
    if plan:
        pipelines["study"] = data_pipeline + study.create_pipeline(
            plan.get("methods") or [],
            plan["seeds"],
            rounds=n_rounds,
            arms=plan.get("arms"),
            refresh=refresh,
            candidates=(params.get("scoring") or {}).get("candidates") is not None,
        )
    where = params.get("sweep") or {}
    if where:
        pipelines["sweep"] = sweep.create_pipeline(
            method=where["method"], round=int(where["round"])
        )
    # The default run: data, P3's rounds, P3's final evaluation and the base model's, so it ends
    # with both accuracies side by side in the result table.
    pipelines["__default__"] = pipelines[P3] + evaluate.create_pipeline((P3,), n_rounds)
    return pipelines
