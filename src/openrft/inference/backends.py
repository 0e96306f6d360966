"""Backends that answer chat completions with a real model: transformers, or vLLM when installed.

`TransformersBackend` loads a Hugging Face model directory (or hub id already in the local cache)
or an OpenRFT/TRL LoRA checkpoint (a directory with `adapter_config.json`: its base model is
loaded, the adapter merged in). The prompt, decoding constraint and tool-call parsing come from
`structured.prepare`. It samples with `temperature`/`top_p` (greedy at temperature 0), honours
`n`, `seed`, `stop` and the token limit, and counts tokens for `usage` (prompt tokens without
padding). Concurrent requests are batched: a scheduler thread (`batching.py`) gathers the
requests that arrive within `batch_window` seconds (or until `max_batch_rows` rows are waiting)
and starts a batch, each row cut at its own limit, end-of-sequence token or stop string. The
batch is continuous (`continuous.py`): it decodes one token at a time over one KV cache, rows
leave as they finish and waiting requests join it at once, each row with its own sampling
settings, constraint and adapter; only a seeded sampling request runs alone, so that its answer
is reproducible. For models whose cache cannot be merged (sliding-window attention), batching is
static: one left-padded `model.generate` for each group that decodes alike (greedy, or the same
`temperature`/`top_p`). `stream()` yields text deltas as they are generated (for requests with
`tools`, the finished message only). With `max_adapters` set, a request may name a LoRA
checkpoint (`ChatRequest.adapter`) trained over the served model: it is loaded next to the
resident base model as a named peft adapter, at most `max_adapters` stay loaded (least recently
used evicted, never one the running batch uses), and one batch mixes rows of different adapters
and of the base model (peft's `adapter_names`). A bad adapter fails only the requests that name it.

`load_backend(..., kind="auto")` picks vLLM's engine instead (`vllm_engine.VLLMBackend`:
continuous batching, multi-LoRA, structured outputs) when vLLM is installed and a CUDA device is
visible. Importing this module does not import torch; building a backend does.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from openrft.errors import ConfigError, Problem
from openrft.inference.schemas import ChatRequest, Completion, Event, Started

if TYPE_CHECKING:
    from openrft.inference.batching import Job

DEFAULT_MAX_TOKENS = 256
"""Generation limit when a request gives none."""
DEFAULT_BATCH_WINDOW = 0.005
"""Seconds the scheduler waits for more requests to batch with the first one."""
DEFAULT_MAX_BATCH_ROWS = 16
"""Most generated rows (sequences) in one `generate` call."""


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


def has_tools(request: ChatRequest) -> bool:
    """Whether `request` offers tools (its answer may be a tool call, known only when whole)."""
    tools = getattr(request, "tools", None) or (request.model_extra or {}).get("tools")
    return bool(tools)


class TransformersBackend:
    """Runs batched generation with transformers on the CPU (or wherever the model was loaded)."""

    def __init__(
        self,
        path: str | Path,
        name: str | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_adapters: int = 0,
        batch_window: float = DEFAULT_BATCH_WINDOW,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        continuous: bool | None = None,
    ) -> None:
        from openrft.inference import continuous as continuous_batching
        from openrft.inference.batching import Scheduler

        self.model, self.tokenizer = load_model(path)
        supported = continuous_batching.supported(self.model)
        if continuous and not supported:
            raise ConfigError([Problem(str(path), "this model's cache cannot batch continuously")])
        self.continuous = supported if continuous is None else continuous
        """Batch continuously (`continuous.Decoder`), else statically (one `generate` a batch):
        by default, continuously when the model's cache allows it."""
        self.name = name or Path(str(path)).name
        self.max_tokens = max_tokens
        self.max_adapters = max_adapters
        """LoRA adapters kept loaded at once; 0: requests may not name one."""
        self.adapters: OrderedDict[str, str] = OrderedDict()
        """Loaded adapters, checkpoint path -> peft adapter name, least recently used first."""
        self.scheduler = Scheduler(self._run, batch_window, max_batch_rows, max_adapters)
        """Gathers concurrent requests into batches (`window`, `max_rows` may be changed)."""
        self.generate_calls = 0
        """Batches run so far: `model.generate` calls, or continuous batches (from idle to
        idle, however many requests joined)."""
        self.batched_requests = 0
        """Requests answered by those batches."""
        self.decode_steps = 0
        """Forward passes of continuous batches (prefills and decode steps)."""
        self.prefixes = continuous_batching.PrefixStore()
        """Recent prompts' keys and values, for continuous batches' prefills."""
        self._peft = False
        """Whether the model is wrapped in a `PeftModel` (after the first adapter)."""
        self._lock = threading.Lock()  # one batch at a time on the model

    def stats(self) -> dict[str, int]:
        """Batching counters, reported by `/health`."""
        return {
            "generate_calls": self.generate_calls,
            "batched_requests": self.batched_requests,
            "decode_steps": self.decode_steps,
            "prefix_tokens_reused": self.prefixes.reused,
        }

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer `request` from the next batch; the event loop keeps serving meanwhile."""
        job = await self._prepared(request)
        return await asyncio.wrap_future(job.result)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Event]:
        """`Started`, then `Delta`s as tokens are generated (none for requests with tools:
        their text is parsed when it is whole), then the `Completion`."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[Event] = asyncio.Queue()

        def listen(event: Event) -> None:
            with contextlib.suppress(RuntimeError):  # the event loop closed: nobody listens
                loop.call_soon_threadsafe(events.put_nowait, event)

        job = await self._prepared(request, listen)
        try:
            while True:
                event = await events.get()
                yield event
                if isinstance(event, Completion):
                    return
        finally:
            job.cancelled = True  # the client went away (or we are done): stop its rows

    async def _prepared(
        self, request: ChatRequest, listener: Callable[[Event], None] | None = None
    ) -> Job:
        """The job for `request`, submitted to the scheduler (which waits for jobs being
        prepared, so that requests arriving together are batched together)."""
        self.scheduler.announce()
        try:
            job = await asyncio.to_thread(self._job, request)  # may compile a JSON constraint
        except BaseException:
            self.scheduler.submit(None)
            raise
        job.listener = listener
        job.stream_text = listener is not None and not has_tools(request)
        self.scheduler.submit(job)
        return job

    def generate(self, request: ChatRequest) -> Completion:
        """Answer one request in the calling thread, without the scheduler (blocking)."""
        job = self._job(request)
        self._run([job], resume=False)
        return job.result.result()

    def _job(self, request: ChatRequest) -> Job:
        from openrft.inference.batching import Job, batch_key
        from openrft.inference.structured import prepare

        prepared = prepare(request, self.tokenizer)
        ids = self.tokenizer(prepared.prompt, add_special_tokens=False)["input_ids"]
        return Job(
            request,
            list(ids),
            request.token_limit(self.max_tokens),
            batch_key(request, self.continuous),
            prepared.choice,
            prepared.constraint,
        )

    def _run(self, batch: list[Job], resume: bool = True) -> None:
        """Generate `batch`; every job gets its completion, whatever happens (`resume`: the
        batch may be suspended for waiting jobs, see `batching.RowTracker`)."""
        with self._lock:
            admitted = list(batch)
            try:
                if self.continuous:
                    self._decode(admitted, more=resume)
                else:
                    ready = self._load_adapters(batch)
                    if ready:
                        self._generate(ready, resume)
            # the scheduler thread must outlive any failure, and no request may hang on it
            except Exception as exc:
                message = f"generation failed: {type(exc).__name__}: {exc}"
                for job in admitted:
                    job.done(Completion(status=500, error=message[:500]))

    def _decode(self, admitted: list[Job], more: bool) -> None:
        """Generate `admitted` in one continuous batch; with `more`, waiting jobs join it as
        rows finish (appended to `admitted`), until no row is left and no job is waiting."""
        from openrft.inference.batching import finish_job
        from openrft.inference.continuous import Decoder

        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        decoder = Decoder(
            lambda: self.model,
            eos,
            eos if pad is None else pad,
            lambda: self._peft,
            self.prefixes,
            self._count_step,
        )
        key = admitted[0].key
        joining = list(admitted)
        running: list[Job] = []
        self.generate_calls += 1

        def answer_finished() -> None:
            for job in [job for job in running if job.rows == 0]:
                finish_job(job)
                running.remove(job)

        while True:
            if joining:  # waiting jobs take the rows that finished
                ready = self._load_adapters(joining, in_use=decoder.adapters)
                rows = []
                for job in ready:
                    job.emit(Started(len(job.prompt_ids)))
                    rows += job.start(eos, self.tokenizer.decode)
                if rows:
                    names = [self.adapters.get(r.job.request.adapter or "") for r in rows]
                    decoder.admit(rows, names)
                self.batched_requests += len(ready)
                running += ready
                answer_finished()
            decoder.step()
            answer_finished()
            free = self.scheduler.max_rows - len(decoder.rows)
            joining = self.scheduler.take(key, free, decoder.adapters) if more else []
            admitted += joining
            if not decoder.rows and not joining:
                return

    def _count_step(self) -> None:
        self.decode_steps += 1

    def _load_adapters(self, batch: list[Job], in_use: set[str] | None = None) -> list[Job]:
        """The jobs of `batch` whose adapter is loaded (loading it if needed); the others are
        answered with the loading error. Adapters beyond `max_adapters` that neither this batch
        nor the running rows (`in_use`) use are evicted, least recently used first."""
        asked = {job.request.adapter for job in batch if job.request.adapter is not None}
        wanted = asked | (in_use or set())
        failed: dict[str | None, str] = {}
        for adapter in sorted(asked):
            try:
                self._load_adapter(adapter)
            except (OSError, ValueError, KeyError, RuntimeError) as exc:  # gone, or another base
                failed[adapter] = f"cannot load the adapter: {type(exc).__name__}: {exc}"[:500]
        kept = [self.adapters[a] for a in wanted if a in self.adapters]
        for adapter in [a for a in self.adapters if a not in wanted]:
            if len(self.adapters) <= max(self.max_adapters, 1):
                break
            if kept:  # peft wants an active adapter that stays
                self.model.set_adapter(kept[0])
            name = self.adapters.pop(adapter)
            self.model.delete_adapter(name)
            self.prefixes.forget(name)
        for job in batch:
            if job.request.adapter in failed:
                job.done(Completion(status=500, error=failed[job.request.adapter]))
        return [job for job in batch if job.request.adapter not in failed]

    def _load_adapter(self, adapter: str) -> None:
        name = self.adapters.get(adapter)
        if name is None:
            name = "a" + hashlib.sha256(adapter.encode()).hexdigest()[:16]
            if not self._peft:
                from peft import PeftModel  # the first adapter wraps the base model

                self.model = PeftModel.from_pretrained(self.model, adapter, adapter_name=name)
                self.model.eval()
                self._peft = True
            else:
                self.model.load_adapter(adapter, adapter_name=name)
            self.adapters[adapter] = name
        self.adapters.move_to_end(adapter)

    def _generate(self, jobs: list[Job], resume: bool) -> None:
        """One left-padded `model.generate` for all rows of `jobs`."""
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList

        from openrft.inference.batching import Row, RowTracker
        from openrft.inference.structured import ConstrainedLogits
        from openrft.training.sampling import sampled_fast

        eos = self.tokenizer.eos_token_id
        rows: list[Row] = []
        new = sum(job.generated is None for job in jobs)
        for job in jobs:
            if job.generated is None:
                job.emit(Started(len(job.prompt_ids)))
            rows += job.start(eos, self.tokenizer.decode)
        kwargs = self._sampling(jobs[0].request)
        prompts = [row.job.prompt_ids + row.tokens for row in rows]
        kwargs.update(self._padded(prompts, kwargs["pad_token_id"]))
        if self._peft:  # peft routes each row to its adapter
            names = [self.adapters.get(row.job.request.adapter or "", "__base__") for row in rows]
            kwargs["adapter_names"] = names
        states = [row.job.constraint.start() if row.job.constraint else None for row in rows]
        if any(state is not None for state in states):
            kwargs["logits_processor"] = LogitsProcessorList([ConstrainedLogits(states, eos)])
        if jobs[0].request.seed is not None and kwargs["do_sample"]:
            torch.manual_seed(jobs[0].request.seed)  # a seeded job runs alone
        # a constrained row's state cannot be resumed; a seeded job never has company
        key = jobs[0].key
        resumable = resume and all(state is None for state in states)
        tracker = RowTracker(rows, (lambda: self.scheduler.waiting(key)) if resumable else None)
        self.generate_calls += 1
        self.batched_requests += new
        with torch.no_grad(), sampled_fast(self.model):  # sampled rows: `sampling.draw`
            self.model.generate(
                **kwargs,
                max_new_tokens=max(row.job.limit - len(row.tokens) for row in rows),
                stopping_criteria=StoppingCriteriaList([tracker]),
            )
        suspended = tracker.finish()
        if suspended:
            self.scheduler.resume(suspended)

    def _padded(self, prompts: list[list[int]], pad: int) -> dict[str, Any]:
        """`input_ids` and `attention_mask`, padded on the left (generation appends right)."""
        import torch

        width = max(len(ids) for ids in prompts)
        ids = [[pad] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        device = self.model.device
        return {
            "input_ids": torch.tensor(ids, device=device),
            "attention_mask": torch.tensor(mask, device=device),
        }

    def _sampling(self, request: ChatRequest) -> dict[str, Any]:
        pad = self.tokenizer.pad_token_id
        settings: dict[str, Any] = {
            "pad_token_id": pad if pad is not None else self.tokenizer.eos_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if request.temperature == 0:
            return {**settings, "do_sample": False}
        settings["do_sample"] = True
        settings["temperature"] = 1.0 if request.temperature is None else request.temperature
        settings["top_p"] = 1.0 if request.top_p is None else request.top_p
        return settings


def load_backend(
    path: str | Path,
    kind: str = "auto",
    name: str | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    max_adapters: int = 0,
    batch_window: float = DEFAULT_BATCH_WINDOW,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
) -> Backend:
    """Build the backend for a model: `kind` is `transformers`, `vllm`, or `auto` (vLLM when it
    is installed, a CUDA device is visible and the model is not itself a LoRA checkpoint;
    transformers otherwise). `max_adapters`: LoRA checkpoints requests may name (0: none);
    the batch settings are the transformers backend's (vLLM batches continuously)."""
    if kind not in ("auto", "transformers", "vllm"):
        raise ConfigError([Problem("--backend", f"{kind!r} is not auto, transformers or vllm")])
    vllm_ok = importlib.util.find_spec("vllm") is not None
    if kind == "vllm" and not vllm_ok:
        raise ConfigError([Problem("--backend", "vllm is not installed; use transformers")])
    if kind == "vllm" or (kind == "auto" and vllm_ok and _cuda() and not is_adapter(Path(path))):
        from openrft.inference.vllm_engine import VLLMBackend

        return VLLMBackend(path, name, max_tokens, max_adapters)
    return TransformersBackend(
        path,
        name,
        max_tokens,
        max_adapters,
        batch_window=batch_window,
        max_batch_rows=max_batch_rows,
    )


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
