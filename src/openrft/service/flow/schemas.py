"""SeekrFlow's wire objects, with the `seekrai` SDK's (0.35) names, enums and required fields,
and converters from store rows.

The SDK parses responses into its own pydantic types (`FileResponse`, `FinetuneResponse`,
`FinetuneList`, `FinetuneListEvents`, `Deployment`, `Project`, …), whose base allows extra
fields: OpenRFT adds a few (a job's `openai_id`, `fine_tuned_model`, `openrft_status` and
`placement`; an event's `message`, `level` and `type`), and sends every required field in a
value its enums accept. Times are ISO 8601 UTC datetimes, as SeekrFlow sends them.

What cannot be said in SeekrFlow's terms is said beside it, never bent silently:
- `FinetuneJobStatus` has no `paused`: a paused job reads `pending`, with `openrft_status`
  `paused` (and OpenAI's `validating_files` reads `pending` too);
- `accel_type` must be one of SeekrFlow's kinds: a job created through SeekrFlow's API shows
  what it asked for; one created through OpenAI's shows the server's kind when SeekrFlow has a
  name for it, else `A10` with `n_accel: 0`; `placement` always says what the job ran on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from openrft.graders.seekr import resolve_weights
from openrft.service.schemas import seekrflow_id

ACCELERATORS = ("GAUDI2", "GAUDI3", "A100", "A10", "H100", "MI300X")
"""`seekrai.types.finetune.AcceleratorType`."""
AcceleratorType = Literal["GAUDI2", "GAUDI3", "A100", "A10", "H100", "MI300X"]
PROCESSORS = ("GAUDI2", "GAUDI3", "A100", "A10", "H100", "XEON", "NVIDIA", "AMD", "MI300X")
"""`seekrai.types.deployments.DeploymentProcessor`."""
FILE_PURPOSES = (
    "reinforcement-fine-tune",
    "fine-tune",
    "preference-fine-tune",
    "pre-train",
    "alignment",
)
"""`seekrai.types.files.FilePurpose`; OpenRFT trains on the first two."""
TRAINABLE_PURPOSES = ("reinforcement-fine-tune", "fine-tune")

STATUS = {
    "validating_files": "pending",
    "queued": "queued",
    "running": "running",
    "paused": "pending",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
"""OpenRFT's job status → `FinetuneJobStatus`."""

LEVELS = {"info": "Info", "warn": "Warning", "error": "Error"}
"""OpenRFT's event level → `FinetuneEventLevels`."""

EVENT_TYPES = (
    ("Placement:", "JOB_PENDING"),
    ("Created fine-tuning job", "JOB_PENDING"),
    ("Files validated", "TRAINING_DATA_DOWNLOAD_COMPLETE"),
    ("Fine-tuning job started", "JOB_START"),
    ("Resuming from the latest checkpoint", "JOB_RESTARTED"),
    ("Cancellation requested", "CANCEL_REQUESTED"),
    ("Job cancelled", "JOB_STOPPED"),
    ("Pause requested", "JOB_STOPPED"),
    ("Job paused", "JOB_STOPPED"),
    ("Job resumed", "JOB_RESTARTED"),
    ("New fine-tuned model created", "TRAINING_COMPLETE"),
    ("The job has successfully completed", "JOB_COMPLETE"),
    ("Training failed", "JOB_ERROR"),
    ("Promoted checkpoint", "MODEL_UPLOAD_COMPLETE"),
    ("Model promoted", "MODEL_UPLOAD_COMPLETE"),
    ("Model demoted", "JOB_STOPPED"),
)
"""Message events (by their opening words, as the API and workers write them) →
`FinetuneEventType`; another error is `JOB_ERROR`, another warning `WARNING`, and a metrics
event (one training step) `EPOCH_COMPLETE` on the step that ends an epoch, else no type."""


class FlowWire(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="allow")


def stamp(seconds: int | float | None) -> datetime | None:
    """A store timestamp as the UTC datetime SeekrFlow sends."""
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=UTC)


# --- files ----------------------------------------------------------------------------------


class FlowFile(FlowWire):
    """`seekrai.types.files.FileResponse`."""

    id: str
    object: Literal["file"] = "file"
    created_at: datetime | None = None
    type: Literal["jsonl"] = "jsonl"
    purpose: str | None = None
    """A SeekrFlow purpose; None for OpenRFT's others (`evals`, `fine-tune-results`), which
    `openai_purpose` names."""
    filename: str | None = None
    bytes: int | None = None
    created_by: str | None = None
    """The OpenRFT project that owns the file."""
    origin_file_id: str | None = None
    deleted: bool | None = False
    openai_purpose: str | None = None


class FlowFileList(FlowWire):
    object: Literal["list"] = "list"
    data: list[FlowFile]


class FlowFileDeleted(FlowWire):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class MetadataCheck(FlowWire):
    """`AlignFileMetadataValidationResp`."""

    is_valid: bool
    errors: str | None = None


def flow_file(row: Mapping[Any, Any]) -> FlowFile:
    purpose = row["purpose"] if row["purpose"] in FILE_PURPOSES else None
    return FlowFile(
        id=row["id"],
        created_at=stamp(row["created_at"]),
        purpose=purpose,
        filename=row["filename"],
        bytes=row["bytes"],
        created_by=row["project"],
        openai_purpose=row["purpose"],
    )


# --- fine-tunes -----------------------------------------------------------------------------


class Infrastructure(BaseModel):
    """`seekrai.types.finetune.InfrastructureConfig`: what the job asks to run on."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    accel_type: AcceleratorType
    """Accelerator kind."""
    n_accel: int = Field(ge=1, le=1024)
    """Accelerators (per node)."""
    n_node: int = Field(default=1, ge=1, le=1024)
    """Machines."""


class FineTuneCreate(BaseModel):
    """`POST /v1/flow/fine-tune`: `seekrai.types.finetune.FinetuneRequest`."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    project_id: int
    """A SeekrFlow project of the caller's (`client.projects.create`)."""
    training_config: dict[str, Any]
    """SeekrFlow's `TrainingConfig` (`training/dialects/seekrflow.py`)."""
    infrastructure_config: Infrastructure


class FlowEvent(FlowWire):
    """`seekrai.types.finetune.FinetuneEvent`, with OpenRFT's message beside the metrics."""

    object: Literal["fine-tune-event"] = "fine-tune-event"
    created_at: datetime | None = None
    loss: float | None = None
    epoch: float | None = None
    reward: float | None = None
    """The step's mean training reward."""
    message: str = ""
    level: str = "Info"
    """A `FinetuneEventLevels` value."""
    type: str | None = None
    """A `FinetuneEventType` value (`EVENT_TYPES`), or None for a step that is only metrics."""
    step: int | None = None
    valid_reward: float | None = None
    id: str | None = None


class FlowEvents(FlowWire):
    """`FinetuneListEvents`: oldest first."""

    object: Literal["list"] = "list"
    data: list[FlowEvent]


class FineTune(FlowWire):
    """`seekrai.types.finetune.FinetuneResponse`."""

    id: str
    fine_tune_type: str
    reward_components: dict[str, Any] | None = None
    training_files: list[str]
    validation_files: list[str] | None = None
    model: str
    accel_type: AcceleratorType
    n_accel: int
    n_node: int | None = 1
    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    lora_config: dict[str, Any] | None = None
    gradient_checkpointing: bool | None = None
    created_at: datetime | None = None
    experiment_name: str | None = None
    status: str
    """A `FinetuneJobStatus` value (`STATUS`)."""
    deleted_at: datetime | None = None
    events: list[FlowEvent] | None = None
    inference_available: bool = False
    """True while the job's model has an `Active` deployment (`fine_tuning.promote`)."""
    project_id: int | None = None
    completed_at: datetime | None = None
    description: str | None = None
    error_analysis: str | None = None
    """Why the job failed (the job's error message)."""
    openai_id: str
    """The same job in OpenAI's API (`/v1/fine_tuning/jobs/{id}`)."""
    fine_tuned_model: str | None = None
    """The `ft:` model a succeeded job trained (OpenAI's name for it)."""
    openrft_status: str
    """OpenRFT's own status (OpenAI's, plus `paused`)."""
    placement: dict[str, Any] | None = None
    """What the job runs on: `processes`, `device`, `accelerators`, `nodes`."""


class FineTuneList(FlowWire):
    object: Literal["list"] = "list"
    data: list[FineTune]


def event_type(row: Mapping[Any, Any]) -> str | None:
    if row["type"] == "metrics":
        data = row.get("data") or {}
        epoch = (data.get("trl") or {}).get("epoch")
        return (
            "EPOCH_COMPLETE" if isinstance(epoch, int | float) and epoch == int(epoch) > 0 else None
        )
    for opening, kind in EVENT_TYPES:
        if row["message"].startswith(opening):
            return kind
    return {"error": "JOB_ERROR", "warn": "WARNING"}.get(row["level"])


def flow_event(row: Mapping[Any, Any]) -> FlowEvent:
    data: dict[str, Any] = row["data"] if isinstance(row["data"], dict) else {}
    trl = data.get("trl") or {}
    scores = data.get("scores") or {}
    metrics = row["type"] == "metrics"
    return FlowEvent(
        id=row["id"],
        created_at=stamp(row["created_at"]),
        loss=_number(trl.get("loss")) if metrics else None,
        epoch=_number(trl.get("epoch")) if metrics else None,
        reward=_number(scores.get("train_reward_mean")) if metrics else None,
        valid_reward=_number(scores.get("valid_reward_mean")) if metrics else None,
        step=data.get("step") if metrics else None,
        message=row["message"],
        level=LEVELS.get(row["level"], "Info"),
        type=event_type(row),
    )


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def normalized_components(raw: Mapping[str, Any]) -> dict[str, Any]:
    """`reward_components` with the weights seekrai resolves (so the SDK parses them back)."""
    explicit = "format_reward_weight" in raw
    format_weight = float(raw.get("format_reward_weight", 0.1))
    graders = [dict(g) for g in raw.get("graders") or []]
    weights = resolve_weights(format_weight, explicit, [g.get("weight") for g in graders])
    for grader, weight in zip(graders, weights, strict=True):
        grader["weight"] = weight
    return {"format_reward_weight": format_weight, "graders": graders}


def fine_tune(row: Mapping[Any, Any], deployed: bool, server_kind: tuple[str, int]) -> FineTune:
    """A job row (with its `config`) as SeekrFlow's `FinetuneResponse`; `deployed`: its model
    has an Active deployment; `server_kind`: the workers' accelerator kind and count, shown for
    a job created through OpenAI's API."""
    config: dict[str, Any] = row["config"] or {}
    flow: dict[str, Any] = row["flow"] or {}
    supervised = config.get("method") == "supervised"
    stage: dict[str, Any] = (config.get("sft_warmup") or {}) if supervised else config
    asked = flow.get("infrastructure") or {}
    kind, count = server_kind
    lora = config.get("lora")
    error = row["error"] or {}
    return FineTune(
        id=seekrflow_id(row["id"]),
        fine_tune_type=flow.get("fine_tune_type")
        or ("STANDARD" if supervised else "REINFORCEMENT"),
        reward_components=flow.get("reward_components"),
        training_files=[row["training_file"]],
        validation_files=[row["validation_file"]] if row["validation_file"] else None,
        model=row["model"],
        accel_type=asked.get("accel_type") or (kind if kind in ACCELERATORS else "A10"),
        n_accel=asked.get("n_accel", count if kind in ACCELERATORS else 0),
        n_node=asked.get("n_node", 1),
        n_epochs=stage.get("n_epochs"),
        batch_size=stage.get("batch_size"),
        learning_rate=stage.get("learning_rate"),
        lora_config=_lora(lora) if lora else None,
        gradient_checkpointing=config.get("gradient_checkpointing"),
        created_at=stamp(row["created_at"]),
        experiment_name=row["suffix"],
        status=STATUS.get(row["status"], "pending"),
        inference_available=deployed,
        project_id=flow.get("project_id"),
        completed_at=stamp(row["finished_at"]) if row["status"] == "succeeded" else None,
        error_analysis=error.get("message"),
        openai_id=row["id"],
        fine_tuned_model=row["fine_tuned_model"],
        openrft_status=row["status"],
        placement=flow.get("placement"),
    )


def _lora(lora: Mapping[str, Any]) -> dict[str, Any]:
    """Native LoRA settings as SeekrFlow's `LoRAConfig`."""
    extras = {"target_modules": lora["target_modules"]} if "target_modules" in lora else {}
    return {
        "r": lora.get("r"),
        "alpha": lora.get("alpha"),
        "dropout": lora.get("dropout"),
        "bias": "none",
        "extras": extras,
    }


# --- projects, deployments, models ----------------------------------------------------------


class ProjectCreate(BaseModel):
    """`seekrai.types.projects.PostProjectRequest`."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = None
    name: str = Field(min_length=5, max_length=100)
    description: str = Field(min_length=5, max_length=1000)


class FlowProject(FlowWire):
    """`seekrai.types.projects.ProjectWithRuns`."""

    id: int
    name: str
    description: str
    user_id: int = 0
    """OpenRFT has no users: 0."""
    team_id: str | None = None
    """The OpenRFT project (tenant) the SeekrFlow project belongs to."""
    created_at: datetime
    updated_at: datetime
    runs: int = 0
    runs_deployed: int = 0
    last_modified: datetime


class FlowProjects(FlowWire):
    data: list[FlowProject]


class DeploymentCreate(BaseModel):
    """`seekrai.types.deployments.NewDeploymentRequest`."""

    model_config = ConfigDict(extra="forbid")

    model_type: Literal["Fine-tuned Run", "Base Model"]
    model_id: str = Field(min_length=1, max_length=512)
    """A fine-tune's id (`ft-…`, or `ftjob-…`) for a fine-tuned run; a base model's name."""
    name: str = Field(min_length=5, max_length=100)
    description: str = Field(min_length=5, max_length=1000)
    n_instances: int = Field(ge=1, le=50)


class FlowDeployment(FlowWire):
    """`seekrai.types.deployments.Deployment`."""

    id: str
    model_type: str
    model_id: str
    name: str
    description: str
    status: Literal["Inactive", "Pending", "Active", "Failed", "Started", "Success"]
    memory: str | None = None
    hardware_type: Literal["Serverless", "Dedicated"] = "Dedicated"
    total_input_tokens: int
    total_output_tokens: int
    created_at: datetime
    last_deployed_at: datetime | None = None
    updated_at: datetime
    processor: str
    """A `DeploymentProcessor` value: the server's accelerator kind, `XEON` on CPU."""
    n_instances: int
    user_id: int = 0
    team_id: str | None = None


class FlowDeployments(FlowWire):
    data: list[FlowDeployment]


def flow_deployment(row: Mapping[Any, Any], processor: str) -> FlowDeployment:
    return FlowDeployment(
        id=row["id"],
        model_type=row["model_type"],
        model_id=row["model_id"],
        name=row["name"],
        description=row["description"],
        status=row["status"],
        total_input_tokens=row["input_tokens"],
        total_output_tokens=row["output_tokens"],
        created_at=stamp(row["created_at"]),
        last_deployed_at=stamp(row["last_deployed_at"]),
        updated_at=stamp(row["updated_at"]),
        processor=processor,
        n_instances=row["n_instances"],
        team_id=row["project"],
    )


class FlowModel(FlowWire):
    """One entry of `GET /v1/flow/models` (the SDK reads `id`, `name`, `size`, `model_type`,
    and `supports_lora` before a LoRA job)."""

    id: str
    object: Literal["model"] = "model"
    name: str
    size: int | None = None
    model_type: str = "chat"
    supports_lora: bool = True
    created: int = 0


class FlowModels(FlowWire):
    object: Literal["list"] = "list"
    data: list[FlowModel]
