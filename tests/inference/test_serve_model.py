"""`openrft serve-model` over real HTTP: the scripted backend (exact answers), a tiny random-weight
Llama through transformers, a LoRA checkpoint, the `openai` SDK as client, and the CLI."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from openrft.graders import GradeContext, grade_batch, load_grader
from openrft.inference.app import create_app
from openrft.inference.backends import TransformersBackend
from openrft.inference.local import serve_in_thread
from openrft.inference.schemas import ChatRequest
from openrft.inference.scripted import Script, ScriptedBackend
from openrft.inference.structured import prepare

SCRIPT = {
    "default": "fallback",
    "rules": [
        {"match": r"echo (\w+)", "reply": "you said $1"},
        {"match": "busy", "status": 429, "retry_after": 2},
    ],
}


def scripted() -> ScriptedBackend:
    return ScriptedBackend(Script.model_validate(SCRIPT))


def chat(url: str, **body: Any) -> httpx.Response:
    body.setdefault("model", "any")
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)


def test_openai_sdk_talks_to_the_scripted_server() -> None:
    import openai

    with serve_in_thread(create_app(scripted())) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        reply = client.chat.completions.create(
            model="judge", messages=[{"role": "user", "content": "echo hi"}], n=2
        )
        models = client.models.list()
        client.close()
    assert [c.message.content for c in reply.choices] == ["you said hi", "you said hi"]
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (2, 6)
    assert [m.id for m in models.data] == ["scripted"]


def test_errors_have_openai_shape() -> None:
    with serve_in_thread(create_app(scripted())) as url:
        invalid = chat(url, messages=[])
        busy = chat(url, messages=[{"role": "user", "content": "busy"}])
        busy_stream = chat(url, messages=[{"role": "user", "content": "busy"}], stream=True)
        health = httpx.get(f"{url}/health")
    assert invalid.status_code == 400
    assert invalid.json()["error"]["type"] == "invalid_request_error"
    assert busy.status_code == busy_stream.status_code == 429  # before the stream's first byte
    assert busy_stream.json() == busy.json()
    assert busy.headers["retry-after"] == "2"
    assert health.json() == {"status": "ok", "model": "scripted"}


def test_openai_sdk_raises_its_typed_errors_with_string_codes() -> None:
    import openai

    with serve_in_thread(create_app(scripted(), api_key="k")) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="k", max_retries=0)
        with pytest.raises(openai.NotFoundError) as unknown_model:
            client.models.retrieve("no-such-model")
        served = client.models.retrieve("scripted")
        with pytest.raises(openai.BadRequestError) as invalid:
            client.chat.completions.create(model="judge", messages=[])
        streamed = client.chat.completions.create(
            model="judge", messages=[{"role": "user", "content": "echo hi"}], stream=True, n=2
        )
        streamed_text = [
            "".join(c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == i)
            for chunks in [list(streamed)]
            for i in (0, 1)
        ]
        with pytest.raises(openai.RateLimitError) as busy:
            client.chat.completions.create(
                model="judge", messages=[{"role": "user", "content": "busy"}]
            )
        with pytest.raises(openai.NotFoundError) as unserved:  # no legacy completions here
            client.completions.create(model="judge", prompt="x")
        client.close()
        wrong_key = openai.OpenAI(base_url=f"{url}/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            wrong_key.models.list()
        wrong_key.close()
    assert (unknown_model.value.code, unknown_model.value.param) == ("model_not_found", "model")
    assert served.id == "scripted"
    assert (invalid.value.code, invalid.value.param) == ("invalid_request", "messages")
    assert streamed_text == ["you said hi", "you said hi"]  # a backend that cannot stream
    assert busy.value.code == "rate_limit_exceeded"
    assert busy.value.response.headers["retry-after"] == "2"
    assert unserved.value.type == "not_found_error"
    assert refused.value.code == "invalid_api_key"


def test_backend_failures_answer_in_the_openai_envelope() -> None:
    script = {"rules": [{"match": "down", "status": 503, "retry_after": 1}]}
    backend = ScriptedBackend(Script.model_validate(script))
    with serve_in_thread(create_app(backend)) as url:
        down = chat(url, messages=[{"role": "user", "content": "down"}])
    assert down.status_code == 503
    assert down.headers["retry-after"] == "1"
    assert down.json() == {
        "error": {
            "message": "scripted HTTP 503 for rule 'down'",
            "type": "server_error",
            "param": None,
            "code": "backend_error",
        }
    }


def test_api_key_is_required_when_set() -> None:
    with serve_in_thread(create_app(scripted(), api_key="k")) as url:
        without = httpx.get(f"{url}/v1/models")
        with_key = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer k"})
    assert (without.status_code, with_key.status_code) == (401, 200)


def test_tiny_llama_answers_like_direct_generation(tiny_llama: Path) -> None:
    import torch

    backend = TransformersBackend(tiny_llama, name="tiny")
    messages = [{"role": "user", "content": "please rate this output"}]
    request = ChatRequest.model_validate({"model": "m", "messages": messages})
    prompt = prepare(request, backend.tokenizer).prompt
    ids = backend.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        direct = backend.model.generate(**ids, do_sample=False, max_new_tokens=6, pad_token_id=0)
    expected = backend.tokenizer.decode(
        direct[0, ids["input_ids"].shape[1] :], skip_special_tokens=True
    )
    with serve_in_thread(create_app(backend)) as url:
        greedy = chat(url, messages=messages, temperature=0, max_tokens=6, n=2).json()
        seeded = [
            chat(url, messages=messages, seed=7, max_tokens=6).json()["choices"][0]["message"][
                "content"
            ]
            for _ in range(2)
        ]
    assert greedy["model"] == "tiny"
    assert [c["message"]["content"] for c in greedy["choices"]] == [expected, expected]
    assert greedy["usage"]["prompt_tokens"] == ids["input_ids"].shape[1]
    assert greedy["usage"]["completion_tokens"] <= 12
    assert seeded[0] == seeded[1]


def test_json_response_format_is_prompted() -> None:
    request = ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"schema": {"type": "object"}},
            },
        }
    )
    system, user = request.plain_messages()
    assert system["role"] == "system"
    assert '{"type":"object"}' in system["content"]
    assert user == {"role": "user", "content": "hi"}


# peft 0.21 still reads transformers' deprecated `is_gradient_checkpointing`; not ours to fix.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_lora_checkpoint_is_merged_and_served(tiny_llama: Path, tmp_path: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama)
    base_weight = base.model.layers[0].self_attn.q_proj.weight.detach().clone()
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(1)
    for name, param in peft_model.named_parameters():
        if "lora_B" in name:  # peft starts B at zero (a no-op adapter); make it do something
            param.data.normal_()
    checkpoint = tmp_path / "checkpoint-1"
    peft_model.save_pretrained(checkpoint)
    assert json.loads((checkpoint / "adapter_config.json").read_text())["base_model_name_or_path"]

    backend = TransformersBackend(checkpoint)
    merged = backend.model.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(merged, base_weight)
    with serve_in_thread(create_app(backend)) as url:
        answer = chat(url, messages=[{"role": "user", "content": "hello"}], max_tokens=4).json()
    assert answer["model"] == "checkpoint-1"
    assert answer["usage"]["completion_tokens"] <= 4


def test_a_tiny_model_is_a_real_judge_for_score_model(tmp_path: Path) -> None:
    from openrft.training.models import build_tiny_model

    # byte-level BPE: its vocabulary can spell the JSON the judge's answer is constrained to
    tiny = build_tiny_model(tmp_path / "tiny")
    spec = load_grader(
        {
            "type": "score_model",
            "name": "judge",
            "model": "tiny",
            "input": [{"role": "user", "content": "rate {{ sample.output_text }}"}],
            "sampling_params": {"temperature": 0, "max_completions_tokens": 5},
        }
    )
    with serve_in_thread(create_app(TransformersBackend(tiny, name="tiny"))) as url:
        context = GradeContext(judges={"tiny": {"base_url": f"{url}/v1"}})
        results = grade_batch(spec, ["good", "bad"], [{}, {}], context)
    for result in results:  # random weights: the answer is noise, but the round trip is real
        assert not result.errors.model_grader_server_error
        assert result.model_grader_token_usage_per_model["tiny"]["completion_tokens"] <= 5
        assert result.metadata.sampled_model_name == "tiny"


def wait_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    """Wait (at most 120 s, a hang guard) until the server at `url` answers `/health`."""
    for _ in range(1200):
        assert server.poll() is None, "the server exited"
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not become healthy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_cli_serves_a_script(tmp_path: Path) -> None:
    script = tmp_path / "judge.yaml"
    script.write_text('default: \'{"steps": [], "result": 1}\'\n')
    port = free_port()
    command = [sys.executable, "-m", "openrft.cli.serve_model", "--scripted", str(script)]
    server = subprocess.Popen([*command, "--port", str(port), "--name", "j"])
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(f"{url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        answer = chat(url, messages=[{"role": "user", "content": "x"}]).json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert answer["choices"][0]["message"]["content"] == '{"steps": [], "result": 1}'
    assert answer["model"] == "j"


@pytest.mark.parametrize("args", [[], ["some-model", "--scripted", "x.yaml"]])
def test_cli_needs_exactly_one_source(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openrft.cli.serve_model", *args], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "--scripted" in done.stderr


def test_cli_bad_script_exits_2_with_every_problem(tmp_path: Path) -> None:
    script = tmp_path / "judge.yaml"
    script.write_text("rules:\n  - match: x\n    status: 200\n    colour: red\n")
    done = subprocess.run(
        [sys.executable, "-m", "openrft.cli.serve_model", "--scripted", str(script)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1
    assert "rules.0.status" in done.stderr
    assert "rules.0.colour" in done.stderr
