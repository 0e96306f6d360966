"""`BodyLimit`: an ASGI middleware that refuses request bodies over a size, before they are read.

A JSON request (a job, a grader run) is read whole into memory by FastAPI before any route runs,
so without a bound one client could make the API process hold gigabytes. A declared
`Content-Length` over the limit is answered 413 at once; a chunked body is counted as it arrives
and cut off with the same 413 once it passes the limit (whatever response the app then
started is replaced). Uploads (`POST /v1/files`) stream to disk
under their own, larger limit (`files.py`) and are left alone here.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from openrft.api_errors import error_body
from openrft.service.errors import PayloadTooLargeError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_JSON_BYTES = 16 * 1024 * 1024
"""Largest request body outside uploads: a grader spec with a long python source fits easily."""
UNLIMITED = ("/v1/files",)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The request body is larger than {limit} bytes; upload data with POST /v1/files",
        code="request_too_large",
    )


class BodyLimit:
    """Refuse bodies over `limit` bytes on every path except `UNLIMITED`."""

    def __init__(self, app: App, limit: int = MAX_JSON_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED:
            await self.app(scope, receive, send)
            return
        declared, chunked = _framing(scope)
        if declared is None and not chunked:  # no body (every GET): nothing to count
            await self.app(scope, receive, send)
            return
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _refuse(send, self.limit, scope.get("path", ""))
            return
        seen = 0
        exceeded = False

        async def counted() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                exceeded = True
                raise _too_large(self.limit)
            return message

        async def guarded(message: Message) -> None:
            # FastAPI turns any error while reading a body into its own 400; say why instead
            if not exceeded:
                await send(message)
            elif message["type"] == "http.response.start":
                await _refuse(send, self.limit, scope.get("path", ""))

        await self.app(scope, counted, guarded)


def _framing(scope: Scope) -> tuple[bytes | None, bool]:
    """The request's `Content-Length` (None when absent) and whether it is chunked."""
    declared, chunked = None, False
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            declared = value[:20]  # more digits than any real length: refused
        elif name == b"transfer-encoding":
            chunked = True
    return declared, chunked


async def _refuse(send: Send, limit: int, path: str) -> None:
    error = _too_large(limit)
    body = json.dumps(error_body(error.message, error.type, None, error.code, path)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": body})
