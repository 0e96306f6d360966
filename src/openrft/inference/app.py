"""The FastAPI app of `openrft serve-model`: `/v1/chat/completions`, `/v1/models`, `/health`.

Responses have OpenAI's shapes, and errors its envelope with a string `code`, through the same
handlers as the fine-tuning service (`openrft.api_errors`), so the `openai` SDK and OpenRFT's own
model graders can talk to it unchanged. With `api_key` set, every `/v1/...` request must carry
`Authorization: Bearer <key>`. It serves one model under one name and answers any requested model
name with it (`GET /v1/models/{name}` alone is strict: 404 `model_not_found` for another name).
A choice with tool calls is sent as `message.tool_calls` with `content: null` and
`finish_reason: "tool_calls"`. `/health` reports the backend's batching counters when it has
them (`generate_calls`, `batched_requests`).

`stream: true` is answered with Server-Sent Events in OpenAI's shape: a role chunk per choice,
`chat.completion.chunk` content deltas as the backend generates them (token by token for
`TransformersBackend`; other backends send their finished text as one delta), a finish chunk per
choice, a usage chunk with `stream_options.include_usage`, then `data: [DONE]`. With
`continuous_usage_stats` beside `include_usage` (vLLM's option), every chunk carries the usage so
far (the prompt's tokens and the completion tokens generated when it was sent), so a client that
leaves early knows what it used. A request with
`tools` streams its finished message at the end (a tool call cannot be told from text before
the answer is whole). An error before generation starts (such as an adapter that does not load)
is answered as the JSON error envelope with its status, not as a stream.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from openrft.api_errors import (
    ApiError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
    error_response,
    install_error_handlers,
)
from openrft.inference.backends import Backend
from openrft.inference.schemas import ChatRequest, Choice, Completion, Delta, Started

log = logging.getLogger("openrft.inference")


def completion_body(completion: Completion, model: str) -> dict[str, Any]:
    """A `chat.completion` object."""
    choices = []
    for index, choice in enumerate(completion.choices):
        calls = tool_calls(choice)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": choice.text,
            "refusal": choice.refusal,
        }
        if calls:
            message.update(content=None, tool_calls=calls)
        finish = "tool_calls" if calls else choice.finish_reason
        choices.append(
            {"index": index, "message": message, "finish_reason": finish, "logprobs": None}
        )
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": usage(completion),
    }


def usage(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
    }


def tool_calls(choice: Choice) -> list[dict[str, Any]] | None:
    """The choice's tool calls in OpenAI's shape (`structured` parses them), or None."""
    calls: list[dict[str, Any]] | None = getattr(choice, "tool_calls", None)
    return calls or None


def failure(completion: Completion) -> ApiError:
    """The error a backend's non-200 `completion` answers with (a scripted judge plays them)."""
    message = completion.error or "backend error"
    retry = completion.retry_after
    headers = {"Retry-After": f"{retry:g}"} if retry is not None else None
    if completion.status == 429:
        return RateLimitError(message, code="rate_limit_exceeded", headers=headers)
    return ServerError(message, code="backend_error", status=completion.status, headers=headers)


def create_app(backend: Backend, api_key: str | None = None) -> FastAPI:
    """The app serving `backend` (under `backend.name`)."""
    app = FastAPI(title="OpenRFT model server", docs_url=None, redoc_url=None)
    install_error_handlers(app, log)

    @app.middleware("http")
    async def _authorize(request: Request, call_next: Any) -> Any:
        if api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                # middleware runs outside the exception handlers: answer, do not raise
                refused = AuthenticationError("missing or wrong API key", code="invalid_api_key")
                return error_response(refused)
        return await call_next(request)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        stats = getattr(backend, "stats", None)
        return {"status": "ok", "model": backend.name, **(stats() if stats else {})}

    entry = {"id": backend.name, "object": "model", "created": 0, "owned_by": "openrft"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [entry]}

    @app.get("/v1/models/{model:path}")  # hub-style ids have a slash: `org/name`
    async def retrieve_model(model: str) -> dict[str, Any]:
        if model != backend.name:
            message = f"The model '{model}' does not exist; this server serves '{backend.name}'."
            raise NotFoundError(message, param="model", code="model_not_found")
        return entry

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatRequest) -> Any:
        if request.adapter is not None and not getattr(backend, "max_adapters", 0):
            message = "this server does not load adapters"
            raise InvalidRequestError(message, param="adapter", code="unsupported_parameter")
        if request.stream:
            return await stream_response(backend, request)
        completion = await backend.complete(request)
        if completion.status != 200:
            raise failure(completion)
        return completion_body(completion, backend.name)

    return app


async def stream_response(backend: Backend, request: ChatRequest) -> StreamingResponse:
    """The SSE answer; raises the backend's error if it fails before generating."""
    streaming = getattr(backend, "stream", None)
    events: AsyncGenerator[Any] = streaming(request) if streaming else _whole(backend, request)
    first = await anext(events)
    if isinstance(first, Completion) and first.status != 200:
        await events.aclose()
        raise failure(first)
    body = _sse(_chained(first, events), request, backend.name)
    return StreamingResponse(
        body, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def _whole(backend: Backend, request: ChatRequest) -> AsyncGenerator[Completion]:
    yield await backend.complete(request)


async def _chained(first: Any, rest: AsyncGenerator[Any]) -> AsyncGenerator[Any]:
    try:
        yield first
        async for event in rest:
            yield event
    finally:
        await rest.aclose()  # a client that went away stops the generation of its rows


async def _sse(events: AsyncGenerator[Any], request: ChatRequest, model: str) -> AsyncIterator[str]:
    """`data:` lines of `chat.completion.chunk`s for the backend's events (`batching.Event`s:
    deltas have `index` and `text`; the `Completion` comes last)."""
    chunk = Chunks(model, include_usage(request), continuous_usage(request))
    sent = [""] * request.n
    roles_sent = False
    async for event in events:
        if isinstance(event, Started):
            chunk.prompt_tokens = event.prompt_tokens
        if not roles_sent:  # after `Started`, so that a running usage counts the prompt
            roles_sent = True
            for index in range(request.n):
                yield chunk.line(index, {"role": "assistant", "content": ""})
        if isinstance(event, Completion):
            if event.status != 200:  # after the first byte, an error can only be an event
                error = {"message": event.error or "backend error", "type": "server_error"}
                yield f"data: {json.dumps({'error': error})}\n\n"
                break
            chunk.prompt_tokens = event.prompt_tokens
            chunk.completion_tokens = event.completion_tokens
            for index, choice in enumerate(event.choices):
                for delta in _final_deltas(choice, sent[index]):
                    yield chunk.line(index, delta)
                finish = "tool_calls" if tool_calls(choice) else choice.finish_reason
                yield chunk.line(index, {}, finish)
            if chunk.include_usage:
                yield chunk.usage(event)
        elif isinstance(event, Delta) and event.text:
            sent[event.index] += event.text
            chunk.completion_tokens = event.completion_tokens
            yield chunk.line(event.index, {"content": event.text})
    yield "data: [DONE]\n\n"


def _final_deltas(choice: Choice, sent: str) -> list[dict[str, Any]]:
    """What of `choice` was not streamed yet: its tool calls, refusal, or the rest of its text."""
    calls = tool_calls(choice)
    if calls:
        return [{"tool_calls": [{"index": i, **call} for i, call in enumerate(calls)]}]
    if choice.refusal is not None:
        return [{"refusal": choice.refusal}]
    text = choice.text or ""
    rest = text[len(sent) :] if text.startswith(sent) else ""
    return [{"content": rest}] if rest else []


def include_usage(request: ChatRequest) -> bool:
    """Whether `stream_options.include_usage` asks for a usage chunk."""
    return bool(_stream_options(request).get("include_usage"))


def continuous_usage(request: ChatRequest) -> bool:
    """Whether every chunk carries the usage so far: vLLM's `continuous_usage_stats`, which
    counts only beside `include_usage` (as in vLLM)."""
    options = _stream_options(request)
    return bool(options.get("include_usage")) and bool(options.get("continuous_usage_stats"))


def _stream_options(request: ChatRequest) -> dict[str, Any]:
    options = getattr(request, "stream_options", None) or (request.model_extra or {}).get(
        "stream_options"
    )
    if not isinstance(options, dict):
        options = getattr(options, "__dict__", None) or {}
    return options


class Chunks:
    """Builds the `data:` lines of one streamed completion; with `continuous`, each carries
    the usage so far (`prompt_tokens` and `completion_tokens`, kept up to date by the caller),
    else `usage: null` when `include_usage` asks for the last chunk's."""

    def __init__(self, model: str, include_usage: bool, continuous: bool = False) -> None:
        self.head = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": None,
        }
        self.include_usage = include_usage
        self.continuous = continuous
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def line(self, index: int, delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
        extra: dict[str, Any] = {}
        if self.continuous:
            extra["usage"] = self._usage()
        elif self.include_usage:
            extra["usage"] = None
        return f"data: {json.dumps({**self.head, 'choices': [choice], **extra})}\n\n"

    def usage(self, completion: Completion) -> str:
        return f"data: {json.dumps({**self.head, 'choices': [], 'usage': usage(completion)})}\n\n"

    def _usage(self) -> dict[str, int]:
        return usage(
            Completion(prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens)
        )
