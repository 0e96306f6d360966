"""`openrft serve-model`: serve a model (or a scripted judge) over an OpenAI-compatible API.

A thin shell over `openrft.serving`: it builds the backend, then runs uvicorn. The lead registers
`serve_model` on the root app as `serve-model`; `python -m openrft.cli.serve_model` runs it alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from openrft.errors import ConfigError


def serve_model(
    model: Annotated[
        str | None,
        typer.Argument(help="HF model directory, cached hub id, or OpenRFT (LoRA) checkpoint."),
    ] = None,
    scripted: Annotated[
        Path | None,
        typer.Option(help="Answer from the rules in this YAML/JSON script instead of a model."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    name: Annotated[
        str | None, typer.Option(help="Model name to report (default: the directory name).")
    ] = None,
    backend: Annotated[str, typer.Option(help="auto, transformers or vllm.")] = "auto",
    max_tokens: Annotated[
        int, typer.Option(help="Generation limit when a request sets none.")
    ] = 256,
    api_key_env: Annotated[
        str | None,
        typer.Option(help="Require `Authorization: Bearer` with the key in this env variable."),
    ] = None,
) -> None:
    """Serve /v1/chat/completions and /v1/models for one model, OpenAI-compatible."""
    import uvicorn

    from openrft.serving.app import create_app
    from openrft.serving.backends import Backend, load_backend
    from openrft.serving.scripted import ScriptedBackend

    if (model is None) == (scripted is None):
        raise typer.BadParameter("give either a MODEL path or --scripted FILE (not both)")
    api_key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not api_key:
        raise typer.BadParameter(f"${api_key_env} is not set", param_hint="--api-key-env")
    try:
        served: Backend = (
            ScriptedBackend.from_file(scripted, name or "scripted")
            if scripted is not None
            else load_backend(str(model), backend, name, max_tokens)
        )
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    typer.echo(f"serving {served.name!r} on http://{host}:{port}/v1", err=True)
    uvicorn.run(create_app(served, api_key), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    typer.run(serve_model)
