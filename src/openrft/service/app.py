"""`create_app(settings)`: the FastAPI application of the fine-tuning service.

Routes live per resource (`files.py`, `jobs.py`, `graders.py`, `models.py`). This is the one place
where errors become HTTP responses, always in OpenAI's envelope
`{"error": {"message", "type", "param", "code"}}`, so the `openai` SDK raises its usual
`BadRequestError`, `AuthenticationError`, `NotFoundError`, … The app does not train: workers do
(`worker.py`), reading the same store.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from starlette.exceptions import HTTPException

from openrft.errors import OpenRFTError, ProblemsError
from openrft.service import files, graders, jobs, models
from openrft.service.dashboard import mount_dashboard
from openrft.service.errors import ServiceError
from openrft.service.lifecycle import recover_validations
from openrft.service.settings import Settings
from openrft.service.store import Store

log = logging.getLogger("openrft.service")


def envelope(
    status: int, message: str, type: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def _param(where: str) -> str | None:
    """`$.method.reinforcement.grader.operation` → `method.reinforcement.grader.operation`."""
    return where.removeprefix("$").lstrip(".") or None


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)  # registered for ServiceError only
    return envelope(exc.status, exc.message, exc.type, exc.param, exc.code)


async def _library_error(_request: Request, exc: Exception) -> JSONResponse:
    """Invalid specs, configs and datasets are the caller's mistake: 400 with every problem."""
    param = _param(exc.problems[0].where) if isinstance(exc, ProblemsError) else None
    code = type(exc).__name__.removesuffix("Error").lower() + "_invalid"
    return envelope(400, str(exc), "invalid_request_error", param, code)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    param = None
    for error in exc.errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        param = param or ".".join(loc) or None
        problems.append(f"{'.'.join(loc) or 'body'}: {error.get('msg')}")
    return envelope(400, "; ".join(problems), "invalid_request_error", param, "invalid_request")


async def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return envelope(exc.status_code, str(exc.detail), kind)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return envelope(500, f"internal error: {type(exc).__name__}", "server_error")


def create_app(settings: Settings | None = None, store: Store | None = None) -> FastAPI:
    """The API app; `store` defaults to the one `settings` names (created if missing)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        app.state.store = store or Store.open(settings.url)
        app.state.settings = settings
        recover_validations(app.state.store)
        yield
        app.state.store.engine.dispose()

    app = FastAPI(
        title="OpenRFT",
        summary="OpenAI-compatible reinforcement fine-tuning API",
        version="0.1.0",
        lifespan=lifespan,
    )
    for module in (files, jobs, graders, models):
        app.include_router(module.router)
    mount_dashboard(app)  # the browser dashboard at `/`
    handlers: list[tuple[Any, Any]] = [
        (ServiceError, _service_error),
        (OpenRFTError, _library_error),
        (RequestValidationError, _validation_error),
        (HTTPException, _http_error),
        (Exception, _unexpected),
    ]
    for kind, handler in handlers:
        app.add_exception_handler(kind, handler)

    @app.get("/health", tags=["health"])
    async def health() -> dict[str, str]:
        """Liveness and store reachability."""
        with app.state.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    return app
