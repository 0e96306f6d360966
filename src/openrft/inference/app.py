"""The FastAPI app of `openrft serve-model`: `/v1/chat/completions`, `/v1/models`, `/health`.

Responses have OpenAI's shapes, and errors its envelope with a string `code`, through the same
handlers as the fine-tuning service (`openrft.api_errors`), so the `openai` SDK and OpenRFT's own
model graders can talk to it unchanged. With `api_key` set, every `/v1/...` request must carry
`Authorization: Bearer <key>`. It serves one model under one name and answers any requested model
name with it (`GET /v1/models/{name}` alone is strict: 404 `model_not_found` for another name).
It does not stream.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request

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
from openrft.inference.schemas import ChatRequest, Completion

log = logging.getLogger("openrft.inference")


def completion_body(completion: Completion, model: str) -> dict[str, Any]:
    """A `chat.completion` object."""
    choices = [
        {
            "index": index,
            "message": {"role": "assistant", "content": choice.text, "refusal": choice.refusal},
            "finish_reason": choice.finish_reason,
            "logprobs": None,
        }
        for index, choice in enumerate(completion.choices)
    ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        "usage": {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        },
    }


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
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": backend.name}

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
    async def chat_completions(request: ChatRequest) -> dict[str, Any]:
        if request.stream:
            message = "stream=true is not supported"
            raise InvalidRequestError(message, param="stream", code="unsupported_value")
        if request.adapter is not None and not getattr(backend, "max_adapters", 0):
            message = "this server does not load adapters"
            raise InvalidRequestError(message, param="adapter", code="unsupported_parameter")
        completion = await backend.complete(request)
        if completion.status != 200:
            raise failure(completion)
        return completion_body(completion, backend.name)

    return app
