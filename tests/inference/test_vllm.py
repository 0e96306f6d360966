"""`VLLMBackend` on a real GPU: continuous batching, several LoRA adapters in one batch,
streaming, and decoding constrained to a regex (run only where a CUDA device is visible)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from openrft.inference.schemas import ChatRequest, Completion

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny word-level Llama vLLM's attention kernels take (head size 64)."""
    from tests.inference.conftest import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("vllm-tiny"), hidden_size=256)


def random_adapter(base: Path, path: Path, seed: int) -> str:
    """A LoRA checkpoint over `base` with random (non-zero) weights, as training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(path)
    return str(path)


LOOP = asyncio.new_event_loop()
"""One loop for the module: the engine's output handler lives on the loop it started in."""


def run(work: Any) -> Any:
    return LOOP.run_until_complete(work)


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> Any:
    pytest.importorskip("vllm")
    from openrft.inference.vllm_engine import VLLMBackend

    async def build() -> Any:
        return VLLMBackend(tiny_model, "tiny", max_tokens=16, max_adapters=2)

    return run(build())


def ask(adapter: str | None = None, **extra: Any) -> ChatRequest:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hello world"}]}
    return ChatRequest.model_validate({**body, "temperature": 0, "adapter": adapter, **extra})


def test_mixed_adapters_in_one_batch_answer_as_alone(
    backend: Any, tiny_model: Path, tmp_path: Path
) -> None:
    adapters = [random_adapter(tiny_model, tmp_path / f"a{i}", seed=i) for i in range(3)]
    requests = [ask(), *(ask(a) for a in adapters)]  # 3 adapters, 2 slots: one is evicted

    async def alone() -> list[Completion]:
        return [await backend.complete(r) for r in requests]

    async def together() -> list[Completion]:
        return list(await asyncio.gather(*(backend.complete(r) for r in requests)))

    one_by_one, batched = run(alone()), run(together())
    assert all(c.status == 200 for c in one_by_one + batched)
    assert [c.choices[0].text for c in batched] == [c.choices[0].text for c in one_by_one]
    assert [c.completion_tokens for c in batched] == [c.completion_tokens for c in one_by_one]
    assert len({c.choices[0].text for c in one_by_one}) > 1  # the adapters change the answer


def test_streamed_deltas_join_to_the_answer(backend: Any) -> None:
    from openrft.inference.schemas import Delta

    async def events() -> list[Any]:
        return [event async for event in backend.stream(ask())]

    streamed = run(events())
    final = streamed[-1]
    assert isinstance(final, Completion)
    assert final.status == 200
    text = "".join(e.text for e in streamed if isinstance(e, Delta))
    assert text == final.choices[0].text


def test_a_response_format_constrains_decoding(backend: Any) -> None:
    schema = {"type": "object", "properties": {"a": {"enum": ["yes", "no"]}}, "required": ["a"]}
    request = ask(response_format={"type": "json_schema", "json_schema": {"schema": schema}})
    completion = run(backend.complete(request))
    # the word-level vocabulary cannot spell quotes: the engine reports it, never free text
    if completion.status == 200:
        assert re.fullmatch(r'\{\s*"a"\s*:\s*"(yes|no)"\s*\}', completion.choices[0].text or "")


def test_a_missing_adapter_fails_alone(backend: Any, tmp_path: Path) -> None:
    async def both() -> list[Completion]:
        gone = ask(str(tmp_path / "no-such-adapter"))
        return list(await asyncio.gather(backend.complete(gone), backend.complete(ask())))

    failed, fine = run(both())
    assert failed.status == 500
    assert "cannot load the adapter" in (failed.error or "")
    assert fine.status == 200
