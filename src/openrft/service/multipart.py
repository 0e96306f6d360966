"""`receive_upload`: a multipart upload parsed as it arrives, its `file` part written straight to
disk and refused the moment it passes a limit.

Starlette's own form parser spools the whole body to a temporary file before a route runs, so a
2 GiB body would hold 2 GiB of disk before any limit could refuse it. Here `python_multipart`
is fed `request.stream()`: a `Content-Length` already over the limit is refused before a byte
is read, a body without one is counted as it arrives, and the `file` part's size is checked
before each write, so nothing past the limit reaches the disk. The file is created 0600 with
`O_EXCL` (an existing path or link is never followed). A `purpose` part, when the caller wants
one, is read (at most `MAX_FIELD_BYTES`) and checked as soon as it ends; other parts are
skipped unread.

It does not remove the file on failure (the caller decides when a file is kept) nor check its
content. `hang_up` answers a refusal with `Connection: close`: uvicorn would otherwise read and
discard the rest of the body to keep the connection.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import JSONResponse
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from openrft.api_errors import error_response
from openrft.service.errors import InvalidRequestError, PayloadTooLargeError, ServiceError

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MULTIPART_OVERHEAD = 64 * 1024
"""Bytes a body may carry besides the file's own: boundaries, part headers, `purpose`."""
MAX_FIELD_BYTES = 1024
"""Longest `purpose` value kept in memory (the valid ones are a few bytes)."""


def openapi_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """`openapi_extra` describing a multipart body (FastAPI cannot infer it: the route reads the
    stream itself)."""
    schema = {"type": "object", "required": required, "properties": properties}
    content = {"multipart/form-data": {"schema": schema}}
    return {"requestBody": {"required": True, "content": content}}


def too_large(limit: int, why: str = "") -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"The file is larger than the limit of {limit} bytes"
        + (why or "; split it or raise `max_file_bytes` (OPENRFT_MAX_FILE_BYTES)."),
        param="file",
        code="file_too_large",
    )


def _create(path: Path) -> IO[bytes]:
    """A new file only its owner can read; `O_EXCL` so an existing path (or link) is never used."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


@dataclass
class Received:
    """One file part of an upload, as written to disk."""

    target: Path
    filename: str
    size: int = 0
    complete: bool = False


class UploadForm:
    """`python_multipart` callbacks for an upload: each file part named `field` is written to
    a path of `target`'s (a fixed path, or a function giving one per part when `max_files` > 1)
    and refused once the parts together pass `limit` bytes (`why` says where the limit comes
    from); with `check_purpose`, a `purpose` part is kept and checked as soon as it ends."""

    def __init__(
        self,
        target: Path | Callable[[], Path],
        limit: int,
        check_purpose: Callable[[str], None] | None = None,
        why: str = "",
        field: str = "file",
        max_files: int = 1,
    ) -> None:
        self._next_target = target if callable(target) else lambda: target
        self.target = target if isinstance(target, Path) else None
        self.limit, self.why = limit, why
        self.check_purpose = check_purpose
        self.field, self.max_files = field.encode(), max_files
        self.out: IO[bytes] | None = None
        self.parts: list[Received] = []
        self.size = 0
        self.purpose: str | None = None
        self.body_read = False
        self._part: str | None = None  # "file", "purpose", or None: skip this part's data
        self._data = bytearray()
        self._header = (bytearray(), bytearray())
        self._disposition = b""

    @property
    def filename(self) -> str:
        return self.parts[0].filename if self.parts else ""

    @property
    def file_complete(self) -> bool:
        return bool(self.parts) and all(part.complete for part in self.parts)

    def remove_files(self) -> None:
        """Delete every file this upload wrote (a refused or failed upload keeps none)."""
        self.close()
        for path in {part.target for part in self.parts} | ({self.target} - {None}):
            assert path is not None
            path.unlink(missing_ok=True)

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header[0].extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header[1].extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
        }

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None

    def check_file(self) -> None:
        """Once the body is read: it had whole `field` parts (at least one)."""
        name = self.field.decode()
        if not self.parts:
            raise InvalidRequestError(
                f"The upload has no `{name}` part (a part named `{name}` with a filename)",
                param=name,
            )
        if not self.file_complete:
            raise InvalidRequestError(f"The body ends inside the `{name}` part", param=name)

    def _part_begin(self) -> None:
        self._part, self._disposition = None, b""
        self._data.clear()

    def _header_end(self) -> None:
        name, value = self._header
        if bytes(name).strip().lower() == b"content-disposition":
            self._disposition = bytes(value)
        name.clear()
        value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        if name == self.field and b"filename" in options:
            if len(self.parts) >= self.max_files:
                field = self.field.decode()
                message = f"Send at most {self.max_files} `{field}` parts"
                if self.max_files == 1:
                    message = f"Send one `{field}` part, not several"
                raise InvalidRequestError(message, param=field)
            filename = options[b"filename"].decode("utf-8", errors="replace")
            part = Received(self._next_target(), os.path.basename(filename) or "upload.jsonl")
            self.parts.append(part)
            self.out = _create(part.target)
            self._part = "file"
        elif name == b"purpose" and self.check_purpose is not None:
            self._part = "purpose"

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "file" and self.out is not None:
            self.size += end - start
            if self.size > self.limit:  # checked before writing: nothing past the limit is kept
                raise too_large(self.limit, self.why)
            self.parts[-1].size += end - start
            self.out.write(data[start:end])
        elif self._part == "purpose" and self.check_purpose is not None:
            self._data += data[start:end]
            if len(self._data) > MAX_FIELD_BYTES:
                self.check_purpose(self._data[:40].decode("utf-8", errors="replace") + "…")

    def _part_end(self) -> None:
        if self._part == "file":
            self.parts[-1].complete = True
            self.close()
        elif self._part == "purpose" and self.check_purpose is not None:
            self.purpose = self._data.decode("utf-8", errors="replace")
            self.check_purpose(self.purpose)  # refused before the file is even read


def _boundary(request: Request, limit: int, why: str) -> bytes:
    """The multipart boundary, after refusing a body that says it is too large."""
    declared = request.headers.get("content-length", "")
    # a length with more digits than any real one is refused unread (and int() of a huge
    # digit string is slow, and past 4300 digits an error)
    if (
        declared.isascii()
        and declared.isdigit()
        and (len(declared) > 18 or int(declared) > limit + MULTIPART_OVERHEAD)
    ):
        raise too_large(limit, why)
    kind, options = parse_options_header(request.headers.get("content-type"))
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise InvalidRequestError(
            "Send the upload as multipart/form-data with a `file` part (and a `purpose` part)",
            param="file",
        )
    return options[b"boundary"]


async def receive_upload(request: Request, form: UploadForm) -> None:
    """Parse the body as it arrives; `form` writes the `file` part to its target."""
    boundary = _boundary(request, form.limit, form.why)
    received = 0
    try:
        parser = MultipartParser(boundary, form.callbacks())
        async for chunk in request.stream():
            received += len(chunk)
            if received > form.limit + MULTIPART_OVERHEAD:  # a body without Content-Length
                raise too_large(form.limit, form.why)
            parser.write(chunk)
        form.body_read = True
        parser.finalize()
    except FormParserError as exc:
        raise InvalidRequestError(f"The body is not valid multipart/form-data: {exc}") from None
    finally:
        form.close()


def hang_up(error: ServiceError, path: str = "") -> JSONResponse:
    """`error` as the envelope of `path`'s API, closing the connection after it: the rest of
    the body is unread, and uvicorn would otherwise read (and discard) all of it to keep the
    connection."""
    response = error_response(error, path)
    response.headers["connection"] = "close"
    return response
