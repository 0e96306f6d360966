"""`/v1/evals/{eval_id}/runs` and their `output_items`: create, list, retrieve, cancel, delete.

Creating a run checks its data source now (every bad row is named, the items against the
eval's `item_schema`) and queues it; a worker grades it (`eval_runner.py`), so a run survives an
API restart. `jsonl` rows carry a ready `sample`; a `completions` source names a model the
project may chat with, whose samples the worker draws (`eval_completions.py`). A project may have
`max_active_jobs` runs queued or in progress at once (the jobs quota, counted apart), a run at
most `MAX_RUN_ROWS` rows. `report_url` opens the run in the dashboard
(`/dashboard/evals/{eval_id}/runs/{run_id}`).

A reinforcement job's eval (`job_evals.py`) gets its runs from the worker, one per evaluation
training made; they are read, listed and deleted here like any other, and a user may add runs
of their own to that eval (graded by the job's grader, `multi` included).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy import delete, func, select, update

from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import InvalidRequestError, NotFoundError, QuotaExceededError
from openrft.service.eval_completions import check_source
from openrft.service.eval_runner import ACTIVE, check_rows, source_rows
from openrft.service.evals import check_metadata, find_eval, list_page, page
from openrft.service.store import Store, eval_output_items, eval_runs, new_id, now
from openrft.service.tenancy import quota

router = APIRouter(prefix="/v1/evals/{eval_id}/runs", tags=["evals"])

_EMPTY_COUNTS = {"total": 0, "passed": 0, "failed": 0, "errored": 0}


class RunCreate(BaseModel):
    """OpenAI's `evals.runs.create` body."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    data_source: dict[str, Any]
    """`{"type": "jsonl", "source": {"type": "file_content", "content": [{item, sample}]}}` or
    `{"type": "jsonl", "source": {"type": "file_id", "id": "file-…"}}`, or a `completions`
    source: `{"type": "completions", "model", "input_messages", "sampling_params", "source"}`
    whose rows are `{"item": {…}}`."""
    name: str | None = None
    metadata: dict[str, str] | None = None


def _check_source(data_source: dict[str, Any]) -> dict[str, Any]:
    kind = data_source.get("type")
    if kind not in ("jsonl", "completions"):
        raise InvalidRequestError(
            f"data_source.type must be `jsonl` or `completions`, not {kind!r}",
            param="data_source.type",
        )
    source = data_source.get("source")
    if not isinstance(source, dict):
        raise InvalidRequestError(
            "data_source.source must be an object", param="data_source.source"
        )
    return source


def report_path(eval_id: str, run_id: str) -> str:
    """Where the dashboard shows a run, as stored (`run_object` makes it absolute)."""
    return f"/dashboard/evals/{eval_id}/runs/{run_id}"


def run_object(row: Any, base_url: str = "") -> dict[str, Any]:
    """A run as OpenAI shows it; `model` is None for a `jsonl` run (its samples were made
    elsewhere). The stored `report_url` is a path (`report_path`: a worker importing a job's
    evaluations knows no URL of the API), made absolute with `base_url`; one stored absolute
    (runs created before paths were stored) is shown as it is."""
    report_url = row["report_url"]
    if report_url.startswith("/"):
        report_url = base_url.rstrip("/") + report_url
    data_source = row["data_source"]
    model = data_source.get("model") if data_source.get("type") == "completions" else None
    return {
        "id": row["id"],
        "object": "eval.run",
        "eval_id": row["eval_id"],
        "created_at": row["created_at"],
        "name": row["name"],
        "status": row["status"],
        "model": model,
        "data_source": row["data_source"],
        "metadata": row["user_metadata"],
        "error": row["error"],
        "result_counts": row["result_counts"] or _EMPTY_COUNTS,
        "per_testing_criteria_results": row["per_testing_criteria_results"] or [],
        "per_model_usage": row["per_model_usage"] or [],
        "report_url": report_url,
    }


def find_run(store: Store, project: str, eval_id: str, run_id: str) -> Any:
    row = store.one(
        select(eval_runs).where(
            eval_runs.c.id == run_id,
            eval_runs.c.eval_id == eval_id,
            eval_runs.c.project == project,
        )
    )
    if row is None:
        raise NotFoundError(f"No such eval run: {run_id!r}", param="run_id", code="run_not_found")
    return row


def _check_room(store: Store, project: str, limit: int) -> None:
    active = store.one(
        select(func.count().label("n")).where(
            eval_runs.c.project == project, eval_runs.c.status.in_(ACTIVE)
        )
    )
    if active is not None and active["n"] >= limit:
        raise QuotaExceededError(
            f"this project already has {limit} eval run(s) queued or in progress; wait for "
            "one to finish or cancel one",
            code="quota_exceeded",
        )


@router.post("")
def create_run(
    project: ProjectDep,
    store: StoreDep,
    settings: SettingsDep,
    request: Request,
    eval_id: str,
    body: RunCreate,
) -> dict[str, Any]:
    """Queue a run of the eval over the rows `data_source` names (checked now)."""
    found = find_eval(store, project, eval_id)
    source = _check_source(body.data_source)
    completions = None
    if body.data_source["type"] == "completions":
        completions = check_source(store, settings, project, body.data_source)
    check_rows(
        source_rows(store, project, source),
        found["data_source_config"]["schema"]["properties"]["item"],
        completions,
    )
    _check_room(store, project, quota(store, settings, project).max_active_jobs)
    run_id = new_id("evalrun")
    row = {
        "id": run_id,
        "eval_id": eval_id,
        "project": project,
        "name": body.name or run_id,
        "status": "queued",
        "data_source": body.data_source,
        "user_metadata": check_metadata(body.metadata),
        "report_url": report_path(eval_id, run_id),
        "created_at": now(),
        "attempts": 0,
        "result_counts": None,
        "per_testing_criteria_results": None,
        "per_model_usage": None,
        "error": None,
    }
    with store.tx() as conn:
        conn.execute(eval_runs.insert().values(**row))
    return run_object(row, str(request.base_url))


@router.get("")
def list_runs(
    project: ProjectDep,
    store: StoreDep,
    request: Request,
    eval_id: str,
    after: str | None = None,
    limit: int = 20,
    order: str = "asc",
    status: str | None = None,
) -> dict[str, Any]:
    """The eval's runs, oldest first; `status` filters (`queued`, `in_progress`, …)."""
    find_eval(store, project, eval_id)
    query = select(eval_runs).where(eval_runs.c.eval_id == eval_id)
    if status:
        query = query.where(eval_runs.c.status == status)
    rows, more = page(store, query, eval_runs, after, limit, order)
    return list_page([run_object(r, str(request.base_url)) for r in rows], more)


@router.get("/{run_id}")
def retrieve_run(
    project: ProjectDep, store: StoreDep, request: Request, eval_id: str, run_id: str
) -> dict[str, Any]:
    return run_object(find_run(store, project, eval_id, run_id), str(request.base_url))


@router.post("/{run_id}/cancel")
@router.post("/{run_id}", include_in_schema=False)  # what OpenAI's reference documents
def cancel_run(
    project: ProjectDep, store: StoreDep, request: Request, eval_id: str, run_id: str
) -> dict[str, Any]:
    """Cancel a queued or running run (its worker stops after the rows it is grading); a
    finished run is returned as it is."""
    find_run(store, project, eval_id, run_id)
    with store.tx() as conn:
        conn.execute(
            update(eval_runs)
            .where(eval_runs.c.id == run_id, eval_runs.c.status.in_(ACTIVE))
            .values(status="canceled")
        )
    return run_object(find_run(store, project, eval_id, run_id), str(request.base_url))


@router.delete("/{run_id}")
def delete_run(project: ProjectDep, store: StoreDep, eval_id: str, run_id: str) -> dict[str, Any]:
    find_run(store, project, eval_id, run_id)
    with store.tx() as conn:
        conn.execute(delete(eval_output_items).where(eval_output_items.c.run_id == run_id))
        conn.execute(delete(eval_runs).where(eval_runs.c.id == run_id))
    return {"object": "eval.run.deleted", "deleted": True, "run_id": run_id}


# --- output items -----------------------------------------------------------------------------


def item_object(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "eval.run.output_item",
        "eval_id": row["eval_id"],
        "run_id": row["run_id"],
        "created_at": row["created_at"],
        "datasource_item_id": row["datasource_item_id"],
        "datasource_item": row["datasource_item"],
        "results": row["results"],
        "sample": row["sample"],
        "status": row["status"],
    }


@router.get("/{run_id}/output_items")
def list_output_items(
    project: ProjectDep,
    store: StoreDep,
    eval_id: str,
    run_id: str,
    after: str | None = None,
    limit: int = 20,
    order: str = "asc",
    status: str | None = None,
) -> dict[str, Any]:
    """The run's graded rows in the order they were graded; `status=pass|fail` filters."""
    find_run(store, project, eval_id, run_id)
    if status not in (None, "pass", "fail"):
        raise InvalidRequestError("status must be `pass` or `fail`", param="status")
    query = select(eval_output_items).where(eval_output_items.c.run_id == run_id)
    if status:
        query = query.where(eval_output_items.c.status == status)
    rows, more = page(store, query, eval_output_items, after, limit, order)
    return list_page([item_object(r) for r in rows], more)


@router.get("/{run_id}/output_items/{output_item_id}")
def retrieve_output_item(
    project: ProjectDep, store: StoreDep, eval_id: str, run_id: str, output_item_id: str
) -> dict[str, Any]:
    find_run(store, project, eval_id, run_id)
    row = store.one(
        select(eval_output_items).where(
            eval_output_items.c.id == output_item_id, eval_output_items.c.run_id == run_id
        )
    )
    if row is None:
        raise NotFoundError(
            f"No such output item: {output_item_id!r}", param="output_item_id", code="not_found"
        )
    return item_object(row)
