"""`POST /v1/inference/chat/completions`: SeekrFlow's chat completions, answered by the same
model servers as OpenAI's route (`chat.complete`), streaming included.

`model` may be:
- a fine-tune's id (`ft-…`) or a deployment's id (`dep-…`): served only while its deployment is
  `Active` (`fine_tuning.promote(id)`, `deployments.promote(id)`); a 400 says how otherwise;
- anything OpenAI's route takes (a base model, an `ft:` or checkpoint model), as it is.

The answer names the model as asked, and its tokens are added to the deployment's totals; a
streamed answer's too, from the usage the model server sends on every chunk, so a stream its
client leaves early counts what had been streamed by then (`chat.complete`'s `on_usage`).
SeekrFlow's sampling fields OpenRFT's model servers do not have (`top_k`,
`repetition_penalty`, `echo`, `safety_model`, `logprobs`) are accepted and not applied.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from openrft.api_errors import envelope_for
from openrft.inference.schemas import ChatRequest
from openrft.service import chat
from openrft.service.deps import ProjectDep
from openrft.service.errors import InvalidRequestError, NotFoundError
from openrft.service.flow.records import deployment
from openrft.service.schemas import openai_id
from openrft.service.store import Store, deployments, jobs

router = APIRouter(prefix="/v1/inference", tags=["seekrflow"])


def served_name(store: Store, project: str, name: str) -> tuple[str, str | None]:
    """The OpenAI model name to answer `name` with, and the deployment to count tokens on."""
    if name.startswith("dep-"):
        row = deployment(store, project, name, param="model", code="model_not_found")
        _active(row, name)
        if row["job_id"] is None:
            return str(row["model_id"]), str(row["id"])
        return _fine_tuned(store, project, row["job_id"], name), str(row["id"])
    if name.startswith("ft-"):
        rows = store.all(
            select(deployments)
            .where(deployments.c.project == project, deployments.c.job_id == openai_id(name))
            .order_by(deployments.c.seq)
        )
        model = _fine_tuned(store, project, openai_id(name), name)
        if not rows:
            raise InvalidRequestError(
                f"The model of fine-tune {name} is not deployed: promote it first "
                "(client.fine_tuning.promote(id)), or use its OpenAI name "
                f"{model!r} on /v1/chat/completions",
                param="model",
                code="model_not_deployed",
            )
        active = [row for row in rows if row["status"] == "Active"]
        _active(active[0] if active else rows[0], name)
        return model, str(active[0]["id"])
    return name, None


def _active(row: Any, name: str) -> None:
    if row["status"] != "Active":
        raise InvalidRequestError(
            f"{name} is {row['status']}: promote its deployment ({row['id']}) to serve it",
            param="model",
            code="model_not_deployed",
        )


def _fine_tuned(store: Store, project: str, job_id: str, name: str) -> str:
    row = store.one(
        select(jobs.c.fine_tuned_model).where(jobs.c.id == job_id, jobs.c.project == project)
    )
    if row is None or row["fine_tuned_model"] is None:
        raise NotFoundError(
            f"The model {name[:100]!r} does not exist or has no trained model",
            param="model",
            code="model_not_found",
        )
    return str(row["fine_tuned_model"])


def _count(store: Store, deployment_id: str, usage: Any) -> None:
    if not isinstance(usage, dict):
        return
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return
    with store.tx() as conn:
        conn.execute(
            deployments.update()
            .where(deployments.c.id == deployment_id)
            .values(
                input_tokens=deployments.c.input_tokens + prompt,
                output_tokens=deployments.c.output_tokens + completion,
            )
        )


@router.post("/chat/completions", response_model=None)
async def create_chat_completion(body: ChatRequest, project: ProjectDep, request: Request) -> Any:
    """SeekrFlow's `chat.completions.create`, answered by the model's server."""
    store: Store = request.app.state.store
    asked = body.model
    model, deployment = served_name(store, project, asked)
    counted = None if deployment is None else partial(_count, store, deployment)
    answer = await chat.complete(
        body.model_copy(update={"model": model}), project, request, asked, on_usage=counted
    )
    if isinstance(answer, JSONResponse) and answer.status_code != 200:  # the model server's
        error = json.loads(bytes(answer.body)).get("error") or {}
        return envelope_for(
            request.url.path,
            answer.status_code,
            str(error.get("message", "the model server refused the request")),
            str(error.get("type", "server_error")),
            error.get("param"),
            error.get("code"),
        )
    if counted is not None and isinstance(answer, dict):
        counted(answer.get("usage"))
    return answer
