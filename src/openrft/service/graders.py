"""`/v1/fine_tuning/alpha/graders/run` and `/validate`: the grader engine over HTTP.

The same code path as `openrft graders run|validate`: `load_grader` then `grade` (run) or the
normalized spec (validate). A bad spec raises `SpecError`, which `app.py` turns into a 400 with
every problem listed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict

from openrft.graders import Sample, grade, load_grader
from openrft.service.deps import ProjectDep
from openrft.service.errors import InvalidRequestError

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders", tags=["graders"])


class RunRequest(BaseModel):
    """OpenAI's grader run body."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    grader: dict[str, Any]
    """The grader spec (either dialect)."""
    model_sample: str
    """The model output, seen by templates as `sample.output_text` (and `output_json`)."""
    item: Any = None
    """The dataset row, seen as `item`."""
    reference_answer: Any = None
    """Older API form: copied into `item.reference_answer` when the item lacks one."""


class ValidateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grader: dict[str, Any]


def _item(body: RunRequest) -> dict[str, Any]:
    item = {} if body.item is None else body.item
    if not isinstance(item, dict):
        raise InvalidRequestError("`item` must be a JSON object", param="item")
    if body.reference_answer is not None and "reference_answer" not in item:
        item = {**item, "reference_answer": body.reference_answer}
    return item


@router.post("/run")
async def run_grader(_project: ProjectDep, body: RunRequest) -> dict[str, Any]:
    """Grade one sample; the response is OpenAI's grader run response."""
    spec = load_grader(body.grader)
    item = _item(body)
    # model/endpoint/python graders block on I/O or subprocesses: keep the event loop free
    result = await run_in_threadpool(grade, spec, Sample.from_text(body.model_sample), item)
    return result.model_dump(mode="json")


@router.post("/validate")
def validate_grader(_project: ProjectDep, body: ValidateRequest) -> dict[str, Any]:
    """Check a spec; return it normalized (`{"grader": …}`)."""
    spec = load_grader(body.grader)
    return {"grader": spec.model_dump(mode="json", exclude_none=True)}
