"""`openrft serve`, `openrft worker` and `openrft keys create`: run the fine-tuning service.

Register on the root app with `app.command()(serve.serve)`, `app.command()(serve.worker)` and
`app.add_typer(serve.keys, name="keys")`. `serve` runs the API in this process and starts
`--workers` worker processes (`python -m openrft.service.worker`) under a `Supervisor`, which
restarts any that dies and stops them all when the server exits.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from openrft.cli.exits import Group
from openrft.service.settings import Settings
from openrft.service.supervisor import Supervisor

DataDir = Annotated[
    Path | None,
    typer.Option(help="State directory (database, uploads, jobs); default ~/.openrft."),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="Store URL, e.g. postgresql://user@host/db; default SQLite in data dir."),
]

keys: typer.Typer = typer.Typer(cls=Group, help="Manage API keys.", no_args_is_help=True)


def _settings(data_dir: Path | None, database_url: str | None, **extra: object) -> Settings:
    return Settings.from_env(data_dir=data_dir, database_url=database_url, **extra)


def serve(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="No API keys; everything is project `default`.")
    ] = False,
    workers: Annotated[int, typer.Option(help="Worker processes to start alongside.")] = 1,
    api_processes: Annotated[
        int, typer.Option(help="API server processes (uvicorn workers) sharing the port.")
    ] = 1,
    allow_grader_hosts: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated hosts, IPs or CIDR networks that endpoint graders may reach "
            "although they are loopback/private/link-local, e.g. 127.0.0.1,10.0.0.0/8."
        ),
    ] = None,
    allow_local_paths: Annotated[
        bool,
        typer.Option(
            "--allow-local-paths",
            help="Let jobs name server paths (datasets, models); single-user servers only.",
        ),
    ] = False,
) -> None:
    """Serve the OpenAI-compatible fine-tuning API (docs at /docs) with N workers."""
    import uvicorn

    from openrft.service.app import create_app
    from openrft.service.store import secure_data_dir

    hosts = allow_grader_hosts.split(",") if allow_grader_hosts is not None else None
    settings = _settings(
        data_dir,
        database_url,
        auth=False if no_auth else None,
        allow_grader_hosts=None if hosts is None else [h.strip() for h in hosts if h.strip()],
        allow_local_paths=True if allow_local_paths else None,
    )
    os.umask(0o077)  # everything the service writes (uploads, jobs, checkpoints) is private
    secure_data_dir(settings)  # before the workers start: they write into it
    # the settings travel as variables: worker and API processes rebuild them from the env
    os.environ["OPENRFT_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        os.environ["OPENRFT_DATABASE_URL"] = settings.database_url
    if no_auth:
        os.environ["OPENRFT_AUTH"] = "false"
    if allow_grader_hosts is not None:
        os.environ["OPENRFT_ALLOW_GRADER_HOSTS"] = ",".join(settings.allow_grader_hosts)
    if allow_local_paths:
        os.environ["OPENRFT_ALLOW_LOCAL_PATHS"] = "true"
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    supervisor = Supervisor(settings, workers)
    supervisor.start()
    try:
        if api_processes > 1:
            uvicorn.run(
                "openrft.service.app:create_app",
                factory=True,
                workers=api_processes,
                host=host,
                port=port,
                log_level="warning",
            )
        else:
            uvicorn.run(create_app(settings), host=host, port=port, log_level="warning")
    finally:
        supervisor.stop()


def worker(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Run one worker: claim queued jobs and train them (more workers = more jobs at once)."""
    from openrft.service import worker as worker_module

    args = []
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    if database_url is not None:
        args += ["--database-url", database_url]
    worker_module.main(args)


@keys.command("create")
def create_key(
    project: Annotated[str, typer.Option(help="The project the key gives access to.")],
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key for PROJECT; the key is printed once, on the last line."""
    from openrft.service.deps import create_key as make_key
    from openrft.service.store import Store

    settings = _settings(data_dir, database_url)
    os.umask(0o077)
    key = make_key(Store.open_private(settings), project)
    typer.echo(
        f"Created a key for project {project!r}; it is not stored and cannot be shown again."
    )
    typer.echo(key)


if __name__ == "__main__":  # `python -m openrft.cli.serve serve|worker|keys …`, as `openrft …`
    from openrft.cli import main

    main(sys.argv[1:])
