"""Per-token log-probabilities (and entropies) of the LM head on the CPU.

TRL scores completions through a fused LM head (`trl.trainer.utils.add_fused_lm_head`): the
backbone's hidden states are projected tile by tile and folded into online-logsumexp statistics,
by a Triton kernel on GPUs. Without Triton its fold is a dozen whole-tile torch operations a
vocabulary chunk (the scaling twice, `amax`, `exp`, the entropy's product, an index comparison and
more, each a pass over `(N, 32768)` floats, the backward another eight), and every position is
scored, the prompt's included. On the demo's step that fold cost more than the LM head's matmuls.

`TokenLogProbs` is the same function for the CPU: tiles of a few hundred tokens over the whole
vocabulary, torch's fused `log_softmax` for the statistics, and a backward that turns the
forward's probabilities (kept up to `KEEP_FLOATS`; beyond that, recomputed a tile at a time)
into the logits' gradient in one pass. `cpu_lm_head` puts it in front of TRL's fused forward
(same arguments, same `FusedCausalLMOutput`) and scores only the positions that have a label.
"""

from __future__ import annotations

import contextlib
import functools
import types
from typing import Any, cast

import torch

TILE_FLOATS = 1 << 23
"""Logits a tile holds (32 MiB of fp32; ~170 tokens of a 49k vocabulary, where a matmul
still runs near full speed): tokens per tile = this over the vocabulary size."""


def _tile_tokens(vocab: int) -> int:
    return max(1, TILE_FLOATS // max(vocab, 1))


KEEP_FLOATS = 1 << 26
"""Up to this many floats (256 MiB of fp32: the probabilities, and a softcap's tanh) are kept
from the forward for the backward (which then needs no second LM-head matmul); more are
recomputed there, a tile at a time."""


def token_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float = 1.0,
    logit_scale: float = 1.0,
    softcap: float | None = None,
    entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`(log p(target), entropy or None)` of each row of `hidden` (`(N, H)`) through the LM head
    `weight` (`(V, H)`) and `bias`, the logits scaled by `logit_scale / temperature` after an
    optional `softcap · tanh(· / softcap)`, as TRL's `ChunkedLogProbFunction` computes them."""
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, weight, bias)
    )
    kept = hidden.shape[0] * weight.shape[0] * (1 if softcap is None else 2)  # and the tanh
    keep = grad and kept <= KEEP_FLOATS
    out: tuple[torch.Tensor, torch.Tensor | None] = TokenLogProbs.apply(  # type: ignore[no-untyped-call]
        hidden, weight, bias, targets, temperature, logit_scale, softcap, entropy, keep
    )
    return out


class TokenLogProbs(torch.autograd.Function):
    """`log p(target)` of each row of `hidden @ weight.T` (+ `bias`) under
    `softmax(logits · logit_scale / temperature)`, and its entropy when asked (`token_logprobs`).

    Gradients flow to `hidden`, `weight` and `bias` (those that need them) from the
    log-probabilities and the entropy. The matmuls run in the autocast dtype when autocast is on
    (the weight cast once a call), the softmax arithmetic in fp32. With `keep`, the forward's
    probabilities are kept for a backward that has no entropy gradient (TRL's entropy is a
    metric); otherwise the backward recomputes each tile's logits."""

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        temperature: float,
        logit_scale: float,
        softcap: float | None,
        entropy: bool,
        keep: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        ctx.set_materialize_grads(False)
        device = hidden.device
        dtype = (
            torch.get_autocast_dtype(device.type)
            if torch.is_autocast_enabled(device.type)
            else hidden.dtype
        )
        n, vocab = hidden.shape[0], weight.shape[0]
        weight_t = weight.to(dtype).t()
        b = None if bias is None else bias.to(dtype)
        scale = logit_scale / temperature
        logps = torch.empty(n, device=device, dtype=torch.float32)
        entropies = torch.empty(n, device=device, dtype=torch.float32) if entropy else None
        probs = torch.empty((n, vocab), device=device, dtype=torch.float32) if keep else None
        tanhs = torch.empty((n, vocab), device=device) if keep and softcap is not None else None
        step = _tile_tokens(vocab)
        with torch.autocast(device.type, enabled=False):
            for start in range(0, n, step):
                end = min(start + step, n)
                z, tanh = _transform(hidden[start:end].to(dtype) @ weight_t, b, scale, softcap)
                logp = torch.log_softmax(z, dim=-1)
                del z
                logps[start:end] = logp.gather(1, targets[start:end, None]).squeeze(1)
                if entropies is None and probs is None:
                    continue
                p = torch.exp(logp, out=probs[start:end]) if probs is not None else logp.exp()
                if entropies is not None:
                    entropies[start:end] = -(p * logp).sum(-1)
                if tanhs is not None and tanh is not None:
                    tanhs[start:end] = tanh
        ctx.save_for_backward(hidden, weight, bias, targets, entropies, probs, tanhs)
        ctx.args = (dtype, scale, softcap)
        return logps, entropies

    @staticmethod
    def backward(
        ctx: Any, grad_logps: torch.Tensor | None, grad_entropies: torch.Tensor | None
    ) -> tuple[Any, ...]:
        hidden, weight, bias, targets, entropies, probs, tanhs = ctx.saved_tensors
        dtype, scale, softcap = ctx.args
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[:3]
        nothing = (None,) * 9
        if grad_logps is None and grad_entropies is None:
            return nothing
        n, vocab = hidden.shape[0], weight.shape[0]
        weight_c = weight.to(dtype)
        weight_t = weight_c.t()
        b = None if bias is None else bias.to(dtype)
        grad_hidden = torch.empty(hidden.shape, dtype=torch.float32) if need_hidden else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32) if need_weight else None
        grad_bias = torch.zeros(vocab, dtype=torch.float32) if need_bias else None
        g_logp = None if grad_logps is None else grad_logps.float() * scale
        g_ent = None if grad_entropies is None else grad_entropies.float() * scale
        kept = probs is not None and g_ent is None
        rows = torch.arange(n, device=hidden.device)
        step = _tile_tokens(vocab)
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, n, step):
                end = min(start + step, n)
                h = hidden[start:end].to(dtype)
                # d log p_t / dz_j = 1[j = t] - p_j;  d H / dz_j = -p_j (log p_j + H)
                if kept:
                    assert g_logp is not None
                    grad = probs[start:end] * -g_logp[start:end, None]
                    tanh = None if tanhs is None else tanhs[start:end]
                else:
                    z, tanh = _transform(h @ weight_t, b, scale, softcap)
                    logp = torch.log_softmax(z, dim=-1)
                    del z
                    if g_ent is None:
                        assert g_logp is not None
                        grad = logp.exp_().mul_(-g_logp[start:end, None])
                    else:
                        p = logp.exp()
                        coef = logp.add_(entropies[start:end, None]).mul_(g_ent[start:end, None])
                        if g_logp is not None:
                            coef.add_(g_logp[start:end, None])
                        grad = p.mul_(coef).neg_()
                        del coef
                if g_logp is not None:
                    grad[rows[: end - start], targets[start:end]] += g_logp[start:end]
                if tanh is not None:
                    grad.mul_(1 - tanh * tanh)
                grad_c = grad.to(dtype)
                if grad_hidden is not None:
                    grad_hidden[start:end] = (grad_c @ weight_c).float()
                if grad_weight is not None:
                    grad_weight.addmm_(grad_c.t().float(), h.float())
                if grad_bias is not None:
                    grad_bias += grad.sum(0)
        return (
            None if grad_hidden is None else grad_hidden.to(hidden.dtype),
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None if grad_bias is None else grad_bias.to(bias.dtype),
            *nothing[:6],
        )


def _transform(
    z: torch.Tensor, bias: torch.Tensor | None, scale: float, softcap: float | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """fp32 logits from a tile's matmul: `bias`, then `softcap · tanh(z / softcap)` (its `tanh`
    is kept for the backward), then `scale`."""
    if bias is not None:
        z = z + bias
    z = z.float()
    tanh = None
    if softcap is not None:
        tanh = torch.tanh(z / softcap)
        z = tanh * softcap
    if scale != 1.0:
        z.mul_(scale)
    return z, tanh


def unsupported(model: Any) -> str | None:
    """Why `cpu_lm_head` leaves `model` to TRL's fused head (`None`: it takes it)."""
    config = model.config
    text = config.get_text_config()
    if text is not config:
        return "a multimodal model (its backbone is not `base_model`)"
    if getattr(text, "output_router_logits", False):
        return "mixture-of-experts routing losses"
    scales = ("logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
    if any(getattr(text, name, None) is not None for name in scales):
        return "the model scales its logits"
    head = model.get_output_embeddings()
    if head is None or type(head.weight) is not torch.nn.Parameter:
        return "its LM head is not a plain weight"
    return None


def cpu_lm_head(
    model: Any, temperature: float, outputs: tuple[str, ...], cast_to_fp32: bool = False
) -> bool:
    """Put `token_logprobs` in front of the fused LM head TRL added to `model`
    (`add_fused_lm_head`, with the same `temperature`, `outputs` and `cast_lm_head_to_fp32`):
    a call with `fused_lm_head=True` whose LM head is on the CPU runs the backbone, scores only
    the positions with a label (TRL's head without Triton scores every one) and returns TRL's
    `FusedCausalLMOutput`; any other call is TRL's. False (and nothing changed) where
    `unsupported` says so, where TRL added no head, or for outputs other than log-probabilities
    and entropies."""
    from trl.trainer.utils import FusedCausalLMOutput

    fused = model.__dict__.get("forward")
    code = getattr(getattr(fused, "__func__", None), "__code__", None)
    if getattr(code, "co_name", None) != "_fused_forward":  # its name: `functools.wraps`'s
        return False
    if not set(outputs) <= {"log_probs", "entropy"} or unsupported(model) is not None:
        return False
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)

    @functools.wraps(type(model).forward)
    def forward(
        self: Any,
        *args: Any,
        fused_lm_head: bool = False,
        labels: torch.Tensor | None = None,
        shift_labels: torch.Tensor | None = None,
        num_items_in_batch: Any = None,
        **kwargs: Any,
    ) -> Any:
        head = self.get_output_embeddings()
        if (
            not fused_lm_head
            or head.weight.device.type != "cpu"
            or kwargs.get("output_router_logits")
            or (labels is None and shift_labels is None)  # TRL's head says what is missing
        ):
            return fused(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, shift_labels = hidden[:, :-1], cast(torch.Tensor, labels)[:, 1:]
        mask = shift_labels != -100
        picked = hidden[mask]
        context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if cast_to_fp32:
            picked = picked.float()
            context = torch.autocast(picked.device.type, enabled=False)
        with context:
            logps, entropies = token_logprobs(
                picked,
                head.weight,
                head.bias,
                shift_labels[mask],
                temperature=temperature,
                softcap=softcap,
                entropy="entropy" in outputs,
            )
        log_probs = logps.new_zeros(mask.shape).masked_scatter(mask, logps)
        entropy = None
        if entropies is not None:
            entropy = entropies.new_zeros(mask.shape).masked_scatter(mask, entropies)
        count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        return FusedCausalLMOutput(
            loss=-log_probs.sum() / count,
            log_probs=log_probs,
            entropy=entropy,
            label_mask=mask,
        )

    model.forward = types.MethodType(forward, model)
    return True
