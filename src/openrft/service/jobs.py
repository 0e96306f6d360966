"""`/v1/fine_tuning/jobs`: create, list, retrieve, cancel, pause, resume, events, checkpoints,
and OpenRFT's `checkpoints/{id}/promote`.

The API only records intent; workers act on it. Create stores the job as `validating_files` and
checks its files in the background (→ `queued` or `failed`). Cancel and pause of a queued job
take effect at once; of a running job they set `control`, which the job's worker reads on its
next poll (SIGTERM for cancel, a PAUSE file for pause). Status changes are conditional updates
(`… WHERE status IN (…)`), so the API and a worker never overwrite each other's transition.

Reads (`retrieve`, `list`, `events`, `checkpoints`) are `async` and run their one or two short
indexed queries on the event loop: with many polling clients, the thread-pool hop of a sync
route cost more than the query (p50 78 → 51 ms in `benchmarks/api.py`).

Promote (an OpenRFT extension; OpenAI has none) makes a succeeded job's `fine_tuned_model` serve
one of its checkpoints instead of the last one: the job records the checkpoint's id, and every
resolution of the `ft:` id (`resources.checkpoint_path`) reads it on the next request, so a
model server answers with the new adapter without a restart. Only a succeeded job has a
`fine_tuned_model` to promote to; a paused, failed or cancelled job's checkpoints are used by
their own `…:ckpt-step-N` ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Body, Request
from pydantic import BaseModel
from sqlalchemy import select

from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import ConflictError, InvalidRequestError, NotFoundError
from openrft.service.flow.training import seekrflow_job
from openrft.service.lifecycle import check_job_quota, hyperparameters, submit_validation
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
from openrft.service.store import TERMINAL, Store, checkpoints, new_id, now
from openrft.training.config import TrainingConfig
from openrft.training.dialects import detect_dialect, load
from openrft.training.dialects.service import JobCreate

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON schema with its `$defs` inlined (an OpenAPI document resolves `$ref`s from
    its own root, where pydantic's `#/$defs/...` do not exist)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(value) for value in node]
        return node

    inlined: dict[str, Any] = inline(schema)
    return inlined


def _check_metadata(meta: dict[str, str]) -> None:
    if len(meta) > 16:
        raise InvalidRequestError("metadata takes at most 16 pairs", param="metadata")
    for key, value in meta.items():
        if len(key) > 64 or len(value) > 512:
            raise InvalidRequestError(
                "metadata keys are at most 64 characters and values at most 512",
                param=f"metadata.{key}",
            )


@router.post(
    "",
    response_model=FineTuningJob,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inline_schema(JobCreate)}},
        }
    },
)
def create_job(
    project: ProjectDep,
    store: StoreDep,
    settings: SettingsDep,
    request: Request,
    background: BackgroundTasks,
    body: Annotated[dict[str, Any], Body()],
) -> FineTuningJob:
    """Create a job (the body is `JobCreate`, or a SeekrFlow `TrainingConfig`); it starts as
    `validating_files`.

    The body is validated once, by the `service` dialect (or the `seekrflow` one, for a body
    only SeekrFlow's form has keys of), into the native config the job stores and its worker
    runs; every problem is reported at its path in the body."""
    if detect_dialect(body) == "seekrflow":  # SeekrFlow's TrainingConfig as the whole body
        config, shown = seekrflow_job(body, store, settings, project)
        job_id = submit_job(request, background, project, config, shown, seekrflow_root="$")
        return get_job(store, project, job_id)
    given = frozenset({"model", "training_file", "validation_file"} & body.keys())
    config = resolve_resources(load(body, dialect="service"), store, settings, project, given)
    meta: dict[str, str] = body.get("metadata") or {}
    _check_metadata(meta)
    job_id = submit_job(
        request,
        background,
        project,
        config,
        {
            "model": body["model"],
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "suffix": body.get("suffix"),
            "method": body.get("method") or {"type": config.method},
            "hyperparameters": hyperparameters(body, config),
            "integrations": body.get("integrations") or None,
        },
        meta,
    )
    return get_job(store, project, job_id)


def submit_job(
    request: Request,
    background: BackgroundTasks,
    project: str,
    config: TrainingConfig,
    shown: Mapping[str, Any],
    meta: Mapping[str, str] | None = None,
    first: Sequence[tuple[str, str]] = (),
    seekrflow_root: str | None = None,
) -> str:
    """Store a validated, resolved job as `validating_files` and check its files in the
    background; its id. Both APIs create jobs here (OpenAI's `create_job`, SeekrFlow's
    `flow/fine_tunes.py`): `shown` holds the columns the job shows as given (`model`,
    `training_file`, `validation_file`, `suffix`, `method`, `hyperparameters`, …, `flow`);
    `first` are `(message, level)` events logged before "Created fine-tuning job";
    `seekrflow_root`: where in the request a SeekrFlow `TrainingConfig` is (for the quota's
    problems), None for OpenAI's body."""
    store, settings = request.app.state.store, request.app.state.settings
    check_job_quota(config, store, settings, project, seekrflow_root)
    job_id = new_id("ftjob")
    row = {
        "id": job_id,
        "project": project,
        "status": "validating_files",
        "seed": config.seed,
        "config": config.stored(),
        "created_at": now(),
        "control": "",
        "attempts": 0,
        **shown,
    }
    store.add_job(row, meta or {})
    for message, level in first:
        store.log(job_id, message, level)
    store.log(job_id, f"Created fine-tuning job: {job_id}")
    # after the response (the caller sees `validating_files`), on the validation threads
    background.add_task(submit_validation, request.app, job_id, config)
    return job_id


def get_job(store: Store, project: str, job_id: str) -> FineTuningJob:
    row = store.wire_job(job_id, project)
    if row is None:
        raise _no_job(job_id)
    return job_object(row)


def _no_job(job_id: str) -> NotFoundError:
    return NotFoundError(
        f"No such fine-tuning job: {job_id!r}", param="fine_tuning_job_id", code="job_not_found"
    )


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


@router.post("/{job_id}/checkpoints/{checkpoint_id}/promote", response_model=FineTuningJob)
def promote_checkpoint(
    project: ProjectDep, store: StoreDep, job_id: str, checkpoint_id: str
) -> FineTuningJob:
    """OpenRFT: make the job's `fine_tuned_model` serve this checkpoint (chat, evals, chains,
    export) from the next request on; the job shows it as `promoted_checkpoint`."""
    row = store.job(job_id, project)
    if row is None:
        raise _no_job(job_id)
    if row["status"] != "succeeded":
        raise InvalidRequestError(
            f"Job {job_id} has status {row['status']!r}: only a succeeded job has a "
            "fine_tuned_model to promote a checkpoint to; until then (or instead) use the "
            "checkpoint's own model id, its fine_tuned_model_checkpoint",
            param="fine_tuning_job_id",
            code="job_not_succeeded",
        )
    found = store.one(
        select(checkpoints.c.step).where(
            checkpoints.c.job_id == job_id, checkpoints.c.id == checkpoint_id
        )
    )
    if found is None:
        raise NotFoundError(
            f"No such checkpoint of job {job_id}: {checkpoint_id!r}; GET "
            f"/v1/fine_tuning/jobs/{job_id}/checkpoints lists them",
            param="checkpoint_id",
            code="checkpoint_not_found",
        )
    if store.set_job(job_id, where={"status": "succeeded"}, promoted_checkpoint=checkpoint_id):
        model, step = row["fine_tuned_model"], found["step"]
        store.log(job_id, f"Promoted checkpoint {checkpoint_id} (step {step}): {model} serves it")
    return get_job(store, project, job_id)
