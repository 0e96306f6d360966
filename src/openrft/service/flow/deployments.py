"""SeekrFlow's projects, deployments and models: `/v1/flow/projects`, `/v1/flow/deployments`
and `/v1/flow/models`.

- **Projects** are SeekrFlow's integer-id groupings of fine-tunes, inside the caller's OpenRFT
  project (the tenant, which alone decides what a key sees): a fine-tune names one as
  `project_id`, and a project counts its `runs` and `runs_deployed`.
- **Deployments** make a model servable on `/v1/inference/chat/completions` (`inference.py`)
  while `Active`: a fine-tuned run (`model_type: "Fine-tuned Run"`, `model_id` its `ft-…`
  id) or a base model (`"Base Model"`, `model_id` its name). `promote` sets one `Active`,
  `demote` `Inactive`. Models are answered by OpenRFT's model servers (one per base model,
  LoRA adapters loaded on demand), started on the first request: `n_instances` is 1 (a
  request for more is refused, not ignored), `processor` is the workers' accelerator kind
  (`XEON` on CPU), and the token totals count what the inference route answered.
- **Models** are the base models a fine-tune may name (the embedded default and the operator's
  registered ones), each `supports_lora` (the SDK checks it before a LoRA job), followed by the
  project's `ft:` models (a fine-tune may train on top of one).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import func, select

from openrft.service import tenancy
from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import InvalidRequestError
from openrft.service.flow.placement import machine
from openrft.service.flow.records import (
    add_deployment,
    deployment,
    flow_project,
    runs_of,
    set_status,
)
from openrft.service.flow.schemas import (
    PROCESSORS,
    DeploymentCreate,
    FlowDeployment,
    FlowDeployments,
    FlowModel,
    FlowModels,
    FlowProject,
    FlowProjects,
    ProjectCreate,
    flow_deployment,
    stamp,
)
from openrft.service.schemas import openai_id, seekrflow_id
from openrft.service.settings import Settings
from openrft.service.store import Store, deployments, flow_projects, jobs, now
from openrft.training.config import DEFAULT_MODEL

router = APIRouter(prefix="/v1/flow", tags=["seekrflow"])

MAX_PROJECTS = 1000
"""SeekrFlow projects one OpenRFT project may have."""


# --- projects -------------------------------------------------------------------------------


def _project(row: Any, runs: tuple[int, int]) -> FlowProject:
    return FlowProject(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        team_id=row["project"],
        created_at=stamp(row["created_at"]),
        updated_at=stamp(row["updated_at"]),
        runs=runs[0],
        runs_deployed=runs[1],
        last_modified=stamp(row["updated_at"]),
    )


@router.get("/projects", response_model=FlowProjects)
def list_projects(
    project: ProjectDep, store: StoreDep, skip: int = 0, limit: int = 100
) -> FlowProjects:
    if skip < 0 or not 1 <= limit <= MAX_PROJECTS:
        raise InvalidRequestError(f"skip must be >= 0 and limit 1 to {MAX_PROJECTS}")
    query = (
        select(flow_projects)
        .where(flow_projects.c.project == project)
        .order_by(flow_projects.c.id)
        .offset(skip)
        .limit(limit)
    )
    runs = runs_of(store, project)
    return FlowProjects(data=[_project(r, runs.get(r["id"], (0, 0))) for r in store.all(query)])


@router.get("/projects/{project_id}", response_model=FlowProject)
def retrieve_project(project: ProjectDep, store: StoreDep, project_id: int) -> FlowProject:
    row = flow_project(store, project, project_id)
    return _project(row, runs_of(store, project).get(project_id, (0, 0)))


@router.post("/projects", response_model=FlowProject)
def create_project(project: ProjectDep, store: StoreDep, body: ProjectCreate) -> FlowProject:
    """A new SeekrFlow project (its id is chosen here; a given `id` is refused)."""
    if body.id is not None:
        raise InvalidRequestError("the server chooses a project's id; leave `id` out", param="id")
    with store.tx() as conn:
        count = conn.execute(
            select(func.count()).where(flow_projects.c.project == project)
        ).scalar_one()
        if count >= MAX_PROJECTS:
            raise InvalidRequestError(f"a project may have at most {MAX_PROJECTS} projects")
        made = conn.execute(
            flow_projects.insert().values(
                project=project,
                name=body.name,
                description=body.description,
                created_at=now(),
                updated_at=now(),
            )
        )
        key = made.inserted_primary_key
        assert key is not None
        project_id = int(key[0])
    return retrieve_project(project, store, project_id)


# --- deployments ----------------------------------------------------------------------------


def processor(settings: Settings) -> str:
    """The workers' accelerator kind as a `DeploymentProcessor` (`XEON` for CPU)."""
    kind, count = machine(settings)
    if not count:
        return "XEON"
    return kind if kind in PROCESSORS else "NVIDIA"


@router.get("/deployments", response_model=FlowDeployments)
def list_deployments(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, skip: int = 0, limit: int = 100
) -> FlowDeployments:
    if skip < 0 or not 1 <= limit <= 1000:
        raise InvalidRequestError("skip must be >= 0 and limit 1 to 1000")
    query = (
        select(deployments)
        .where(deployments.c.project == project)
        .order_by(deployments.c.seq)
        .offset(skip)
        .limit(limit)
    )
    kind = processor(settings)
    return FlowDeployments(data=[flow_deployment(row, kind) for row in store.all(query)])


@router.get("/deployments/{deployment_id}", response_model=FlowDeployment)
def retrieve_deployment(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, deployment_id: str
) -> FlowDeployment:
    return flow_deployment(deployment(store, project, deployment_id), processor(settings))


def _target(store: Store, project: str, body: DeploymentCreate) -> str | None:
    """The job a fine-tuned-run deployment serves (None for a base model); 400 for a model
    this project cannot deploy."""
    if body.model_type == "Base Model":
        if body.model_id == DEFAULT_MODEL or body.model_id in tenancy.models(store):
            return None
        raise InvalidRequestError(
            f"unknown base model {body.model_id[:200]!r}: GET /v1/flow/models lists them",
            param="model_id",
            code="model_not_found",
        )
    job = store.one(
        select(jobs.c.id, jobs.c.status).where(
            jobs.c.id == openai_id(body.model_id), jobs.c.project == project
        )
    )
    if job is None:
        raise InvalidRequestError(
            f"no fine-tune {body.model_id[:100]!r} in this project; give a fine-tune's id (`ft-…`)",
            param="model_id",
            code="fine_tune_not_found",
        )
    if job["status"] != "succeeded":
        raise InvalidRequestError(
            f"fine-tune {body.model_id[:100]} is {job['status']}: only a completed fine-tune "
            "has a model to deploy",
            param="model_id",
            code="fine_tune_not_completed",
        )
    return str(job["id"])


@router.post("/deployments", response_model=FlowDeployment)
def create_deployment(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, body: DeploymentCreate
) -> FlowDeployment:
    """Deploy a completed fine-tune's model or a base model; it is `Active` at once (its model
    server starts on the first request)."""
    if body.n_instances != 1:
        raise InvalidRequestError(
            f"n_instances {body.n_instances}: OpenRFT serves each model from one model server "
            "(LoRA models share their base model's); use n_instances=1",
            param="n_instances",
        )
    job_id = _target(store, project, body)
    deployment_id = add_deployment(
        store,
        project,
        model_type=body.model_type,
        model_id=body.model_id if job_id is None else seekrflow_id(job_id),
        job_id=job_id,
        name=body.name,
        description=body.description,
    )
    return retrieve_deployment(project, store, settings, deployment_id)


def _set_status(
    store: Store, settings: Settings, project: str, deployment_id: str, status: str
) -> FlowDeployment:
    deployment(store, project, deployment_id)
    set_status(store, project, deployment_id, status)
    return retrieve_deployment(project, store, settings, deployment_id)


@router.put("/deployments/{deployment_id}/promote", response_model=FlowDeployment)
def promote_deployment(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, deployment_id: str
) -> FlowDeployment:
    return _set_status(store, settings, project, deployment_id, "Active")


@router.put("/deployments/{deployment_id}/demote", response_model=FlowDeployment)
def demote_deployment(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, deployment_id: str
) -> FlowDeployment:
    return _set_status(store, settings, project, deployment_id, "Inactive")


# --- models ---------------------------------------------------------------------------------


@router.get("/models", response_model=FlowModels)
def list_models(project: ProjectDep, store: StoreDep) -> FlowModels:
    """Base models (each `supports_lora`), then the project's `ft:` models."""
    names = [DEFAULT_MODEL, *(n for n in tenancy.models(store) if n != DEFAULT_MODEL)]
    found = [FlowModel(id=name, name=name) for name in names]
    for row in store.fine_tuned_models(project):
        name = row["fine_tuned_model"]
        found.append(FlowModel(id=name, name=name, created=row["finished_at"] or 0))
    return FlowModels(data=found)
