"""Errors the service's routes raise, and the one table that says what each library error is
over HTTP; `app.py` alone turns them into OpenAI's envelope
`{"error": {"message", "type", "param", "code"}}` with an HTTP status.

Library errors split by whose fault they are: a bad spec, config, dataset, template or formula
(or a grader failing most samples) is the caller's, a 400; a resource the server lacks (WordNet,
an embedding model) or a sandbox that cannot run code safely here is the deployment's, a 503,
which the `openai` SDK reads as a server error rather than the caller's mistake.
"""

from __future__ import annotations

from dataclasses import dataclass

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


class ServiceError(OpenRFTError):
    """A request the service refuses; carries what OpenAI's error envelope needs."""

    status = 400
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code


class InvalidRequestError(ServiceError):
    """The request is malformed or names something unusable."""


class AuthenticationError(ServiceError):
    """No API key, or one the service does not know."""

    status = 401
    type = "invalid_request_error"


class NotFoundError(ServiceError):
    """No such object in the caller's project (another project's objects are not found)."""

    status = 404


class ConflictError(ServiceError):
    """The object exists but its state forbids the operation (cancel a finished job)."""

    status = 409


class PayloadTooLargeError(ServiceError):
    """An upload bigger than `max_file_bytes`."""

    status = 413


class QuotaExceededError(ServiceError):
    """The project is at one of its operator-set limits (active jobs, stored bytes)."""

    status = 429


class RateLimitError(ServiceError):
    """Too many calls in flight; the caller may retry later (the `openai` SDK maps 429 to its
    `RateLimitError` by status)."""

    status = 429
    type = "requests"


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
"""Every `OpenRFTError` outside `ServiceError` has a row here (a test walks the tree)."""
UNMAPPED = HttpShape(500, "server_error", "internal_error")


def http_shape(exc: OpenRFTError) -> HttpShape:
    """The row for `exc`'s class or its nearest mapped base class."""
    for kind in type(exc).__mro__:
        if kind in LIBRARY_ERRORS:
            return LIBRARY_ERRORS[kind]
    return UNMAPPED
