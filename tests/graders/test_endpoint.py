"""The endpoint grader against a real HTTP server on 127.0.0.1 standing in for a user service:
scores, retries, failures as data, secrets in headers (never the environment), the whole-attempt
deadline, the body and echo caps, and a tenant's context (outbound policy) end to end."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from openrft.graders import GradeContext, grade_batch, load_grader
from openrft.graders.context import OutboundPolicy
from openrft.graders.endpoint import MAX_EXTRA_BYTES
from openrft.inference.local import serve_in_thread

FAST = GradeContext(options={"endpoint_backoff": 0.01})


class Service:
    """A grading service that records what it received."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str, dict[str, Any]]] = []
        self.attempts: Counter[str] = Counter()
        self.app = FastAPI()
        self.app.post("/grade")(self.grade)
        self.app.post("/flaky")(self.flaky)
        self.app.post("/down")(self.down)
        self.app.post("/slow")(self.slow)
        self.app.post("/text")(self.text)
        self.app.post("/words")(self.words)
        self.app.post("/missing")(self.missing)
        self.app.post("/auth")(self.auth)
        self.app.post("/drip")(self.drip)
        self.app.post("/big")(self.big)
        self.app.post("/fat")(self.fat)
        self.app.post("/moved")(self.moved)

    async def _record(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.calls.append((time.monotonic(), request.url.path, body))
        self.attempts[body["trace_id"]] += 1
        return body

    async def grade(self, request: Request) -> dict[str, Any]:
        body = await self._record(request)
        return {"score": len(body["sample"]["output_text"]) / 10, "seen": body["item"]["id"]}

    async def flaky(self, request: Request) -> Response:
        body = await self._record(request)
        if self.attempts[body["trace_id"]] <= 2:
            return JSONResponse({"error": "busy"}, status_code=503)
        return JSONResponse({"score": 1})

    async def down(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"error": "boom"}, status_code=500)

    async def slow(self, request: Request) -> dict[str, Any]:
        await self._record(request)
        await asyncio.sleep(1)
        return {"score": 1}

    async def text(self, request: Request) -> Response:
        await self._record(request)
        return PlainTextResponse("not json")

    async def words(self, request: Request) -> dict[str, Any]:
        await self._record(request)
        return {"score": "high"}

    async def missing(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse({"detail": "no such grader"}, status_code=404)

    async def auth(self, request: Request) -> Response:
        await self._record(request)
        if request.headers.get("x-token") != "Bearer s3cret":
            return JSONResponse({"detail": "bad token"}, status_code=403)
        return JSONResponse({"score": 0.5})

    async def drip(self, request: Request) -> Response:
        """A valid answer, one byte every 0.2 s: no single read waits long, the whole takes 8 s."""
        await self._record(request)

        async def body() -> AsyncIterator[bytes]:
            for byte in b'{"score": 1}'.ljust(40):
                yield bytes([byte])
                await asyncio.sleep(0.2)

        return StreamingResponse(body(), media_type="application/json")

    async def big(self, request: Request) -> Response:
        await self._record(request)
        return Response(b'{"score": 1, "pad": "' + b"x" * 10_000_000 + b'"}')

    async def fat(self, request: Request) -> dict[str, Any]:
        await self._record(request)
        return {"score": 1, "small": 7, "huge": "y" * 500_000, "after": "kept"}

    async def moved(self, request: Request) -> Response:
        await self._record(request)
        return RedirectResponse("/grade", status_code=307)


@pytest.fixture
def service() -> Iterator[tuple[Service, str]]:
    svc = Service()
    with serve_in_thread(svc.app) as url:
        yield svc, url


def spec(url: str, **extra: Any) -> Any:
    return load_grader({"type": "endpoint", "name": "remote", "url": url, **extra})


def test_posts_sample_item_and_trace_id(service: tuple[Service, str]) -> None:
    svc, url = service
    results = grade_batch(
        spec(f"{url}/grade", pass_threshold=0.3), ["ab", "abcd"], [{"id": 1}, {"id": 2}], FAST
    )
    assert [r.reward for r in results] == [0.2, 0.4]
    assert [r.metadata.scores["passed"] for r in results] == [False, True]
    assert results[0].metadata.scores["seen"] == 1
    bodies = sorted((c[2] for c in svc.calls), key=lambda b: b["item"]["id"])
    assert bodies[0]["sample"]["output_text"] == "ab"
    assert bodies[0]["sample"]["output_answer"] == "ab"
    assert {b["trace_id"] for b in bodies} == {r.metadata.scores["trace_id"] for r in results}


def test_retries_keep_the_trace_id(service: tuple[Service, str]) -> None:
    svc, url = service
    result = grade_batch(spec(f"{url}/flaky"), ["x"], [{}], FAST)[0]
    assert result.reward == 1.0
    assert svc.attempts == {result.metadata.scores["trace_id"]: 3}


def test_server_down_is_unresponsive_after_three_retries(service: tuple[Service, str]) -> None:
    svc, url = service
    result = grade_batch(spec(f"{url}/down"), ["x"], [{}], FAST)[0]
    assert result.errors.flags() == ["unresponsive_reward_error"]
    assert "HTTP 500" in (result.errors.unresponsive_reward_error_details or "")
    assert len(svc.calls) == 4


def test_timeout_is_retried_then_flagged(service: tuple[Service, str]) -> None:
    svc, url = service
    result = grade_batch(spec(f"{url}/slow", timeout=0.2), ["x"], [{}], FAST)[0]
    assert result.errors.unresponsive_reward_error
    assert "timed out" in (result.errors.unresponsive_reward_error_details or "")
    assert len(svc.calls) == 4


@pytest.mark.parametrize(
    ("path", "needle"), [("text", "non-JSON"), ("words", "finite number"), ("missing", "HTTP 404")]
)
def test_bad_answers_are_other_errors(service: tuple[Service, str], path: str, needle: str) -> None:
    svc, url = service
    result = grade_batch(spec(f"{url}/{path}"), ["x"], [{}], FAST)[0]
    assert result.errors.flags() == ["other_error"]
    assert needle in (result.errors.other_error_details or "")
    assert len(svc.calls) == 1


def test_unreachable_endpoint_is_flagged() -> None:
    with serve_in_thread(FastAPI()) as url:
        pass  # the port is free again once the server has stopped
    result = grade_batch(spec(f"{url}/grade"), ["x"], [{}], FAST)[0]
    assert result.errors.unresponsive_reward_error
    assert "cannot reach" in (result.errors.unresponsive_reward_error_details or "")


def test_headers_expand_secrets_from_the_context(service: tuple[Service, str]) -> None:
    svc, url = service
    grader = spec(f"{url}/auth", headers={"X-Token": "Bearer ${secret:GRADER_TOKEN}"})
    unset = grade_batch(grader, ["x"], [{}], FAST)[0]
    with_secret = GradeContext(options=FAST.options, secrets={"GRADER_TOKEN": "s3cret"})
    ok = grade_batch(grader, ["x"], [{}], with_secret)[0]
    assert unset.errors.flags() == ["other_error"]
    assert "${secret:GRADER_TOKEN}, which this project has not set" in (
        unset.errors.other_error_details or ""
    )
    assert ok.reward == 0.5
    assert len(svc.calls) == 1  # the unset secret sent nothing


def test_environment_variables_are_never_read(
    service: tuple[Service, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    svc, url = service
    grader = spec(f"{url}/auth", headers={"X-Token": "Bearer ${GRADER_TOKEN}"})
    monkeypatch.delenv("GRADER_TOKEN", raising=False)
    unset = grade_batch(grader, ["x"], [{}], FAST)[0]
    monkeypatch.setenv("GRADER_TOKEN", "s3cret")
    set_ = grade_batch(grader, ["x"], [{}], FAST)[0]
    assert unset.errors.other_error_details == set_.errors.other_error_details
    assert "environment variables are never read" in (set_.errors.other_error_details or "")
    assert "${secret:GRADER_TOKEN}" in (set_.errors.other_error_details or "")
    assert svc.calls == []


def test_literal_headers_pass_through(service: tuple[Service, str]) -> None:
    _, url = service
    grader = spec(f"{url}/auth", headers={"X-Token": "Bearer s3cret"})
    assert grade_batch(grader, ["x"], [{}], FAST)[0].reward == 0.5


def test_a_dripping_answer_fails_at_the_whole_attempt_deadline(
    service: tuple[Service, str],
) -> None:
    svc, url = service
    result = grade_batch(spec(f"{url}/drip", timeout=0.6), ["x"], [{}], FAST)[0]
    assert result.errors.flags() == ["unresponsive_reward_error"]
    assert "timed out" in (result.errors.unresponsive_reward_error_details or "")
    assert len(svc.calls) == 4


def test_a_huge_answer_is_refused_unread_and_not_echoed(service: tuple[Service, str]) -> None:
    svc, url = service
    result = grade_batch(spec(f"{url}/big"), ["x"], [{}], FAST)[0]
    assert result.errors.flags() == ["other_error"]
    assert "response larger than 1 MiB" in (result.errors.other_error_details or "")
    assert len(result.model_dump_json()) < 2000
    assert len(svc.calls) == 1  # not retried


def test_big_extra_keys_are_left_out_of_the_scores(service: tuple[Service, str]) -> None:
    _, url = service
    result = grade_batch(spec(f"{url}/fat"), ["x"], [{}], FAST)[0]
    scores = result.metadata.scores
    assert (result.reward, scores["small"], scores["after"]) == (1.0, 7, "kept")
    assert "huge" not in scores
    assert (
        f"1 key(s) of the answer left out: together they exceed {MAX_EXTRA_BYTES}"
        in (scores["omitted"])
    )
    assert len(result.model_dump_json()) < MAX_EXTRA_BYTES + 1000


def test_redirects_are_not_followed(service: tuple[Service, str]) -> None:
    svc, url = service
    result = grade_batch(spec(f"{url}/moved"), ["x"], [{}], FAST)[0]
    assert result.errors.flags() == ["other_error"]
    assert [call[1] for call in svc.calls] == ["/moved"]


def tenant(*allow: str, **secrets: str) -> GradeContext:
    """A service tenant's context: restricted outbound calls, its own secrets."""
    return GradeContext(
        owner="project:p", secrets=secrets, outbound=OutboundPolicy(allow), options=FAST.options
    )


def test_a_tenant_reaches_an_allowed_local_endpoint_with_its_secret(
    service: tuple[Service, str],
) -> None:
    svc, url = service
    grader = spec(f"{url}/auth", headers={"X-Token": "Bearer ${secret:TOK}"})
    result = grade_batch(grader, ["x"], [{}], tenant("127.0.0.1", TOK="s3cret"))[0]
    assert result.reward == 0.5
    unset = grade_batch(grader, ["x"], [{}], tenant("127.0.0.1"))[0]
    assert "openrft secrets set --project p TOK" in (unset.errors.other_error_details or "")
    assert len(svc.calls) == 1


def test_a_tenant_may_not_reach_loopback_unless_allowed(service: tuple[Service, str]) -> None:
    svc, url = service
    result = grade_batch(spec(f"{url}/grade"), ["x", "y"], [{}, {}], tenant())
    for one in result:
        assert one.errors.flags() == ["other_error"]
        details = one.errors.other_error_details or ""
        assert "loopback" in details
        assert "--allow-grader-hosts 127.0.0.1" in details
    assert svc.calls == []


def test_rate_limit_spaces_requests(service: tuple[Service, str]) -> None:
    svc, url = service
    grader = spec(f"{url}/grade?rate-test", rate_limit=20)
    grade_batch(grader, ["x"] * 6, [{"id": i} for i in range(6)], FAST)
    grade_batch(grader, ["x"] * 4, [{"id": i} for i in range(4)], FAST)
    times = sorted(call[0] for call in svc.calls)
    # 10 requests at <= 20/s: the first and the last start at least 9 intervals (0.45 s) apart,
    # across both batches. Arrival jitter is allowed a little slack.
    assert times[-1] - times[0] >= 0.45 - 0.03
    assert len(times) == 10


def test_graders_run_cli(service: tuple[Service, str], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from openrft.cli import app

    _, url = service
    path = tmp_path / "endpoint.yaml"
    path.write_text(f"type: endpoint\nname: remote\nurl: {url}/grade\n")
    args = ["graders", "run", str(path), "--sample", "abc", "--item", '{"id": 7}']
    outcome = CliRunner().invoke(app, args)
    assert outcome.exit_code == 0, outcome.output
    result = json.loads(outcome.stdout)
    assert (result["reward"], result["metadata"]["scores"]["seen"]) == (0.3, 7)


def test_a_rollout_reaches_the_endpoint_with_its_whole_trajectory(
    service: tuple[Service, str],
) -> None:
    """An agent rollout's sample carries every turn (Agent RFT: the endpoint grades the trace)."""
    from openrft.graders.sample import Sample

    svc, url = service
    messages = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "add", "arguments": {"a": 1}}}
            ],
        },
        {"role": "tool", "name": "add", "content": "3"},
        {"role": "assistant", "content": "It is 3"},
    ]
    [result] = grade_batch(
        spec(f"{url}/grade"), [Sample.from_trajectory(messages)], [{"id": 1}], FAST
    )
    sample = svc.calls[0][2]["sample"]
    assert sample["output_text"] == "It is 3"
    assert sample["turns"] == 2
    assert sample["trajectory"][1] == {"role": "tool", "name": "add", "content": "3"}
    assert sample["output_tools"][0]["output"] == "3"
    assert result.reward == 0.7
