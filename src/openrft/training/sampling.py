"""Sampling a token per row on the CPU without `torch.multinomial`'s cost.

transformers' sampling loop draws each step's tokens with `torch.multinomial(probs, 1)`, which
on the CPU draws an exponential variate for every vocabulary entry of every row (the
exponential race: `argmax(p / E)`). For a GRPO batch, 32 rows over SmolLM2's 49,152-token
vocabulary, that is ~48 ms a decoding step on this machine kind, more than the LM head's matmul
(~19 ms). `draw` samples the same distribution by inverse transform: each row's cumulative sum
in float64, one uniform per row, a binary search: ~1.4 ms.

`decode` is transformers' decoding loop (`GenerationMixin._sample`) with `draw` in the place of
`torch.multinomial`, as a `custom_generate` callable, transformers' documented hook for the
decoding loop: `model.generate(..., custom_generate=decode)` prepares the inputs, the logits
processors and the stopping criteria as always, and `decode` runs the steps. What it does not
cover is handed to `_sample` unchanged: a model off the CPU (there `torch.multinomial` is one
fast kernel and transformers defers its stop checks), greedy decoding, a streamer,
`return_dict_in_generate`, synced GPUs, encoder-decoder models and assistant models.
`sampled_fast(model)` makes every `model.generate` call inside it use `decode` (TRL's trainer
calls `generate` itself).

The tokens follow the same distribution, not the same random stream: a seeded run is as
reproducible as before but draws other tokens than `torch.multinomial` would from that seed.
Importing this module does not import torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def draw(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One index per row of `probs` (`[rows, vocab]`, each row non-negative with a positive
    finite sum, as softmax gives), drawn with probability proportional to its entry; the
    uniforms come from `generator` when one is given (a seeded request), as
    `torch.multinomial(..., generator=)`'s would.

    Exact up to float64 rounding of the cumulative sums (~1e-16 of a row's mass, far below the
    float32 probabilities' own precision): `u` is uniform on `[0, total)`, and the index found
    is the first whose cumulative sum exceeds `u`, so an entry of probability zero is never
    drawn (its interval is empty), the last one included (`u` stays below the total). Raises
    `RuntimeError`, as `torch.multinomial` does, on a row with no mass or a non-finite one."""
    import torch

    cdf = probs.cumsum(dim=-1, dtype=torch.float64)
    total = cdf[:, -1:]
    if not bool((torch.isfinite(total) & (total > 0)).all()):
        raise RuntimeError("probability tensor contains either `inf`, `nan`, or a row with no mass")
    u = torch.rand(total.shape, dtype=torch.float64, device=probs.device, generator=generator)
    u = u * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, u, right=True).squeeze(1)


def decode(
    model: Any,
    input_ids: Any,
    logits_processor: Any,
    stopping_criteria: Any,
    generation_config: Any,
    synced_gpus: bool = False,
    streamer: Any = None,
    **model_kwargs: Any,
) -> Any:
    """`GenerationMixin._sample` with `draw` for `torch.multinomial` (see the module's
    docstring); the same arguments and, when it runs the loop itself, the same tensor of
    prompt and generated ids, finished rows padded with the pad token."""
    import torch
    from transformers.generation.utils import GenerationMixin

    covered = (
        input_ids.device.type == "cpu"
        and generation_config.do_sample
        and not generation_config.return_dict_in_generate
        and not generation_config.is_assistant
        and not model.config.is_encoder_decoder
        and streamer is None
        and not synced_gpus
    )
    if not covered:
        return GenerationMixin._sample(
            model,
            input_ids,
            logits_processor,
            stopping_criteria,
            generation_config,
            synced_gpus=synced_gpus,
            streamer=streamer,
            **model_kwargs,
        )
    pad = generation_config._pad_token_tensor
    pads_finished = any(hasattr(criteria, "eos_token_id") for criteria in stopping_criteria)
    unfinished = torch.ones(input_ids.shape[0], dtype=torch.long, device=input_ids.device)
    forward = (
        model.get_compiled_call(generation_config.compile_config)
        if model._valid_auto_compile_criteria(model_kwargs, generation_config)
        else model.__call__
    )
    outputs = model._prefill(input_ids, generation_config, model_kwargs, is_first_iteration=True)
    with model._optimize_model_for_decode():
        while True:
            model_kwargs = model._update_model_kwargs_for_generation(
                outputs, model_kwargs, is_encoder_decoder=False
            )
            logits = outputs.logits[:, -1].to(copy=True, dtype=torch.float32)
            del outputs  # the prefill's logits can be large
            scores = logits_processor(input_ids, logits)
            tokens = draw(torch.softmax(scores, dim=-1))
            if pads_finished:
                tokens = tokens * unfinished + pad * (1 - unfinished)
            input_ids = torch.cat([input_ids, tokens[:, None]], dim=-1)
            unfinished = unfinished & ~stopping_criteria(input_ids, None)
            if not bool(unfinished.any()):
                return input_ids
            inputs = model.prepare_inputs_for_generation(
                input_ids,
                next_sequence_length=1 if model_kwargs["use_cache"] else None,
                **model_kwargs,
            )
            outputs = forward(**inputs, return_dict=True)


@contextmanager
def sampled_fast(model: Any) -> Iterator[None]:
    """Inside, `model.generate` calls that name no `custom_generate` of their own decode with
    `decode`; the model's `generate` is back after."""
    from openrft.training.constrained_generation import generate_replaced

    original = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("custom_generate", decode)
        return original(*args, **kwargs)

    with generate_replaced(model, generate):
        yield
