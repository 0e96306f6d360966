"""`openrft secrets|models|quotas …`: what the operator grants projects (`service/tenancy.py`).

- `openrft secrets set --project P NAME` reads the value from standard input (or a hidden
  prompt), never from the command line, where `ps` would show it; `list` shows names only.
- `openrft models add NAME DIR_OR_HUB_ID` registers a base model jobs may name.
- `openrft quotas set --project P --max-active-jobs N …` overrides the server's defaults.

Each opens the store the data dir (or `--database-url`) names, like `openrft keys create`.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from openrft.cli.exits import EXIT_FAILED, Group
from openrft.cli.serve import DatabaseUrl, DataDir
from openrft.service import tenancy
from openrft.service.settings import Settings
from openrft.service.store import Store

# annotated: mypy cannot infer them through the import cycle with `openrft.cli`
secrets: typer.Typer = typer.Typer(
    cls=Group, help="Per-project secrets, for ${secret:NAME} in endpoint headers."
)
models: typer.Typer = typer.Typer(cls=Group, help="Base models that jobs through the API may name.")
quotas: typer.Typer = typer.Typer(
    cls=Group, help="Per-project limits (active jobs, steps, epochs, processes, bytes)."
)

Project = Annotated[str, typer.Option(help="The project.")]


def _store(data_dir: Path | None, database_url: str | None) -> tuple[Store, Settings]:
    settings = Settings.from_env(data_dir=data_dir, database_url=database_url)
    os.umask(0o077)
    return Store.open_private(settings), settings


def _read_value() -> str:
    if sys.stdin.isatty():
        value: str = typer.prompt("Value", hide_input=True)
        return value
    return sys.stdin.read().rstrip("\r\n")


@secrets.command("set")
def set_secret(
    project: Project,
    name: Annotated[str, typer.Argument(help="Secret name, e.g. GRADER_TOKEN.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Set NAME for PROJECT; the value is read from stdin (or a hidden prompt)."""
    store, _ = _store(data_dir, database_url)
    tenancy.set_secret(store, project, name, _read_value())
    typer.echo(f"Set secret {name} for project {project!r}; use it as ${{secret:{name}}}.")


@secrets.command("list")
def list_secrets(
    project: Project, data_dir: DataDir = None, database_url: DatabaseUrl = None
) -> None:
    """The names of PROJECT's secrets (values are never shown)."""
    store, _ = _store(data_dir, database_url)
    for row in tenancy.secret_names(store, project):
        typer.echo(row["name"])


@secrets.command("delete")
def delete_secret(
    project: Project,
    name: str,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Remove NAME from PROJECT's secrets."""
    store, _ = _store(data_dir, database_url)
    if not tenancy.delete_secret(store, project, name):
        typer.echo(f"project {project!r} has no secret {name!r}", err=True)
        raise typer.Exit(EXIT_FAILED)


@models.command("add")
def add_model(
    name: Annotated[str, typer.Argument(help="The name jobs use, e.g. qwen2.5-0.5b.")],
    source: Annotated[str, typer.Argument(help="A model directory or a Hugging Face hub id.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Register base model NAME (jobs through the API may then train it)."""
    store, _ = _store(data_dir, database_url)
    local = Path(source).expanduser()
    tenancy.add_model(store, name, str(local.resolve()) if local.exists() else source)
    typer.echo(f"Registered base model {name!r}")


@models.command("list")
def list_models(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Registered base models and where they come from."""
    store, _ = _store(data_dir, database_url)
    for name, source in tenancy.models(store).items():
        typer.echo(f"{name}\t{source}")


@models.command("remove")
def remove_model(name: str, data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Unregister base model NAME (jobs already created keep their copy of the path)."""
    store, _ = _store(data_dir, database_url)
    if not tenancy.remove_model(store, name):
        typer.echo(f"no registered model {name!r}", err=True)
        raise typer.Exit(EXIT_FAILED)


Limit = Annotated[int | None, typer.Option(min=1)]


@quotas.command("set")
def set_quota(
    project: Project,
    max_active_jobs: Limit = None,
    max_job_steps: Limit = None,
    max_job_epochs: Limit = None,
    max_job_processes: Limit = None,
    max_project_bytes: Limit = None,
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Override some of the server's default limits for PROJECT."""
    store, _ = _store(data_dir, database_url)
    tenancy.set_quota(
        store,
        project,
        max_active_jobs=max_active_jobs,
        max_job_steps=max_job_steps,
        max_job_epochs=max_job_epochs,
        max_job_processes=max_job_processes,
        max_project_bytes=max_project_bytes,
    )
    show_quota(project, data_dir, database_url)


@quotas.command("show")
def show_quota(
    project: Project, data_dir: DataDir = None, database_url: DatabaseUrl = None
) -> None:
    """PROJECT's limits (its own over the server's defaults), as JSON."""
    store, settings = _store(data_dir, database_url)
    typer.echo(json.dumps(tenancy.quota(store, settings, project).__dict__, indent=2))
