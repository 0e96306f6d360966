"""Backends that answer chat completions with a real model: transformers, or vLLM when installed.

`TransformersBackend` loads a Hugging Face model directory (or hub id already in the local cache)
or an OpenRFT/TRL LoRA checkpoint (a directory with `adapter_config.json`: its base model is
loaded, the adapter merged in). It renders the tokenizer's chat template (a plain `role: text`
layout when there is none), samples with `temperature`/`top_p` (greedy at temperature 0), honours
`n`, `seed`, `stop` and the token limit, and counts tokens for `usage`. JSON `response_format`s are
asked for by prompting only: decoding is not constrained, so a small model may still answer
something else. Requests are answered one at a time (generation holds a lock; it is CPU-bound);
concurrent requests are not batched. With `max_adapters` set, a request may name a LoRA checkpoint
(`ChatRequest.adapter`) trained over the served model: it is loaded next to the resident base
model as a named peft adapter, at most `max_adapters` stay loaded (least recently used evicted),
and requests without one are answered by the base model with the adapters disabled.

`VLLMBackend` does the same through `vllm.LLM` for full model directories; it is chosen by
`load_backend(..., kind="auto")` only when vLLM is importable and the checkpoint is not an adapter.
Importing this module does not import torch; building a backend does.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import threading
from collections import OrderedDict
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Protocol

from openrft.errors import ConfigError, Problem
from openrft.inference.schemas import ChatRequest, Choice, Completion

DEFAULT_MAX_TOKENS = 256
"""Generation limit when a request gives none."""


class Backend(Protocol):
    """What the app needs from a backend."""

    name: str
    """The model name reported in `/v1/models` and in every response."""

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer one chat completion request."""
        ...


def is_adapter(path: Path) -> bool:
    """True for a LoRA checkpoint directory (what OpenRFT saves when training with LoRA)."""
    return (path / "adapter_config.json").is_file()


def load_model(path: str | Path) -> tuple[Any, Any]:
    """`(model, tokenizer)` for a model directory, hub id, or LoRA checkpoint: an adapter is
    merged into its base, itself perhaps a chained job's LoRA checkpoint (the same loading as
    training's, `training.models.load_causal_lm`)."""
    from transformers import AutoTokenizer

    from openrft.training.models import load_causal_lm, tokenizer_source

    source = str(path)
    if Path(source).is_absolute() and not Path(source).exists():
        raise ConfigError([Problem(source, "no such model directory")])
    model: Any = load_causal_lm(source)
    return model.eval(), AutoTokenizer.from_pretrained(tokenizer_source(source))


def render_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt text: the tokenizer's chat template, or `role: text` lines without one."""
    if getattr(tokenizer, "chat_template", None):
        text: str = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        return text
    lines = [f"{m['role']}: {m['content']}" for m in messages]
    return "\n".join([*lines, "assistant:"])


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the earliest stop string, and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class TransformersBackend:
    """Runs generation with transformers on the CPU (or wherever the model was loaded)."""

    def __init__(
        self,
        path: str | Path,
        name: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_adapters: int = 0,
    ) -> None:
        self.model, self.tokenizer = load_model(path)
        self.name = name or Path(str(path)).name
        self.max_tokens = max_tokens
        self.max_adapters = max_adapters
        """LoRA adapters kept loaded at once; 0: requests may not name one."""
        self.adapters: OrderedDict[str, str] = OrderedDict()
        """Loaded adapters, checkpoint path -> peft adapter name, least recently used first."""
        self._lock = threading.Lock()

    async def complete(self, request: ChatRequest) -> Completion:
        """Generate in a worker thread so the server keeps answering `/health` meanwhile."""
        return await asyncio.to_thread(self._locked_generate, request)

    def _locked_generate(self, request: ChatRequest) -> Completion:
        with self._lock:
            try:
                selected = self._select(request.adapter)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:  # gone, or another base
                message = f"cannot load the adapter: {type(exc).__name__}: {exc}"
                return Completion(status=500, error=message[:500])
            with selected:
                return self.generate(request)

    def _select(self, adapter: str | None) -> AbstractContextManager[Any]:
        """Make `adapter` (a checkpoint path) the active one, loading it (and evicting the least
        recently used) if needed; no adapter: the base model, adapters disabled meanwhile."""
        if adapter is None:
            return self.model.disable_adapter() if self.adapters else nullcontext()
        name = self.adapters.get(adapter)
        if name is None:
            name = "a" + hashlib.sha256(adapter.encode()).hexdigest()[:16]
            if not self.adapters:  # the first adapter wraps the base model in a PeftModel
                from peft import PeftModel

                self.model = PeftModel.from_pretrained(self.model, adapter, adapter_name=name)
                self.model.eval()
            else:
                self.model.load_adapter(adapter, adapter_name=name)
            self.adapters[adapter] = name
        self.adapters.move_to_end(adapter)
        self.model.set_adapter(name)
        while len(self.adapters) > max(self.max_adapters, 1):
            _, evicted = self.adapters.popitem(last=False)
            self.model.delete_adapter(evicted)
        return nullcontext()

    def generate(self, request: ChatRequest) -> Completion:
        """Answer one request (blocking)."""
        import torch

        prompt = render_prompt(self.tokenizer, request.plain_messages())
        encoded = self.tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        prompt_len = int(encoded["input_ids"].shape[1])
        greedy = request.temperature == 0
        if request.seed is not None:
            torch.manual_seed(request.seed)
        with torch.no_grad():
            output = self.model.generate(
                **encoded,
                **self._sampling(request, greedy),
                max_new_tokens=request.token_limit(self.max_tokens),
            )
        choices, used = [], 0
        for row in output[:, prompt_len:].tolist():
            choice, count = self._choice(row, request.stops())
            choices.append(choice)
            used += count
        if greedy:  # greedy decoding gives one answer; `n` copies of it
            choices, used = choices * request.n, used * request.n
        return Completion(choices, prompt_len, used)

    def _sampling(self, request: ChatRequest, greedy: bool) -> dict[str, Any]:
        pad = self.tokenizer.pad_token_id
        settings: dict[str, Any] = {
            "pad_token_id": pad if pad is not None else self.tokenizer.eos_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if greedy:
            return {**settings, "do_sample": False}
        settings.update(do_sample=True, num_return_sequences=request.n)
        settings["temperature"] = 1.0 if request.temperature is None else request.temperature
        settings["top_p"] = 1.0 if request.top_p is None else request.top_p
        return settings

    def _choice(self, tokens: list[int], stops: list[str]) -> tuple[Choice, int]:
        eos = self.tokenizer.eos_token_id
        ended = eos in tokens
        kept = tokens[: tokens.index(eos)] if ended else tokens
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        text, stopped = cut_at_stop(text, stops)
        finish = "stop" if ended or stopped else "length"
        return Choice(text, finish), len(kept) + int(ended)


class VLLMBackend:
    """Runs generation with vLLM (full model directories only; adapters use transformers)."""

    def __init__(
        self, path: str | Path, name: str | None = None, max_tokens: int = DEFAULT_MAX_TOKENS
    ) -> None:
        from vllm import LLM

        self.llm = LLM(model=str(path))
        self.name = name or Path(str(path)).name
        self.max_tokens = max_tokens
        self._lock = threading.Lock()

    async def complete(self, request: ChatRequest) -> Completion:
        """Generate in a worker thread (vLLM's offline engine is synchronous)."""
        return await asyncio.to_thread(self.generate, request)

    def generate(self, request: ChatRequest) -> Completion:
        """Answer one request (blocking)."""
        from vllm import SamplingParams

        params = SamplingParams(
            n=request.n,
            temperature=1.0 if request.temperature is None else request.temperature,
            top_p=request.top_p or 1.0,
            max_tokens=request.token_limit(self.max_tokens),
            seed=request.seed,
            stop=request.stops() or None,
        )
        with self._lock:
            result = self.llm.chat(request.plain_messages(), params, use_tqdm=False)[0]
        choices = [
            Choice(o.text, "length" if o.finish_reason == "length" else "stop")
            for o in result.outputs
        ]
        used = sum(len(o.token_ids) for o in result.outputs)
        return Completion(choices, len(result.prompt_token_ids), used)


def load_backend(
    path: str | Path,
    kind: str = "auto",
    name: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
) -> Backend:
    """Build the backend for a model: `kind` is `transformers`, `vllm`, or `auto` (vLLM when it
    is installed and the checkpoint is not a LoRA adapter)."""
    if kind not in ("auto", "transformers", "vllm"):
        raise ConfigError([Problem("--backend", f"{kind!r} is not auto, transformers or vllm")])
    vllm_ok = importlib.util.find_spec("vllm") is not None
    if kind == "vllm" and not vllm_ok:
        raise ConfigError([Problem("--backend", "vllm is not installed; use transformers")])
    if kind == "vllm" or (kind == "auto" and vllm_ok and not is_adapter(Path(path))):
        return VLLMBackend(path, name, max_tokens)
    return TransformersBackend(path, name, max_tokens)
