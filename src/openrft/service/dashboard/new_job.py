"""The New job page's JSON routes: what each `"auto"` hyperparameter resolves to, where a
pasted JSON text is broken, and a job's pre-flight report.

The page (`templates/new_job.html`, `static/new_job.js`) builds an OpenAI job body with the
`openrft` extension and creates its jobs through the public API (`POST /v1/fine_tuning/jobs`):
first a pre-flight-only job (`preflight.only`), then, once its verdict is in, the real one
(`preflight.force` when the verdict was a failure and the user starts anyway). These routes add
what that API has no shape for: the values `"auto"` stands for (read from the same defaults and
constants the OpenAI dialect maps with, so the page cannot drift from what a job gets), and
the `preflight.json` the training run writes to its job directory (the report the job's
`preflight` event carries, readable before the job's events are).

Both are scoped to the caller's project like the other dashboard routes (another project's job
is a 404). Nothing here creates, writes or starts anything.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from openrft.service.dashboard.jobs import job_row
from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.errors import InvalidRequestError
from openrft.service.schemas import job_object
from openrft.training.config import PreflightSettings
from openrft.training.dialects import openai
from openrft.training.dialects.base import native_default
from openrft.training.rundir import read_preflight

router = APIRouter(prefix="/dashboard/api", tags=["dashboard"])

HYPERPARAMETERS = openai.ReinforcementHyperparameters.model_fields
"""OpenAI's reinforcement hyperparameters, in the order the page lists them."""


def _auto(name: str) -> tuple[Any, str]:
    """What `"auto"` gives `name`, and the native setting it becomes, in words."""
    if name == "learning_rate_multiplier":
        return 1, f"learning_rate {native_default('learning_rate'):g}"
    if name == "compute_multiplier":
        return 1, f"num_generations {openai.BASE_GENERATIONS} completions per prompt"
    if name == "reasoning_effort":
        tokens = openai.REASONING_TOKENS["default"]
        return "default", f"max_completion_length {tokens} tokens"
    value = native_default(name)
    return value, f"{name} {value}" if value is not None else f"{name} null"


@router.get("/new-job/defaults")
def new_job_defaults(_project: ProjectDep) -> dict[str, Any]:
    """Each reinforcement hyperparameter's `auto` value, the native setting it maps to and its
    description; the constants the page needs to show what a non-auto value maps to; and the
    pre-flight's defaults."""
    hyperparameters = {}
    for name, field in HYPERPARAMETERS.items():
        auto, means = _auto(name)
        hyperparameters[name] = {"auto": auto, "means": means, "description": field.description}
    preflight = PreflightSettings()
    return {
        "hyperparameters": hyperparameters,
        "learning_rate": native_default("learning_rate"),
        "generations": {
            "base": openai.BASE_GENERATIONS,
            "min": 2,
            "max": openai.MAX_GENERATIONS,
        },
        "reasoning_tokens": openai.REASONING_TOKENS,
        "preflight": {
            "prompts": preflight.prompts,
            "min_signal_share": preflight.min_signal_share,
        },
    }


class JsonText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str


@router.post("/new-job/json")
def parse_json(_project: ProjectDep, body: JsonText) -> dict[str, Any]:
    """Parse `text` as JSON: `{"value"}`, or a 400 saying at which line and column it breaks."""
    try:
        return {"value": json.loads(body.text)}
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        raise InvalidRequestError(f"not valid JSON at {where}: {exc.msg}", param="text") from None


@router.get("/jobs/{job_id}/preflight")
def job_preflight(
    project: ProjectDep, store: StoreDep, settings: SettingsDep, job_id: str
) -> dict[str, Any]:
    """The job's status and error, and its pre-flight report (`preflight.json`, the
    `PreflightReport` of `training/preflight.py`); `report` is null until the run writes it
    (or when the job never got that far, or has no pre-flight)."""
    row = job_row(store, project, job_id)
    job = job_object(row).model_dump(mode="json")
    return {
        "id": job_id,
        "status": job["status"],
        "error": job.get("error"),
        "report": read_preflight(settings.jobs_dir / job_id),
    }
