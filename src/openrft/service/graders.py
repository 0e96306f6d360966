"""`/v1/fine_tuning/alpha/graders/run` and `/validate`: the grader engine over HTTP.

The same code path as `openrft graders run|validate`: `load_grader` then `grade` (run) or the
normalized spec (validate). A bad spec raises `SpecError`, which `app.py` turns into a 400 with
every problem listed.

`run` grades as the caller's project (`GradeContext.for_project`: its secrets, the operator's
outbound allow-list, python-grader workers of its own) on `GradingPool`'s threads, never the
threadpool other routes share, so graders that hang cannot starve `GET /v1/files`. Each project
may have `grading_concurrency` calls in flight and all projects together `grading_threads`;
beyond that a call is refused at once with 429 rather than queued. The limits are per API
process (`--api-processes N` multiplies them). This module does not bound a grader's own time:
the graders do (an endpoint call ends by its deadline, a python grader by its CPU limit).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, Request
from pydantic import BaseModel, ConfigDict

from openrft.graders import Grader, GradeResult, Item, Sample, grade, load_grader
from openrft.service import tenancy
from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import InvalidRequestError, RateLimitError
from openrft.service.settings import Settings
from openrft.service.store import Store

T = TypeVar("T")


class GradingPool:
    """The threads `graders/run` calls (and the dashboard's audits) run on, and how many calls
    each project has in flight.

    A call keeps its slot until its grading ends, even when the client has gone away."""

    def __init__(self, threads: int, per_project: int) -> None:
        self.threads = threads
        self.per_project = per_project
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="openrft-graders-run")
        self._in_flight: Counter[str] = Counter()
        self._lock = threading.Lock()  # slots are released from the grading threads

    def submit(self, project: str, work: Callable[[], T]) -> Future[T]:
        """Start `work` for `project`, or `RateLimitError` if no slot is free."""
        self._take(project)
        try:
            future = self._executor.submit(work)
        except RuntimeError:  # shut down: the app is stopping
            self._release(project)
            raise
        future.add_done_callback(lambda _done: self._release(project))
        return future

    def _take(self, project: str) -> None:
        with self._lock:
            if self._in_flight[project] >= self.per_project:
                raise RateLimitError(
                    f"this project already has {self.per_project} grader run(s) in flight; "
                    "retry when one has finished",
                    code="rate_limit_exceeded",
                )
            if self._in_flight.total() >= self.threads:
                raise RateLimitError(
                    "the server is busy running graders; retry shortly", code="rate_limit_exceeded"
                )
            self._in_flight[project] += 1

    def _release(self, project: str) -> None:
        with self._lock:
            self._in_flight[project] -= 1

    def shutdown(self) -> None:
        """Stop taking work; calls still running finish on their own (they are bounded)."""
        self._executor.shutdown(wait=False, cancel_futures=True)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # nested inside the app's own lifespan (FastAPI merges router lifespans), after it has
    # put the settings on `app.state`
    settings: Settings = app.state.settings
    app.state.grading_pool = GradingPool(settings.grading_threads, settings.grading_concurrency)
    try:
        yield
    finally:
        app.state.grading_pool.shutdown()


router = APIRouter(prefix="/v1/fine_tuning/alpha/graders", tags=["graders"], lifespan=_lifespan)


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


def _grade_as(
    store: Store, settings: Settings, project: str, spec: Grader, sample: Sample, item: Item
) -> GradeResult:
    """Grade in `project`'s context; runs on a grading thread (the secrets read included)."""
    return grade(spec, sample, item, tenancy.grade_context(store, settings, project))


@router.post("/run")
async def run_grader(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, request: Request, body: RunRequest
) -> dict[str, Any]:
    """Grade one sample; the response is OpenAI's grader run response."""
    spec = load_grader(body.grader)
    work = partial(
        _grade_as, store, settings, project, spec, Sample.from_text(body.model_sample), _item(body)
    )
    pool: GradingPool = request.app.state.grading_pool
    result = await asyncio.wrap_future(pool.submit(project, work))
    return result.model_dump(mode="json")


@router.post("/validate")
def validate_grader(_project: ProjectDep, body: ValidateRequest) -> dict[str, Any]:
    """Check a spec; return it normalized (`{"grader": …}`)."""
    spec = load_grader(body.grader)
    return {"grader": spec.model_dump(mode="json", exclude_none=True)}
