"""The `completions` data source of eval runs: each row's messages are sampled from a model
served here, then graded.

`check_source` validates one at create time (and again in the worker, which may see a model
deleted since): the model resolves as a chat request's does (`chat.resolve_chat_model`: a base
model, this project's `ft:` and checkpoint models; anything else is a 404 `model_not_found`),
`input_messages` is a `template` of messages whose `content` is rendered per row with our
template engine (only `{{ item.… }}`: there is no sample yet) or an `item_reference` to a list
of messages in the item, and `sampling_params` keeps what our model servers honour. Every
problem is reported at its `data_source.…` path.

`Sampler` runs in a worker's `EvalRunner` thread, with its own event loop and `ModelServers`
over the service's one model-server directory, so a base model already served for chat (or
another worker's runs) is not loaded again (the worker never imports torch either); it sends one
chunk of rows concurrently (the model server batches them) and returns each row's output item
`sample`.
Timeouts are the chat ones: a load waits at most `chat_load_timeout_seconds`, a request
`chat_timeout_seconds`. A model that fails to load raises `ServerError` (the run fails with its
code and message); a row the model server refuses is recorded on that row's sample. `tools` and
`reasoning_effort` are refused: the backends cannot call tools.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from openrft.api_errors import ServerError
from openrft.errors import DatasetError, Problem, TemplateError
from openrft.graders.template import Template, lookup, malformed, variables
from openrft.service.chat import resolve_chat_model, unreachable
from openrft.service.model_servers import ModelServer, ModelServers
from openrft.service.settings import Settings
from openrft.service.store import Store

ROLES = ("system", "user", "assistant", "developer")
SAMPLING = ("temperature", "max_completion_tokens", "top_p", "seed", "response_format")
"""`sampling_params` our model servers honour, passed on as they are."""
TEXT_PARTS = ("input_text", "output_text")
T = TypeVar("T")


@dataclass(frozen=True)
class CompletionsSource:
    """A checked `completions` data source."""

    model: str
    """The name the run asked for (shown as the run's and the samples' `model`)."""
    base: str
    """The base model's source, whose server answers."""
    adapter: str | None
    """The LoRA checkpoint to answer with, or None for the base model."""
    template: list[tuple[str, Template]] = field(default_factory=list)
    """`(role, content)` per message, when `input_messages` is a template."""
    reference: tuple[str | int, ...] | None = None
    """The item path of a list of messages, when `input_messages` is an `item_reference`."""
    sampling: dict[str, Any] = field(default_factory=dict)


def _content(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping) and content.get("type") in TEXT_PARTS:
        text = content.get("text")
        return text if isinstance(text, str) else None
    return None


def _template(messages: Any, problems: list[Problem]) -> list[tuple[str, Template]]:
    at = "data_source.input_messages.template"
    if not isinstance(messages, list) or not messages:
        problems.append(Problem(at, "must be a non-empty list of messages"))
        return []
    made = []
    for n, message in enumerate(messages):
        where = f"{at}[{n}]"
        if not isinstance(message, Mapping) or message.get("role") not in ROLES:
            problems.append(Problem(f"{where}.role", f"must be one of {', '.join(ROLES)}"))
            continue
        text = _content(message.get("content"))
        if text is None:
            problems.append(
                Problem(
                    f"{where}.content",
                    "must be text (or an `input_text` part); images are not supported",
                )
            )
            continue
        bad = malformed(text) + [
            "{{ sample… }}" for space, _ in variables(text) if space == "sample"
        ]
        if bad:
            message_text = f"bad template variable(s) {', '.join(bad)}: use `{{{{ item.… }}}}`"
            problems.append(Problem(f"{where}.content", message_text))
            continue
        made.append((str(message["role"]), Template(text)))
    return made


def _reference(reference: Any, problems: list[Problem]) -> tuple[str | int, ...] | None:
    parsed = Template(f"{{{{ {reference} }}}}").single if isinstance(reference, str) else None
    if parsed is None or parsed[0] != "item" or not parsed[1]:
        at = "data_source.input_messages.item_reference"
        problems.append(
            Problem(at, "must name a list of messages in the item, e.g. `item.messages`")
        )
        return None
    return parsed[1]


def _sampling(params: Any, problems: list[Problem]) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        problems.append(Problem("data_source.sampling_params", "must be an object"))
        return {}
    for key in params:
        if key not in SAMPLING:
            message = f"is not supported here (supported: {', '.join(SAMPLING)})"
            problems.append(Problem(f"data_source.sampling_params.{key}", message))
    return {k: v for k, v in params.items() if k in SAMPLING and v is not None}


def check_source(
    store: Store, settings: Settings, project: str, data_source: Mapping[str, Any]
) -> CompletionsSource:
    """The checked source; `NotFoundError` for a model the project may not chat with,
    `DatasetError` listing every other problem."""
    model = data_source.get("model")
    if not isinstance(model, str) or not model:
        raise DatasetError([Problem("data_source.model", "must name a model to sample from")])
    base, adapter = resolve_chat_model(store, settings, project, model)
    problems: list[Problem] = []
    found = data_source.get("input_messages")
    messages: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    template, reference = [], None
    if messages.get("type") == "template":
        template = _template(messages.get("template"), problems)
    elif messages.get("type") == "item_reference":
        reference = _reference(messages.get("item_reference"), problems)
    else:
        message = "must be {'type': 'template', 'template': [...]} or an `item_reference`"
        problems.append(Problem("data_source.input_messages", message))
    sampling = _sampling(data_source.get("sampling_params"), problems)
    if problems:
        raise DatasetError(problems, f"{len(problems)} problem(s) in data_source")
    return CompletionsSource(model, base, adapter, template, reference, sampling)


def render_messages(source: CompletionsSource, item: Mapping[str, Any]) -> list[dict[str, str]]:
    """The chat messages for one row's `item`; `TemplateError` when a variable is missing or
    the referenced messages are malformed."""
    if source.reference is None:
        return [
            {"role": role, "content": content.render(None, item)}
            for role, content in source.template
        ]
    found = lookup(item, "item", source.reference)
    messages = found if isinstance(found, list) and found else [None]
    return [_referenced(message) for message in messages]


def _referenced(message: Any) -> dict[str, str]:
    text = _content(message.get("content")) if isinstance(message, Mapping) else None
    if text is None or message.get("role") not in ROLES:
        raise TemplateError("the item reference must be a list of {role, content} messages")
    return {"role": str(message["role"]), "content": text}


# --- sampling (in a worker) -------------------------------------------------------------------


class Sampler:
    """Completions for a worker: the service's model servers (shared with the API processes
    and the other workers) on its own event loop (one thread). `beat` is called every
    `heartbeat_seconds` while it waits, so that a slow load or a slow chunk does not read as a
    lost worker."""

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self.servers = ModelServers(settings)
        self.interval = settings.heartbeat_seconds

    def load(self, source: CompletionsSource, beat: Callable[[], object]) -> None:
        """Wait (bounded) until the model's server answers; `ServerError` if it cannot load."""
        self._run(self.servers.get(source.base, source.model), beat)

    def samples(
        self,
        source: CompletionsSource,
        items: Sequence[Mapping[str, Any]],
        beat: Callable[[], object],
    ) -> list[dict[str, Any]]:
        """Each item's output item `sample`, sampled concurrently."""
        return self._run(_gather([self._sample(source, item) for item in items]), beat)

    def _run(self, work: Awaitable[T], beat: Callable[[], object]) -> T:
        return self.loop.run_until_complete(self._beating(work, beat))

    async def _beating(self, work: Awaitable[T], beat: Callable[[], object]) -> T:
        task = asyncio.ensure_future(work)
        while not (await asyncio.wait({task}, timeout=self.interval))[0]:
            await asyncio.to_thread(beat)
        return task.result()

    async def _sample(self, source: CompletionsSource, item: Mapping[str, Any]) -> dict[str, Any]:
        messages = render_messages(source, item)
        body = {"model": source.model, "messages": messages, "adapter": source.adapter}
        body.update(source.sampling)
        answer = await self._post(source, body)
        data = _json(answer)
        sample = blank_sample(source, messages)
        if answer.status_code != 200:
            found = data.get("error")
            error: dict[str, Any] = found if isinstance(found, dict) else {}
            code = error.get("code") or f"http_{answer.status_code}"
            sample["error"] = {"code": code, "message": str(error.get("message") or "")}
            return sample
        choice = (data.get("choices") or [{}])[0]
        text = (choice.get("message") or {}).get("content") or ""
        usage = data.get("usage") or {}
        details = usage.get("prompt_tokens_details") or {}
        sample["output"] = [{"role": "assistant", "content": text}]
        sample["finish_reason"] = choice.get("finish_reason")
        sample["usage"] = {
            "prompt_tokens": int(usage.get("prompt_tokens") or 0),
            "completion_tokens": int(usage.get("completion_tokens") or 0),
            "total_tokens": int(usage.get("total_tokens") or 0),
            "cached_tokens": int(details.get("cached_tokens") or 0),
        }
        return sample

    async def _post(self, source: CompletionsSource, body: dict[str, Any]) -> httpx.Response:
        """The server's answer; once more from a fresh server if it died under the request
        (answers are stateless, so the retry is safe), as `chat.py` does."""
        server = await self.servers.get(source.base, source.model)
        try:
            return await self._send(server, source, body)
        except httpx.TransportError as exc:
            if not await self.servers.died(server):
                raise unreachable(source.model, exc) from None
        server = await self.servers.get(source.base, source.model)
        try:
            return await self._send(server, source, body)
        except httpx.TransportError as exc:
            raise unreachable(source.model, exc) from None

    async def _send(
        self, server: ModelServer, source: CompletionsSource, body: dict[str, Any]
    ) -> httpx.Response:
        try:
            return await server.client.post(f"{server.url}/v1/chat/completions", json=body)
        except httpx.TimeoutException:
            limit = self.servers.settings.chat_timeout_seconds
            message = f"the model {source.model!r} did not answer within {limit:g} s"
            raise ServerError(message, code="model_timeout", status=504) from None

    def close(self) -> None:
        self.loop.run_until_complete(self.servers.close())
        self.loop.close()


async def _gather(jobs: list[Any]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*jobs))


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


def blank_sample(source: CompletionsSource, messages: list[dict[str, str]]) -> dict[str, Any]:
    """OpenAI's output item `sample` before the model answered."""
    params = source.sampling
    return {
        "input": messages,
        "output": [],
        "model": source.model,
        "finish_reason": None,
        "usage": {
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
            "cached_tokens": 0,
        },
        "error": None,
        "temperature": params.get("temperature"),
        "top_p": params.get("top_p"),
        "seed": params.get("seed"),
        "max_completion_tokens": params.get("max_completion_tokens"),
    }
