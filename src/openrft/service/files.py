"""`/v1/files`: upload (multipart), list, retrieve, delete and download training data.

Uploads are streamed to `<data_dir>/files/<id>.jsonl` with a size limit, then checked to be
UTF-8 JSONL (one JSON object per non-blank line); every bad line is named in the error. The
chat format and the grader's needs are checked later, when a job uses the file
(`validating_files`), because only then is the grader known.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import FileResponse

from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError
from openrft.service.schemas import FileDeleted, FileObject, ListPage, file_object, page
from openrft.service.store import new_id, now

router = APIRouter(prefix="/v1/files", tags=["files"])

PURPOSES = ("fine-tune", "reinforcement-fine-tune")
CHUNK = 1 << 20
MAX_LISTED_PROBLEMS = 10


async def _save(upload: UploadFile, target: Path, limit: int) -> int:
    size = 0
    with target.open("wb") as out:
        while chunk := await upload.read(CHUNK):
            size += len(chunk)
            if size > limit:
                out.close()
                target.unlink(missing_ok=True)
                raise PayloadTooLargeError(
                    f"The file is larger than the limit of {limit} bytes; split it or raise "
                    "`max_file_bytes` (OPENRFT_MAX_FILE_BYTES).",
                    param="file",
                    code="file_too_large",
                )
            out.write(chunk)
    return size


def jsonl_problems(path: Path) -> list[str]:
    """Every line that is not UTF-8 or not a JSON object, as `line N: what`."""
    problems: list[str] = []
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.append(f"line {number}: not UTF-8 (byte {exc.start}); re-encode as UTF-8")
                continue
            if not text.strip():
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: invalid JSON ({exc.msg}, column {exc.colno})")
                continue
            if not isinstance(value, dict):
                kind = type(value).__name__
                problems.append(f"line {number}: expected a JSON object, got {kind}")
    return problems


def _check_jsonl(path: Path, size: int) -> None:
    problems = [] if size else ["the file is empty"]
    problems += jsonl_problems(path)
    if problems:
        path.unlink(missing_ok=True)
        shown = problems[:MAX_LISTED_PROBLEMS]
        more = len(problems) - len(shown)
        message = "The file is not valid UTF-8 JSONL (one JSON object per line): " + "; ".join(
            shown
        )
        if more:
            message += f"; and {more} more problem(s)"
        raise InvalidRequestError(message, param="file", code="invalid_file_format")


@router.post("", response_model=FileObject)
async def upload_file(
    project: ProjectDep,
    store: StoreDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()],
) -> FileObject:
    """Upload a JSONL dataset (`purpose`: `fine-tune` or `reinforcement-fine-tune`)."""
    if purpose not in PURPOSES:
        raise InvalidRequestError(
            f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}", param="purpose"
        )
    file_id = new_id("file")
    settings.files_dir.mkdir(parents=True, exist_ok=True)
    target = settings.files_dir / f"{file_id}.jsonl"
    size = await _save(file, target, settings.max_file_bytes)
    _check_jsonl(target, size)
    row = {
        "id": file_id,
        "project": project,
        "filename": os.path.basename(file.filename or "upload.jsonl"),
        "purpose": purpose,
        "bytes": size,
        "created_at": now(),
        "path": str(target),
    }
    store.add_file(row)
    return file_object(row)


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


def find_file(store: StoreDep, project: str, file_id: str, param: str = "file_id") -> Path:
    row = store.file(project, file_id)
    if row is None:
        raise NotFoundError(f"No such file: {file_id!r}", param=param, code="file_not_found")
    return Path(row["path"])


@router.get("/{file_id}", response_model=FileObject)
def retrieve_file(project: ProjectDep, store: StoreDep, file_id: str) -> FileObject:
    row = store.file(project, file_id)
    if row is None:
        raise NotFoundError(f"No such file: {file_id!r}", param="file_id", code="file_not_found")
    return file_object(row)


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
