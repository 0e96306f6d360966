"""The dashboard's library calls: dataset validation reports, the reward-hacking audit, and
parsing a pasted grader (JSON or YAML).

These expose `openrft.data.validate_dataset` and `openrft.graders.audit.audit` — the same code
as `openrft data validate` and `openrft graders audit` — as JSON for the files page and the
grader playground. Grading one sample goes through the public API
(`/v1/fine_tuning/alpha/graders/run`), not through here. A report lists every problem with its
line number; the server's own file paths are never shown.

Nothing here stores anything: an upload checked with `/validate` is deleted afterwards.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, File, UploadFile
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from openrft.data import DatasetReport, load_dataset, validate_dataset
from openrft.errors import Problem, SpecError
from openrft.graders import load_grader
from openrft.graders.audit import AuditRow, audit
from openrft.service.deps import NO_AUTH_PROJECT, ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import InvalidRequestError, NotFoundError, PayloadTooLargeError

router = APIRouter(prefix="/dashboard/api", tags=["dashboard"])

CHUNK = 1 << 20
LINE = re.compile(r":(\d+)$")


class GraderBody(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    grader: dict[str, Any] | None = None
    """Also check the rows have the item fields this grader's templates read."""


class AuditBody(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    grader: dict[str, Any]
    """The grader to probe (either dialect)."""
    file_id: str
    """An uploaded dataset whose rows the probes run against."""
    threshold: float = Field(default=0.5, ge=0, le=1)
    """A probe whose mean reward reaches this is flagged."""


class ParseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str


@router.get("/config")
def dashboard_config(settings: SettingsDep) -> dict[str, Any]:
    """What the login page needs to know: whether API keys are required."""
    return {"auth": settings.auth, "no_auth_project": NO_AUTH_PROJECT}


@router.get("/whoami")
def whoami(project: ProjectDep) -> dict[str, str]:
    """The project the caller's key belongs to."""
    return {"project": project}


def _line(problem: Problem) -> int | None:
    match = LINE.search(problem.where)
    return int(match.group(1)) if match else None


def report_json(report: DatasetReport) -> dict[str, Any]:
    """A validation report without server paths: each problem is `{line, message}`."""
    length = report.prompt_length
    return {
        "ok": report.ok,
        "lines": report.lines,
        "rows": report.rows,
        "problems": [{"line": _line(p), "message": p.message} for p in report.problems],
        "prompt_length": None if length is None else vars(length),
        "item_fields": report.item_fields,
    }


def _file_path(store: StoreDep, project: str, file_id: str) -> Path:
    row = store.file(project, file_id)
    if row is None:
        raise NotFoundError(f"No such file: {file_id!r}", param="file_id", code="file_not_found")
    return Path(row["path"])


@router.post("/files/{file_id}/validation")
async def validate_file(
    project: ProjectDep, store: StoreDep, file_id: str, body: GraderBody | None = None
) -> dict[str, Any]:
    """Validate an uploaded file as chat-format RFT data (and against a grader, if given)."""
    path = _file_path(store, project, file_id)
    grader = load_grader(body.grader) if body and body.grader else None
    report = await run_in_threadpool(validate_dataset, path, grader)
    return report_json(report)


@router.post("/validate")
async def validate_upload(
    _project: ProjectDep, settings: SettingsDep, file: Annotated[UploadFile, File()]
) -> dict[str, Any]:
    """Validate a file without keeping it: the full report for an upload `/v1/files` refused."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "upload.jsonl"
        size = 0
        with path.open("wb") as out:
            while chunk := await file.read(CHUNK):
                size += len(chunk)
                if size > settings.max_file_bytes:
                    raise PayloadTooLargeError(
                        f"The file is larger than the limit of {settings.max_file_bytes} bytes",
                        param="file",
                        code="file_too_large",
                    )
                out.write(chunk)
        report = await run_in_threadpool(validate_dataset, path)
    return report_json(report)


def _audit(body: AuditBody, path: Path) -> dict[str, Any]:
    grader = load_grader(body.grader)
    rows = [AuditRow(messages=row.messages, item=dict(row.item)) for row in load_dataset(path)]
    report = audit(grader, rows, body.threshold)
    return {
        "rows": report.rows,
        "threshold": report.threshold,
        "probes": [vars(probe) for probe in report.probes],
    }


@router.post("/audit")
async def run_audit(project: ProjectDep, store: StoreDep, body: AuditBody) -> dict[str, Any]:
    """Probe a grader with cheap exploits (empty answer, echoed prompt, …) on a file's rows."""
    path = _file_path(store, project, body.file_id)
    # python graders and model judges run for real: keep the event loop free
    return await run_in_threadpool(_audit, body, path)


@router.post("/parse")
def parse_spec(_project: ProjectDep, body: ParseBody) -> dict[str, Any]:
    """Parse a pasted grader written as JSON or YAML (YAML is a superset of JSON)."""
    try:
        value = yaml.safe_load(body.text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "grader"
        what = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem(where, f"not valid JSON or YAML: {what}")]) from None
    if not isinstance(value, dict):
        raise InvalidRequestError("the grader must be a JSON/YAML object", param="text")
    return {"value": value}
