"""A tool server call, as OpenAI/Azure Agent RFT make it.

The model's call is POSTed to the tool's `server_url` as::

    {"type": "function_call", "name": ..., "arguments": "<JSON text>", "call_id": ...,
     "id": "fc_...", "item": {<the dataset row>}, "trace_id": ...}

and the server answers `{"type": "function_call_output", "call_id": ..., "output": ...}` (a
non-string `output` is passed on as its JSON text), or `{"error": ...}`. The same limits as a
grader endpoint (`graders/endpoint.py`, whose machinery this reuses): `timeout` seconds per
attempt, up to 3 retries with backoff on 5xx, 429, timeouts and connection errors (the retry
keeps its `trace_id`), `rate_limit` calls per second per tool URL and owner, a reply over
`MAX_REPLY_BYTES` (1 MB) not read further, header values with `${secret:NAME}` from the owner's
secrets (never the environment), and a tenant's URL checked and pinned by `graders/outbound.py`.

What the model sees is `ToolOutcome.content`: the output, or `error: ...` when the tool
answered an error, a 4xx, a reply that is not the documented body or a reply too large. A call
that still fails after its retries (5xx, timeout, unreachable) is `dropped`: Agent RFT drops
the rollout and counts it, and so do we; the model is never shown a transport failure as if it
were the tool's answer. Nothing here runs a tool: see `python` tools for local ones.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from openrft.graders import outbound
from openrft.graders.context import GradeContext
from openrft.graders.endpoint import HeaderError, expand_headers, spacer_for
from openrft.graders.retry import EXCERPT, Attempted, RetryPolicy, post_with_retries, run_sync

MAX_REPLY_BYTES = 2**20
"""Largest tool reply read (Azure's payload cap)."""
MAX_RETRIES = 3
MAX_CALL_SECONDS = 300.0
"""Most seconds one call's attempts and waits take together."""


class RemoteTool(BaseModel):
    """A tool served over HTTP (`method.reinforcement.tools[]` in an Agent RFT job)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    type: Literal["server"] = "server"
    """`server` (the default: Agent RFT's tools carry no type)."""
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    """The function name the model calls."""
    description: str = Field(default="", max_length=4096)
    """What the tool does, shown to the model (OpenRFT extension; a row's own `tools` entry of
    the same name takes precedence)."""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    """The arguments' JSON schema, shown to the model (OpenRFT extension, as `description`)."""
    server_url: str = Field(max_length=2048)
    """Where calls are POSTed."""
    headers: dict[str, str] = {}
    """Sent with every call; values may hold `${secret:NAME}` (a project secret)."""
    timeout: float = Field(default=30.0, gt=0, le=MAX_CALL_SECONDS)
    """Seconds one attempt may take in all (connect, send, the whole reply)."""
    rate_limit: float | None = Field(default=None, gt=0, le=10_000)
    """Most calls started per second for this tool's URL (per project); `null`: no limit."""

    def tool_schema(self) -> dict[str, Any]:
        return function_schema(self.name, self.description, self.parameters)


def function_schema(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """A tool as chat templates and OpenAI's `tools` take it (every kind of tool's
    `tool_schema()`)."""
    function = {"name": name, "description": description, "parameters": parameters}
    return {"type": "function", "function": function}


@dataclass
class ToolOutcome:
    """What one call came to."""

    call_id: str
    trace_id: str
    request: dict[str, Any]
    """The body that was POSTed."""
    output: str | None = None
    """The tool's `output` (a string, or the JSON text of what it sent)."""
    error: str | None = None
    """Why there is no output: the tool's own error, a 4xx, a malformed or oversized reply, or
    (when `dropped`) what failed."""
    dropped: bool = False
    """The call failed after its retries (5xx, timeout, unreachable): the rollout is dropped."""
    attempts: int = 0
    seconds: float = 0.0

    @property
    def content(self) -> str:
        """The tool turn the model sees."""
        return self.output if self.output is not None else f"error: {self.error}"

    def reply(self) -> dict[str, Any]:
        """The `function_call_output` item this call appends to the conversation."""
        return {"type": "function_call_output", "call_id": self.call_id, "output": self.content}


def call(
    tool: RemoteTool,
    arguments: str,
    item: dict[str, Any],
    context: GradeContext,
    *,
    call_id: str | None = None,
    trace_id: str | None = None,
) -> ToolOutcome:
    """Make one call; callable from any thread."""
    return run_sync(lambda: call_async(tool, arguments, item, context, call_id, trace_id))


async def call_async(
    tool: RemoteTool,
    arguments: str,
    item: dict[str, Any],
    context: GradeContext,
    call_id: str | None = None,
    trace_id: str | None = None,
) -> ToolOutcome:
    """The same as `call`, for callers that already run an event loop."""
    call_id = call_id or f"call_{uuid.uuid4().hex[:24]}"
    trace_id = trace_id or uuid.uuid4().hex
    body = {
        "type": "function_call",
        "name": tool.name,
        "arguments": arguments,
        "call_id": call_id,
        "id": f"fc_{uuid.uuid4().hex[:24]}",
        "item": item,
        "trace_id": trace_id,
    }
    outcome = ToolOutcome(call_id=call_id, trace_id=trace_id, request=body)
    started = time.perf_counter()
    try:
        headers = expand_headers(tool.headers, context.secrets, context.owner)
        transport = await _transport(tool, context)
    except (HeaderError, outbound.Refused) as exc:
        outcome.error = str(exc)
        return outcome
    except outbound.Unresolvable as exc:
        outcome.error, outcome.dropped = str(exc), True
        return outcome
    policy = RetryPolicy(
        MAX_RETRIES,
        float(context.options.get("tool_backoff", 0.5)),
        attempt_timeout=tool.timeout,
        budget=MAX_CALL_SECONDS,
    )
    rate, url = tool.rate_limit, tool.server_url
    spacer = spacer_for(url, rate, context.owner) if rate else None
    async with httpx.AsyncClient(
        timeout=tool.timeout,
        headers=headers,
        transport=transport,
        follow_redirects=False,
        trust_env=context.outbound is None,  # a tenant's call never goes through our proxies
    ) as client:
        attempted = await post_with_retries(
            client,
            tool.server_url,
            body,
            policy,
            before_each=spacer.wait if spacer else None,
            max_body=MAX_REPLY_BYTES,
        )
    outcome.attempts, outcome.seconds = attempted.attempts, time.perf_counter() - started
    _interpret(tool, attempted, outcome)
    return outcome


async def _transport(tool: RemoteTool, context: GradeContext) -> httpx.AsyncBaseTransport | None:
    if context.outbound is None:
        return None
    destination = await outbound.resolve(tool.server_url, context.outbound, timeout=tool.timeout)
    return outbound.PinnedTransport(destination)


def _interpret(tool: RemoteTool, attempted: Attempted, outcome: ToolOutcome) -> None:
    response = attempted.response
    where = f"tool {tool.name!r} ({tool.server_url})"
    if attempted.too_large:
        outcome.error = f"{where}: {attempted.error}"
        return
    if attempted.error is not None or response is None:
        outcome.error, outcome.dropped = f"{where}: {attempted.error}", True
        return
    if response.status_code >= 400:
        outcome.error = f"HTTP {response.status_code} from {where}: {response.text[:EXCERPT]}"
        return
    try:
        payload = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        outcome.error = f"{where} answered non-JSON {response.text[:200]!r}"[: EXCERPT + 80]
        return
    if isinstance(payload, dict) and payload.get("error") is not None:
        error = payload["error"]
        outcome.error = error if isinstance(error, str) else json.dumps(error)[:EXCERPT]
        return
    if not isinstance(payload, dict) or "output" not in payload:
        expected = '{"type": "function_call_output", "call_id": ..., "output": ...}'
        outcome.error = f"{where} answered {str(payload)[:200]}; expected {expected}"
        return
    value = payload["output"]
    outcome.output = value if isinstance(value, str) else json.dumps(value)
