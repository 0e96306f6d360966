"""SeekrFlow's fine-tunes: `POST /v1/flow/fine-tune` (create), and `/v1/flow/fine-tunes`
(list, retrieve, cancel, events, promote-model, demote-model).

A fine-tune is an OpenRFT job, stored and run exactly as one created through OpenAI's API
(`jobs.submit_job`): the same validation, quotas, workers, events, checkpoints and models. Its
SeekrFlow id `ft-X` and its OpenAI id `ftjob-X` name the same job, and every route here takes
either. The body's `training_config` is SeekrFlow's `TrainingConfig`
(`training/dialects/seekrflow.py`, problems at `$.training_config.…`; native settings may ride
along in its `openrft` extension), `project_id` one of the caller's SeekrFlow projects, and
`infrastructure_config` is mapped by `placement.py` (its first event says what was asked for
and what the job got).

Events are the job's own events, oldest first, as SeekrFlow's `FinetuneEvent`s: each training
step's `loss`, `reward` (mean training reward) and `epoch`, and each message with its level and
`FinetuneEventType`. `promote-model` makes the job's model servable on
`/v1/inference/chat/completions` (an `Active` deployment, created on first promotion), and
`demote-model` sets it `Inactive`; the model is OpenRFT's `fine_tuned_model` either way, so
OpenAI's chat route is not affected.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from sqlalchemy import select

from openrft.service import jobs as openai_jobs
from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import InvalidRequestError, NotFoundError
from openrft.service.flow.placement import machine, place
from openrft.service.flow.records import add_deployment, deployed, flow_project, set_status
from openrft.service.flow.schemas import (
    FineTune,
    FineTuneCreate,
    FineTuneList,
    FlowEvents,
    fine_tune,
    flow_event,
)
from openrft.service.flow.training import seekrflow_job
from openrft.service.schemas import openai_id, seekrflow_id
from openrft.service.settings import Settings
from openrft.service.store import Store, deployments, events, jobs
from openrft.training.config import TrainingConfig

router = APIRouter(prefix="/v1/flow", tags=["seekrflow"])

MAX_LISTED = 1000
"""Most fine-tunes `list` returns (newest first; the SDK does not paginate)."""
MAX_EVENTS = 10_000
"""Most events `list_events` returns (the newest, oldest first)."""


@router.post("/fine-tune", response_model=FineTune)
@router.post("/fine-tunes", response_model=FineTune, include_in_schema=False)  # async SDK
def create_fine_tune(
    project: ProjectDep,
    store: StoreDep,
    settings: SettingsDep,
    request: Request,
    background: BackgroundTasks,
    body: FineTuneCreate,
) -> FineTune:
    """Create a fine-tune from SeekrFlow's `FinetuneRequest`; it starts `pending`."""
    flow_project(store, project, body.project_id)
    raw = body.training_config
    config, shown = seekrflow_job(raw, store, settings, project, "$.training_config")
    # the `openrft` extension's own `num_processes` wins over the placement's
    fixed = "num_processes" in (raw.get("openrft") or {})
    placement = place(body.infrastructure_config, config, settings, fixed)
    if placement.processes != config.num_processes:
        config = TrainingConfig.model_validate(
            {**config.stored(), "num_processes": placement.processes}
        )
    shown["flow"] |= {
        "project_id": body.project_id,
        "infrastructure": body.infrastructure_config.model_dump(),
        "placement": placement.record(),
    }
    level = "warn" if placement.short else "info"
    job_id = openai_jobs.submit_job(
        request,
        background,
        project,
        config,
        shown,
        first=[(placement.message, level)],
        seekrflow_root="$.training_config",
    )
    return _fine_tune(store, settings, project, job_id)


def _job_row(store: Store, project: str, fine_tune_id: str) -> Any:
    row = store.job(openai_id(fine_tune_id), project)
    if row is None:
        raise NotFoundError(
            f"No such fine-tune: {fine_tune_id[:100]!r}",
            param="fine_tune_id",
            code="fine_tune_not_found",
        )
    return row


def _fine_tune(store: Store, settings: Settings, project: str, fine_tune_id: str) -> FineTune:
    row = _job_row(store, project, fine_tune_id)
    live = bool(deployed(store, project, [row["id"]]))
    return fine_tune(row, live, machine(settings))


@router.get("/fine-tunes", response_model=FineTuneList)
def list_fine_tunes(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, limit: int = MAX_LISTED
) -> FineTuneList:
    """The project's fine-tunes, newest first (every job, whichever API created it)."""
    if not 1 <= limit <= MAX_LISTED:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_LISTED}", param="limit")
    query = select(jobs).where(jobs.c.project == project).order_by(jobs.c.seq.desc()).limit(limit)
    rows = store.all(query)
    live = deployed(store, project, [row["id"] for row in rows])
    kind = machine(settings)
    return FineTuneList(data=[fine_tune(row, row["id"] in live, kind) for row in rows])


@router.get("/fine-tunes/{fine_tune_id}", response_model=FineTune)
def retrieve_fine_tune(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, fine_tune_id: str
) -> FineTune:
    return _fine_tune(store, settings, project, fine_tune_id)


@router.put("/fine-tunes/{fine_tune_id}/cancel", response_model=FineTune)
@router.post("/fine-tunes/{fine_tune_id}/cancel", response_model=FineTune, include_in_schema=False)
def cancel_fine_tune(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, fine_tune_id: str
) -> FineTune:
    """Cancel (as OpenAI's cancel: at once when not running, else its worker stops it); a
    finished job is 409."""
    row = _job_row(store, project, fine_tune_id)
    openai_jobs.cancel_job(project, store, row["id"])
    return _fine_tune(store, settings, project, row["id"])


def job_events(store: Store, job_id: str, limit: int = MAX_EVENTS) -> FlowEvents:
    """A job's newest `limit` events, oldest first."""
    query = select(events).where(events.c.job_id == job_id).order_by(events.c.seq.desc())
    rows = store.all(query.limit(limit))
    return FlowEvents(data=[flow_event(row) for row in reversed(rows)])


@router.get("/fine-tunes/{fine_tune_id}/events", response_model=FlowEvents)
def list_events(
    project: ProjectDep, store: StoreDep, fine_tune_id: str, limit: int = MAX_EVENTS
) -> FlowEvents:
    """The job's events, oldest first (the newest `limit`, at most 10,000)."""
    if not 1 <= limit <= MAX_EVENTS:
        raise InvalidRequestError(f"limit must be between 1 and {MAX_EVENTS}", param="limit")
    row = _job_row(store, project, fine_tune_id)
    return job_events(store, row["id"], limit)


def set_deployment(store: Store, project: str, job: Any, active: bool) -> str:
    """Promote: make the first deployment of `job`'s model Active (created on first use).
    Demote: make every one of them Inactive. The id of the (first) deployment."""
    query = select(deployments.c.id).where(
        deployments.c.project == project, deployments.c.job_id == job["id"]
    )
    found = [row["id"] for row in store.all(query.order_by(deployments.c.seq))]
    flow_id = seekrflow_id(job["id"])
    if not found and active:
        return add_deployment(
            store,
            project,
            model_type="Fine-tuned Run",
            model_id=flow_id,
            job_id=job["id"],
            name=(job["suffix"] or flow_id)[:100],
            description=f"The model of fine-tune {flow_id}",
        )
    if not found:
        raise InvalidRequestError(
            f"Fine-tune {flow_id}'s model was never promoted; nothing to demote",
            param="fine_tune_id",
            code="not_deployed",
        )
    for deployment_id in found[:1] if active else found:
        set_status(store, project, deployment_id, "Active" if active else "Inactive")
    return str(found[0])


def _promote(store: Store, project: str, fine_tune_id: str, active: bool) -> FlowEvents:
    job = _job_row(store, project, fine_tune_id)
    if active and job["status"] != "succeeded":
        raise InvalidRequestError(
            f"Fine-tune {fine_tune_id[:100]} is {job['status']}: only a completed fine-tune has "
            "a model to promote",
            param="fine_tune_id",
            code="fine_tune_not_completed",
        )
    deployment_id = set_deployment(store, project, job, active)
    model = job["fine_tuned_model"] or "its model"
    if active:
        store.log(job["id"], f"Model promoted: {model} is served by deployment {deployment_id}")
    else:
        store.log(job["id"], f"Model demoted: {model} is not served (its deployments are Inactive)")
    return job_events(store, job["id"])


@router.get("/fine-tunes/{fine_tune_id}/promote-model", response_model=FlowEvents)
def promote_model(project: ProjectDep, store: StoreDep, fine_tune_id: str) -> FlowEvents:
    """Serve the fine-tune's model on `/v1/inference/chat/completions`; the job's events."""
    return _promote(store, project, fine_tune_id, active=True)


@router.get("/fine-tunes/{fine_tune_id}/demote-model", response_model=FlowEvents)
def demote_model(project: ProjectDep, store: StoreDep, fine_tune_id: str) -> FlowEvents:
    """Stop serving the fine-tune's model there; the job's events."""
    return _promote(store, project, fine_tune_id, active=False)
