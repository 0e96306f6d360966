"""`POST /v1/fine_tuning/alpha/tool/run`: test one tool call the way a rollout makes it.

The body names a tool as an Agent RFT job does (`name`, `server_url`, `headers`; or a python
tool, `{type: python, name, source}`, run in the project's sandbox) and the call's
`arguments` (JSON text, or an object, sent as its JSON text) and `item`; the call goes out exactly
as during training (`tools/remote.py`: the documented `function_call` body, retries, timeout,
the 1 MB reply cap, per-tool rate limit, the project's `${secret:NAME}` headers and the
operator's outbound rules) on the grading threads `graders/run` uses, within the same per-project
limit. The answer shows what was sent and what came back: the `function_call_output` the model
would see, or the error, and whether the rollout would have been dropped.
"""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from openrft.service import tenancy
from openrft.service.deps import ProjectDep, SettingsDep, StoreDep
from openrft.service.graders import GradingPool
from openrft.service.settings import Settings
from openrft.service.store import Store
from openrft.tools import Tool, ToolOutcome, call

router = APIRouter(prefix="/v1/fine_tuning/alpha/tool", tags=["tools"])


class ToolRunRequest(BaseModel):
    """One call to try."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    tool: Tool
    """The tool as a job names it: a tool server (`name`, `server_url`, `headers`, `timeout`,
    `rate_limit`) or a python tool (`type: python`, `name`, `source`, …), run in the
    project's sandbox."""
    arguments: str | dict[str, Any] = "{}"
    """The call's arguments: JSON text as the model writes it, or an object."""
    item: dict[str, Any] = {}
    """The dataset row the rollout is for, sent as `item`."""
    call_id: str | None = Field(default=None, max_length=128)
    """The call's id (default: a fresh `call_…`)."""


def _call_as(
    store: Store, settings: Settings, project: str, body: ToolRunRequest, arguments: str
) -> ToolOutcome:
    context = tenancy.grade_context(store, settings, project)
    return call(body.tool, arguments, body.item, context, call_id=body.call_id)


@router.post("/run")
async def run_tool(
    project: ProjectDep,
    store: StoreDep,
    settings: SettingsDep,
    request: Request,
    body: ToolRunRequest,
) -> dict[str, Any]:
    """Make the call; answer with the request sent and the outcome."""
    arguments = body.arguments if isinstance(body.arguments, str) else json.dumps(body.arguments)
    work = partial(_call_as, store, settings, project, body, arguments)
    pool: GradingPool = request.app.state.grading_pool
    outcome = await asyncio.wrap_future(pool.submit(project, work))
    return {
        "request": outcome.request,
        "output": outcome.reply() if outcome.output is not None else None,
        "error": outcome.error,
        "dropped": outcome.dropped,
        "attempts": outcome.attempts,
        "latency_seconds": round(outcome.seconds, 4),
    }
