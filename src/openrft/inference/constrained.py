"""Constrained decoding for transformers: a regular language over a tokenizer's vocabulary,
applied to a batch's rows by a `LogitsProcessor`.

`vocabulary(tokenizer)` is the `outlines_core.Vocabulary` of a Hugging Face tokenizer, built
locally: each token id maps to the bytes it decodes to (byte-level BPE's `Ġ`/`Ċ` alphabet and
sentencepiece's `▁` and `<0x..>` byte fallback undone; special tokens left out; the tokenizer's
eos is the vocabulary's). `constraint(tokenizer, regex)` is the `Constraint` for a regex (an
`outlines_core.Index`, which can take seconds to build, so vocabularies are cached per tokenizer
and constraints per tokenizer and regex). `ConstrainedLogits` masks each constrained row of a
batch to the tokens its state allows, with cached id tensors per state.

It does not speculate, roll back or fast-forward (every token is sampled), and a constraint
belongs to one tokenizer; vLLM engines do not use it (they hand the regex to vLLM).
Importing this module does not import torch or outlines_core.
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_CONSTRAINTS = 64
"""Constraints (indexes) kept per tokenizer, least recently used evicted."""

BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet: each printable stand-in character -> the byte it encodes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def decoding_kind(tokenizer: Any) -> str:
    """How token strings map to bytes: `byte_level`, `sentencepiece` or `plain`."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        kinds = set(_types(json.loads(backend.to_str()).get("decoder")))
        if "ByteLevel" in kinds:
            return "byte_level"
        if kinds & {"ByteFallback", "Metaspace"}:
            return "sentencepiece"
        if kinds:
            return "plain"
    vocab = tokenizer.get_vocab()
    if "Ġ" in vocab or "Ċ" in vocab:
        return "byte_level"
    return "sentencepiece" if any(t.startswith("▁") for t in vocab) else "plain"


def _types(node: Any) -> Iterator[str]:
    """Every `type` inside a tokenizers decoder description (sequences nest)."""
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            yield node["type"]
        for value in node.values():
            yield from _types(value)
    elif isinstance(node, list):
        for value in node:
            yield from _types(value)


def token_bytes(tokenizer: Any) -> dict[int, bytes]:
    """Each non-special token id -> the bytes it stands for (empty tokens left out)."""
    kind = decoding_kind(tokenizer)
    to_byte = byte_level_decoder()
    added = dict(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    special = set(tokenizer.all_special_ids)
    result: dict[int, bytes] = {}
    for token, token_id in tokenizer.get_vocab().items():
        entry = added.get(token_id)
        if token_id in special or (entry is not None and getattr(entry, "special", False)):
            continue
        if entry is not None:  # added tokens are stored as their text, not in the alphabet
            data = str(getattr(entry, "content", token)).encode()
        elif kind == "byte_level":
            bytes_ = [to_byte.get(c) for c in token]
            ok = all(b is not None for b in bytes_)
            data = bytes(b for b in bytes_ if b is not None) if ok else token.encode()
        elif kind == "sentencepiece":
            fallback = BYTE_FALLBACK.fullmatch(token)
            data = bytes([int(fallback[1], 16)]) if fallback else token.replace("▁", " ").encode()
        else:
            data = tokenizer.convert_tokens_to_string([token]).encode()
        if data:
            result[token_id] = data
    return result


@dataclass
class _Cached:
    """What is cached for one tokenizer."""

    vocabulary: Any
    constraints: OrderedDict[str, Constraint] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_CACHE: weakref.WeakKeyDictionary[Any, _Cached] = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _cached(tokenizer: Any) -> _Cached:
    with _CACHE_LOCK:
        entry = _CACHE.get(tokenizer)
        if entry is None:
            entry = _CACHE[tokenizer] = _Cached(_build_vocabulary(tokenizer))
        return entry


def _build_vocabulary(tokenizer: Any) -> Any:
    from outlines_core import Vocabulary

    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token, so constrained decoding cannot end")
    by_bytes: dict[bytes, list[int]] = {}
    for token_id, data in token_bytes(tokenizer).items():
        if token_id != eos:
            by_bytes.setdefault(data, []).append(token_id)
    return Vocabulary(eos, by_bytes)


def vocabulary(tokenizer: Any) -> Any:
    """The (cached) `outlines_core.Vocabulary` of `tokenizer`."""
    return _cached(tokenizer).vocabulary


def constraint(tokenizer: Any, regex: str) -> Constraint:
    """The (cached) constraint that generated text match `regex` in full. Raises `ValueError`
    when the vocabulary cannot spell the regex."""
    entry = _cached(tokenizer)
    with entry.lock:  # one build per regex, even when requests race
        found = entry.constraints.get(regex)
        if found is None:
            from outlines_core import Index

            found = Constraint(Index(regex, entry.vocabulary), entry.vocabulary.get_eos_token_id())
            entry.constraints[regex] = found
            while len(entry.constraints) > MAX_CONSTRAINTS:
                entry.constraints.popitem(last=False)
        entry.constraints.move_to_end(regex)
        return found


class Constraint:
    """A regular language over one tokenizer's vocabulary (an `outlines_core.Index`)."""

    def __init__(self, index: Any, eos_token_id: int) -> None:
        self.index = index
        self.eos_token_id = eos_token_id
        self._allowed: dict[tuple[int, str, tuple[int, ...]], Any] = {}
        self._lock = threading.Lock()

    def start(self) -> RowState:
        """A fresh state for one generated row."""
        return RowState(self, self.index.get_initial_state())

    def allowed(self, state: int, device: Any, eos: tuple[int, ...]) -> Any:
        """The token ids allowed in `state` as a tensor on `device` (eos ids where it is final),
        built once per state."""
        key = (state, str(device), eos)
        ids = self._allowed.get(key)
        if ids is None:
            import torch

            stops = {self.eos_token_id, *eos}  # an eos that is also a plain token ends the row
            tokens = [t for t in self.index.get_allowed_tokens(state) if t not in stops]
            if self.index.is_final_state(state):
                tokens += list(eos)
            ids = torch.tensor(sorted(set(tokens)), dtype=torch.long, device=device)
            with self._lock:
                self._allowed[key] = ids
        return ids


@dataclass
class RowState:
    """Where one generated row is in its constraint."""

    constraint: Constraint
    state: int
    done: bool = False
    """The row has ended (eos, or a token outside the language): it is no longer masked."""

    def advance(self, token_id: int) -> None:
        """Move past `token_id`."""
        if self.done:
            return
        following = self.constraint.index.get_next_state(self.state, token_id)
        if following is None:
            self.done = True
        else:
            self.state = following

    @property
    def final(self) -> bool:
        """Whether the text so far is a whole match."""
        return bool(self.constraint.index.is_final_state(self.state))


class ConstrainedLogits:
    """A transformers `LogitsProcessor`: each constrained row of the batch (`rows`, in batch
    order; `None` rows are left alone) is masked to the tokens its state allows; eos only where
    the text is a whole match, and eos alone once nothing can follow. Rows advance by their last
    token from the second call on (the first call sees the prompt), so one processor serves one
    `generate` call; with `num_return_sequences`, each returned row needs its own state. A row is
    left alone once it has taken eos (or a token outside its language: padding after eos)."""

    def __init__(self, rows: list[RowState | None], eos_token_id: int | list[int]) -> None:
        self.rows = rows
        self.eos = (eos_token_id,) if isinstance(eos_token_id, int) else tuple(eos_token_id)
        self._started = False

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        """Advance, then mask, every constrained row."""
        import torch

        if len(self.rows) != scores.shape[0]:
            raise ValueError(f"{len(self.rows)} row states for a batch of {scores.shape[0]} rows")
        if self._started:
            last = input_ids[:, -1].tolist()
            for row, token in zip(self.rows, last, strict=True):
                if row is not None:
                    row.advance(int(token))
        self._started = True
        if all(row is None or row.done for row in self.rows):
            return scores
        mask = torch.full_like(scores, float("-inf"))
        for i, row in enumerate(self.rows):
            if row is None or row.done:
                mask[i] = 0
            else:
                mask[i, row.constraint.allowed(row.state, scores.device, self.eos)] = 0
        masked = scores + mask
        dead = torch.isneginf(masked).all(dim=-1)
        if bool(dead.any()):  # an earlier processor ruled out every allowed token: pick evenly
            masked[dead] = mask[dead]
        return masked
