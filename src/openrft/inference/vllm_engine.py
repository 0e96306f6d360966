"""`VLLMBackend`: chat completions on a GPU with vLLM's async engine, multi-LoRA included.

It is what `load_backend(..., kind="auto")` picks when vLLM is installed and a CUDA device is
visible, for `openrft serve-model` and for the model servers `openrft serve` starts. One
`vllm.v1.engine.async_llm.AsyncLLM` holds the base model; every request is submitted to it as
it arrives, and vLLM batches them continuously (a request joins the running batch at the next
step, unlike `TransformersBackend`'s static batches). A request naming a LoRA checkpoint
(`ChatRequest.adapter`) is sent with a `LoRARequest` for it: vLLM loads the adapter on first
use and keeps at most `max_adapters` on the GPU (`max_loras`, least recently used evicted; more
are kept in CPU memory), and rows of different adapters share one batch (punica kernels).

The prompt is rendered as for the transformers backend (`structured.render_prompt`: the chat
template, offered tools, JSON instruction) and tokenized without added special tokens, so both
backends see the same tokens. Constrained decoding (`response_format`, forced `tool_choice`)
uses vLLM's structured outputs with the same regex `structured.check` plans; tool calls are
parsed from the finished text the same way. Streaming yields each choice's new text as vLLM
produces it (`batching.Delta`), except with tools, whose calls are only known at the end.

What it does not do: load a full (non-LoRA) checkpoint next to the base model (a full
fine-tune gets a server of its own), share one GPU between several servers (each takes
`gpu_memory_utilization` of it), or run on CPU (vLLM's CPU build is not supported here). It is
exercised only by the `gpu`-marked tests (`tests/inference/test_vllm.py`).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from openrft.inference import structured
from openrft.inference.backends import DEFAULT_MAX_TOKENS, is_adapter
from openrft.inference.schemas import ChatRequest, Choice, Completion, Delta, Event, Started

MAX_LORA_RANK = 64
"""The largest LoRA rank the engine reserves room for (OpenRFT's default rank is 16)."""
GPU_MEMORY_UTILIZATION = 0.85


class VLLMBackend:
    """Answers chat completions with one vLLM engine (the base model plus LoRA adapters)."""

    def __init__(
        self,
        path: str | Path,
        name: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_adapters: int = 0,
    ) -> None:
        from transformers import AutoTokenizer
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self.name = name or Path(str(path)).name
        self.max_tokens = max_tokens
        self.max_adapters = max_adapters
        """LoRA adapters kept on the GPU at once; 0: requests may not name one."""
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        args = AsyncEngineArgs(
            model=str(path),
            enable_lora=max_adapters > 0,
            max_loras=max(max_adapters, 1),
            max_lora_rank=MAX_LORA_RANK,
            gpu_memory_utilization=GPU_MEMORY_UTILIZATION,
        )
        self.engine = AsyncLLM.from_engine_args(args)
        self.adapter_ids: dict[str, int] = {}
        """Adapter path -> the integer id vLLM keys its LoRA cache on."""

    def stats(self) -> dict[str, int]:
        """What `/health` reports: the adapters this engine has been asked for."""
        return {"adapters": len(self.adapter_ids)}

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer one request (vLLM batches it with whatever else is running)."""
        completion = Completion(status=500, error="the engine produced no output")
        async for event in self.stream(request):
            if isinstance(event, Completion):
                completion = event
        return completion

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        """`Started`, then `Delta`s as text is generated (none when tools are offered), then
        the `Completion`. A request vLLM refuses (an adapter that does not load, a prompt
        longer than the model's context) ends in a `Completion` with status 500."""
        plan = structured.check(request)  # raises StructuredOutputError (HTTP 400) first
        prompt = structured.render_prompt(self.tokenizer, request, plan)
        prepared = structured.Prepared(prompt, None, plan)
        ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        params = self._params(request, plan.regex)
        try:
            lora = self._lora(request.adapter)
        except ValueError as exc:  # as `TransformersBackend` answers an adapter it cannot load
            yield Completion(status=500, error=f"cannot load the adapter: {exc}"[:500])
            return
        from vllm.inputs import TokensPrompt

        sent: dict[int, int] = {}
        final: Any = None
        started = False
        try:
            outputs = self.engine.generate(
                TokensPrompt(prompt_token_ids=ids), params, uuid.uuid4().hex, lora_request=lora
            )
            async for final in outputs:
                if not started:
                    started = True
                    yield Started(len(ids))
                if plan.tools:
                    continue
                used = self._used(final, request)
                for output in final.outputs:
                    new = output.text[sent.get(output.index, 0) :]
                    if new:
                        sent[output.index] = len(output.text)
                        yield Delta(output.index, new, used)
        except (ValueError, RuntimeError, OSError) as exc:  # refused, or an adapter load failed
            yield Completion(status=500, error=f"{type(exc).__name__}: {exc}"[:500])
            return
        if final is None:
            yield Completion(status=500, error="the engine produced no output")
            return
        yield self._completion(final, prepared, request)

    def _completion(
        self, final: Any, prepared: structured.Prepared, request: ChatRequest
    ) -> Completion:
        choices: list[Choice] = []
        for output in sorted(final.outputs, key=lambda o: o.index):
            finish = "length" if output.finish_reason == "length" else "stop"
            choices.append(prepared.choice(output.text, finish))
        if request.temperature == 0 and request.n > 1:  # greedy: one answer, `n` copies
            choices = choices * request.n
        return Completion(choices, len(final.prompt_token_ids or []), self._used(final, request))

    @staticmethod
    def _used(output: Any, request: ChatRequest) -> int:
        """Completion tokens of a `RequestOutput` so far (vLLM's outputs are cumulative), as
        `usage` counts them: a greedy answer once per choice it stands for."""
        used = sum(len(choice.token_ids) for choice in output.outputs)
        return used * request.n if request.temperature == 0 and request.n > 1 else used

    def _params(self, request: ChatRequest, regex: str | None) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import StructuredOutputsParams

        greedy = request.temperature == 0
        return SamplingParams(
            n=1 if greedy else request.n,
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=request.top_p or 1.0,
            max_tokens=request.token_limit(self.max_tokens),
            seed=request.seed,
            stop=request.stops() or None,
            structured_outputs=StructuredOutputsParams(regex=regex) if regex else None,
        )

    def _lora(self, adapter: str | None) -> Any:
        if adapter is None:
            return None
        if not self.max_adapters:
            raise ValueError("this server does not load adapters")
        if not is_adapter(Path(adapter)):
            raise ValueError("the adapter is not a LoRA checkpoint")
        from vllm.lora.request import LoRARequest

        number = self.adapter_ids.setdefault(adapter, len(self.adapter_ids) + 1)
        return LoRARequest(f"adapter-{number}", number, adapter)
