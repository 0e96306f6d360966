"""The usage of a streamed answer: the model server's running counts
(`stream_options.continuous_usage_stats`, vLLM's option) and the API's relay of them
(`service.chat.relay`), which counts a stream its client leaves before the end.

Seen when tried: a SeekrFlow deployment's token totals missed every streamed answer whose client
stopped reading before the usage chunk (the relay counted only that last chunk)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from openrft.inference.app import create_app
from openrft.inference.backends import TransformersBackend
from openrft.inference.local import serve_in_thread
from openrft.service.chat import Shown, relay

HELLO = [{"role": "user", "content": "please rate this output"}]
RUNNING = {"include_usage": True, "continuous_usage_stats": True}


@pytest.fixture(scope="module")
def server(tiny_llama: Path) -> Any:
    with serve_in_thread(create_app(TransformersBackend(tiny_llama, name="tiny"))) as url:
        yield url


def body(**extra: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": HELLO, "temperature": 0, "max_tokens": 6, **extra}


def chunks_of(url: str, request: dict[str, Any]) -> list[dict[str, Any]]:
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=request, timeout=120) as reply:
        assert reply.status_code == 200, reply.read()
        lines = [line.removeprefix("data: ") for line in reply.iter_lines() if line]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_every_chunk_carries_the_usage_so_far(server: str) -> None:
    whole = httpx.post(f"{server}/v1/chat/completions", json=body(n=2), timeout=120).json()
    chunks = chunks_of(server, body(n=2, stream=True, stream_options=RUNNING))
    usages = [c["usage"] for c in chunks]
    assert all(isinstance(u, dict) for u in usages)
    assert {u["prompt_tokens"] for u in usages} == {whole["usage"]["prompt_tokens"]}
    completion = [u["completion_tokens"] for u in usages]
    assert completion == sorted(completion)  # a running count
    assert all(u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] for u in usages)
    content = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) > 2  # token by token, both choices
    assert content[0]["usage"]["completion_tokens"] == 2  # one greedy token, two choices
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == whole["usage"]
    assert content[-1]["usage"]["completion_tokens"] <= whole["usage"]["completion_tokens"]


def test_running_usage_needs_include_usage_as_in_vllm(server: str) -> None:
    alone = chunks_of(server, body(stream=True, stream_options={"continuous_usage_stats": True}))
    assert all("usage" not in c for c in alone)
    final = chunks_of(server, body(stream=True, stream_options={"include_usage": True}))
    assert all(c["usage"] is None for c in final[:-1])  # OpenAI's `usage: null` until the last
    assert final[-1]["usage"]["completion_tokens"] == 6


async def relayed(
    url: str, shown: Shown, leave_after: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """What the relay of a stream asked with running usage sends (`shown`), and what it counts;
    with `leave_after`, the client leaves after that many chunks."""
    counted: list[dict[str, Any]] = []
    request = body(stream=True, stream_options=RUNNING, max_tokens=12)
    async with httpx.AsyncClient(timeout=120) as client:
        upstream = client.build_request("POST", f"{url}/v1/chat/completions", json=request)
        answer = await client.send(upstream, stream=True)
        events = relay(answer, "shown-name", counted.append, shown)
        sent: list[str] = []
        async for event in events:
            sent.append(event)
            if leave_after is not None and len(sent) == leave_after:
                break
        await events.aclose()  # what the server does with a generator whose client left
    data = [e.removeprefix("data: ").strip() for e in sent]
    return [json.loads(d) for d in data if d != "[DONE]"], counted


def test_a_stream_left_early_is_counted_up_to_where_it_was(server: str) -> None:
    whole = httpx.post(f"{server}/v1/chat/completions", json=body(max_tokens=12), timeout=120)
    full = whole.json()["usage"]
    chunks, counted = asyncio.run(relayed(server, "none", leave_after=3))
    assert len(chunks) == 3  # the role chunk and two tokens
    assert all("usage" not in c for c in chunks)  # the caller did not ask for usage
    assert len(counted) == 1
    assert counted[0]["prompt_tokens"] == full["prompt_tokens"]
    assert 2 <= counted[0]["completion_tokens"] < full["completion_tokens"]


@pytest.mark.parametrize("shown", ["none", "final", "running"])
def test_a_whole_stream_is_counted_once_and_shows_what_was_asked(server: str, shown: Shown) -> None:
    whole = httpx.post(f"{server}/v1/chat/completions", json=body(max_tokens=12), timeout=120)
    chunks, counted = asyncio.run(relayed(server, shown))
    assert counted == [whole.json()["usage"]]
    assert {c["model"] for c in chunks} == {"shown-name"}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == whole.json()["choices"][0]["message"]["content"]
    if shown == "none":
        assert all("usage" not in c for c in chunks)
        assert all(c["choices"] for c in chunks)  # no usage chunk
    elif shown == "final":
        assert all(c["usage"] is None for c in chunks[:-1])
        assert chunks[-1]["usage"] == whole.json()["usage"]
    else:
        assert all(isinstance(c["usage"], dict) for c in chunks)
        assert chunks[-1]["usage"] == whole.json()["usage"]
