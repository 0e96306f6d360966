"""Chat completions on a real `openrft serve`, with the official `openai` SDK: a registered base
model, a job's `ft:` model and its checkpoint models (LoRA adapters over the base model's one
server), streaming, tenancy, a model that cannot load, and a model server that dies."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.service.conftest import MULTI, Server, arithmetic_rows, jsonl, tiny_training, wait_for

from openrft.service import tenancy

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "What is 1 + 1?"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Any]]:
    """A server with one worker, the tiny model registered as `tiny` (and a model that cannot
    load as `broken`), and one finished LoRA job with two checkpoints."""
    from openrft.training.models import build_tiny_model

    root = tmp_path_factory.mktemp("chat")
    tiny = build_tiny_model(root / "tiny")
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no-such-architecture"}')
    server = Server(root / "data", workers=1)
    try:
        server.register_model("tiny", str(tiny))
        server.register_model("broken", str(broken))
        with server.client("alpha") as client:
            job = finished_job(client)
        assert job.status == "succeeded", (server.data_dir / "server.log").read_text()
        yield server, job
    finally:
        server.stop()


def finished_job(client: openai.OpenAI) -> Any:
    train = client.files.create(
        file=("train.jsonl", jsonl(arithmetic_rows(8))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        method={"type": "reinforcement", "reinforcement": {"grader": MULTI}},  # type: ignore[typeddict-item]
        extra_body={"openrft": tiny_training(2, 2)},
    )
    final = ("succeeded", "failed", "cancelled")
    wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status in final)
    return client.fine_tuning.jobs.retrieve(job.id)


@pytest.fixture
def alpha(served: tuple[Server, Any]) -> Iterator[openai.OpenAI]:
    """A client of project `alpha` (the job's), closed after the test, not by the GC."""
    with served[0].client("alpha") as client:
        yield client


def text_of(reply: Any) -> list[str]:
    return [choice.message.content for choice in reply.choices]


def test_chat_with_a_registered_base_model(alpha: openai.OpenAI) -> None:
    reply = alpha.chat.completions.create(
        model="tiny", messages=HELLO, temperature=0, max_completion_tokens=4, n=2
    )
    seeded = [
        alpha.chat.completions.create(model="tiny", messages=HELLO, seed=3, max_tokens=4)
        for _ in range(2)
    ]
    assert reply.object == "chat.completion"
    assert reply.model == "tiny"
    assert len(reply.choices) == 2
    assert reply.choices[0].message.content == reply.choices[1].message.content
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    assert 0 < reply.usage.completion_tokens <= 2 * 5
    assert text_of(seeded[0]) == text_of(seeded[1])


def test_models_lists_base_ft_and_checkpoint_models(
    served: tuple[Server, Any], alpha: openai.OpenAI
) -> None:
    _, job = served
    checkpoints = alpha.fine_tuning.jobs.checkpoints.list(job.id).data
    ids = {model.id for model in alpha.models.list().data}
    assert len(checkpoints) == 2
    assert {"tiny", job.fine_tuned_model} <= ids
    assert {c.fine_tuned_model_checkpoint for c in checkpoints} <= ids
    step = checkpoints[0].fine_tuned_model_checkpoint
    assert step.startswith(f"{job.fine_tuned_model}:ckpt-step-")
    assert alpha.models.retrieve(step).id == step


def test_chat_with_ft_and_checkpoint_models(
    served: tuple[Server, Any], alpha: openai.OpenAI
) -> None:
    server, job = served
    names = [job.fine_tuned_model]
    names += [
        c.fine_tuned_model_checkpoint for c in alpha.fine_tuning.jobs.checkpoints.list(job.id)
    ]
    for name in names:
        reply = alpha.chat.completions.create(
            model=name, messages=HELLO, temperature=0, max_completion_tokens=4
        )
        assert reply.model == name
        assert reply.usage is not None
        assert reply.usage.completion_tokens <= 5
    base_again = alpha.chat.completions.create(
        model="tiny", messages=HELLO, temperature=0, max_completion_tokens=4
    )
    assert base_again.model == "tiny"
    # one server for the base model serves all of them (adapters over one resident model)
    assert len(list((server.data_dir / "model-servers").glob("*.pid"))) == 1


def test_streaming_sends_openai_chunks(served: tuple[Server, Any], alpha: openai.OpenAI) -> None:
    _, job = served
    request: dict[str, Any] = {
        "model": job.fine_tuned_model,
        "messages": HELLO,
        "temperature": 0,
        "max_completion_tokens": 8,
    }
    whole = alpha.chat.completions.create(**request)
    stream = alpha.chat.completions.create(
        **request, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert {c.object for c in chunks} == {"chat.completion.chunk"}
    assert {c.model for c in chunks} == {job.fine_tuned_model}
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks if c.choices]
    assert len([d for d in deltas if d]) > 1  # token by token, not the whole text at once
    assert "".join(d or "" for d in deltas) == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_streaming_stops_at_a_stop_string(alpha: openai.OpenAI) -> None:
    request: dict[str, Any] = {"model": "tiny", "messages": HELLO, "temperature": 0}
    whole = str(alpha.chat.completions.create(**request, max_tokens=12).choices[0].message.content)
    assert len(whole) >= 4, whole
    stop = whole[2:4]
    stream = alpha.chat.completions.create(**request, max_tokens=12, stop=[stop], stream=True)
    chunks = [c for c in stream if c.choices]
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == whole[: whole.find(stop)]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_stream_that_fails_before_its_first_byte_is_a_json_error(
    served: tuple[Server, Any],
) -> None:
    server, _ = served
    body = {"model": "broken", "messages": HELLO, "stream": True}
    headers = {"Authorization": f"Bearer {server.key('alpha')}"}
    failed = httpx.post(
        f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=120
    )
    assert failed.status_code == 500
    assert failed.headers["content-type"].startswith("application/json")
    assert failed.json()["error"]["code"] == "model_load_failed"


def test_raw_stream_ends_with_done(served: tuple[Server, Any]) -> None:
    server, _ = served
    body = {"model": "tiny", "messages": HELLO, "max_tokens": 3, "stream": True}
    headers = {"Authorization": f"Bearer {server.key('alpha')}"}
    with httpx.stream(
        "POST", f"{server.base_url}/chat/completions", json=body, headers=headers, timeout=60
    ) as answer:
        assert answer.headers["content-type"].startswith("text/event-stream")
        events = [line for line in answer.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0].removeprefix("data: "))
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}


def test_another_projects_models_are_not_found(served: tuple[Server, Any]) -> None:
    server, job = served
    with server.client("beta") as other:
        with pytest.raises(openai.NotFoundError) as chat:
            other.chat.completions.create(model=job.fine_tuned_model, messages=HELLO)
        with pytest.raises(openai.NotFoundError) as retrieve:
            other.models.retrieve(job.fine_tuned_model)
        with pytest.raises(openai.NotFoundError) as unknown:
            other.chat.completions.create(model="no-such-model", messages=HELLO)
        listed = {m.id for m in other.models.list().data}
    assert chat.value.code == retrieve.value.code == unknown.value.code == "model_not_found"
    assert job.fine_tuned_model not in listed


def test_a_model_that_fails_to_load_is_a_clear_500(
    served: tuple[Server, Any], alpha: openai.OpenAI
) -> None:
    with pytest.raises(openai.InternalServerError) as failed:
        alpha.chat.completions.create(model="broken", messages=HELLO)
    assert failed.value.code == "model_load_failed"
    assert "'broken' failed to load" in failed.value.message
    assert "no-such-architecture" in failed.value.message
    assert str(served[0].data_dir.parent) not in failed.value.message  # no server path


def test_bad_requests_are_400(alpha: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as empty:
        alpha.chat.completions.create(model="tiny", messages=[])
    assert empty.value.param == "messages"


def test_a_dead_model_server_is_restarted(served: tuple[Server, Any], alpha: openai.OpenAI) -> None:
    server, _ = served
    alpha.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2)
    stem = hashlib.sha256(registered_source(server, "tiny").encode()).hexdigest()[:16]
    pid = int((server.data_dir / "model-servers" / f"{stem}.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not running(pid))
    reply = alpha.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2)
    assert reply.model == "tiny"


def registered_source(server: Server, name: str) -> str:
    store = server.store()
    try:
        return tenancy.models(store)[name]
    finally:
        store.engine.dispose()


def running(pid: int) -> bool:
    """Whether `pid` still runs (a killed child is a zombie until the service reaps it)."""
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_model_still_loading_is_a_503_not_a_hang(make_server: Any, tmp_path: Path) -> None:
    from openrft.training.models import build_tiny_model

    # a model server cannot even start Python in a millisecond: the wait always runs out
    server: Server = make_server(OPENRFT_CHAT_LOAD_TIMEOUT_SECONDS="0.001")
    server.register_model("tiny", str(build_tiny_model(tmp_path / "tiny")))
    with server.client("alpha") as client, pytest.raises(openai.InternalServerError) as loading:
        client.chat.completions.create(model="tiny", messages=HELLO, max_tokens=2)
    assert loading.value.status_code == 503
    assert loading.value.code == "model_loading"
    assert loading.value.response.headers["retry-after"] == "5"
