"""`/v1/models`: the base models jobs may name (the embedded default and the ones the operator
registered with `openrft models add`), the project's fine-tuned models, named
`ft:<base>:<suffix>:<id>`, and its jobs' checkpoint models (`ft:…:ckpt-step-N`): everything
`POST /v1/chat/completions` (`chat.py`) and a new job's `model` accept. Another project's models
are a 404 `model_not_found`.
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from openrft.service import tenancy
from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import NotFoundError
from openrft.service.schemas import ListPage, Model, page
from openrft.service.store import checkpoints, jobs
from openrft.training.config import DEFAULT_MODEL

router = APIRouter(prefix="/v1/models", tags=["models"])


def project_models(store: StoreDep, settings: SettingsDep, project: str) -> list[Model]:
    names = [DEFAULT_MODEL, *tenancy.models(store)]
    if settings.local_paths:  # a single-user server: what its jobs trained, paths included
        names += store.base_models(project)
    models = {name: Model(id=name, created=0, owned_by="openrft") for name in names}
    for row in store.fine_tuned_models(project):
        name = row["fine_tuned_model"]
        models[name] = Model(id=name, created=row["finished_at"] or 0, owned_by=project)
    query = (
        select(checkpoints.c.model, checkpoints.c.created_at)
        .join(jobs, jobs.c.id == checkpoints.c.job_id)
        .where(jobs.c.project == project)
        .order_by(checkpoints.c.seq)
    )
    for row in store.all(query):
        models[row["model"]] = Model(id=row["model"], created=row["created_at"], owned_by=project)
    return list(models.values())


@router.get("", response_model=ListPage[Model])
def list_models(project: ProjectDep, store: StoreDep, settings: SettingsDep) -> ListPage[Model]:
    return page(project_models(store, settings, project), has_more=False)


@router.get("/{model:path}", response_model=Model)
def retrieve_model(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, model: str
) -> Model:
    for found in project_models(store, settings, project):
        if found.id == model:
            return found
    message = f"The model {model[:200]!r} does not exist or you do not have access to it."
    raise NotFoundError(message, param="model", code="model_not_found")
