"""Errors the service's routes raise; `app.py` alone turns them (and library errors) into
OpenAI's envelope `{"error": {"message", "type", "param", "code"}}` with an HTTP status."""

from __future__ import annotations

from openrft.errors import OpenRFTError


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
