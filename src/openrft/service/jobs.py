"""`/v1/fine_tuning/jobs`: create, list, retrieve, cancel, pause, resume, events, checkpoints.

The API only records intent; workers act on it. Create stores the job as `validating_files` and
checks its files in the background (→ `queued` or `failed`). Cancel and pause of a queued job
take effect at once; of a running job they set `control`, which the job's worker reads on its
next poll (SIGTERM for cancel, a PAUSE file for pause). Status changes are conditional updates
(`… WHERE status IN (…)`), so the API and a worker never overwrite each other's transition.

Reads (`retrieve`, `list`, `events`, `checkpoints`) are `async` and run their one or two short
indexed queries on the event loop: with many polling clients, the thread-pool hop of a sync
route cost more than the query (p50 78 → 51 ms in `benchmarks/api.py`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from pydantic import BaseModel, ConfigDict, Field

from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import ConflictError, InvalidRequestError, NotFoundError
from openrft.service.lifecycle import (
    build_config,
    check_job_quota,
    hyperparameters,
    submit_validation,
)
from openrft.service.resources import resolve_resources
from openrft.service.schemas import (
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobEvent,
    ListPage,
    checkpoint_object,
    event_object,
    job_object,
    page,
)
from openrft.service.store import TERMINAL, Store, new_id, now

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


class Integration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str
    wandb: dict[str, Any] = {}


class JobCreate(BaseModel):
    """OpenAI's job create body, plus `openrft` (native `TrainingConfig` overrides)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str
    """Base model: one this server offers (`GET /v1/models`) or one of the project's `ft:`
    models."""
    training_file: str
    """Id of an uploaded file."""
    validation_file: str | None = None
    """Id of an uploaded file."""
    method: dict[str, Any] | None = None
    """`{"type": "reinforcement"|"supervised", "<type>": {"grader": …, "hyperparameters": …}}`."""
    hyperparameters: dict[str, Any] | None = None
    """Deprecated OpenAI form of the supervised hyperparameters."""
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    suffix: str | None = Field(default=None, max_length=64)
    metadata: dict[str, str] | None = None
    """Up to 16 string pairs; list jobs filtered by them with `metadata[key]=value`."""
    integrations: list[Integration] | None = None
    """`[{"type": "wandb", "wandb": {"project": …}}]`: passed to training as `report_to`."""
    openrft: dict[str, Any] | None = None
    """OpenRFT extension: native `TrainingConfig` fields that override the mapped ones."""


def _check_metadata(meta: dict[str, str]) -> None:
    if len(meta) > 16:
        raise InvalidRequestError("metadata takes at most 16 pairs", param="metadata")
    for key, value in meta.items():
        if len(key) > 64 or len(value) > 512:
            raise InvalidRequestError(
                "metadata keys are at most 64 characters and values at most 512",
                param=f"metadata.{key}",
            )


@router.post("", response_model=FineTuningJob)
def create_job(
    project: ProjectDep,
    store: StoreDep,
    settings: SettingsDep,
    body: JobCreate,
    request: Request,
    background: BackgroundTasks,
) -> FineTuningJob:
    """Create a job; it starts as `validating_files`."""
    meta = body.metadata or {}
    _check_metadata(meta)
    integrations = [i.model_dump() for i in body.integrations or []]
    for integration in integrations:
        if integration["type"] != "wandb":
            raise InvalidRequestError("only `wandb` integrations exist", param="integrations")
    files = {"training_file": body.training_file}
    if body.validation_file:
        files["validation_file"] = body.validation_file
    raw = body.model_dump(exclude_none=True)
    given = frozenset({"model", *files})
    config = resolve_resources(build_config(raw, files), store, settings, project, given)
    check_job_quota(config, store, settings, project)
    job_id = new_id("ftjob")
    row = {
        "id": job_id,
        "project": project,
        "status": "validating_files",
        "model": body.model,
        "training_file": body.training_file,
        "validation_file": body.validation_file,
        "seed": config.seed,
        "suffix": body.suffix,
        "method": body.method or {"type": config.method},
        "hyperparameters": hyperparameters(raw, config),
        "integrations": integrations or None,
        "config": config.model_dump(mode="json", exclude_none=True),
        "created_at": now(),
        "control": "",
        "attempts": 0,
    }
    store.add_job(row, meta)
    store.log(job_id, f"Created fine-tuning job: {job_id}")
    # after the response (the caller sees `validating_files`), on the validation threads
    background.add_task(submit_validation, request.app, job_id)
    return get_job(store, project, job_id)


def get_job(store: Store, project: str, job_id: str) -> FineTuningJob:
    row = store.wire_job(job_id, project)
    if row is None:
        raise NotFoundError(
            f"No such fine-tuning job: {job_id!r}", param="fine_tuning_job_id", code="job_not_found"
        )
    return job_object(row)


def _must_exist(store: Store, project: str, job_id: str) -> None:
    if not store.has_job(job_id, project):
        get_job(store, project, job_id)  # raises the 404


def _metadata_filter(request: Request) -> dict[str, str]:
    pairs = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata[") and key.endswith("]"):
            pairs[key[len("metadata[") : -1]] = value
    return pairs


@router.get("", response_model=ListPage[FineTuningJob])
async def list_jobs(
    project: ProjectDep,
    store: StoreDep,
    request: Request,
    after: str | None = None,
    limit: int = 20,
) -> ListPage[FineTuningJob]:
    """The project's jobs, newest first; filter with `metadata[key]=value`."""
    rows, more = store.list_jobs(project, after, _limit(limit), _metadata_filter(request))
    return page([job_object(r) for r in rows], more)


def _limit(limit: int) -> int:
    if not 1 <= limit <= 100:
        raise InvalidRequestError("limit must be between 1 and 100", param="limit")
    return limit


@router.get("/{job_id}", response_model=FineTuningJob)
async def retrieve_job(project: ProjectDep, store: StoreDep, job_id: str) -> FineTuningJob:
    return get_job(store, project, job_id)


@router.post("/{job_id}/cancel", response_model=FineTuningJob)
def cancel_job(project: ProjectDep, store: StoreDep, job_id: str) -> FineTuningJob:
    """Cancel now if the job is not running; a running job is stopped by its worker."""
    job = get_job(store, project, job_id)
    idle = ("validating_files", "queued", "paused")
    if store.set_job(job_id, where={"status": idle}, status="cancelled", finished_at=now()):
        store.log(job_id, "Job cancelled")
    elif store.set_job(job_id, where={"status": "running"}, control="cancel"):
        store.log(job_id, "Cancellation requested; stopping training")
    elif job.status in TERMINAL:
        raise ConflictError(f"Job {job_id} has already {job.status}", code="job_finished")
    return get_job(store, project, job_id)


@router.post("/{job_id}/pause", response_model=FineTuningJob)
def pause_job(project: ProjectDep, store: StoreDep, job_id: str) -> FineTuningJob:
    """Pause: a running job writes a checkpoint and stops; a queued one just waits."""
    job = get_job(store, project, job_id)
    if store.set_job(job_id, where={"status": "queued"}, status="paused"):
        store.log(job_id, "Job paused")
    elif store.set_job(job_id, where={"status": "running", "control": ""}, control="pause"):
        store.log(job_id, "Pause requested; saving a checkpoint")
    elif job.status not in ("paused", "running"):
        raise ConflictError(f"Job {job_id} is {job.status}; only running or queued jobs pause")
    return get_job(store, project, job_id)


@router.post("/{job_id}/resume", response_model=FineTuningJob)
def resume_job(project: ProjectDep, store: StoreDep, job_id: str) -> FineTuningJob:
    """Resume a paused job from its last checkpoint (it is queued again)."""
    job = get_job(store, project, job_id)
    if store.set_job(job_id, where={"status": "paused"}, status="queued", control=""):
        store.log(job_id, "Job resumed; queued")
    elif store.set_job(job_id, where={"status": "running", "control": "pause"}, control=""):
        store.log(job_id, "Pause request withdrawn")
    elif job.status != "queued":
        raise ConflictError(f"Job {job_id} is {job.status}; only a paused job resumes")
    return get_job(store, project, job_id)


@router.get("/{job_id}/events", response_model=ListPage[FineTuningJobEvent])
async def list_events(
    project: ProjectDep, store: StoreDep, job_id: str, after: str | None = None, limit: int = 20
) -> ListPage[FineTuningJobEvent]:
    """Events, newest first; `type: "metrics"` events carry one training step's metrics."""
    _must_exist(store, project, job_id)
    rows, more = store.list_events(job_id, after, _limit(limit))
    return page([event_object(r) for r in rows], more)


@router.get("/{job_id}/checkpoints", response_model=ListPage[FineTuningJobCheckpoint])
async def list_checkpoints(
    project: ProjectDep, store: StoreDep, job_id: str, after: str | None = None, limit: int = 10
) -> ListPage[FineTuningJobCheckpoint]:
    """Checkpoints on disk, newest first, with their step and reward metrics."""
    _must_exist(store, project, job_id)
    rows, more = store.list_checkpoints(job_id, after, _limit(limit))
    return page([checkpoint_object(r) for r in rows], more)
