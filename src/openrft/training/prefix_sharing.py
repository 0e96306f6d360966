"""Shared-prefix GRPO: a group's prompt forwarded once, each completion attending to it.

TRL scores a GRPO batch as B rows of `prompt + completion`, so a prompt sampled `G` times is
forwarded (and back-propagated) `G` times. Here the rows that share a prompt are packed into one
sequence instead::

    prompt[:-1] | prompt[-1] c1 | prompt[-1] c2 | ... | prompt[-1] cG

with a tree-shaped attention mask (every segment sees the shared prefix and itself, causally;
no segment sees another) and each token at the position id it has in TRL's padded row. The last
prompt token is repeated per segment because its hidden state predicts each completion's first
token, and those differ. Every completion token then sees exactly the tokens, at exactly the
positions, it sees in TRL's row, so log-probabilities, entropies and gradients are the same
function of the weights; only the order of floating-point sums differs
(`tests/training/test_prefix_sharing.py` states the tolerance).

`pack` builds the packed batch, `unpack` scatters per-token values back to TRL's `(B, C)` layout
(zeros where the completion is masked, as TRL's fused head leaves them). `unsupported` says why a
model cannot use it (the mask is a dense 4D tensor, so attention implementations that ignore one,
sliding-window layers and mixture-of-experts routing losses are refused). Not handled here:
multimodal inputs (the trainer keeps TRL's path for them). `shared_prefill` is the sampling
side: each distinct prompt prefilled once, its KV cache expanded to the group.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch

from openrft.errors import ConfigError, Problem
from openrft.training.constrained_generation import generate_replaced

VERIFIED = frozenset({"llama", "qwen2", "qwen3", "mistral", "smollm3"})
"""Model types whose forward takes a 4D mask and explicit position ids as this module assumes:
each is checked against TRL's fused forward, and `llama` and `qwen2` through the whole trainer
(losses, gradients, a training step), by `tests/training/test_prefix_sharing.py`."""
MASK_ATTENTION = frozenset({"sdpa", "eager"})


@dataclass
class Packed:
    """One packed batch: a row per distinct prompt, and where each scored token goes back."""

    input_ids: torch.Tensor
    """(U, L) token ids."""
    position_ids: torch.Tensor
    """(U, L) each token's column in TRL's padded row."""
    attention_mask: torch.Tensor
    """(U, 1, L, L) bool, True = may attend (additive float for eager attention)."""
    shift_labels: torch.Tensor
    """(U, L) the token each position predicts; -100 where nothing is scored."""
    source: tuple[torch.Tensor, torch.Tensor]
    """(packed row, packed column) of every scored token."""
    target: tuple[torch.Tensor, torch.Tensor]
    """(batch row, completion column) the same tokens have in TRL's layout."""
    shape: tuple[int, int]
    """TRL's (B, C)."""

    @property
    def tokens(self) -> int:
        return int(self.input_ids.numel())


def unsupported(model: Any) -> str | None:
    """Why `model` cannot score with shared prefixes (`None`: it can)."""
    config = model.config.get_text_config()
    kind = getattr(config, "model_type", "?")
    if kind not in VERIFIED:
        return f"model type `{kind}` is not one prefix sharing is verified on ({sorted(VERIFIED)})"
    attention = getattr(config, "_attn_implementation", None) or "sdpa"
    if attention not in MASK_ATTENTION:
        return f"attention `{attention}` takes no custom mask (use sdpa or eager)"
    layer_types = set(getattr(config, "layer_types", None) or ["full_attention"])
    window = getattr(config, "sliding_window", None)
    if getattr(config, "use_sliding_window", True) is False:
        window = None
    if layer_types != {"full_attention"} or window:
        return "the model has sliding-window attention layers"
    if getattr(config, "output_router_logits", False):
        return "mixture-of-experts routing losses need TRL's row layout"
    return None


@dataclass(frozen=True)
class Decision:
    """Whether a run shares prefixes, and the sentence its first event says about it."""

    on: bool
    reason: str


def decide(setting: bool | Literal["auto"], model: Any) -> Decision:
    """`prefix_sharing` made concrete for `model`; `true` on a model that cannot is a
    `ConfigError` (a run that silently fell back would not be what was asked for)."""
    if setting is False:
        return Decision(False, "prefix sharing off (`prefix_sharing: false`)")
    why = unsupported(model)
    if why is None:
        return Decision(True, "prefix sharing on: each group's prompt is scored once")
    if setting is True:
        message = f"prefix sharing cannot run on this model: {why}; set `auto` or `false`"
        raise ConfigError([Problem("$.prefix_sharing", message)])
    return Decision(False, f"prefix sharing off: {why}")


def score(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    *,
    batch_size: int | None,
    compute_entropy: bool,
    autocast: Callable[[], AbstractContextManager[Any]],
    pad_id: int,
    eager: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probabilities (and entropies) of the completions, as TRL's
    `_get_per_token_logps_and_entropies` returns them, computed on packed rows. `model` carries
    TRL's fused LM head (`add_fused_lm_head`); chunks of `batch_size` rows are packed apart, as
    TRL chunks them; `autocast` makes the context each forward runs in. `eager`: the model's
    attention adds the mask (float) instead of taking a bool one."""
    step = batch_size or input_ids.size(0)
    logps, entropies = [], []
    for start in range(0, input_ids.size(0), step):
        packed = pack(
            input_ids[start : start + step],
            attention_mask[start : start + step],
            logits_to_keep,
            pad_id=pad_id,
            float_mask=torch.float32 if eager else None,
        )
        with autocast():
            out = model(
                input_ids=packed.input_ids,
                attention_mask=packed.attention_mask,
                position_ids=packed.position_ids,
                shift_labels=packed.shift_labels,
                fused_lm_head=True,
            )
        logps.append(unpack(packed, out.log_probs))
        if compute_entropy:
            entropies.append(unpack(packed, out.entropy))
    return torch.cat(logps), torch.cat(entropies) if compute_entropy else None


def pack(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    *,
    pad_id: int = 0,
    float_mask: torch.dtype | None = None,
) -> Packed:
    """Pack TRL's `prompt + completion` rows (`input_ids`, `attention_mask`: (B, P + C), the
    completion the last `logits_to_keep` columns) into one row per distinct prompt. A prompt is
    its ids and mask in full, so identical prompts padded alike share a row; pad columns are
    dropped. `float_mask`: an additive mask of that dtype (eager attention), not a bool one."""
    batch, width = input_ids.shape
    prompt_width = width - logits_to_keep
    ids, mask = input_ids.cpu(), attention_mask.cpu().bool()
    groups: dict[tuple[tuple[int, ...], tuple[bool, ...]], list[int]] = {}
    for row in range(batch):
        key = (tuple(ids[row, :prompt_width].tolist()), tuple(mask[row, :prompt_width].tolist()))
        groups.setdefault(key, []).append(row)
    layouts = [_layout(rows, mask, prompt_width) for rows in groups.values()]
    length = max(len(layout.columns) for layout in layouts)
    packed_ids = torch.full((len(layouts), length), pad_id, dtype=input_ids.dtype)
    positions = torch.zeros((len(layouts), length), dtype=torch.long)
    labels = torch.full((len(layouts), length), -100, dtype=input_ids.dtype)
    allowed = torch.eye(length, dtype=torch.bool).repeat(len(layouts), 1, 1)  # pads see themselves
    source: list[tuple[int, int]] = []
    target: list[tuple[int, int]] = []
    for u, layout in enumerate(layouts):
        n = len(layout.columns)
        columns = torch.tensor(layout.columns)
        packed_ids[u, :n] = ids[torch.tensor(layout.rows), columns]
        positions[u, :n] = columns
        segment = torch.tensor(layout.segments)
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        same = (segment[:, None] == segment[None, :]) | (segment[None, :] < 0)
        allowed[u, :n, :n] = causal & same
        for index, (row, column) in layout.scored:
            labels[u, index] = ids[row, column]
            source.append((u, index))
            target.append((row, column - prompt_width))
    device = input_ids.device
    attend = allowed.unsqueeze(1)
    if float_mask is not None:
        blocked = torch.finfo(float_mask).min
        attend = torch.zeros(attend.shape, dtype=float_mask).masked_fill(~attend, blocked)
    src = torch.tensor(source, dtype=torch.long).reshape(-1, 2).T.to(device)
    dst = torch.tensor(target, dtype=torch.long).reshape(-1, 2).T.to(device)
    return Packed(
        input_ids=packed_ids.to(device),
        position_ids=positions.to(device),
        attention_mask=attend.to(device),
        shift_labels=labels.to(device),
        source=(src[0], src[1]),
        target=(dst[0], dst[1]),
        shape=(batch, logits_to_keep),
    )


def unpack(packed: Packed, values: torch.Tensor) -> torch.Tensor:
    """Per-token `values` of the packed batch ((U, L)) in TRL's (B, C) layout; differentiable,
    zeros where nothing was scored."""
    out = values.new_zeros(packed.shape)
    return out.index_put(packed.target, values[packed.source])


@dataclass
class _Layout:
    rows: list[int]
    """For each packed token, the batch row it is read from."""
    columns: list[int]
    """... and its column there (= its position id)."""
    segments: list[int]
    """-1 for the shared prefix, else the index of the completion it belongs to."""
    scored: list[tuple[int, tuple[int, int]]]
    """(packed index of the predicting token, (batch row, column of the predicted token))."""


def _layout(rows: list[int], mask: torch.Tensor, prompt_width: int) -> _Layout:
    """Where the tokens of one group go: the prompt's real tokens but the last once, then per
    row the last prompt token followed by the row's real completion tokens."""
    first = rows[0]
    prompt = mask[first, :prompt_width].nonzero().flatten().tolist()
    layout = _Layout([first] * len(prompt[:-1]), prompt[:-1], [-1] * len(prompt[:-1]), [])
    for segment, row in enumerate(rows):
        completion = (mask[row, prompt_width:].nonzero().flatten() + prompt_width).tolist()
        if not completion:  # fully masked (e.g. `mask_truncated_completions`): nothing to score
            continue
        if not prompt:  # no prompt token to predict the first completion token from
            raise ValueError("prefix sharing needs at least one prompt token per row")
        start = len(layout.columns)
        layout.rows += [first] + [row] * len(completion)
        layout.columns += prompt[-1:] + completion
        layout.segments += [segment] * (len(completion) + 1)
        layout.scored += [(start + k, (row, column)) for k, column in enumerate(completion)]
    return layout


@contextmanager
def shared_prefill(model: Any) -> Iterator[None]:
    """Inside, a `model.generate(input_ids=..., attention_mask=...)` whose rows repeat prompts
    prefills each distinct prompt once: all of it but its last token is forwarded for the
    distinct rows, the cache is expanded to every row, and `generate` goes on from there (it
    feeds only the tokens the cache lacks). The positions are the ones `generate` gives a
    left-padded row, so the cached keys are the ones it would have computed itself."""
    original = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if args or ids is None or mask is None or "past_key_values" in kwargs or ids.size(1) < 2:
            return original(*args, **kwargs)
        cache = prefill(model, ids, mask)
        if cache is not None:
            kwargs["past_key_values"] = cache
        return original(**kwargs)

    with generate_replaced(model, generate):
        yield


def prefill(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
    """A `DynamicCache` of every row's prompt but its last token, computed once per distinct
    prompt; `None` when no two rows share one (nothing to save)."""
    from transformers import DynamicCache

    rows = torch.cat([input_ids, attention_mask.to(input_ids.dtype)], dim=1)
    distinct, inverse = torch.unique(rows, dim=0, return_inverse=True)
    if distinct.size(0) == rows.size(0):
        return None
    width = input_ids.size(1)
    ids, mask = distinct[:, :width], distinct[:, width:]
    positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(
            input_ids=ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=positions[:, :-1],
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
    cache.batch_select_indices(inverse)
    return cache
