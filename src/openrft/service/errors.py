"""The errors the service's routes raise, under the names they import.

They live in `openrft.api_errors`, shared with the model server (`openrft serve-model`): one
envelope, one table (`LIBRARY_ERRORS`) saying what each library error is over HTTP, one set of
handlers (`install_error_handlers`, installed by `app.py`). `ServiceError` is that module's
`ApiError`, the base of every refusal a route raises.
"""

from __future__ import annotations

from openrft.api_errors import (
    LIBRARY_ERRORS,
    UNMAPPED,
    AuthenticationError,
    ConflictError,
    HttpShape,
    InvalidRequestError,
    NotFoundError,
    PayloadTooLargeError,
    QuotaExceededError,
    RateLimitError,
    http_shape,
)
from openrft.api_errors import ApiError as ServiceError

__all__ = [
    "LIBRARY_ERRORS",
    "UNMAPPED",
    "AuthenticationError",
    "ConflictError",
    "HttpShape",
    "InvalidRequestError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QuotaExceededError",
    "RateLimitError",
    "ServiceError",
    "http_shape",
]
