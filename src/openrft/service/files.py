"""`/v1/files`: upload (multipart), list, retrieve, delete and download training data.

An upload's multipart body is parsed as it arrives (`python_multipart`), not by starlette's form
parser, which would spool the whole body to a temporary file before the route could refuse it.
The `file` part goes straight to `<data_dir>/files/<id>.jsonl` (mode 0600, in a 0700 directory)
and is refused with 413 the moment it passes the limit (`upload_limit`), so nothing past the
limit reaches the disk; a `Content-Length` already over it is refused before a byte is read.
A refusal sent while the body is still arriving closes the connection, so the rest is never read.
The file is then checked to be UTF-8 JSONL (one JSON object per non-blank line) with every bad
line named in the error. If anything fails once the file exists — a bad line, a disconnect, a
bug — the file is removed; the database row is added only after the checks pass.

The same receiver (`store_upload`) takes SeekrFlow's uploads (`flow/files.py`: a `files` part, or
up to 100 of them for `bulk_files`, their sizes counted together, kept all or none).

The chat format and the grader's needs are checked later, when a job uses the file
(`validating_files`), because only then is the grader known. Uploads are written from the event
loop in the chunks they arrive in; this module does not rate-limit or count a project's uploads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response
from sqlalchemy import func, select
from sqlalchemy.engine import RowMapping
from starlette.requests import ClientDisconnect

from openrft.data.rows import MAX_LINE_BYTES, bounded_lines, unreadable_json
from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import (
    InvalidRequestError,
    NotFoundError,
    QuotaExceededError,
    ServiceError,
)
from openrft.service.multipart import UploadForm, hang_up, openapi_body, receive_upload
from openrft.service.schemas import FileDeleted, FileObject, ListPage, file_object, page
from openrft.service.settings import Settings
from openrft.service.store import Store, files, new_id, now
from openrft.service.tenancy import quota

router = APIRouter(prefix="/v1/files", tags=["files"])

PURPOSES = ("fine-tune", "reinforcement-fine-tune", "evals")
"""What an upload may be for: `evals` is what OpenAI's Evals guides upload eval rows as."""
MAX_LISTED_PROBLEMS = 10

_UPLOAD_BODY = openapi_body(
    {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "The JSONL dataset, one JSON object per line, as a file part (with a "
            "filename), at most `max_file_bytes`.",
        },
        "purpose": {"type": "string", "enum": list(PURPOSES)},
    },
    ["file", "purpose"],
)


def upload_limit(store: Store, settings: Settings, project: str) -> tuple[int, str]:
    """The most bytes `project` may upload now, and why when its storage quota is what limits
    it: `max_file_bytes`, or what the project's `max_project_bytes` leaves (429 when nothing)."""
    used = store.one(
        select(func.coalesce(func.sum(files.c.bytes), 0).label("n")).where(
            files.c.project == project
        )
    )
    room = quota(store, settings, project).max_project_bytes - int(used["n"] if used else 0)
    if room <= 0:
        raise QuotaExceededError(
            "This project's files use all of its storage quota; delete some (DELETE /v1/files/ID)",
            code="quota_exceeded",
        )
    if room < settings.max_file_bytes:
        return room, ", what this project's storage quota has left; delete files to make room."
    return settings.max_file_bytes, ""


def check_purpose(value: str, purposes: tuple[str, ...] = PURPOSES) -> None:
    """Refuse a `purpose` other than `purposes`."""
    if value not in purposes:
        shown = value if len(value) <= 64 else value[:40] + "…"
        raise InvalidRequestError(
            f"purpose must be one of {', '.join(purposes)}, not {shown!r}", param="purpose"
        )


def _purpose_of(form: UploadForm, purposes: tuple[str, ...]) -> str:
    """The purpose, once the body has its parts in full."""
    form.check_file()
    if form.purpose is None:
        raise InvalidRequestError(
            f"The upload has no `purpose` part; send one of {', '.join(purposes)}",
            param="purpose",
        )
    return form.purpose


def _line_problem(raw: bytes | None) -> str | None:
    """What is wrong with one line, or None if it is blank or a JSON object."""
    if raw is None:
        return f"longer than {MAX_LINE_BYTES >> 20} MiB; put one example per line"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start}); re-encode as UTF-8"
    if not text.strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON ({exc.msg}, column {exc.colno})"
    except (ValueError, RecursionError) as exc:  # too deep, or an integer with too many digits
        return unreadable_json(exc)
    if not isinstance(value, dict):
        return f"expected a JSON object, got {type(value).__name__}"
    return None


def jsonl_problems(path: Path) -> list[str]:
    """Every line that is not UTF-8, not a JSON object or too long, as `line N: what`."""
    with path.open("rb") as handle:
        found = ((n, _line_problem(raw)) for n, raw in enumerate(bounded_lines(handle), start=1))
        return [f"line {number}: {problem}" for number, problem in found if problem]


def _check_jsonl(path: Path, size: int, name: str = "") -> None:
    problems = [] if size else ["the file is empty"]
    problems += jsonl_problems(path)
    if problems:
        shown = problems[:MAX_LISTED_PROBLEMS]
        more = len(problems) - len(shown)
        which = f"The file {name!r}" if name else "The file"
        message = f"{which} is not valid UTF-8 JSONL (one JSON object per line): " + "; ".join(
            shown
        )
        if more:
            message += f"; and {more} more problem(s)"
        raise InvalidRequestError(message, param="file", code="invalid_file_format")


async def _rows(
    form: UploadForm, ids: list[str], project: str, purposes: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The database rows of a received upload's files, once its parts and lines are checked."""
    purpose = _purpose_of(form, purposes)
    named = len(form.parts) > 1  # a bulk upload's errors say which file
    rows = []
    for file_id, part in zip(ids, form.parts, strict=True):
        # reading up to `max_file_bytes` back would stall every other request on the loop
        name = part.filename if named else ""
        await run_in_threadpool(_check_jsonl, part.target, part.size, name)
        rows.append(
            {
                "id": file_id,
                "project": project,
                "filename": part.filename,
                "purpose": purpose,
                "bytes": part.size,
                "created_at": now(),
                "path": str(part.target),
            }
        )
    return rows


async def store_upload(
    request: Request,
    project: str,
    store: Store,
    settings: Settings,
    *,
    field: str = "file",
    max_files: int = 1,
    purposes: tuple[str, ...] = PURPOSES,
    purpose_check: Callable[[str], None] | None = None,
) -> list[dict[str, Any]] | Response:
    """Receive an upload's `field` parts (at most `max_files`, together within the project's
    limit), check each is UTF-8 JSONL and add their rows (all or none); the response to send
    instead when the upload is refused while its body is still arriving. A refused or failed
    upload keeps no file. `purpose_check` (default: one of `purposes`) refuses a purpose as
    soon as its part ends."""
    settings.files_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    limit, why = upload_limit(store, settings, project)
    ids: list[str] = []

    def target() -> Path:
        ids.append(new_id("file"))
        return settings.files_dir / f"{ids[-1]}.jsonl"

    checker = purpose_check or (lambda value: check_purpose(value, purposes))
    form = UploadForm(target, limit, checker, why, field, max_files)
    try:
        await receive_upload(request, form)
        rows = await _rows(form, ids, project, purposes)
        store.add_files(rows)
    except ServiceError as exc:
        form.remove_files()
        if form.body_read:
            raise
        return hang_up(exc, request.url.path)
    except ClientDisconnect:  # nobody to answer, and not worth two tracebacks in the log
        form.remove_files()
        return Response(status_code=400)
    except BaseException:  # a cancellation or a bug: keep no file either
        form.remove_files()
        raise
    return rows


@router.post("", response_model=FileObject, openapi_extra=_UPLOAD_BODY)
async def upload_file(
    request: Request, project: ProjectDep, store: StoreDep, settings: SettingsDep
) -> FileObject | Response:
    """Upload a JSONL dataset: multipart `file`, and `purpose` (`fine-tune`,
    `reinforcement-fine-tune` or `evals`)."""
    rows = await store_upload(request, project, store, settings)
    return rows if isinstance(rows, Response) else file_object(rows[0])


@router.get("", response_model=ListPage[FileObject])
def list_files(
    project: ProjectDep,
    store: StoreDep,
    after: str | None = None,
    limit: int = 10000,
    order: str = "desc",
    purpose: str | None = None,
) -> ListPage[FileObject]:
    """The project's files, newest first (`order=asc` for oldest first)."""
    limit = max(1, min(limit, 10000))
    rows, more = store.list_files(project, after, limit, purpose, ascending=order == "asc")
    return page([file_object(r) for r in rows], more)


def file_row(store: Store, project: str, file_id: str, param: str = "file_id") -> RowMapping:
    """One of `project`'s files (404 `file_not_found` for another project's, or none)."""
    row = store.file(project, file_id)
    if row is None:
        message = f"No such file: {file_id[:100]!r}"
        raise NotFoundError(message, param=param, code="file_not_found")
    return row


def find_file(store: StoreDep, project: str, file_id: str, param: str = "file_id") -> Path:
    return Path(file_row(store, project, file_id, param)["path"])


@router.get("/{file_id}", response_model=FileObject)
def retrieve_file(project: ProjectDep, store: StoreDep, file_id: str) -> FileObject:
    return file_object(file_row(store, project, file_id))


@router.delete("/{file_id}", response_model=FileDeleted)
def delete_file(project: ProjectDep, store: StoreDep, file_id: str) -> FileDeleted:
    path = find_file(store, project, file_id)
    store.delete_file(project, file_id)
    path.unlink(missing_ok=True)
    return FileDeleted(id=file_id)


@router.get("/{file_id}/content", response_class=FileResponse)
def file_content(project: ProjectDep, store: StoreDep, file_id: str) -> FileResponse:
    path = find_file(store, project, file_id)
    if not path.exists():
        raise NotFoundError(f"The content of {file_id!r} is gone from disk", code="file_not_found")
    return FileResponse(path, media_type="application/octet-stream")
