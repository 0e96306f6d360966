"""Errors as OpenRFT's two HTTP servers answer them: the fine-tuning service (`openrft serve`,
`service/`) and the model server (`openrft serve-model`, `inference/`).

Both answer every error in OpenAI's envelope `{"error": {"message", "type", "param", "code"}}`
with a string `code`, so the `openai` SDK raises its usual `BadRequestError`,
`AuthenticationError`, `NotFoundError`, `RateLimitError`, `InternalServerError`, … and exposes
the code as `.code`. What reaches the wire:

- `ApiError` and its subclasses: a request a server refuses, raised by its routes; each carries
  its status and type.
- library errors (`openrft.errors`): `LIBRARY_ERRORS` gives each its status and code. A bad
  spec, config, dataset, template or formula (or a grader failing most samples) is the caller's,
  a 400; a resource the server lacks (WordNet, an embedding model) or a sandbox that cannot run
  code safely here is the deployment's, a 503, which the SDK reads as a server error rather than
  the caller's mistake.
- FastAPI's request validation (400 `invalid_request`), routing errors (404, 405) and anything
  unexpected (500, logged with its traceback).

SeekrFlow's routes (`/v1/flow/…`, `/v1/inference/…`: `service/flow/`) answer in SeekrFlow's
form instead (`SEEKRFLOW_PATHS`, `error_body`): FastAPI's `{"detail": message}`, which is
what SeekrFlow's own server sends, with the fields of the `seekrai` SDK's
`SeekrFlowErrorResponse` (`message`, `type`, `param`, `code`) beside it. The SDK raises
`InvalidRequestError` for 400/403/404, `AuthenticationError` for 401, `ConflictError` for 409
and `RateLimitError` for 429, with the body in the exception's text.

`install_error_handlers(app, log)` is the one place errors become responses on either server.
FastAPI is imported only where a response is built, so the CLI can import these classes (to give
each an exit code) without the `serve` extra. This module does not retry, and does not shape
successful responses.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from openrft.errors import (
    ConfigError,
    DatasetError,
    FormulaError,
    GradingError,
    MissingResourceError,
    OpenRFTError,
    ProblemsError,
    SandboxError,
    SpecError,
    TemplateError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException


class ApiError(OpenRFTError):
    """A request a server refuses; carries what OpenAI's error envelope needs."""

    status = 400
    type = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        if status is not None:  # the class's status, unless this one answers another
            self.status = status
        self.headers = headers


class InvalidRequestError(ApiError):
    """The request is malformed or names something unusable."""


class AuthenticationError(ApiError):
    """No API key, or one the server does not know."""

    status = 401


class NotFoundError(ApiError):
    """No such object (in the service: in the caller's project; another project's objects are
    not found)."""

    status = 404


class ConflictError(ApiError):
    """The object exists but its state forbids the operation (cancel a finished job)."""

    status = 409


class PayloadTooLargeError(ApiError):
    """An upload bigger than `max_file_bytes`."""

    status = 413


class QuotaExceededError(ApiError):
    """The project is at one of its operator-set limits (active jobs, stored bytes)."""

    status = 429


class RateLimitError(ApiError):
    """Too many calls in flight; the caller may retry later (the `openai` SDK maps 429 to its
    `RateLimitError` by status)."""

    status = 429
    type = "requests"


class ServerError(ApiError):
    """The server could not answer (a model backend failed, or a scripted judge plays a fault)."""

    status = 500
    type = "server_error"


@dataclass(frozen=True)
class HttpShape:
    """How one kind of library error goes over the wire."""

    status: int
    type: str
    code: str


LIBRARY_ERRORS: dict[type[OpenRFTError], HttpShape] = {
    SpecError: HttpShape(400, "invalid_request_error", "invalid_grader"),
    ConfigError: HttpShape(400, "invalid_request_error", "invalid_config"),
    DatasetError: HttpShape(400, "invalid_request_error", "invalid_file"),
    TemplateError: HttpShape(400, "invalid_request_error", "invalid_template"),
    FormulaError: HttpShape(400, "invalid_request_error", "invalid_formula"),
    GradingError: HttpShape(400, "invalid_request_error", "grader_error_rate"),
    ProblemsError: HttpShape(400, "invalid_request_error", "invalid_request"),
    MissingResourceError: HttpShape(503, "server_error", "missing_resource"),
    SandboxError: HttpShape(503, "server_error", "sandbox_unavailable"),
}
"""Every `OpenRFTError` outside `ApiError` has a row here (a test walks the tree)."""
UNMAPPED = HttpShape(500, "server_error", "internal_error")


def http_shape(exc: OpenRFTError) -> HttpShape:
    """The row for `exc`'s class or its nearest mapped base class."""
    for kind in type(exc).__mro__:
        if kind in LIBRARY_ERRORS:
            return LIBRARY_ERRORS[kind]
    return UNMAPPED


SEEKRFLOW_PATHS = ("/v1/flow/", "/v1/inference/")
"""Path prefixes whose errors are in SeekrFlow's form (`error_body`)."""


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None, path: str = ""
) -> dict[str, Any]:
    """The error body of the API `path` belongs to: OpenAI's `{"error": {message, type, param,
    code}}`, or on SeekrFlow's paths FastAPI's `detail` with `SeekrFlowErrorResponse`'s fields
    beside it."""
    fields = {"message": message, "type": type, "param": param, "code": code}
    if path.startswith(SEEKRFLOW_PATHS):
        return {"detail": message, **fields}
    return {"error": fields}


def envelope_for(
    path: str,
    status: int,
    message: str,
    type: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """`error_body` for `path` with `status`."""
    from fastapi.responses import JSONResponse

    body = error_body(message, type, param, code, path)
    return JSONResponse(body, status_code=status, headers=headers)


def envelope(
    status: int,
    message: str,
    type: str,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """OpenAI's error envelope with `status`."""
    return envelope_for("", status, message, type, param, code, headers)


def error_response(exc: ApiError, path: str = "") -> JSONResponse:
    """`exc` as the envelope of `path`'s API (for middleware too, which runs outside the
    exception handlers)."""
    return envelope_for(path, exc.status, exc.message, exc.type, exc.param, exc.code, exc.headers)


ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"`:,;()\[\]{}<>/]+/)+[^\s'\"`:,;()\[\]{}<>/]*")
"""An absolute POSIX path of two or more components, as it appears inside an error message."""


def redact_paths(text: str, known: Mapping[str, str] | None = None) -> str:
    """`text` with no server path left in it, for an error message a tenant will read: each
    `known` path (longest first) becomes its label (a model path -> the model id the caller
    used), and any other absolute path `…/<last component>`."""
    for path, label in sorted((known or {}).items(), key=lambda item: -len(item[0])):
        if path:
            text = text.replace(path.rstrip("/"), label)
    return ABSOLUTE_PATH.sub(lambda m: "…/" + (m.group(0).rstrip("/").rsplit("/", 1)[-1]), text)


def install_error_handlers(app: FastAPI, log: logging.Logger) -> None:
    """Answer every error `app` meets in OpenAI's envelope; server faults are logged to `log`."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(cast(ApiError, exc), request.url.path)  # for ApiError only

    async def library_error(request: Request, exc: Exception) -> JSONResponse:
        """The caller's mistakes are 4xx with every problem, the deployment's 5xx."""
        shape = http_shape(cast(OpenRFTError, exc))  # registered for OpenRFTError only
        if shape.status >= 500:
            log.error("server fault: %s: %s", type(exc).__name__, exc)
        param = _param(exc.problems[0].where) if isinstance(exc, ProblemsError) else None
        return envelope_for(request.url.path, shape.status, str(exc), shape.type, param, shape.code)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        message = f"internal error: {type(exc).__name__}"
        return envelope_for(request.url.path, 500, message, "server_error")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(OpenRFTError, library_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, unexpected)


def _param(where: str) -> str | None:
    """`$.method.reinforcement.grader.operation` → `method.reinforcement.grader.operation`."""
    return where.removeprefix("$").lstrip(".") or None


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    problems = []
    param = None
    for error in cast("RequestValidationError", exc).errors():
        loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
        param = param or ".".join(loc) or None
        problems.append(f"{'.'.join(loc) or 'body'}: {error.get('msg')}")
    message, kind = "; ".join(problems), "invalid_request_error"
    return envelope_for(request.url.path, 400, message, kind, param, "invalid_request")


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Routing errors: an unknown path (404), a wrong method (405)."""
    http = cast("HTTPException", exc)
    kind = "not_found_error" if http.status_code == 404 else "invalid_request_error"
    return envelope_for(request.url.path, http.status_code, str(http.detail), kind)
