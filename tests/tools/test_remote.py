"""Remote tool calls against a real tool server on 127.0.0.1: the documented Agent RFT bodies,
retries on 5xx, timeouts, a 2 MB reply, an unreachable server, secrets in headers, a tenant's
outbound policy."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from openrft.graders import GradeContext
from openrft.graders.context import OutboundPolicy
from openrft.inference.local import serve_in_thread
from openrft.tools.remote import RemoteTool, call

FAST = GradeContext(options={"tool_backoff": 0.01})


class ToolServer:
    """A calculator tool server that records what it received."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.attempts: Counter[str] = Counter()
        self.app = FastAPI()
        for path in ("add", "flaky", "down", "slow", "big", "refuse", "oops", "odd"):
            self.app.post(f"/{path}")(getattr(self, path))

    async def _record(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        self.attempts[body["trace_id"]] += 1
        return body

    async def add(self, request: Request) -> dict[str, Any]:
        body = await self._record(request)
        args = json.loads(body["arguments"])
        output = {"sum": args["a"] + args["b"]}
        return {"type": "function_call_output", "call_id": body["call_id"], "output": output}

    async def flaky(self, request: Request) -> Response:
        body = await self._record(request)
        if self.attempts[body["trace_id"]] < 3:
            return JSONResponse({"error": "busy"}, status_code=503)
        reply = {"type": "function_call_output", "call_id": body["call_id"], "output": "ok"}
        return JSONResponse(reply)

    async def down(self, request: Request) -> Response:
        await self._record(request)
        return Response("no", status_code=500)

    async def slow(self, request: Request) -> dict[str, Any]:
        await self._record(request)
        await asyncio.sleep(5)
        return {"output": "late"}

    async def big(self, request: Request) -> Response:
        await self._record(request)
        return Response(b'{"output": "' + b"x" * 2_000_000 + b'"}')

    async def refuse(self, request: Request) -> Response:
        await self._record(request)
        return Response("bad arguments", status_code=422)

    async def oops(self, request: Request) -> dict[str, Any]:
        await self._record(request)
        return {"type": "function_call_output", "error": "division by zero"}

    async def odd(self, request: Request) -> dict[str, Any]:
        await self._record(request)
        return {"result": 3}


@pytest.fixture
def server() -> Iterator[tuple[ToolServer, str]]:
    tools = ToolServer()
    with serve_in_thread(tools.app) as url:
        yield tools, url


def tool(url: str, **extra: Any) -> RemoteTool:
    return RemoteTool(name="add", server_url=url, **extra)


def test_the_call_carries_the_documented_body_and_the_output_comes_back(
    server: tuple[ToolServer, str],
) -> None:
    tools, url = server
    item = {"question": "2 + 3?", "reference_answer": "5"}
    outcome = call(tool(f"{url}/add"), '{"a": 2, "b": 3}', item, FAST, call_id="call_1")
    [body] = tools.bodies
    assert body == {
        "type": "function_call",
        "name": "add",
        "arguments": '{"a": 2, "b": 3}',
        "call_id": "call_1",
        "id": body["id"],
        "item": item,
        "trace_id": outcome.trace_id,
    }
    assert body["id"].startswith("fc_")
    assert outcome.output == '{"sum": 5}'
    assert outcome.reply() == {
        "type": "function_call_output",
        "call_id": "call_1",
        "output": '{"sum": 5}',
    }
    assert not outcome.dropped
    assert outcome.attempts == 1


def test_5xx_is_retried_with_the_same_trace_id(server: tuple[ToolServer, str]) -> None:
    tools, url = server
    outcome = call(tool(f"{url}/flaky"), "{}", {}, FAST)
    assert outcome.output == "ok"
    assert outcome.attempts == 3
    assert tools.attempts == {outcome.trace_id: 3}


def test_5xx_after_three_retries_drops_the_rollout(server: tuple[ToolServer, str]) -> None:
    _, url = server
    outcome = call(tool(f"{url}/down"), "{}", {}, FAST)
    assert outcome.dropped
    assert outcome.attempts == 4
    assert outcome.output is None
    assert "HTTP 500" in (outcome.error or "")


def test_a_timeout_is_retried_then_dropped(server: tuple[ToolServer, str]) -> None:
    _, url = server
    outcome = call(tool(f"{url}/slow", timeout=0.3), "{}", {}, FAST)
    assert outcome.dropped
    assert outcome.attempts == 4
    assert "0.3" in (outcome.error or "")


def test_a_2_mb_reply_is_refused_unread_and_shown_as_an_error(
    server: tuple[ToolServer, str],
) -> None:
    _, url = server
    outcome = call(tool(f"{url}/big"), "{}", {}, FAST)
    assert not outcome.dropped
    assert outcome.output is None
    assert outcome.content.startswith("error: tool 'add'")
    assert "larger than" in outcome.content or "exceeds" in outcome.content, outcome.content
    assert len(outcome.content) < 1000


def test_an_unreachable_server_drops_the_rollout() -> None:
    outcome = call(tool("http://127.0.0.1:9/none"), "{}", {}, FAST)
    assert outcome.dropped
    assert outcome.attempts == 4


@pytest.mark.parametrize(
    ("path", "needle"),
    [("refuse", "HTTP 422"), ("oops", "division by zero"), ("odd", "expected {")],
)
def test_tool_errors_reach_the_model(
    server: tuple[ToolServer, str], path: str, needle: str
) -> None:
    _, url = server
    outcome = call(tool(f"{url}/{path}"), "{}", {}, FAST)
    assert not outcome.dropped
    assert outcome.content.startswith("error: ")
    assert needle in outcome.content


def test_headers_take_secrets_never_the_environment(
    server: tuple[ToolServer, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    tools, url = server
    context = GradeContext(secrets={"TOOL_KEY": "s3cret"}, options=FAST.options)
    outcome = call(
        tool(f"{url}/add", headers={"Authorization": "Bearer ${secret:TOOL_KEY}"}),
        '{"a": 1, "b": 1}',
        {},
        context,
    )
    assert outcome.output == '{"sum": 2}'
    assert tools.headers[-1]["authorization"] == "Bearer s3cret"
    monkeypatch.setenv("TOOL_KEY", "from-env")
    refused = call(tool(f"{url}/add", headers={"X-Key": "${TOOL_KEY}"}), "{}", {}, FAST)
    assert "environment variables are never read" in (refused.error or "")
    assert len(tools.bodies) == 1  # the refused call sent nothing


def test_a_tenant_cannot_reach_loopback(server: tuple[ToolServer, str]) -> None:
    tools, url = server
    tenant = GradeContext(owner="project:p1", outbound=OutboundPolicy(), options=FAST.options)
    outcome = call(tool(f"{url}/add"), "{}", {}, tenant)
    assert outcome.output is None
    assert not tools.bodies
    assert outcome.error


@pytest.mark.parametrize(
    ("path", "dropped"),
    [("slow", True), ("down", True), ("big", False), ("unreachable", True), ("add", False)],
)
def test_in_a_rollout_a_failing_tool_drops_it_and_later_calls_are_not_made(
    server: tuple[ToolServer, str], path: str, dropped: bool
) -> None:
    """The rollout's view (`tools/episode.py`): a timeout, 5xx after retries or an unreachable
    server drops the rollout, whose next calls go nowhere; a 2 MB reply is an error the model
    sees and the rollout goes on."""
    from openrft.tools.episode import Toolbox, episode_class

    tools, url = server
    where = "http://127.0.0.1:9/none" if path == "unreachable" else f"{url}/{path}"
    box = Toolbox([RemoteTool(name="add", server_url=where, timeout=0.3)], FAST)
    episode: Any = episode_class(box)()
    episode.reset(openrft_item=json.dumps({"row": 1}))
    first = episode.add(a=1, b=2)
    assert episode.dropped is dropped
    sent = len(tools.bodies)
    second = episode.add(a=3, b=4)
    if dropped:
        assert len(tools.bodies) == sent  # nothing more is sent for a dropped rollout
        assert "not called" in second
    else:
        assert len(tools.bodies) == sent + 1
    assert [c.dropped for c in episode.calls] == [dropped, dropped]
    if path == "big":
        assert first.startswith("error: ")
    if path == "add":
        assert first == '{"sum": 3}'
        assert {b["trace_id"] for b in tools.bodies} == {episode.trace_id}  # one per rollout
        assert tools.bodies[0]["item"] == {"row": 1}
