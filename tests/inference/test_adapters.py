"""LoRA adapters loaded on demand over one resident base model (what `openrft serve` routes `ft:`
and checkpoint models to): the same answers as the merged checkpoint, LRU eviction, the base
model unchanged in between, and refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from openrft.inference.app import create_app
from openrft.inference.backends import TransformersBackend
from openrft.inference.local import serve_in_thread
from openrft.inference.schemas import ChatRequest

# peft 0.21 still reads transformers' deprecated `is_gradient_checkpointing`; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)

MESSAGES = [{"role": "user", "content": "please rate this output"}]


def answer(backend: TransformersBackend, adapter: Path | None = None) -> str:
    body: dict[str, Any] = {"model": "m", "messages": MESSAGES, "temperature": 0, "max_tokens": 6}
    if adapter is not None:
        body["adapter"] = str(adapter)
    completion = asyncio.run(backend.complete(ChatRequest.model_validate(body)))
    assert completion.status == 200, completion.error
    return str(completion.choices[0].text)


def test_adapters_answer_like_their_merged_checkpoints(
    tiny_llama: Path, adapters: list[Path]
) -> None:
    merged = [answer(TransformersBackend(path)) for path in adapters]
    backend = TransformersBackend(tiny_llama, max_adapters=1)
    base = answer(backend)
    first = answer(backend, adapters[0])
    assert list(backend.adapters) == [str(adapters[0])]
    second = answer(backend, adapters[1])
    assert list(backend.adapters) == [str(adapters[1])]  # the least recently used was evicted
    assert [first, second] == merged
    assert merged[0] != merged[1]  # the two adapters really differ
    assert answer(backend) == base  # the base model is untouched by the adapters
    assert answer(backend, adapters[0]) == first  # reloaded after its eviction


def test_lru_keeps_the_most_recently_used(tiny_llama: Path, adapters: list[Path]) -> None:
    backend = TransformersBackend(tiny_llama, max_adapters=2)
    answer(backend, adapters[0])
    answer(backend, adapters[1])
    answer(backend, adapters[0])
    assert list(backend.adapters) == [str(adapters[1]), str(adapters[0])]


def test_a_missing_adapter_is_a_clear_error(tiny_llama: Path, tmp_path: Path) -> None:
    backend = TransformersBackend(tiny_llama, max_adapters=1)
    request = ChatRequest.model_validate(
        {"model": "m", "messages": MESSAGES, "adapter": str(tmp_path / "gone")}
    )
    completion = asyncio.run(backend.complete(request))
    assert completion.status == 500
    assert (completion.error or "").startswith("cannot load the adapter")


def test_servers_without_adapters_refuse_them(tiny_llama: Path, adapters: list[Path]) -> None:
    body = {"model": "m", "messages": MESSAGES, "adapter": str(adapters[0])}
    with serve_in_thread(create_app(TransformersBackend(tiny_llama))) as url:
        refused = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=60)
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "adapter"


def test_one_batch_mixes_adapters_and_the_base_model(
    tiny_llama: Path, adapters: list[Path], tmp_path: Path
) -> None:
    merged = [answer(TransformersBackend(path)) for path in adapters]
    # a window no test waits out: the batch starts when its rows are all there
    backend = TransformersBackend(tiny_llama, max_adapters=2, batch_window=600, max_batch_rows=3)
    base = answer(TransformersBackend(tiny_llama))

    async def ask(*chosen: Path | None) -> list[Any]:
        requests = []
        for adapter in chosen:
            body: dict[str, Any] = {"model": "m", "messages": MESSAGES, "temperature": 0}
            body["max_tokens"] = 6
            if adapter is not None:
                body["adapter"] = str(adapter)
            requests.append(backend.complete(ChatRequest.model_validate(body)))
        return list(await asyncio.gather(*requests))

    mixed = asyncio.run(ask(adapters[0], None, adapters[1]))
    assert backend.generate_calls == 1
    assert [c.choices[0].text for c in mixed] == [merged[0], base, merged[1]]
    # a bad adapter fails its own request only, and evicts nobody the batch uses
    again = asyncio.run(ask(adapters[1], tmp_path / "gone", None))
    assert backend.generate_calls == 2
    assert (again[0].choices[0].text, again[2].choices[0].text) == (merged[1], base)
    assert again[1].status == 500
    assert (again[1].error or "").startswith("cannot load the adapter")
    assert set(backend.adapters) == {str(a) for a in adapters}
