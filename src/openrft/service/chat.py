"""`POST /v1/chat/completions`: chat with a base model, a project's `ft:` model, or one of its
checkpoint models (`ft:…:ckpt-step-N`), through the model servers (`model_servers.py`).

A model name resolves as a job's `model` does (`resources.Resolver.model`): another project's
`ft:` ids are unknown, a 404 `model_not_found`. A LoRA checkpoint is sent to the server of the
base model it was trained over, naming the checkpoint as the adapter to answer with; a full
checkpoint gets a server of its own. The request is proxied with httpx (async, bounded by
`Settings.chat_timeout_seconds`); the model server's error envelope is passed on as it is. A
server that died under a request is started again and the request sent once more.

`stream: true` is proxied as it streams (httpx streaming): the model server's Server-Sent Events
(`chat.completion.chunk`s with content deltas as tokens are generated, then `data: [DONE]`) are
passed on one by one, each chunk's `model` rewritten to the name the user asked for. An error the
model server answers before its first byte keeps its JSON envelope and status; a failure in the
middle of a stream ends it with an `error` event (the `openai` SDK raises it). A request with
`tools` streams its finished message at the end (see `inference/app.py`). Tool calls and
constrained JSON `response_format`s are the model server's (`inference/structured.py`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from openrft.api_errors import NotFoundError, ServerError, redact_paths
from openrft.inference.app import continuous_usage, include_usage
from openrft.inference.backends import is_adapter
from openrft.inference.schemas import ChatRequest
from openrft.service.deps import ProjectDep
from openrft.service.model_servers import ModelServer, ModelServers
from openrft.service.resources import Resolver
from openrft.service.settings import Settings
from openrft.service.store import Store

router = APIRouter(prefix="/v1/chat", tags=["chat"])

Shown = Literal["running", "final", "none"]
"""What of a stream's usage its client gets (`relay`)."""


def resolve_chat_model(
    store: Store, settings: Settings, project: str, name: str
) -> tuple[str, str | None]:
    """`(base model source, LoRA checkpoint path or None)` for `name` in `project`."""
    path, problem = Resolver(store, settings, project).model(name)
    if path is None or problem is not None:
        message = f"The model {name[:200]!r} does not exist or you do not have access to it."
        raise NotFoundError(message, param="model", code="model_not_found")
    source = Path(path)
    if not is_adapter(source):
        return path, None
    config = json.loads((source / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise ServerError(f"the checkpoint of {name!r} names no base model", code="bad_checkpoint")
    return str(base), path


@router.post("/completions", response_model=None)
async def create_chat_completion(body: ChatRequest, project: ProjectDep, request: Request) -> Any:
    """OpenAI's chat completions, answered by the model's server."""
    return await complete(body, project, request)


async def complete(
    body: ChatRequest,
    project: str,
    request: Request,
    shown_as: str | None = None,
    on_usage: Callable[[dict[str, Any]], Any] | None = None,
) -> Any:
    """`body` answered by the server of its `model` (a name `resolve_chat_model` takes); the
    answer names the model `shown_as` (default: `body.model`). SeekrFlow's inference route
    (`flow/inference.py`) answers through here too.

    `on_usage` is called once with a streamed answer's `usage`: the model server is asked for
    the usage so far on every chunk (`include_usage` and `continuous_usage_stats`) whatever the
    caller asked, so the tokens of a stream the client leaves before its end are counted too, as
    far as the model server had streamed them. The caller gets only the usage it asked for:
    none, `usage: null` on each chunk and the usage chunk (`include_usage`), or the running
    counts too (`continuous_usage_stats` as well)."""
    state = request.app.state
    shown = shown_as or body.model
    base, adapter = await run_in_threadpool(
        resolve_chat_model, state.store, state.settings, project, body.model
    )
    servers: ModelServers = state.model_servers
    upstream = body.model_dump(exclude_unset=True)
    upstream.update(stream=body.stream, adapter=adapter)
    if not body.stream:
        upstream.pop("stream_options", None)
    shown_usage: Shown = (
        "running" if continuous_usage(body) else "final" if include_usage(body) else "none"
    )
    if body.stream and on_usage is not None:
        options = upstream.get("stream_options")
        running = {"include_usage": True, "continuous_usage_stats": True}
        upstream["stream_options"] = {**(options or {}), **running}
    answer = await _answer(servers, base, upstream, shown)
    if answer.status_code != 200 or not body.stream:
        data = await _read(answer, shown, servers.settings)
        if answer.status_code != 200:
            return JSONResponse(redacted(data, base, adapter, shown), answer.status_code)
        data["model"] = shown
        return data
    return StreamingResponse(
        relay(answer, shown, on_usage, shown_usage if on_usage is not None else "running"),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def _answer(
    servers: ModelServers, base: str, body: dict[str, Any], model: str
) -> httpx.Response:
    """The answer of `base`'s server, its body not read yet; once more from a fresh server if
    it died meanwhile (answers are stateless, so the retry is safe)."""
    server = await servers.get(base, model)
    try:
        return await _forward(server, body, model, servers.settings)
    except httpx.TransportError as exc:
        if not await servers.died(server):
            raise unreachable(model, exc) from None
    server = await servers.get(base, model)
    try:
        return await _forward(server, body, model, servers.settings)
    except httpx.TransportError as exc:
        raise unreachable(model, exc) from None


def redacted(data: dict[str, Any], base: str, adapter: str | None, model: str) -> dict[str, Any]:
    """A model server's error envelope with no server path in its message (the checkpoint's
    path reads as the model id the caller used)."""
    error = data.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        known = {base: "the base model", **({adapter: model} if adapter else {})}
        data = {**data, "error": {**error, "message": redact_paths(error["message"], known)}}
    return data


def unreachable(model: str, exc: Exception) -> ServerError:
    message = f"the server of model {model!r} failed ({type(exc).__name__}); retry"
    return ServerError(message, code="model_server_error", status=502)


async def _forward(
    server: ModelServer, body: dict[str, Any], model: str, settings: Settings
) -> httpx.Response:
    """The model server's answer, streamed (read it, then close it); `httpx.TransportError`
    when it is unreachable or died."""
    url = f"{server.url}/v1/chat/completions"
    try:
        return await server.client.send(
            server.client.build_request("POST", url, json=body), stream=True
        )
    except httpx.TimeoutException:
        raise timed_out(model, settings) from None


async def _read(answer: httpx.Response, model: str, settings: Settings) -> dict[str, Any]:
    """The JSON body of a (streamed) answer."""
    try:
        await answer.aread()
    except httpx.TimeoutException:
        raise timed_out(model, settings) from None
    except httpx.TransportError as exc:
        raise unreachable(model, exc) from None
    finally:
        await answer.aclose()
    return _json(answer, model)


def timed_out(model: str, settings: Settings) -> ServerError:
    limit = settings.chat_timeout_seconds
    message = f"the model {model!r} did not answer within {limit:g} s"
    return ServerError(message, code="model_timeout", status=504)


def _json(answer: httpx.Response, model: str) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        message = (
            f"the server of model {model!r} sent an unreadable answer (HTTP {answer.status_code})"
        )
        raise ServerError(message, code="model_server_error", status=502)
    return data


async def relay(
    answer: httpx.Response,
    model: str,
    on_usage: Callable[[dict[str, Any]], Any] | None = None,
    shown_usage: Shown = "running",
) -> AsyncIterator[str]:
    """The model server's events, each chunk naming `model`; a failure mid-stream is sent as
    an `error` event, as OpenAI does.

    `on_usage` (run in a worker thread) gets the usage chunk's `usage` after the chunk before it
    was sent, or, when the stream ends without one (the client left, the server failed), the
    last running usage a chunk carried (`continuous_usage_stats`), if any: once either way.
    `shown_usage` is what of the usage the client gets: `running` (as the server sent it),
    `final` (`usage: null` on each chunk, then the usage chunk) or `none`."""
    running: dict[str, Any] | None = None
    counted = on_usage is None
    try:
        async for line in answer.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line.removeprefix("data: ")
            if data != "[DONE]":
                chunk = json.loads(data)
                if not isinstance(chunk, dict):
                    raise ValueError("a chunk that is not a JSON object")
                if "model" in chunk:
                    chunk["model"] = model
                usage, last = chunk.get("usage"), not chunk.get("choices")
                if isinstance(usage, dict) and not last:
                    running = usage
                if isinstance(usage, dict) and last and not counted:
                    counted = True
                    await run_in_threadpool(on_usage, usage)  # type: ignore[arg-type]
                if shown_usage == "none" and "usage" in chunk:
                    if last:
                        continue  # the usage chunk itself
                    del chunk["usage"]
                elif shown_usage == "final" and "usage" in chunk and not last:
                    chunk["usage"] = None  # OpenAI's running chunks
                data = json.dumps(chunk)
            yield f"data: {data}\n\n"
    except (httpx.TransportError, ValueError) as exc:  # died, timed out, or sent garbage
        message = f"the server of model {model!r} failed mid-stream ({type(exc).__name__})"
        error = {"message": message, "type": "server_error", "code": "model_server_error"}
        yield f"data: {json.dumps({'error': error})}\n\n"
    finally:
        # a client that left cancels this generator: the bookkeeping must still run
        with anyio.CancelScope(shield=True):
            try:
                if not counted and running is not None:
                    await run_in_threadpool(on_usage, running)  # type: ignore[arg-type]
            finally:
                await answer.aclose()
