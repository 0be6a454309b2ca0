"""Project commands: ``kedro p3 check-config`` (and Kedro's own ``run``, which a project cli.py must
re-export)."""

from __future__ import annotations

import click
from kedro.framework.cli.project import run  # noqa: F401  - Kedro looks for `run` here
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project


@click.group(name="p3")
def p3() -> None:
    """P3 pruning commands."""


@p3.command("check-config")
@click.option("--env", "-e", default=None, help="Kedro environment to check (default: local).")
@click.option("--params", default="", help="Runtime parameters as for `kedro run`, key=value,…")
def check_config(env: str | None, params: str) -> None:
    """Validate every parameter block without running anything; exit 1 listing every bad key."""
    from pathlib import Path

    from kedro.framework.cli.utils import _split_params

    from p3_pruning.config import ConfigError, validate_parameters

    project = Path.cwd()
    bootstrap_project(project)
    runtime = _split_params(None, None, params) if params else {}
    with KedroSession.create(project_path=project, env=env, runtime_params=runtime) as session:
        parameters = session.load_context().params
    try:
        validate_parameters(parameters)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(1) from exc
    click.echo(f"parameters OK ({len(parameters)} top-level keys checked)")


@click.group()
def cli() -> None:
    """Project-specific commands."""


cli.add_command(p3)
