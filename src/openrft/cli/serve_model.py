"""`openrft serve-model`: serve a model (or a scripted judge) over an OpenAI-compatible API.

A thin shell over `openrft.inference`: it builds the backend, then runs uvicorn. A service
model id (`ft:…`) is served from its checkpoint in the service's store
(`cli/service_models.py`). The root app registers `serve_model` as `serve-model`;
`python -m openrft.cli.serve_model ARGS` is `openrft serve-model ARGS`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from openrft.cli.service_models import DatabaseUrlOption, DataDirOption, service_checkpoint


def serve_model(
    model: Annotated[
        str | None,
        typer.Argument(
            help="HF model directory, cached hub id, OpenRFT (LoRA) checkpoint, or a service "
            "model id (`ft:…`, `ft:…:ckpt-step-N`, found with --data-dir)."
        ),
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
    data_dir: DataDirOption = None,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Serve /v1/chat/completions and /v1/models for one model, OpenAI-compatible."""
    import uvicorn

    from openrft.inference.app import create_app
    from openrft.inference.backends import Backend, load_backend
    from openrft.inference.scripted import ScriptedBackend

    if (model is None) == (scripted is None):
        raise typer.BadParameter("give either a MODEL path or --scripted FILE (not both)")
    api_key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not api_key:
        raise typer.BadParameter(f"${api_key_env} is not set", param_hint="--api-key-env")
    source = str(model)
    if model is not None and model.startswith("ft:"):  # served under its id, as OpenAI names it
        source, name = str(service_checkpoint(model, data_dir, database_url)), name or model
    served: Backend = (
        ScriptedBackend.from_file(scripted, name or "scripted")
        if scripted is not None
        else load_backend(source, backend, name, max_tokens)
    )
    typer.echo(f"serving {served.name!r} on http://{host}:{port}/v1", err=True)
    uvicorn.run(create_app(served, api_key), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    from openrft.cli import main  # its entry point turns errors into exit codes

    main(["serve-model", *sys.argv[1:]])
