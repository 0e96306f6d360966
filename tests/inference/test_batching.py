"""Batched generation in `TransformersBackend`: concurrent requests share one `model.generate`
and get the answers (and usage) they would get one by one; token-by-token streaming with the
`openai` SDK; and the model-server subprocess `openrft serve` starts, batching over real HTTP.

The gather window is set far longer than any test (a hang guard only): a batch starts when it
is full (`max_batch_rows`), so how many `generate` calls a test sees does not depend on timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from openrft.inference.app import create_app
from openrft.inference.backends import TransformersBackend
from openrft.inference.local import serve_in_thread
from openrft.inference.schemas import ChatRequest, Choice

FOREVER = 600.0
"""A gather window no test waits out: batches start when full."""
PROMPTS = ["please rate this output", "hello world", "the answer is", "one two three four five"]


def body(prompt: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": prompt}], **extra}


async def post_all(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=120) as client:
        posts = (client.post(f"{url}/v1/chat/completions", json=b) for b in bodies)
        return list(await asyncio.gather(*posts))


def one_by_one(backend: TransformersBackend, bodies: list[dict[str, Any]]) -> list[Any]:
    return [backend.generate(ChatRequest.model_validate(b)) for b in bodies]


def test_concurrent_greedy_requests_share_one_generate(tiny_llama: Path) -> None:
    bodies = [body(p, temperature=0, max_tokens=3 + i, n=1 + i % 2) for i, p in enumerate(PROMPTS)]
    backend = TransformersBackend(tiny_llama, batch_window=FOREVER, max_batch_rows=len(bodies))
    with serve_in_thread(create_app(backend)) as url:
        answers = [a.json() for a in asyncio.run(post_all(url, bodies))]
        health = httpx.get(f"{url}/health").json()
    assert (health["generate_calls"], health["batched_requests"]) == (1, len(bodies))
    alone = one_by_one(backend, bodies)  # in this thread, one `generate` each
    assert backend.generate_calls == 1 + len(bodies)
    for answer, expected, sent in zip(answers, alone, bodies, strict=True):
        texts = [c["message"]["content"] for c in answer["choices"]]
        assert texts == [c.text for c in expected.choices]
        assert len(texts) == sent["n"]
        assert [c["finish_reason"] for c in answer["choices"]] == ["length"] * sent["n"]
        assert answer["usage"]["prompt_tokens"] == expected.prompt_tokens
        assert answer["usage"]["completion_tokens"] == expected.completion_tokens
    # each row is cut at its own limit: the tiny model never ends by itself
    assert [a["usage"]["completion_tokens"] for a in answers] == [3, 8, 5, 12]


def first_new_word(text: str) -> tuple[int, str]:
    """The index and text of the first word (after the first) not seen before it."""
    words = text.split()
    return next((i, w) for i, w in enumerate(words) if i > 0 and w not in words[:i])


def test_stop_strings_cut_each_row(tiny_llama: Path) -> None:
    backend = TransformersBackend(tiny_llama, batch_window=FOREVER, max_batch_rows=2)
    free = str(
        one_by_one(backend, [body(PROMPTS[0], temperature=0, max_tokens=8)])[0].choices[0].text
    )
    index, word = first_new_word(free)
    bodies = [
        body(PROMPTS[0], temperature=0, max_tokens=8, stop=["zzz", " " + word]),
        body(PROMPTS[1], temperature=0, max_tokens=8),
    ]
    with serve_in_thread(create_app(backend)) as url:
        stopped, other = (a.json() for a in asyncio.run(post_all(url, bodies)))
    assert backend.generate_calls == 2
    choice = stopped["choices"][0]
    assert choice["message"]["content"] == " ".join(free.split()[:index])
    assert choice["finish_reason"] == "stop"
    assert stopped["usage"]["completion_tokens"] == index + 1  # stopped at the stop string
    assert other["choices"][0]["finish_reason"] == "length"  # its row went on to its limit
    assert other["usage"]["completion_tokens"] == 8


def test_only_compatible_requests_share_a_batch() -> None:
    from openrft.inference.batching import Job, batch_key, gather

    def job(**extra: Any) -> Job:
        request = ChatRequest.model_validate(body("x", **extra))
        return Job(request, [1], 4, batch_key(request), Choice)

    greedy, hot, warm, seeded = (
        job(temperature=0),
        job(temperature=1),
        job(temperature=0.5),
        job(seed=1),
    )
    adapters = [job(temperature=0, adapter=f"/a{i}") for i in range(3)]
    pending = [greedy, hot, warm, job(temperature=0, n=3), seeded, job(temperature=1), *adapters]
    assert gather(pending, max_rows=16, max_adapters=2) == [greedy, pending[3], *adapters[:2]]
    assert gather(pending, max_rows=2, max_adapters=2) == [greedy, pending[3]]
    assert gather(pending[1:], max_rows=16, max_adapters=2) == [hot, pending[5]]
    assert gather([seeded, job(seed=1)], max_rows=16, max_adapters=2) == [seeded]
    assert gather([job(n=16)], max_rows=4, max_adapters=1)[0].rows == 16  # too big: alone


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "static"])
def test_sampling_requests_batch_and_seeded_ones_run_alone(
    tiny_llama: Path, continuous: bool
) -> None:
    backend = TransformersBackend(
        tiny_llama, batch_window=FOREVER, max_batch_rows=4, continuous=continuous
    )
    assert backend.continuous == continuous
    sampled = [body(p, temperature=0.7, max_tokens=4, n=2) for p in PROMPTS[:2]]
    with serve_in_thread(create_app(backend)) as url:
        answers = [a.json() for a in asyncio.run(post_all(url, sampled))]
        assert backend.generate_calls == 1  # 2 requests x n=2 rows fill one batch
        backend.scheduler.window = 0.0
        seeded = body(PROMPTS[0], temperature=1.0, seed=5, max_tokens=6, n=2)
        twice = [a.json() for a in asyncio.run(post_all(url, [seeded, seeded]))]
    assert [len(a["choices"]) for a in answers] == [2, 2]
    for answer in answers:  # 4 tokens a choice, unless one samples the end-of-sequence token
        used = answer["usage"]["completion_tokens"]
        assert 2 <= used <= 8
        if all(c["finish_reason"] == "length" for c in answer["choices"]):
            assert used == 8
    assert backend.generate_calls == 3  # each seeded request alone
    assert twice[0]["choices"] == twice[1]["choices"]


def test_streaming_sends_token_deltas_that_join_to_the_answer(tiny_llama: Path) -> None:
    backend = TransformersBackend(tiny_llama, name="tiny")
    request: dict[str, Any] = {
        "model": "tiny",
        "messages": [{"role": "user", "content": PROMPTS[0]}],
        "temperature": 0,
        "max_tokens": 6,
        "n": 2,
    }
    with serve_in_thread(create_app(backend)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        whole = client.chat.completions.create(**request)
        chunks = list(
            client.chat.completions.create(
                **request, stream=True, stream_options={"include_usage": True}
            )
        )
        index, word = first_new_word(str(whole.choices[0].message.content))
        cut = list(client.chat.completions.create(**request, stop=" " + word, stream=True))
        client.close()
    for index in (0, 1):
        deltas = [
            c.choices[0].delta.content
            for c in chunks
            if c.choices and c.choices[0].index == index and c.choices[0].delta.content
        ]
        assert len(deltas) > 1  # one per generated token (a word each)
        assert "".join(deltas) == whole.choices[index].message.content
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-2:] == ["length", "length"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    text = "".join(c.choices[0].delta.content or "" for c in cut if c.choices[0].index == 0)
    assert text == " ".join(str(whole.choices[0].message.content).split()[:index])
    assert [c.choices[0].finish_reason for c in cut if c.choices][-1] == "stop"


def test_streams_of_concurrent_requests_are_batched(tiny_llama: Path) -> None:
    backend = TransformersBackend(tiny_llama, batch_window=FOREVER, max_batch_rows=3)
    requests = [
        {"model": "m", "messages": [{"role": "user", "content": p}], "temperature": 0}
        for p in PROMPTS[:3]
    ]

    async def stream_all(url: str) -> list[str]:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0) as c:

            async def one(request: dict[str, Any]) -> str:
                stream = await c.chat.completions.create(**request, max_tokens=5, stream=True)
                return "".join([x.choices[0].delta.content or "" async for x in stream])

            return list(await asyncio.gather(*(one(r) for r in requests)))

    with serve_in_thread(create_app(backend)) as url:
        streamed = asyncio.run(stream_all(url))
    assert backend.generate_calls == 1
    alone = one_by_one(backend, [{**r, "max_tokens": 5} for r in requests])
    assert streamed == [a.choices[0].text for a in alone]


def test_model_server_subprocess_batches_concurrent_requests(
    tiny_llama: Path, tmp_path: Path
) -> None:
    from tests.inference.test_serve_model import free_port, wait_healthy

    port, key = free_port(), "test-key"
    command = [sys.executable, "-m", "openrft.inference", str(tiny_llama), "--port", str(port)]
    command += ["--batch-window-ms", str(FOREVER * 1000), "--max-batch-rows", "4"]
    log = (tmp_path / "server.log").open("wb")
    env = {**os.environ, "OPENRFT_MODEL_SERVER_KEY": key}
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)

        async def ask_all() -> list[Any]:
            async with openai.AsyncOpenAI(
                base_url=f"{url}/v1", api_key=key, max_retries=0
            ) as client:
                asks = (
                    client.chat.completions.create(
                        model="tiny",
                        messages=[{"role": "user", "content": PROMPTS[i % 4]}],
                        temperature=0,
                        max_tokens=4,
                    )
                    for i in range(8)
                )
                return list(await asyncio.gather(*asks))

        replies = asyncio.run(ask_all())
        health = httpx.get(f"{url}/health").json()
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()
    # 4 rows fill the batch; the other 4 requests join it as its rows end (or, on a machine
    # slow enough that they come after it ended, start a second batch)
    assert health["batched_requests"] == 8
    assert health["generate_calls"] in (1, 2)
    texts = [r.choices[0].message.content for r in replies]
    assert texts[:4] == texts[4:]  # the same prompts in either group: the same answers
    assert all(r.usage is not None and r.usage.completion_tokens == 4 for r in replies)


@pytest.mark.parametrize("stream", [False, True])
def test_an_adapter_that_fails_to_load_is_a_json_error(
    tiny_llama: Path, tmp_path: Path, stream: bool
) -> None:
    backend = TransformersBackend(tiny_llama, max_adapters=1)
    request = body(PROMPTS[0], adapter=str(tmp_path / "gone"), stream=stream)
    with serve_in_thread(create_app(backend)) as url:
        failed = httpx.post(f"{url}/v1/chat/completions", json=request, timeout=60)
    assert failed.status_code == 500
    assert failed.headers["content-type"].startswith("application/json")
    assert failed.json()["error"]["message"].startswith("cannot load the adapter")


FLAG = {
    "type": "function",
    "function": {
        "name": "flag",
        "parameters": {
            "type": "object",
            "properties": {"on": {"type": "boolean"}},
            "required": ["on"],
            "additionalProperties": False,
        },
    },
}


def test_tool_calls_batch_with_plain_rows_and_stream_whole(tmp_path: Path) -> None:
    from openrft.training.models import build_tiny_model

    # byte-level BPE: its vocabulary can spell the JSON a tool call is constrained to
    backend = TransformersBackend(
        build_tiny_model(tmp_path / "tiny"), batch_window=FOREVER, max_batch_rows=2
    )
    tools: dict[str, Any] = {"tools": [FLAG], "tool_choice": "required", "max_tokens": 100}
    plain = body("What is 1 + 1?", temperature=0, max_tokens=6)
    with serve_in_thread(create_app(backend)) as url:
        called, free = (
            a.json() for a in asyncio.run(post_all(url, [body("x", temperature=0, **tools), plain]))
        )
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="-", max_retries=0)
        backend.scheduler.max_rows = 1
        chunks = list(
            client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "x"}], stream=True, **tools
            )
        )
        client.close()
    assert backend.generate_calls == 2  # the constrained row and the free one shared a batch
    choice = called["choices"][0]
    assert (choice["message"]["content"], choice["finish_reason"]) == (None, "tool_calls")
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "flag"
    assert json.loads(call["function"]["arguments"]) in ({"on": True}, {"on": False})
    assert (
        free["choices"][0]["message"]["content"] == one_by_one(backend, [plain])[0].choices[0].text
    )
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any(d.content for d in deltas)  # a tool call is sent whole, at the end
    [streamed] = [d.tool_calls for d in deltas if d.tool_calls]
    assert streamed[0].function is not None
    assert streamed[0].function.name == "flag"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


@pytest.mark.parametrize("continuous", [True, False], ids=["continuous", "static"])
def test_a_waiting_request_does_not_sit_out_the_longest_row(
    tiny_llama: Path, continuous: bool
) -> None:
    backend = TransformersBackend(
        tiny_llama, batch_window=FOREVER, max_batch_rows=2, continuous=continuous
    )
    bodies = [
        body(p, temperature=0, max_tokens=n) for p, n in zip(PROMPTS[:3], (2, 4, 12), strict=True)
    ]

    async def answer_all() -> list[Any]:
        with backend._lock:  # hold generation until two requests are taken and one waits
            asks = []
            for i, b in enumerate(bodies):
                # one at a time: each request reaches the scheduler before the next is sent, so
                # the FIFO order (and the step count below) does not depend on thread timing
                asks.append(asyncio.create_task(backend.complete(ChatRequest(**b))))
                for _ in range(6000):  # a hang guard, not a timing assumption
                    if backend.scheduler.submitted == i + 1:
                        break
                    await asyncio.sleep(0.01)
            for _ in range(6000):
                if len(backend.scheduler._pending) == 1:
                    break
                await asyncio.sleep(0.01)
        return list(await asyncio.gather(*asks))

    answers = asyncio.run(answer_all())
    if continuous:
        # the 2-token row ends and the waiting request takes its place in the running batch:
        # one batch; 1 prefill + 1 step, 1 prefill + 11 steps of the 12-token row
        assert (backend.generate_calls, backend.batched_requests) == (1, 3)
        assert backend.decode_steps == 14
    else:
        # the shorter row of the first batch ends; the batch is suspended for the waiting
        # request and its longer row resumed with it: 2 calls, not 3 one after another
        assert (backend.generate_calls, backend.batched_requests) == (2, 3)
    alone = one_by_one(backend, bodies)
    assert [a.choices[0].text for a in answers] == [a.choices[0].text for a in alone]
    assert [a.completion_tokens for a in answers] == [2, 4, 12]
    assert [a.prompt_tokens for a in answers] == [a.prompt_tokens for a in alone]
