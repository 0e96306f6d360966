"""The store queries SeekrFlow's routes share: a project or deployment by id, deployments of
fine-tuned runs, and the runs a SeekrFlow project counts."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping

from openrft.service.errors import NotFoundError
from openrft.service.store import Store, deployments, flow_projects, jobs, new_id, now


def flow_project(store: Store, project: str, project_id: int) -> RowMapping:
    """One of `project`'s SeekrFlow projects (404 saying how to make one)."""
    row = store.one(
        select(flow_projects).where(
            flow_projects.c.id == project_id, flow_projects.c.project == project
        )
    )
    if row is None:
        raise NotFoundError(
            f"No such project: {project_id}; create one with "
            "client.projects.create(name=..., description=...) and pass its id",
            param="project_id",
            code="project_not_found",
        )
    return row


def deployment(
    store: Store,
    project: str,
    deployment_id: str,
    param: str = "deployment_id",
    code: str = "deployment_not_found",
) -> RowMapping:
    """One of `project`'s deployments (404 with `code`, at `param` of the request)."""
    row = store.one(
        select(deployments).where(
            deployments.c.id == deployment_id, deployments.c.project == project
        )
    )
    if row is None:
        raise NotFoundError(f"No such deployment: {deployment_id[:100]!r}", param=param, code=code)
    return row


def add_deployment(
    store: Store,
    project: str,
    *,
    model_type: str,
    model_id: str,
    job_id: str | None,
    name: str,
    description: str,
) -> str:
    """A new `Active` deployment (one instance); its id."""
    deployment_id = new_id("dep")
    with store.tx() as conn:
        conn.execute(
            deployments.insert().values(
                id=deployment_id,
                project=project,
                model_type=model_type,
                model_id=model_id,
                job_id=job_id,
                name=name,
                description=description,
                status="Active",
                n_instances=1,
                input_tokens=0,
                output_tokens=0,
                created_at=now(),
                updated_at=now(),
                last_deployed_at=now(),
            )
        )
    return deployment_id


def set_status(store: Store, project: str, deployment_id: str, status: str) -> None:
    """Make a deployment `Active` or `Inactive`."""
    values: dict[str, Any] = {"status": status, "updated_at": now()}
    if status == "Active":
        values["last_deployed_at"] = now()
    with store.tx() as conn:
        conn.execute(
            deployments.update()
            .where(deployments.c.id == deployment_id, deployments.c.project == project)
            .values(**values)
        )


def deployed(store: Store, project: str, job_ids: list[str]) -> set[str]:
    """Which of `job_ids` have an `Active` deployment."""
    if not job_ids:
        return set()
    query = select(deployments.c.job_id).where(
        deployments.c.project == project,
        deployments.c.job_id.in_(job_ids),
        deployments.c.status == "Active",
    )
    return {row["job_id"] for row in store.all(query)}


def runs_of(store: Store, project: str) -> dict[int, tuple[int, int]]:
    """SeekrFlow project id → (its fine-tunes, those with an `Active` deployment)."""
    query = select(jobs.c.id, jobs.c.flow).where(
        jobs.c.project == project, jobs.c.flow.is_not(None)
    )
    rows = store.all(query)
    live = deployed(store, project, [row["id"] for row in rows])
    counts: dict[int, tuple[int, int]] = {}
    for row in rows:
        project_id = (row["flow"] or {}).get("project_id")
        if isinstance(project_id, int):
            runs, serving = counts.get(project_id, (0, 0))
            counts[project_id] = (runs + 1, serving + (row["id"] in live))
    return counts
