"""The FastAPI app of `openrft serve-model`: `/v1/chat/completions`, `/v1/models`, `/health`.

Responses and errors have OpenAI's shapes (`{"error": {"message", "type", "code"}}`), so the
`openai` SDK and OpenRFT's own model graders can talk to it unchanged. With `api_key` set, every
`/v1/...` request must carry `Authorization: Bearer <key>`. It serves one model under one name,
answers any requested model name with it, and does not stream.
"""

from __future__ import annotations

import hmac
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from openrft.serving.backends import Backend
from openrft.serving.schemas import ChatRequest, Completion


def error_response(
    status: int, message: str, kind: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An OpenAI-shaped error."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


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


def _failure(completion: Completion) -> JSONResponse:
    kind = "rate_limit_error" if completion.status == 429 else "server_error"
    headers = (
        {"Retry-After": f"{completion.retry_after:g}"}
        if completion.retry_after is not None
        else None
    )
    return error_response(completion.status, completion.error or "backend error", kind, headers)


def create_app(backend: Backend, api_key: str | None = None) -> FastAPI:
    """The app serving `backend` (under `backend.name`)."""
    app = FastAPI(title="OpenRFT model server", docs_url=None, redoc_url=None)

    @app.middleware("http")
    async def _authorize(request: Request, call_next: Any) -> Any:
        if api_key and request.url.path.startswith("/v1/"):
            given = request.headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode()):
                return error_response(401, "missing or wrong API key", "authentication_error")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return error_response(400, f"invalid request: {problems}", "invalid_request_error")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": backend.name}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        entry = {"id": backend.name, "object": "model", "created": 0, "owned_by": "openrft"}
        return {"object": "list", "data": [entry]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(request: ChatRequest) -> dict[str, Any] | JSONResponse:
        if request.stream:
            return error_response(400, "stream=true is not supported", "invalid_request_error")
        completion = await backend.complete(request)
        if completion.status != 200:
            return _failure(completion)
        return completion_body(completion, backend.name)

    return app
