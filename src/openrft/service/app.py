"""`create_app(settings)`: the FastAPI application of the fine-tuning service.

Routes live per resource (`files.py`, `jobs.py`, `graders.py`, `models.py`). This is the one place
where errors become HTTP responses, always in OpenAI's envelope
`{"error": {"message", "type", "param", "code"}}`, so the `openai` SDK raises its usual
`BadRequestError`, `AuthenticationError`, `NotFoundError`, … The app does not train: workers do
(`worker.py`), reading the same store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException

from openrft.errors import OpenRFTError, ProblemsError
from openrft.service import files, graders, jobs, models, secrets
from openrft.service.bodylimit import BodyLimit
from openrft.service.dashboard import mount_dashboard
from openrft.service.errors import ServiceError, http_shape
from openrft.service.lifecycle import Validations
from openrft.service.settings import Settings
from openrft.service.store import Store, secure_data_dir
from openrft.service.supervisor import worker_health

log = logging.getLogger("openrft.service")
HEALTH_WAIT_SECONDS = 2.0
"""Longest `/health` waits for a store lock before answering 503."""


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
    """The caller's mistakes are 4xx with every problem, the deployment's 5xx (`http_shape`)."""
    assert isinstance(exc, OpenRFTError)  # registered for OpenRFTError only
    shape = http_shape(exc)
    if shape.status >= 500:
        log.error("server fault: %s: %s", type(exc).__name__, exc)
    param = _param(exc.problems[0].where) if isinstance(exc, ProblemsError) else None
    return envelope(shape.status, str(exc), shape.type, param, shape.code)


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
        if store is None:
            app.state.store = Store.open_private(settings)
        else:
            secure_data_dir(settings)
            app.state.store = store
        app.state.settings = settings
        app.state.validations = Validations(app.state.store, settings)
        app.state.validations.recover()  # in the background: a bad file never blocks start-up
        yield
        app.state.validations.close()
        app.state.store.engine.dispose()

    app = FastAPI(
        title="OpenRFT",
        summary="OpenAI-compatible reinforcement fine-tuning API",
        version="0.1.0",
        lifespan=lifespan,
    )
    for module in (files, jobs, graders, models, secrets):
        app.include_router(module.router)
    mount_dashboard(app)  # the browser dashboard at `/`
    app.add_middleware(BodyLimit)  # no request body is read whole past 16 MiB
    handlers: list[tuple[Any, Any]] = [
        (ServiceError, _service_error),
        (OpenRFTError, _library_error),
        (RequestValidationError, _validation_error),
        (HTTPException, _http_error),
        (Exception, _unexpected),
    ]
    for kind, handler in handlers:
        app.add_exception_handler(kind, handler)

    @app.get("/health", tags=["health"], response_model=None)
    def health() -> dict[str, Any] | JSONResponse:
        """Liveness, store reachability and the workers, from one query on the `workers` table:
        `{"status": "ok" | "degraded", "workers": {"alive", "restarts", "dead", "stale"}}`.
        Both are 200 (`degraded`: a worker is dead or silent for `stale_seconds`; the API
        still serves). 503 in OpenAI's error envelope when the store does not answer within
        `HEALTH_WAIT_SECONDS`. A plain `def`: a slow store then holds a threadpool thread, not
        the event loop every other request needs."""
        wait = min(HEALTH_WAIT_SECONDS, settings.store_busy_seconds)
        try:
            rows = app.state.store.current_workers(wait)
        except DBAPIError as exc:
            log.warning("health: store unavailable: %s", exc.orig)
            message = f"the store is unavailable: {type(exc.orig).__name__}"
            return envelope(503, message, "server_error", code="store_unavailable")
        return worker_health(rows, time.time(), settings.stale_seconds)

    return app
