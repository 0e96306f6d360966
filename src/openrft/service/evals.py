"""`/v1/evals`: create, retrieve, update, list and delete evals (OpenAI's Evals API).

An eval is a `custom` data source config (`item_schema`, `include_sample_schema`) and a list of
testing criteria, each a grader of ours (`label_model`, `string_check`, `text_similarity`,
`python`, `score_model`) validated by `load_grader` when the eval is created; every problem is
reported at its `testing_criteria[i]…` path. `multi` is refused, as OpenAI refuses it: list each
sub-grader as its own criterion. `stored_completions` is refused too: this server stores no
chat completions to draw from. Evals belong to the key's project; another project's are 404.

Runs and their output items are `eval_runs.py`'s; grading happens in the workers
(`eval_runner.py`), never here. The eval a worker makes of a reinforcement job
(`job_evals.py`: metadata `openrft_job_id`, the job's grader as its one criterion, `multi`
included) is listed, read, renamed and deleted here like any other.
"""

from __future__ import annotations

from typing import Any

import jsonschema  # type: ignore[import-untyped]
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict
from sqlalchemy import Table, delete, select, update

from openrft.errors import Problem, SpecError
from openrft.graders import Grader, load_grader
from openrft.service.deps import ProjectDep, StoreDep
from openrft.service.errors import InvalidRequestError, NotFoundError
from openrft.service.store import (
    Store,
    eval_output_items,
    eval_runs,
    evals,
    jobs,
    new_id,
    now,
)

router = APIRouter(prefix="/v1/evals", tags=["evals"])

CRITERIA_TYPES = ("label_model", "string_check", "text_similarity", "python", "score_model")
"""Grader types a testing criterion may be (OpenAI's list, less what we do not grade)."""
MAX_CRITERIA = 32
MAX_METADATA = 16
SAMPLE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "output_text": {"type": "string"},
        "output_json": {"type": "object"},
        "output_tools": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["output_text"],
}
"""What `sample` holds in a row, as the data source config's `schema` shows it."""


class EvalCreate(BaseModel):
    """OpenAI's `evals.create` body."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    data_source_config: dict[str, Any]
    """`{"type": "custom", "item_schema": {…}, "include_sample_schema": true}`."""
    testing_criteria: list[dict[str, Any]]
    """The graders every row is checked with."""
    name: str | None = None
    metadata: dict[str, str] | None = None


class EvalUpdate(BaseModel):
    """OpenAI's `evals.update` body: only the name and the metadata change."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    metadata: dict[str, str] | None = None


# --- validation -------------------------------------------------------------------------------


def check_metadata(metadata: dict[str, str] | None) -> dict[str, str] | None:
    """OpenAI's metadata rules: at most 16 pairs, keys ≤ 64 and values ≤ 512 characters."""
    if metadata is None:
        return None
    problems = [f"key {k[:70]!r} is longer than 64 characters" for k in metadata if len(k) > 64]
    problems += [
        f"the value of {k!r} is longer than 512" for k, v in metadata.items() if len(v) > 512
    ]
    if len(metadata) > MAX_METADATA:
        problems.append(f"has {len(metadata)} keys; at most {MAX_METADATA} are allowed")
    if problems:
        raise InvalidRequestError("metadata: " + "; ".join(problems), param="metadata")
    return metadata


def data_source_config(config: dict[str, Any]) -> dict[str, Any]:
    """The stored (and shown) form of a `custom` config: `{"type", "schema"}` whose
    `properties` are `item` (the item schema) and, if asked for, `sample`."""
    kind = config.get("type")
    if kind == "stored_completions":
        raise InvalidRequestError(
            "data_source_config type `stored_completions` is not supported: this server stores "
            "no chat completions; use `custom` with an `item_schema`",
            param="data_source_config.type",
        )
    if kind != "custom":
        raise InvalidRequestError(
            f"data_source_config.type must be `custom`, not {kind!r}",
            param="data_source_config.type",
        )
    item_schema = config.get("item_schema")
    if not isinstance(item_schema, dict):
        raise InvalidRequestError(
            "data_source_config.item_schema must be a JSON schema object, e.g. "
            '{"type": "object", "properties": {"answer": {"type": "string"}}}',
            param="data_source_config.item_schema",
        )
    try:
        jsonschema.validators.validator_for(item_schema).check_schema(item_schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequestError(
            f"data_source_config.item_schema is not a valid JSON schema: {exc.message}",
            param="data_source_config.item_schema",
        ) from None
    properties: dict[str, Any] = {"item": item_schema}
    if config.get("include_sample_schema"):
        properties["sample"] = SAMPLE_SCHEMA
    schema = {"type": "object", "properties": properties, "required": list(properties)}
    return {"type": "custom", "schema": schema}


def criteria_specs(criteria: list[dict[str, Any]]) -> list[Grader]:
    """Each criterion as a grader spec; `SpecError` with every problem at `testing_criteria[i]…`."""
    if not criteria:
        raise SpecError([Problem("testing_criteria", "give at least one testing criterion")])
    if len(criteria) > MAX_CRITERIA:
        raise SpecError([Problem("testing_criteria", f"at most {MAX_CRITERIA} criteria")])
    problems: list[Problem] = []
    specs: list[Grader] = []
    for index, criterion in enumerate(criteria):
        where = f"testing_criteria[{index}]"
        kind = criterion.get("type")
        if kind == "multi":
            message = "`multi` is not a testing criterion type (OpenAI refuses it too); list "
            problems.append(Problem(f"{where}.type", message + "each sub-grader as a criterion"))
            continue
        if kind not in CRITERIA_TYPES:
            message = f"{kind!r} is not a testing criterion type; use one of "
            problems.append(Problem(f"{where}.type", message + ", ".join(CRITERIA_TYPES)))
            continue
        try:
            specs.append(load_grader(criterion))
        except SpecError as exc:
            problems += [
                Problem(where + p.where.removeprefix("$"), p.message) for p in exc.problems
            ]
    names = [spec.name for spec in specs]
    for index, name in enumerate(names):
        if name in names[:index]:
            problems.append(Problem(f"testing_criteria[{index}].name", f"{name!r} is repeated"))
    if problems:
        raise SpecError(problems, "invalid testing_criteria")
    return specs


# --- the store --------------------------------------------------------------------------------


def page(
    store: Store, query: Any, table: Table, after: str | None, limit: int, order: str
) -> tuple[list[Any], bool]:
    """One page in `seq` order (`asc` or `desc`) after the row with id `after`, and whether
    more follow."""
    ascending = order != "desc"
    seq = table.c.seq
    if after:
        cursor = select(seq).where(table.c.id == after).scalar_subquery()
        query = query.where(seq > cursor if ascending else seq < cursor)
    limit = max(1, min(limit, 100))
    rows = store.all(query.order_by(seq if ascending else seq.desc()).limit(limit + 1))
    return rows[:limit], len(rows) > limit


def find_eval(store: Store, project: str, eval_id: str) -> Any:
    row = store.one(select(evals).where(evals.c.id == eval_id, evals.c.project == project))
    if row is None:
        raise NotFoundError(f"No such eval: {eval_id!r}", param="eval_id", code="eval_not_found")
    return row


def eval_object(row: Any) -> dict[str, Any]:
    """An eval as OpenAI shows it."""
    return {
        "id": row["id"],
        "object": "eval",
        "created_at": row["created_at"],
        "name": row["name"],
        "metadata": row["user_metadata"],
        "data_source_config": row["data_source_config"],
        "testing_criteria": row["testing_criteria"],
    }


def list_page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """OpenAI's cursor page."""
    first = data[0]["id"] if data else None
    last = data[-1]["id"] if data else None
    return {
        "object": "list",
        "data": data,
        "first_id": first,
        "last_id": last,
        "has_more": has_more,
    }


# --- routes -----------------------------------------------------------------------------------


@router.post("")
def create_eval(project: ProjectDep, store: StoreDep, body: EvalCreate) -> dict[str, Any]:
    """Create an eval; its criteria are checked by the grader engine now, not at run time."""
    config = data_source_config(body.data_source_config)
    specs = criteria_specs(body.testing_criteria)
    criteria = [
        {**criterion, "name": spec.name}
        for criterion, spec in zip(body.testing_criteria, specs, strict=True)
    ]
    eval_id = new_id("eval")
    row = {
        "id": eval_id,
        "project": project,
        "name": body.name or eval_id,
        "data_source_config": config,
        "testing_criteria": criteria,
        "user_metadata": check_metadata(body.metadata),
        "created_at": now(),
    }
    with store.tx() as conn:
        conn.execute(evals.insert().values(**row))
    return eval_object(row)


@router.get("")
def list_evals(
    project: ProjectDep,
    store: StoreDep,
    after: str | None = None,
    limit: int = 20,
    order: str = "asc",
) -> dict[str, Any]:
    """The project's evals, oldest first (`order=desc` for newest first)."""
    query = select(evals).where(evals.c.project == project)
    rows, more = page(store, query, evals, after, limit, order)
    return list_page([eval_object(r) for r in rows], more)


@router.get("/{eval_id}")
def retrieve_eval(project: ProjectDep, store: StoreDep, eval_id: str) -> dict[str, Any]:
    return eval_object(find_eval(store, project, eval_id))


@router.post("/{eval_id}")
def update_eval(
    project: ProjectDep, store: StoreDep, eval_id: str, body: EvalUpdate
) -> dict[str, Any]:
    """Change an eval's name or metadata (its config and criteria stay: runs depend on them)."""
    find_eval(store, project, eval_id)
    values: dict[str, Any] = {}
    if body.name is not None:
        values["name"] = body.name
    if body.metadata is not None:
        values["user_metadata"] = check_metadata(body.metadata)
    if values:
        with store.tx() as conn:
            conn.execute(update(evals).where(evals.c.id == eval_id).values(**values))
    return eval_object(find_eval(store, project, eval_id))


@router.delete("/{eval_id}")
def delete_eval(project: ProjectDep, store: StoreDep, eval_id: str) -> dict[str, Any]:
    """Delete an eval with its runs and their output items (a run in progress stops); a job's
    eval is unlinked from its job too."""
    find_eval(store, project, eval_id)
    with store.tx() as conn:
        conn.execute(delete(eval_output_items).where(eval_output_items.c.eval_id == eval_id))
        conn.execute(delete(eval_runs).where(eval_runs.c.eval_id == eval_id))
        conn.execute(delete(evals).where(evals.c.id == eval_id))
        conn.execute(update(jobs).where(jobs.c.eval_id == eval_id).values(eval_id=None))
    return {"object": "eval.deleted", "deleted": True, "eval_id": eval_id}
