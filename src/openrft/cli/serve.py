"""`openrft serve`, `openrft worker` and `openrft keys create`: run the fine-tuning service.

Register on the root app with `app.command()(serve.serve)`, `app.command()(serve.worker)` and
`app.add_typer(serve.keys, name="keys")`. `serve` runs the API in this process and starts
`--workers` worker processes (`python -m openrft.service.worker`), stopped when it exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from openrft.service.settings import Settings

DataDir = Annotated[
    Path | None,
    typer.Option(help="State directory (database, uploads, jobs); default ~/.openrft."),
]
DatabaseUrl = Annotated[
    str | None,
    typer.Option(help="Store URL, e.g. postgresql://user@host/db; default SQLite in data dir."),
]

keys = typer.Typer(help="Manage API keys.", no_args_is_help=True)


def _settings(data_dir: Path | None, database_url: str | None, **extra: object) -> Settings:
    return Settings.from_env(data_dir=data_dir, database_url=database_url, **extra)


def _start_workers(settings: Settings, count: int) -> list[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "openrft.service.worker", "--parent-pid", str(os.getpid())]
    command += ["--data-dir", str(settings.data_dir)]
    if settings.database_url:
        command += ["--database-url", settings.database_url]
    return [subprocess.Popen(command) for _ in range(count)]  # noqa: S603 - our own command


def _stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # workers checkpoint and re-queue their job
    for proc in workers:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()


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
) -> None:
    """Serve the OpenAI-compatible fine-tuning API (docs at /docs) with N workers."""
    import uvicorn

    from openrft.service.app import create_app

    settings = _settings(data_dir, database_url, auth=False if no_auth else None)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # the settings travel as variables: worker and API processes rebuild them from the env
    os.environ["OPENRFT_DATA_DIR"] = str(settings.data_dir)
    if settings.database_url:
        os.environ["OPENRFT_DATABASE_URL"] = settings.database_url
    if no_auth:
        os.environ["OPENRFT_AUTH"] = "false"
    started = _start_workers(settings, workers)
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
        _stop_workers(started)


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
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.open(settings.url)
    key = make_key(store, project)
    typer.echo(
        f"Created a key for project {project!r}; it is not stored and cannot be shown again."
    )
    typer.echo(key)


if __name__ == "__main__":
    app = typer.Typer()
    app.command()(serve)
    app.command()(worker)
    app.add_typer(keys, name="keys")
    app()
