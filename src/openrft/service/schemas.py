"""Wire objects, with OpenAI's names and fields, and converters from store rows.

The `openai` SDK parses these responses into its own types, so field names and `object` values
follow the API reference exactly; OpenRFT additions (a `paused` status, reward metrics on
checkpoints, a job's `promoted_checkpoint`) are extra values the SDK tolerates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Wire(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="allow")


class ListPage(Wire, Generic[T]):
    """OpenAI's cursor page: `after` = the last id of this page."""

    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


def page(items: list[T], has_more: bool) -> ListPage[T]:
    ids = [getattr(item, "id", None) for item in items]
    return ListPage[T](
        data=items,
        has_more=has_more,
        first_id=ids[0] if ids else None,
        last_id=ids[-1] if ids else None,
    )


class FileObject(Wire):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"] = "processed"
    status_details: str | None = None
    expires_at: int | None = None


class FileDeleted(Wire):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class JobError(Wire):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(Wire):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: JobError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    model: str
    organization_id: str
    """The project that owns the job (OpenRFT has projects, not organizations)."""
    result_files: list[str] = Field(default_factory=list)
    seed: int
    status: str
    """validating_files, queued, running, paused, succeeded, failed or cancelled."""
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[dict[str, Any]] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any] | None = None
    suffix: str | None = None
    promoted_checkpoint: str | None = None
    """OpenRFT: the checkpoint (`ftckpt-…`) promoted to serve `fine_tuned_model`; `None`: it
    serves the job's last checkpoint."""
    eval_id: str | None = None
    """OpenRFT: the eval whose runs are this job's validation evaluations (`evals.runs.list`);
    `None` until a worker claims it, and for a job with no validation file."""
    seekrflow_id: str | None = None
    """OpenRFT: the same job's id in SeekrFlow's API (`ft-…`, `/v1/flow/fine-tunes/{id}`)."""


def seekrflow_id(job_id: str) -> str:
    """The SeekrFlow face of job `ftjob-X`: `ft-X` (one job, two ids)."""
    return "ft-" + job_id.removeprefix("ftjob-")


def openai_id(flow_id: str) -> str:
    """The OpenAI face of job `ft-X`: `ftjob-X` (any other text maps to an id no job has)."""
    return "ftjob-" + flow_id.removeprefix("ft-") if flow_id.startswith("ft-") else flow_id


class FineTuningJobEvent(Wire):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: Any = None
    type: Literal["message", "metrics"] = "message"


class FineTuningJobCheckpoint(Wire):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, Any]
    """OpenAI's `step`/`train_loss`/… plus `train_reward_mean`, `valid_reward_mean`."""
    step_number: int


class Model(Wire):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelDeleted(Wire):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


def file_object(row: Mapping[Any, Any]) -> FileObject:
    return FileObject(
        id=row["id"],
        bytes=row["bytes"],
        created_at=row["created_at"],
        filename=row["filename"],
        purpose=row["purpose"],
    )


def job_object(row: Mapping[Any, Any]) -> FineTuningJob:
    return FineTuningJob(
        id=row["id"],
        created_at=row["created_at"],
        error=JobError(**row["error"]) if row["error"] else None,
        fine_tuned_model=row["fine_tuned_model"],
        finished_at=row["finished_at"],
        hyperparameters=row["hyperparameters"] or {},
        model=row["model"],
        organization_id=row["project"],
        result_files=row["result_files"] or [],
        seed=row["seed"],
        status=row["status"],
        trained_tokens=row["trained_tokens"],
        training_file=row["training_file"],
        validation_file=row["validation_file"],
        estimated_finish=row["estimated_finish"],
        integrations=row["integrations"],
        metadata=row["user_metadata"] or None,
        method=row["method"],
        suffix=row["suffix"],
        promoted_checkpoint=row.get("promoted_checkpoint"),
        eval_id=row.get("eval_id"),
        seekrflow_id=seekrflow_id(row["id"]),
    )


def event_object(row: Mapping[Any, Any]) -> FineTuningJobEvent:
    return FineTuningJobEvent(
        id=row["id"],
        created_at=row["created_at"],
        level=row["level"],
        message=row["message"],
        data=row["data"],
        type=row["type"],
    )


def checkpoint_object(row: Mapping[Any, Any]) -> FineTuningJobCheckpoint:
    return FineTuningJobCheckpoint(
        id=row["id"],
        created_at=row["created_at"],
        fine_tuned_model_checkpoint=row["model"],
        fine_tuning_job_id=row["job_id"],
        metrics=row["metrics"] or {},
        step_number=row["step"],
    )
