"""The dashboard's library calls: dataset validation reports, the reward-hacking audit, and
parsing a pasted grader (JSON or YAML).

These expose `openrft.data.validate_dataset` and `openrft.graders.audit.audit` — the same code
as `openrft data validate` and `openrft graders audit` — as JSON for the files page and the
grader playground. Grading one sample goes through the public API
(`/v1/fine_tuning/alpha/graders/run`), not through here. A report lists every problem with its
line number; the server's own file paths are never shown.

Nothing here stores anything: an upload checked with `/validate` is deleted afterwards. Work
that can take a while runs off the request threads: validations on the validation threads,
audits on the grading threads within the project's limit (the same as `graders/run`).
"""

from __future__ import annotations

import asyncio
import re
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from openrft.data import DatasetReport, load_dataset, validate_dataset
from openrft.errors import Problem, SpecError
from openrft.graders import GradeContext, load_grader
from openrft.graders.audit import AuditRow, audit
from openrft.service import tenancy
from openrft.service.deps import NO_AUTH_PROJECT, ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import InvalidRequestError, NotFoundError, ServiceError
from openrft.service.graders import GradingPool
from openrft.service.multipart import UploadForm, hang_up, openapi_body, receive_upload

router = APIRouter(prefix="/dashboard/api", tags=["dashboard"])

_VALIDATE_BODY = openapi_body({"file": {"type": "string", "format": "binary"}}, ["file"])
LINE = re.compile(r":(\d+)$")
AUDIT_ROWS = 200
"""Rows of the file the audit probes (each probe grades every row: with a judge or an endpoint
that is a request a row, so the whole of a large file would hold the server's grading threads)."""


class NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases: a few lines of `&a [*a, *a]` nest into an
    exponentially large value once anything walks it (the "billion laughs")."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            what = "aliases (*name) are not accepted; write the value out"
            raise yaml.composer.ComposerError(None, None, what, event.start_mark)
        return super().compose_node(parent, index)


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
    """A validation report without server paths: each problem is `{line, message}`; the
    warnings (repeated rows) are sentences, and `duplicate_rows` counts the repeats."""
    length = report.prompt_length
    return {
        "ok": report.ok,
        "lines": report.lines,
        "rows": report.rows,
        "problems": [{"line": _line(p), "message": p.message} for p in report.problems],
        "warnings": [w.message for w in report.warnings],
        "duplicate_rows": report.duplicate_rows,
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
    project: ProjectDep,
    store: StoreDep,
    file_id: str,
    request: Request,
    body: GraderBody | None = None,
) -> dict[str, Any]:
    """Validate an uploaded file as chat-format RFT data (and against a grader, if given)."""
    path = _file_path(store, project, file_id)
    grader = load_grader(body.grader) if body and body.grader else None
    validations = request.app.state.validations.pool  # not the threads serving requests
    report = await asyncio.wrap_future(validations.submit(validate_dataset, path, grader))
    return report_json(report)


@router.post("/validate", openapi_extra=_VALIDATE_BODY, response_model=None)
async def validate_upload(
    _project: ProjectDep, settings: SettingsDep, request: Request
) -> dict[str, Any] | Response:
    """Validate a file without keeping it: the full report for an upload `/v1/files` refused.
    The body is streamed to a scratch file under the same limit as an upload."""
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "upload.jsonl"
        form = UploadForm(target, settings.max_file_bytes)
        try:
            await receive_upload(request, form)
            form.check_file()
        except ServiceError as exc:
            if form.body_read:
                raise
            return hang_up(exc)
        validations = request.app.state.validations.pool
        report = await asyncio.wrap_future(validations.submit(validate_dataset, target))
    return report_json(report)


def _audit(body: AuditBody, path: Path, context: GradeContext) -> dict[str, Any]:
    grader = load_grader(body.grader)
    rows = [
        AuditRow(messages=row.messages, item=dict(row.item))
        for row in load_dataset(path)[:AUDIT_ROWS]
    ]
    report = audit(grader, rows, body.threshold, context)
    return {
        "rows": report.rows,
        "threshold": report.threshold,
        "probes": [vars(probe) for probe in report.probes],
    }


@router.post("/audit")
async def run_audit(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, body: AuditBody, request: Request
) -> dict[str, Any]:
    """Probe a grader with cheap exploits (empty answer, echoed prompt, …) on the first
    `AUDIT_ROWS` rows of a file, as the caller's project (its secrets, its sandbox workers), on
    the grading threads and within the project's limit of grader runs in flight (else 429)."""
    path = _file_path(store, project, body.file_id)
    context = tenancy.grade_context(store, settings, project)
    pool: GradingPool = request.app.state.grading_pool
    return await asyncio.wrap_future(pool.submit(project, partial(_audit, body, path, context)))


@router.post("/parse")
def parse_spec(_project: ProjectDep, body: ParseBody) -> dict[str, Any]:
    """Parse a pasted grader written as JSON or YAML (YAML is a superset of JSON)."""
    try:
        value = yaml.load(body.text, Loader=NoAliasLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "grader"
        what = getattr(exc, "problem", None) or str(exc)
        raise SpecError([Problem(where, f"not valid JSON or YAML: {what}")]) from None
    if not isinstance(value, dict):
        raise InvalidRequestError("the grader must be a JSON/YAML object", param="text")
    return {"value": value}
