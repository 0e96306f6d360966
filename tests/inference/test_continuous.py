"""Continuous batching (`inference/continuous.py`): rows join a running batch as others leave,
and every row still gets the tokens transformers' own `generate` gives it alone; greedy and
sampled rows share a batch; top-p sampling; a LoRA adapter loaded while a batch runs; models
whose cache cannot be merged fall back to static batching.

As in `test_batching.py`, the gather window is one no test waits out: batches start when full,
and `backend._lock` holds generation until the waiting requests are queued, so what joins when
does not depend on timing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from tests.inference.test_batching import FOREVER, PROMPTS, body

from openrft.inference.backends import TransformersBackend
from openrft.inference.schemas import ChatRequest, Completion

pytestmark = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)


def answer_queued(backend: TransformersBackend, bodies: list[dict[str, Any]]) -> list[Completion]:
    """Answers to `bodies`, all queued before the first batch starts."""

    expected = backend.scheduler.submitted + len(bodies)

    async def run() -> list[Completion]:
        with backend._lock:
            asks = [asyncio.create_task(backend.complete(ChatRequest(**b))) for b in bodies]
            for _ in range(6000):  # a hang guard, not a timing assumption
                if backend.scheduler.submitted == expected:
                    break
                await asyncio.sleep(0.01)
        return list(await asyncio.gather(*asks))

    return asyncio.run(run())


def texts(completions: list[Completion]) -> list[list[str | None]]:
    return [[c.text for c in completion.choices] for completion in completions]


def test_rows_that_join_and_leave_get_what_generate_gives_them_alone(tiny_llama: Path) -> None:
    # 7 requests through 3 rows: each finished row is taken by the next waiting request
    limits = (2, 9, 4, 12, 1, 6, 3)
    bodies = [
        body(PROMPTS[i % 4] + " " + "one two"[: i % 3], temperature=0, max_tokens=n)
        for i, n in enumerate(limits)
    ]
    backend = TransformersBackend(tiny_llama, batch_window=FOREVER, max_batch_rows=3)
    assert backend.continuous
    answers = answer_queued(backend, bodies)
    assert (backend.generate_calls, backend.batched_requests) == (1, len(bodies))
    # the rows that joined later prefilled only what follows the chat template's start
    assert backend.stats()["prefix_tokens_reused"] > 0
    anchor = TransformersBackend(tiny_llama, continuous=False)  # one `model.generate` each
    alone = [anchor.generate(ChatRequest(**b)) for b in bodies]
    assert texts(answers) == texts(alone)
    assert [a.completion_tokens for a in answers] == list(limits)
    assert [a.prompt_tokens for a in answers] == [a.prompt_tokens for a in alone]
    assert [a.choices[0].finish_reason for a in answers] == ["length"] * len(bodies)


def test_greedy_and_sampled_rows_share_a_batch_seeded_ones_run_alone(tiny_llama: Path) -> None:
    from openrft.inference.batching import batch_key

    greedy = ChatRequest(**body("x", temperature=0))
    hot = ChatRequest(**body("x", temperature=1.3, top_p=0.5))
    seeded = ChatRequest(**body("x", temperature=1.0, seed=3))
    assert batch_key(greedy, continuous=True) == batch_key(hot, continuous=True)
    assert batch_key(seeded, continuous=True) != batch_key(seeded, continuous=True)
    bodies = [
        body(PROMPTS[0], temperature=0, max_tokens=5),
        body(PROMPTS[1], temperature=0.8, top_p=0.9, max_tokens=5, n=2),
        body(PROMPTS[2], temperature=0, max_tokens=7),
    ]
    backend = TransformersBackend(tiny_llama, batch_window=FOREVER, max_batch_rows=4)
    answers = answer_queued(backend, bodies)
    assert backend.generate_calls == 1
    alone = [backend.generate(ChatRequest(**b)) for b in (bodies[0], bodies[2])]
    assert texts([answers[0], answers[2]]) == texts(alone)  # sampling beside them changes nothing
    assert len(answers[1].choices) == 2
    seeded_body = body(PROMPTS[3], temperature=1.0, seed=11, max_tokens=6, n=2)
    backend.scheduler.window = 0.0
    twice = answer_queued(backend, [seeded_body, bodies[0], seeded_body])
    assert texts([twice[0]]) == texts([twice[2]])
    # the 2 `generate`s above, then each seeded request in a batch of its own
    assert backend.generate_calls == 1 + 2 + 3


def test_the_prefix_store_matches_per_adapter_and_forgets_the_oldest() -> None:
    import torch

    from openrft.inference.continuous import PrefixStore

    def kv(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.arange(n).view(1, 1, n, 1).float(),) * 2]

    store = PrefixStore(entries=2)
    store.add("base", [1, 2, 3, 4], kv(4))
    assert store.match("base", [9, 9]) is None
    assert store.match("other", [1, 2, 3, 5]) is None  # another adapter's keys differ
    found = store.match("base", [1, 2, 3, 5, 6])
    assert found is not None
    assert found[0][0].shape[2] == 3
    whole = store.match("base", [1, 2, 3, 4])  # the last token is always computed
    assert whole is not None
    assert whole[0][0].shape[2] == 3
    store.add("other", [1, 2], kv(2))
    assert store.match("base", [1, 2, 3, 4, 0]) is not None  # now the most recently used
    store.add("base", [7, 8, 9], kv(3))  # evicts the least recently used: ("other", [1, 2])
    assert store.match("other", [1, 2, 3]) is None
    assert store.match("base", [1, 2, 9]) is not None
    store.forget("base")
    assert store.match("base", [1, 2, 9]) is None
    small = PrefixStore(entries=8, tokens=5)  # a token budget too
    small.add("base", [1, 2, 3], kv(3))
    small.add("base", [4, 5, 6], kv(3))  # 6 tokens > 5: the oldest goes
    assert small.match("base", [1, 2, 0]) is None
    assert small.match("base", [4, 5, 0]) is not None
    small.add("base", list(range(6)), kv(6))  # longer than the budget: not kept
    assert small.match("base", [0, 1, 2]) is None


def test_top_p_keeps_the_smallest_set_reaching_it() -> None:
    import torch

    from openrft.inference.continuous import pick

    scores = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    generator = torch.Generator().manual_seed(0)

    def drawn(temperature: float | None, top_p: float | None) -> set[int]:
        return {pick(scores, temperature, top_p, generator) for _ in range(300)}

    assert drawn(0, None) == {0}
    assert drawn(1.0, 0.5) == {0}  # the first token alone reaches 0.5
    assert drawn(1.0, 0.6) == {0, 1}
    assert drawn(1.0, 0.9) == {0, 1, 2}
    assert drawn(None, None) == {0, 1, 2, 3}
    again = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [pick(scores, 1.0, None, again[0]) for _ in range(20)] == [
        pick(scores, 1.0, None, again[1]) for _ in range(20)
    ]


def test_an_adapter_loaded_while_a_batch_runs_joins_it(
    tiny_llama: Path, adapters: list[Path]
) -> None:
    tuned = body("please rate this output", temperature=0, max_tokens=6)
    merged = TransformersBackend(adapters[0]).generate(ChatRequest(**tuned)).choices[0].text
    base = TransformersBackend(tiny_llama, continuous=False)
    long = base.generate(ChatRequest(**body(PROMPTS[1], temperature=0, max_tokens=12)))
    backend = TransformersBackend(
        tiny_llama, max_adapters=1, batch_window=FOREVER, max_batch_rows=2
    )
    bodies = [
        body(PROMPTS[0], temperature=0, max_tokens=2),
        body(PROMPTS[1], temperature=0, max_tokens=12),
        # waits for the first row to end, then wraps the model in peft mid-batch
        {**tuned, "adapter": str(adapters[0])},
    ]
    answers = answer_queued(backend, bodies)
    assert backend.generate_calls == 1
    assert answers[2].choices[0].text == merged
    assert answers[1].choices[0].text == long.choices[0].text  # the base row went on untouched


def test_a_sliding_window_model_falls_back_to_static_batching(tmp_path: Path) -> None:
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    from openrft.training.models import build_tiny_model

    tiny = build_tiny_model(tmp_path / "tiny")
    torch.manual_seed(0)
    config = MistralConfig(
        vocab_size=320,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        sliding_window=8,
    )
    target = tmp_path / "mistral"
    MistralForCausalLM(config).save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny / name).exists():
            (target / name).write_bytes((tiny / name).read_bytes())
    backend = TransformersBackend(target, batch_window=FOREVER, max_batch_rows=2)
    assert not backend.continuous
    bodies = [body(p, temperature=0, max_tokens=4) for p in PROMPTS[:2]]
    answers = answer_queued(backend, bodies)
    assert [a.completion_tokens for a in answers] == [4, 4]
    assert backend.generate_calls == 1
    from openrft.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot batch continuously"):
        TransformersBackend(target, continuous=True)
