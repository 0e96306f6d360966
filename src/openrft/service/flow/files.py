"""SeekrFlow's files: `PUT /v1/flow/files` (upload), `PUT /v1/flow/bulk_files`, and list,
retrieve, delete, content, rename and `validate_metadata`.

They are the project's files, the same rows and bytes `/v1/files` serves: an upload is
received by `files.store_upload` (streamed to disk, refused past the project's limit, checked to
be UTF-8 JSONL line by line, kept all or none), from the multipart parts the `seekrai` SDK
sends: `files` (one, or several for `bulk_files`) and `purpose`; its redundant `filename` part
and `vector_database_id` are not read. OpenRFT trains on `reinforcement-fine-tune` and
`fine-tune` files; SeekrFlow's other purposes are refused with the reason. A file of one of
OpenRFT's own purposes (`evals`, `fine-tune-results`) shows `purpose: null` here and its
purpose as `openai_purpose`.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import asc, desc, select

from openrft.service import files as openai_files
from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import InvalidRequestError, QuotaExceededError
from openrft.service.flow.schemas import (
    FILE_PURPOSES,
    TRAINABLE_PURPOSES,
    FlowFile,
    FlowFileDeleted,
    FlowFileList,
    MetadataCheck,
    flow_file,
)
from openrft.service.multipart import openapi_body
from openrft.service.store import files

router = APIRouter(prefix="/v1/flow", tags=["seekrflow"])

MAX_BULK_FILES = 100
SORTS = {
    "created_at": files.c.seq,
    "filename": files.c.filename,
    "type": files.c.seq,
    "size": files.c.bytes,
}
"""`files.list(sort_by=…)`: every file is JSONL, so `type` orders as `created_at`."""


def check_flow_purpose(value: str) -> None:
    """Refuse a purpose OpenRFT cannot train with, saying why."""
    if value in TRAINABLE_PURPOSES:
        return
    if value in FILE_PURPOSES:
        raise InvalidRequestError(
            f"purpose {value!r} is not supported: OpenRFT trains with reinforcement-fine-tune "
            "(GRPO) and fine-tune (SFT) files; preference tuning, pre-training and alignment "
            "are not offered",
            param="purpose",
        )
    openai_files.check_purpose(value, TRAINABLE_PURPOSES)


async def _upload(
    request: Request, project: str, store: StoreDep, settings: SettingsDep, max_files: int
) -> list[FlowFile] | Response:
    rows = await openai_files.store_upload(
        request,
        project,
        store,
        settings,
        field="files",
        max_files=max_files,
        purposes=TRAINABLE_PURPOSES,
        purpose_check=check_flow_purpose,
    )
    return rows if isinstance(rows, Response) else [flow_file(row) for row in rows]


_UPLOAD = {
    "purpose": {"type": "string", "enum": list(TRAINABLE_PURPOSES)},
    "files": {"type": "string", "format": "binary", "description": "The JSONL dataset."},
}


@router.put(
    "/files",
    response_model=FlowFile,
    openapi_extra=openapi_body(_UPLOAD, ["files", "purpose"]),
)
async def upload_file(
    request: Request, project: ProjectDep, store: StoreDep, settings: SettingsDep
) -> FlowFile | Response:
    """Upload one JSONL file: multipart `files` and `purpose`."""
    found = await _upload(request, project, store, settings, 1)
    return found if isinstance(found, Response) else found[0]


@router.put(
    "/bulk_files",
    response_model=list[FlowFile],
    openapi_extra=openapi_body(_UPLOAD, ["files", "purpose"]),
)
async def bulk_upload(
    request: Request, project: ProjectDep, store: StoreDep, settings: SettingsDep
) -> list[FlowFile] | Response:
    """Upload up to 100 JSONL files (repeated `files` parts), within the project's limit
    together; all are kept, or none."""
    return await _upload(request, project, store, settings, MAX_BULK_FILES)


@router.get("/files", response_model=FlowFileList)
def list_files(
    project: ProjectDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    sort_by: Literal["created_at", "filename", "type", "size"] = "created_at",
    sort_order: Literal["asc", "desc"] = "desc",
    purpose: str | None = None,
) -> FlowFileList:
    """The project's files, `sort_by` in `sort_order`, `offset` and `limit` paging them."""
    column = SORTS[sort_by]
    order = asc if sort_order == "asc" else desc
    query = select(files).where(files.c.project == project)
    if purpose:
        query = query.where(files.c.purpose == purpose)
    query = query.order_by(order(column), order(files.c.seq)).offset(offset).limit(limit)
    return FlowFileList(data=[flow_file(row) for row in store.all(query)])


def _file(store: StoreDep, project: str, file_id: str) -> FlowFile:
    return flow_file(openai_files.file_row(store, project, file_id, param="id"))


@router.get("/files/{file_id}", response_model=FlowFile)
def retrieve_file(project: ProjectDep, store: StoreDep, file_id: str) -> FlowFile:
    return _file(store, project, file_id)


@router.delete("/files/{file_id}", response_model=FlowFileDeleted)
def delete_file(project: ProjectDep, store: StoreDep, file_id: str) -> FlowFileDeleted:
    openai_files.delete_file(project, store, file_id)
    return FlowFileDeleted(id=file_id)


@router.get("/files/{file_id}/content", response_class=FileResponse)
def file_content(project: ProjectDep, store: StoreDep, file_id: str) -> FileResponse:
    return openai_files.file_content(project, store, file_id)


class Rename(BaseModel):
    model_config = ConfigDict(extra="forbid")

    new_filename: str = Field(min_length=1, max_length=255)


@router.put("/files/{file_id}/rename", response_model=FlowFile)
def rename_file(
    project: ProjectDep, store: StoreDep, file_id: str, body: Annotated[Rename, Body()]
) -> FlowFile:
    """Give a file a new name (a name, not a path)."""
    name = body.new_filename
    if PurePath(name).name != name or name in (".", "..") or "\\" in name or "\x00" in name:
        raise InvalidRequestError(
            f"new_filename must be a file name without directories, not {name[:100]!r}",
            param="new_filename",
        )
    _file(store, project, file_id)
    with store.tx() as conn:
        conn.execute(
            files.update()
            .where(files.c.id == file_id, files.c.project == project)
            .values(filename=name)
        )
    return _file(store, project, file_id)


class MetadataQuestion(BaseModel):
    """`AlignFileMetadataValidationReq`."""

    purpose: str
    suffix: str
    size: int = Field(ge=0)


@router.post("/files/validate_metadata", response_model=MetadataCheck)
def validate_metadata(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, body: MetadataQuestion
) -> MetadataCheck:
    """Whether an upload of this purpose, suffix and size would be accepted (before sending
    it): the purpose, a `jsonl` suffix, and the project's limit."""
    problems = []
    try:
        check_flow_purpose(body.purpose)
    except InvalidRequestError as exc:
        problems.append(exc.message)
    if body.suffix.lower().lstrip(".") != "jsonl":
        problems.append(f"suffix {body.suffix[:20]!r}: OpenRFT takes JSONL files (.jsonl)")
    try:
        limit, _ = openai_files.upload_limit(store, settings, project)
    except QuotaExceededError as exc:
        problems.append(exc.message)
    else:
        if body.size > limit:
            problems.append(f"{body.size} bytes is over the limit of {limit} bytes")
    if body.size == 0:
        problems.append("the file is empty")
    return MetadataCheck(is_valid=not problems, errors="; ".join(problems) or None)
