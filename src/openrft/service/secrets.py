"""`/v1/secrets`: a project's own secrets, for `${secret:NAME}` in its endpoint graders' headers.

`PUT /v1/secrets/NAME {"value": …}` creates or replaces one, `GET /v1/secrets` lists the names
(never a value: no route returns one), `DELETE /v1/secrets/NAME` removes it. A key reaches only
its own project's secrets. The operator sets them with `openrft secrets set` too.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from openrft.service import tenancy
from openrft.service.deps import ProjectDep, StoreDep
from openrft.service.errors import NotFoundError

router = APIRouter(prefix="/v1/secrets", tags=["secrets"])


class SecretValue(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: str = Field(max_length=tenancy.MAX_SECRET_BYTES)
    """The secret; sent only in the headers of this project's endpoint graders."""


def _wire(name: str, created_at: int) -> dict[str, Any]:
    return {"object": "secret", "name": name, "created_at": created_at}


@router.get("")
def list_secrets(project: ProjectDep, store: StoreDep) -> dict[str, Any]:
    """The project's secret names (values are never returned)."""
    rows = tenancy.secret_names(store, project)
    return {"object": "list", "data": [_wire(r["name"], r["created_at"]) for r in rows]}


@router.put("/{name}")
def set_secret(
    project: ProjectDep, store: StoreDep, name: str, body: SecretValue
) -> dict[str, Any]:
    """Create or replace the secret `name`."""
    tenancy.set_secret(store, project, name, body.value)
    created = next(r for r in tenancy.secret_names(store, project) if r["name"] == name)
    return _wire(name, created["created_at"])


@router.delete("/{name}")
def delete_secret(project: ProjectDep, store: StoreDep, name: str) -> dict[str, Any]:
    if not tenancy.delete_secret(store, project, name):
        raise NotFoundError(f"No such secret: {name[:64]!r}", param="name", code="secret_not_found")
    return {"object": "secret.deleted", "name": name, "deleted": True}
