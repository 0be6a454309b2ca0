"""Project settings: hooks and config loader."""

from pathlib import Path

from kedro.config import OmegaConfigLoader

from p3_pruning.hooks import (
    ConfigCheckHook,
    MlflowRoundsHook,
    MlflowRunStateHook,
    ReleaseMemoryHook,
    RunReportHook,
    SeedHook,
)

HOOKS = (
    ConfigCheckHook(),
    SeedHook(),
    MlflowRoundsHook(),
    MlflowRunStateHook(),
    RunReportHook(),
    ReleaseMemoryHook(),
)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/local may override one nested key (e.g. model.name_or_path) without restating the rest.
    "merge_strategy": {"parameters": "soft"},
    # ${cwd:} in conf: the project folder a run starts from (mlflow.yml's absolute sqlite path).
    "custom_resolvers": {"cwd": lambda: Path.cwd().as_posix()},
}
