"""Continuous batching for `TransformersBackend`: requests join and leave a running batch.

`generate` runs a batch until its longest row is done, so a request arriving meanwhile waits for
it, and on a CPU a batch of short and long answers is soon a batch of one. `Decoder` instead
keeps one left-padded KV cache (transformers' `DynamicCache`) for every row being generated and
decodes them one step at a time: after each step the rows that finished leave the batch (their
cache rows dropped, and the columns only they used), and waiting requests are prefilled and
merged into it (their cache padded on the left to the batch's width). Each row samples with its
own settings (greedy, or its request's `temperature`/`top_p`; a seeded job draws from its own
`torch.Generator`), its own decoding constraint (`structured.Constraint`, masked per row) and its
own LoRA adapter (peft's `adapter_names`), so any requests but seeded ones may share a batch.

Positions come from each row's own length, not the padded width, and padded columns are masked
out, so a row's tokens are the ones it would get alone (up to float rounding of a bigger matrix
product). Supported for models whose cache layers are all plain `DynamicLayer`s (full attention:
Llama, Qwen2, SmolLM2, Mistral without a sliding window...); `supported` tells, and the backend
falls back to static batching with `generate` (`batching.py`) for the others.

Sampling follows OpenAI's parameters: temperature, then top-p (nucleus: the smallest set of
tokens whose probability reaches `top_p`), no top-k; the token is drawn by inverse transform
(`sampling.draw`, ~0.13 ms a row over SmolLM2's vocabulary where `torch.multinomial` takes
~1.6 ms). Importing this module imports torch.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from openrft.inference.batching import Job, Row
from openrft.inference.constrained import RowState
from openrft.training.sampling import draw


def supported(model: Any) -> bool:
    """Whether `model`'s cache is one the decoder can pad, merge and cut: every layer a plain
    (full-attention) `DynamicLayer`."""
    cache = DynamicCache(config=model.config)
    return bool(cache.layers) and all(type(layer) is DynamicLayer for layer in cache.layers)


@dataclass(eq=False)
class Active:
    """One row in the running batch."""

    row: Row
    adapter: str | None
    """The peft adapter name (`__base__` for the base model), or None without peft."""
    state: RowState | None
    """Its decoding constraint's state."""
    generator: torch.Generator | None
    """Its seeded job's random numbers (shared by the job's rows)."""
    length: int
    """Tokens of this row in the cache (its prompt, then what it generated)."""
    token: int = -1
    """The token sampled last, to feed at the next step."""

    @property
    def job(self) -> Job:
        return self.row.job


BASE = "__base__"
"""The adapter name of the base model's rows (peft's, for `adapter_names`)."""
KV = list[tuple[torch.Tensor, torch.Tensor]]
"""One row's keys and values, layer by layer: `(1, heads, tokens, dim)` each."""


class PrefixStore:
    """The keys and values of recent prompts (one row each, per adapter), least recently used
    first, so that a new row prefills only what follows the longest prefix it shares with one
    of them: the chat template and its system prompt, a conversation's earlier turns, an
    eval's instructions. At most `entries` prompts and `tokens` tokens in all are kept (their
    keys and values take `tokens` × layers × 2 × KV heads × head size × dtype bytes: 94 MB for
    SmolLM2-135M at the default 2048); 0 entries: none."""

    def __init__(self, entries: int = 16, tokens: int = 2048) -> None:
        self.entries = entries
        self.tokens = tokens
        self._kept: OrderedDict[tuple[str, tuple[int, ...]], KV] = OrderedDict()
        self.reused = 0
        """Prompt tokens taken from the store instead of computed."""

    def match(self, adapter: str, prompt: list[int]) -> KV | None:
        """The cached keys and values of the longest prefix `prompt` shares with a kept prompt
        of `adapter` (all of it but its last token at most: that one's logits are needed)."""
        best, chosen = 0, None
        for key in self._kept:
            if key[0] == adapter:
                shared = _common_prefix(key[1], prompt)
                if shared > best:
                    best, chosen = shared, key
        best = min(best, len(prompt) - 1)
        if chosen is None or best <= 0:
            return None
        self._kept.move_to_end(chosen)
        return [(k[:, :, :best], v[:, :, :best]) for k, v in self._kept[chosen]]

    def add(self, adapter: str, prompt: list[int], kv: KV) -> None:
        if self.entries <= 0:
            return
        if len(prompt) > self.tokens:
            return
        key = (adapter, tuple(prompt))
        self._kept[key] = kv
        self._kept.move_to_end(key)
        while len(self._kept) > self.entries or self._held() > self.tokens:
            self._kept.popitem(last=False)

    def _held(self) -> int:
        return sum(len(prompt) for _, prompt in self._kept)

    def forget(self, adapter: str) -> None:
        """Drop `adapter`'s prompts (it was unloaded: a later one of that name may differ)."""
        for key in [key for key in self._kept if key[0] == adapter]:
            del self._kept[key]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Decoder:
    """The rows being generated, their KV cache and attention mask. `admit` prefills new rows
    (and samples their first token), `step` decodes one token for every row; both drop the rows
    that finished. `model` is looked up by `model_of()` at every call (the backend wraps its model
    in peft when the first adapter loads)."""

    def __init__(
        self,
        model_of: Callable[[], Any],
        eos: int | None,
        pad: int,
        peft: Callable[[], bool],
        prefixes: PrefixStore | None = None,
        counted: Callable[[], None] = lambda: None,
    ) -> None:
        self.model_of = model_of
        self.counted = counted
        """Called after every forward pass (before its tokens reach any job)."""
        self.prefixes = prefixes or PrefixStore(0)
        self.eos = eos
        self.pad = pad
        self.peft = peft
        self.rows: list[Active] = []
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None
        """`(rows, width)`: 1 where a cache column holds one of the row's tokens."""

    @property
    def adapters(self) -> set[str]:
        """Checkpoint paths of the adapters the running rows use."""
        return {a.job.request.adapter for a in self.rows if a.job.request.adapter is not None}

    def admit(self, rows: Sequence[Row], adapters: Sequence[str | None]) -> None:
        """Prefill `rows` (their prompt plus anything generated before) in one forward pass,
        sample each one's first token, and merge them into the batch. A row whose prompt
        starts like one in `prefixes` prefills only the rest, over that prompt's cached keys
        and values (so the batch's cache may have a gap of padding between the two)."""
        model = self.model_of()
        device = model.device
        prompts = [row.job.prompt_ids + row.tokens for row in rows]
        found = [self.prefixes.match(a or BASE, p) for a, p in zip(adapters, prompts, strict=True)]
        cached = [kv[0][0].shape[2] if kv else 0 for kv in found]
        reused, width = max(cached), max(len(p) - n for p, n in zip(prompts, cached, strict=True))
        ids, mask, positions = [], [], []
        for prompt, n in zip(prompts, cached, strict=True):
            rest = prompt[n:]
            ids.append([self.pad] * (width - len(rest)) + rest)
            mask.append([0] * (reused - n) + [1] * n + [0] * (width - len(rest)) + [1] * len(rest))
            positions.append([n] * (width - len(rest)) + list(range(n, len(prompt))))
        cache = DynamicCache(config=model.config)
        if reused:
            self._fill(cache, found, reused)
        mask_tensor = torch.tensor(mask, device=device)
        ids_tensor, positions_tensor = (torch.tensor(t, device=device) for t in (ids, positions))
        logits = self._forward(model, ids_tensor, mask_tensor, positions_tensor, cache, adapters)
        self.prefixes.reused += sum(cached)
        for i, (adapter, prompt) in enumerate(zip(adapters, prompts, strict=True)):
            if not self.prefixes.entries:
                break
            columns = mask_tensor[i].nonzero().flatten()
            kv = [_row(layer, i, columns) for layer in _layers(cache)]
            self.prefixes.add(adapter or BASE, prompt, kv)
        generators: dict[int, torch.Generator] = {}
        new = []
        for row, adapter, prompt in zip(rows, adapters, prompts, strict=True):
            job = row.job
            state = job.constraint.start() if job.constraint is not None else None
            if state is not None:
                for token in row.tokens:
                    state.advance(token)
            generator = None
            if job.request.seed is not None and job.request.temperature != 0:
                generator = generators.get(id(job))
                if generator is None:
                    generator = torch.Generator(device="cpu").manual_seed(job.request.seed)
                    generators[id(job)] = generator
            new.append(Active(row, adapter, state, generator, len(prompt)))
        self._choose(new, logits)
        self._merge(new, cache, mask_tensor)
        self._drop_finished()

    def _fill(self, cache: DynamicCache, found: list[KV | None], width: int) -> None:
        """Start `cache` with each row's cached prefix (zeros for a row without one), padded
        on the left to `width` columns."""
        template = next(kv for kv in found if kv)
        for index, layer in enumerate(_layers(cache)):
            keys, values = [], []
            for kv in found:
                if kv is None:
                    k, v = (t.new_zeros((1, t.shape[1], 0, t.shape[3])) for t in template[index])
                else:
                    k, v = kv[index]
                keys.append(_left_pad(k, width))
                values.append(_left_pad(v, width))
            layer.lazy_initialization(keys[0], values[0])
            layer.keys, layer.values = torch.cat(keys), torch.cat(values)

    def step(self) -> None:
        """Decode one token for every row."""
        if not self.rows or self.cache is None or self.mask is None:
            return
        model = self.model_of()
        device = model.device
        ids = torch.tensor([[active.token] for active in self.rows], device=device)
        ones = torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=device)
        self.mask = torch.cat([self.mask, ones], dim=-1)
        positions = torch.tensor([[active.length] for active in self.rows], device=device)
        adapters = [active.adapter for active in self.rows]
        logits = self._forward(model, ids, self.mask, positions, self.cache, adapters)
        for active in self.rows:
            active.length += 1
        self._choose(self.rows, logits)
        self._drop_finished()

    def _forward(
        self,
        model: Any,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: DynamicCache,
        adapters: Sequence[str | None],
    ) -> torch.Tensor:
        """The last position's logits of each row, as float32 `(rows, vocabulary)`."""
        kwargs: dict[str, Any] = {}
        if self.peft():
            kwargs["adapter_names"] = [a or BASE for a in adapters]
        with torch.no_grad():
            out = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
                **kwargs,
            )
        self.counted()
        return cast(torch.Tensor, out.logits[:, -1, :].float())

    def _choose(self, rows: Sequence[Active], logits: torch.Tensor) -> None:
        """Pick every row's next token (constrained, then greedy or sampled) and push it."""
        greedy = logits.argmax(dim=-1).tolist()  # one call for the batch: most rows are greedy
        for i, active in enumerate(rows):
            scores = logits[i]
            state = active.state
            if state is None and active.job.request.temperature == 0:
                active.token = int(greedy[i])
                active.row.push(active.token)
                continue
            if state is not None and not state.done:
                eos = (self.eos,) if self.eos is not None else ()
                allowed = state.constraint.allowed(state.state, scores.device, eos)
                masked = torch.full_like(scores, float("-inf"))
                masked[allowed] = scores[allowed]
                scores = masked
            request = active.job.request
            token = pick(scores, request.temperature, request.top_p, active.generator)
            if state is not None:
                state.advance(token)
            active.token = token
            active.row.push(token)

    def _merge(self, new: list[Active], cache: DynamicCache, mask: torch.Tensor) -> None:
        """Add prefilled rows to the batch, padding the narrower cache on the left."""
        if self.cache is None or self.mask is None or not self.rows:
            self.rows, self.cache, self.mask = new, cache, mask
            return
        width = max(self.mask.shape[-1], mask.shape[-1])
        for mine, theirs in zip(_layers(self.cache), _layers(cache), strict=True):
            mine.keys = torch.cat([_left_pad(mine.keys, width), _left_pad(theirs.keys, width)])
            mine.values = torch.cat(
                [_left_pad(mine.values, width), _left_pad(theirs.values, width)]
            )
        self.mask = torch.cat([_left_pad_mask(self.mask, width), _left_pad_mask(mask, width)])
        self.rows += new

    def _drop_finished(self) -> None:
        """Remove finished rows from the batch, and the leading columns no row uses."""
        keep = [i for i, active in enumerate(self.rows) if active.row.finish is None]
        if len(keep) == len(self.rows):
            return
        self.rows = [self.rows[i] for i in keep]
        if not keep or self.cache is None or self.mask is None:
            self.rows, self.cache, self.mask = [], None, None
            return
        index = torch.tensor(keep, device=self.mask.device)
        mask = self.mask[index]
        used = mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else 0
        self.mask = mask[:, start:]
        for layer in _layers(self.cache):
            keys, values = cast(torch.Tensor, layer.keys), cast(torch.Tensor, layer.values)
            layer.keys, layer.values = keys[index, :, start:, :], values[index, :, start:, :]


def pick(
    scores: torch.Tensor,
    temperature: float | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> int:
    """One token from one row's logits: the most likely at temperature 0, else sampled at
    `temperature` (default 1) from the nucleus of probability `top_p` (default 1)."""
    if temperature == 0:
        return int(scores.argmax())
    probs = torch.softmax(scores / (1.0 if temperature is None else temperature), dim=-1)
    if top_p is not None and top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        before = ordered.cumsum(-1) - ordered  # probability of the tokens ranked above each
        ordered[before >= top_p] = 0.0  # the first token always stays
        probs = torch.zeros_like(probs).scatter_(-1, order, ordered)
    return int(draw(probs[None], generator)[0])


def _row(layer: DynamicLayer, i: int, columns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row `i`'s keys and values at `columns` of a cache layer, copied."""
    keys, values = cast(torch.Tensor, layer.keys), cast(torch.Tensor, layer.values)
    return keys[i : i + 1, :, columns].clone(), values[i : i + 1, :, columns].clone()


def _layers(cache: DynamicCache) -> list[DynamicLayer]:
    return cast(list[DynamicLayer], cache.layers)  # what `supported` checked


def _left_pad(tensor: torch.Tensor | None, width: int) -> torch.Tensor:
    """`(rows, heads, length, dim)` padded with zeros to `width` columns on the left."""
    if tensor is None:
        raise ValueError("a cache layer was not filled by the forward pass")
    missing = width - tensor.shape[-2]
    if missing == 0:
        return tensor
    shape = (*tensor.shape[:-2], missing, tensor.shape[-1])
    return torch.cat([tensor.new_zeros(shape), tensor], dim=-2)


def _left_pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - mask.shape[-1]
    if missing == 0:
        return mask
    return torch.cat([mask.new_zeros((mask.shape[0], missing)), mask], dim=-1)
