"""What the operator grants each project: secrets, registered base models, quotas.

- **Secrets** belong to one project (`openrft secrets set --project P NAME`, or the project's own
  `PUT /v1/secrets/NAME`). Endpoint graders reference them as `${secret:NAME}` in header values;
  the values never leave the server except in those headers, and no route returns them.
- **Base models** are registered by the operator (`openrft models add NAME DIR_OR_HUB_ID`); a
  job names one of them, the embedded default, or one of its own project's `ft:` models. A
  tenant never names a server path (unless the server is single-user: `Settings.local_paths`).
- **Quotas** are the operator's limits per project (`openrft quotas set --project P …`); a
  project without its own row gets the defaults in `Settings`.

Secrets are stored as given in the database (mode 0600 under a 0700 data dir): anyone who can
read the database can read them, like any server-side credential store without a KMS. This
module holds the tables and their queries; the routes and the checks on jobs live in
`routes_tenancy.py` and `resources.py`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import JSON, Column, Integer, String, Table, Text, delete, select

from openrft.errors import ConfigError, Problem
from openrft.graders.context import GradeContext
from openrft.service.settings import Settings
from openrft.service.store import Store, metadata, now

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
"""What a secret's name looks like (it appears in `${secret:NAME}`)."""
MAX_SECRET_BYTES = 8192
"""Longest secret value: a header value, not a file."""
MAX_SECRETS = 100
"""Most secrets one project may hold."""

project_secrets = Table(
    "project_secrets",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", Integer, nullable=False),
)

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("source", Text, nullable=False),
    Column("created_at", Integer, nullable=False),
)

project_quotas = Table(
    "project_quotas",
    metadata,
    Column("project", String(128), primary_key=True),
    Column("limits", JSON, nullable=False),
)


# --- secrets --------------------------------------------------------------------------------


def check_secret(name: str, value: str) -> None:
    """`ConfigError` unless `name` and `value` are acceptable."""
    problems = []
    if not SECRET_NAME.match(name):
        problems.append(
            Problem(
                "name",
                f"{name[:80]!r} is not a secret name: use letters, digits and `_` "
                "(at most 64, not starting with a digit), e.g. GRADER_TOKEN",
            )
        )
    if len(value.encode()) > MAX_SECRET_BYTES:
        problems.append(Problem("value", f"is longer than {MAX_SECRET_BYTES} bytes"))
    if "\n" in value or "\r" in value:
        problems.append(Problem("value", "holds a line break; a header value cannot"))
    if problems:
        raise ConfigError(problems, "invalid secret")


def set_secret(store: Store, project: str, name: str, value: str) -> None:
    """Create or replace `project`'s secret `name`."""
    check_secret(name, value)
    with store.tx() as conn:
        key = (project_secrets.c.project == project) & (project_secrets.c.name == name)
        exists = conn.execute(select(project_secrets.c.name).where(key)).first()
        if exists is None:
            count = conn.execute(
                select(project_secrets.c.name).where(project_secrets.c.project == project)
            ).all()
            if len(count) >= MAX_SECRETS:
                raise ConfigError(
                    [Problem("name", f"the project already has {MAX_SECRETS} secrets")]
                )
        conn.execute(delete(project_secrets).where(key))
        conn.execute(
            project_secrets.insert().values(
                project=project, name=name, value=value, created_at=now()
            )
        )


def delete_secret(store: Store, project: str, name: str) -> bool:
    """Remove a secret; False if the project has none of that name."""
    with store.tx() as conn:
        gone = conn.execute(
            delete(project_secrets).where(
                project_secrets.c.project == project, project_secrets.c.name == name
            )
        )
        return gone.rowcount == 1


def secret_names(store: Store, project: str) -> list[dict[str, Any]]:
    """`[{name, created_at}]` of the project's secrets (never their values)."""
    query = (
        select(project_secrets.c.name, project_secrets.c.created_at)
        .where(project_secrets.c.project == project)
        .order_by(project_secrets.c.name)
    )
    return [dict(row) for row in store.all(query)]


def secrets_of(store: Store, project: str) -> dict[str, str]:
    """The project's secrets, name → value, for its grading context only."""
    query = select(project_secrets.c.name, project_secrets.c.value).where(
        project_secrets.c.project == project
    )
    return {row["name"]: row["value"] for row in store.all(query)}


def grade_context(store: Store, settings: Settings, project: str) -> GradeContext:
    """How `project`'s graders run, wherever they run (`graders/run`, the dashboard's audit, a
    job's training): as that project, with its secrets and the operator's outbound allow-list."""
    return GradeContext.for_project(
        project, secrets_of(store, project), settings.allow_grader_hosts
    )


# --- registered base models -----------------------------------------------------------------


def add_model(store: Store, name: str, source: str) -> None:
    """Register (or re-point) base model `name` at a directory or hub id."""
    if not name or name.startswith("ft:") or ("/" in name and not _looks_like_hub_id(name)):
        raise ConfigError(
            [Problem("name", f"{name!r} cannot name a base model: no `ft:` prefix, no path")]
        )
    with store.tx() as conn:
        conn.execute(delete(registered_models).where(registered_models.c.name == name))
        conn.execute(registered_models.insert().values(name=name, source=source, created_at=now()))


def _looks_like_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not name.startswith((".", "/", "~"))


def remove_model(store: Store, name: str) -> bool:
    with store.tx() as conn:
        gone = conn.execute(delete(registered_models).where(registered_models.c.name == name))
        return gone.rowcount == 1


def models(store: Store) -> dict[str, str]:
    """Registered base models, name → source."""
    query = select(registered_models.c.name, registered_models.c.source).order_by(
        registered_models.c.name
    )
    return {row["name"]: row["source"] for row in store.all(query)}


# --- quotas ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    """The operator's limits for one project."""

    max_active_jobs: int
    """Jobs validating, queued or running at once."""
    max_job_steps: int
    """Optimizer steps one job may plan."""
    max_job_epochs: int
    """`n_epochs` of one job."""
    max_job_processes: int
    """`num_processes` of one job."""
    max_project_bytes: int
    """Bytes of uploaded files the project may keep."""


QUOTA_FIELDS = tuple(f.name for f in fields(Quota))


def quota(store: Store, settings: Settings, project: str) -> Quota:
    """The project's limits: its own row over the server's defaults."""
    row = store.one(select(project_quotas.c.limits).where(project_quotas.c.project == project))
    own = dict(row["limits"]) if row else {}
    values = {name: int(own.get(name, getattr(settings, name))) for name in QUOTA_FIELDS}
    return Quota(**values)


def set_quota(store: Store, project: str, **limits: int | None) -> dict[str, int]:
    """Set some of the project's limits (None leaves one as it is); returns its own limits."""
    unknown = set(limits) - set(QUOTA_FIELDS)
    if unknown:
        raise ConfigError([Problem(name, "is not a quota") for name in sorted(unknown)])
    bad = [name for name, value in limits.items() if value is not None and value < 1]
    if bad:
        raise ConfigError([Problem(name, "must be at least 1") for name in bad])
    with store.tx() as conn:
        key = project_quotas.c.project == project
        row = conn.execute(select(project_quotas.c.limits).where(key)).first()
        own = dict(row.limits) if row else {}
        own.update({name: value for name, value in limits.items() if value is not None})
        conn.execute(delete(project_quotas).where(key))
        conn.execute(project_quotas.insert().values(project=project, limits=own))
    return own
