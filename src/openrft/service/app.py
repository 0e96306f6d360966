"""`create_app(settings)`: the FastAPI application of the fine-tuning service.

Routes live per resource (`files.py`, `jobs.py`, `graders.py`, `models.py`) and raise; the
handlers `openrft.api_errors` installs (the same as the model server's) turn every error into
OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`, so the `openai` SDK raises
its usual `BadRequestError`, `AuthenticationError`, `NotFoundError`, … The app does not train:
workers do (`worker.py`), reading the same store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError

from openrft.api_errors import envelope, install_error_handlers
from openrft.service import (
    chat,
    eval_runs,
    evals,
    files,
    graders,
    jobs,
    models,
    secrets,
    tools,
)
from openrft.service.bodylimit import BodyLimit
from openrft.service.dashboard import mount_dashboard
from openrft.service.flow import routes as flow_routes
from openrft.service.lifecycle import Validations
from openrft.service.model_servers import ModelServers
from openrft.service.settings import Settings
from openrft.service.store import Store, secure_data_dir
from openrft.service.supervisor import worker_health

# `envelope` too: `multipart.py` answers its refusals with it
__all__ = ["create_app", "envelope"]

log = logging.getLogger("openrft.service")
HEALTH_WAIT_SECONDS = 2.0
"""Longest `/health` waits for a store lock before answering 503."""


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
        app.state.model_servers = ModelServers(settings)  # chat: started on first use
        yield
        await app.state.model_servers.close()
        app.state.validations.close()
        app.state.store.engine.dispose()

    app = FastAPI(
        title="OpenRFT",
        summary="OpenAI-compatible reinforcement fine-tuning API",
        version="0.1.0",
        lifespan=lifespan,
    )
    for module in (files, jobs, graders, tools, models, secrets, chat, evals, eval_runs):
        app.include_router(module.router)
    for router in flow_routes.ROUTERS:  # SeekrFlow's API (`service/flow/`), on the same store
        app.include_router(router)
    mount_dashboard(app)  # the browser dashboard at `/`
    app.add_middleware(BodyLimit)  # no request body is read whole past 16 MiB
    install_error_handlers(app, log)  # every error in OpenAI's envelope (`api_errors.py`)

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
