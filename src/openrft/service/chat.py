"""`POST /v1/chat/completions`: chat with a base model, a project's `ft:` model, or one of its
checkpoint models (`ft:…:ckpt-step-N`), through the model servers (`model_servers.py`).

A model name resolves as a job's `model` does (`resources.Resolver.model`): another project's
`ft:` ids are unknown, a 404 `model_not_found`. A LoRA checkpoint is sent to the server of the
base model it was trained over, naming the checkpoint as the adapter to answer with; a full
checkpoint gets a server of its own. The request is proxied with httpx (async, bounded by
`Settings.chat_timeout_seconds`); the model server's error envelope is passed on as it is. A
server that died under a request is started again and the request sent once more.

`stream: true` is answered with Server-Sent Events in OpenAI's shape (`chat.completion.chunk`
objects, then `data: [DONE]`), but not token by token: the completion is generated whole, then
sent as one role chunk, one content chunk and one finish chunk per choice (and a usage chunk
with `stream_options.include_usage`). `tools` are accepted and ignored (the backends cannot call
tools yet); `response_format` JSON is asked for by prompting, as `serve-model` does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from openrft.api_errors import NotFoundError, ServerError
from openrft.inference.backends import is_adapter
from openrft.inference.schemas import ChatRequest
from openrft.service.deps import ProjectDep
from openrft.service.model_servers import ModelServer, ModelServers
from openrft.service.resources import Resolver
from openrft.service.settings import Settings
from openrft.service.store import Store

router = APIRouter(prefix="/v1/chat", tags=["chat"])


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
    state = request.app.state
    base, adapter = await run_in_threadpool(
        resolve_chat_model, state.store, state.settings, project, body.model
    )
    servers: ModelServers = state.model_servers
    upstream = body.model_dump(exclude_unset=True)
    upstream.update(stream=False, adapter=adapter)
    upstream.pop("stream_options", None)
    answer = await _answer(servers, base, upstream, body.model)
    if answer.status_code != 200:
        return JSONResponse(_json(answer, body.model), status_code=answer.status_code)
    completion = _json(answer, body.model)
    completion["model"] = body.model
    if not body.stream:
        return completion
    options = (body.model_extra or {}).get("stream_options") or {}
    include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
    events = (f"data: {json.dumps(c)}\n\n" for c in chunks(completion, include_usage))
    return StreamingResponse(
        _with_done(events), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def _answer(
    servers: ModelServers, base: str, body: dict[str, Any], model: str
) -> httpx.Response:
    """The answer of `base`'s server; once more from a fresh server if it died meanwhile
    (answers are stateless, so the retry is safe)."""
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


def unreachable(model: str, exc: Exception) -> ServerError:
    message = f"the server of model {model!r} failed ({type(exc).__name__}); retry"
    return ServerError(message, code="model_server_error", status=502)


async def _forward(
    server: ModelServer, body: dict[str, Any], model: str, settings: Settings
) -> httpx.Response:
    """The model server's answer; `httpx.TransportError` when it is unreachable or died."""
    try:
        return await server.client.post(f"{server.url}/v1/chat/completions", json=body)
    except httpx.TimeoutException:
        limit = settings.chat_timeout_seconds
        message = f"the model {model!r} did not answer within {limit:g} s"
        raise ServerError(message, code="model_timeout", status=504) from None


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


def chunks(completion: dict[str, Any], include_usage: bool) -> Iterator[dict[str, Any]]:
    """`completion` as the `chat.completion.chunk` objects OpenAI streams."""
    head = {
        "id": completion.get("id") or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": completion.get("created") or int(time.time()),
        "model": completion["model"],
        "system_fingerprint": None,
    }
    extra = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**head, "choices": [choice], **extra}

    for choice in completion.get("choices", []):
        index, message = choice["index"], choice.get("message") or {}
        yield chunk(index, {"role": "assistant", "content": ""}, None)
        if message.get("refusal") is not None:
            yield chunk(index, {"refusal": message["refusal"]}, None)
        if message.get("content"):
            yield chunk(index, {"content": message["content"]}, None)
        yield chunk(index, {}, choice.get("finish_reason") or "stop")
    if include_usage:
        yield {**head, "choices": [], "usage": completion.get("usage")}


def _with_done(events: Iterator[str]) -> Iterator[str]:
    yield from events
    yield "data: [DONE]\n\n"
