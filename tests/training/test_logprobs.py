"""The CPU LM head (`logprobs.py`) computes what TRL's fused head computes.

`token_logprobs` is checked against float64 autograd through the full logits (log-probabilities,
entropies, and the gradients of the hidden states, the weight and the bias, from both outputs),
on one tile and on several with a ragged last one, with probabilities kept and recomputed, with
a temperature and a softcap; and against TRL's `ChunkedLogProbFunction` under bf16 autocast.
`cpu_lm_head` is checked against TRL's `add_fused_lm_head` forward on a tiny model.

Tolerance: float32 against float64, atol 1e-5 / rtol 1e-4 (float32 rounds a 1,000-term softmax
sum to ~1e-7 relative; a wrong term, such as a missing one-hot or a temperature applied once
too often, moves values by >1e-2). bf16 against TRL's bf16: atol 2e-2 on log-probabilities of
magnitude ~7 (the matmul in bf16 rounds each logit to ~4e-3 relative in both).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from trl.kernels import ChunkedLogProbFunction
from trl.trainer.utils import add_fused_lm_head

from openrft.training import logprobs
from openrft.training.logprobs import cpu_lm_head, token_logprobs
from openrft.training.models import build_tiny_model, known_deprecations_silenced

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}


@pytest.fixture(autouse=True)
def _silenced() -> Iterator[None]:
    with known_deprecations_silenced():
        yield


def inputs(n: int = 37, h: int = 16, v: int = 1000, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "hidden": torch.randn(n, h, generator=generator),
        "weight": torch.randn(v, h, generator=generator) * 0.5,
        "bias": torch.randn(v, generator=generator) * 0.1,
        "targets": torch.randint(0, v, (n,), generator=generator),
        "g_logp": torch.randn(n, generator=generator),
        "g_ent": torch.randn(n, generator=generator),
    }


def reference(
    x: dict[str, torch.Tensor], temperature: float, softcap: float | None, bias: bool
) -> tuple[torch.Tensor, ...]:
    """Log-probabilities, entropies and their gradients by float64 autograd over full logits."""
    hidden, weight = (x[k].double().requires_grad_() for k in ("hidden", "weight"))
    b = x["bias"].double().requires_grad_() if bias else None
    z = hidden @ weight.t() + (b if b is not None else 0)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    logp = torch.log_softmax(z / temperature, dim=-1)
    target = logp.gather(1, x["targets"][:, None]).squeeze(1)
    entropy = -(logp.exp() * logp).sum(-1)
    (target * x["g_logp"].double() + entropy * x["g_ent"].double()).sum().backward()
    grads = (hidden.grad, weight.grad, b.grad if b is not None else None)
    return target.detach(), entropy.detach(), *grads


@pytest.mark.parametrize("tile", [1 << 23, 7 * 1000], ids=["one-tile", "ragged-tiles"])
@pytest.mark.parametrize("keep", [True, False], ids=["kept", "recomputed"])
@pytest.mark.parametrize(
    ("temperature", "softcap", "bias"),
    [(1.0, None, False), (0.7, None, True), (1.3, 3.0, True)],
    ids=["plain", "temperature-bias", "softcap"],
)
@pytest.mark.parametrize("entropy_grad", [False, True], ids=["logp-grad", "entropy-grad"])
def test_values_and_gradients_equal_float64_autograd(
    monkeypatch: pytest.MonkeyPatch,
    tile: int,
    keep: bool,
    temperature: float,
    softcap: float | None,
    bias: bool,
    entropy_grad: bool,
) -> None:
    monkeypatch.setattr(logprobs, "TILE_FLOATS", tile)
    monkeypatch.setattr(logprobs, "KEEP_FLOATS", 1 << 30 if keep else 0)
    x = inputs()
    if not entropy_grad:
        x["g_ent"] = torch.zeros_like(x["g_ent"])
    want = reference(x, temperature, softcap, bias)
    hidden, weight = (x[k].clone().requires_grad_() for k in ("hidden", "weight"))
    b = x["bias"].clone().requires_grad_() if bias else None
    logp, entropy = token_logprobs(
        hidden, weight, b, x["targets"], temperature, softcap=softcap, entropy=True
    )
    assert entropy is not None
    loss = (logp * x["g_logp"]).sum()
    if entropy_grad:
        loss = loss + (entropy * x["g_ent"]).sum()
    loss.backward()
    got = (logp, entropy, hidden.grad, weight.grad, b.grad if b is not None else None)
    names = ["logp", "entropy", "hidden", "weight", "bias"]
    for name, mine, theirs in zip(names, got, want, strict=True):
        if theirs is None:
            assert mine is None, name
            continue
        assert mine is not None, name
        torch.testing.assert_close(mine.double(), theirs, **TOLERANCE, msg=name)


def test_no_gradient_needed_keeps_nothing_and_builds_no_graph() -> None:
    x = inputs()
    with torch.no_grad():
        logp, entropy = token_logprobs(x["hidden"], x["weight"], None, x["targets"])
    assert entropy is None
    assert logp.grad_fn is None
    want = reference(x, 1.0, None, False)[0]
    torch.testing.assert_close(logp.double(), want, **TOLERANCE)


def test_bf16_autocast_matches_trls_fused_head() -> None:
    x = inputs(n=64, h=64, v=3000)
    weight = x["weight"].bfloat16()
    results = []
    for ours in (True, False):
        hidden = x["hidden"].clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if ours:
                logp, entropy = token_logprobs(hidden, weight, None, x["targets"], entropy=True)
            else:
                logp, entropy, *_ = ChunkedLogProbFunction.apply(
                    hidden, weight, None, x["targets"], 1.0, 1024, None, 1.0,
                    ("log_probs", "entropy"),
                )  # fmt: skip
        (logp * x["g_logp"]).sum().backward()
        results.append((logp.detach(), entropy.detach(), hidden.grad))
    (logp, entropy, grad), (trl_logp, trl_entropy, trl_grad) = results
    assert logp.dtype == trl_logp.dtype == torch.float32
    torch.testing.assert_close(logp, trl_logp, atol=2e-2, rtol=0)
    torch.testing.assert_close(entropy, trl_entropy, atol=2e-2, rtol=0)
    torch.testing.assert_close(grad, trl_grad, atol=2e-2, rtol=2e-2)


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp(request.param) / "model"
    return build_tiny_model(target, hidden=32, architecture=request.param)


def fused(path: Path, ours: bool) -> Any:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path)
    add_fused_lm_head(model, temperature=0.8, outputs=("log_probs", "entropy"))
    if ours:
        assert cpu_lm_head(model, 0.8, ("log_probs", "entropy"))
    return model


@pytest.mark.parametrize("shifted", [False, True], ids=["labels", "shift_labels"])
def test_cpu_head_equals_trls_fused_forward(tiny: Path, shifted: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 60, (3, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # a left-padded row
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :4] = -100  # the prompt is not scored
    if shifted:
        given = {"shift_labels": torch.cat([labels[:, 1:], torch.full((3, 1), -100)], dim=1)}
    else:
        given = {"labels": labels}
    results = []
    for ours in (False, True):
        model = fused(tiny, ours)
        out = model(input_ids=ids, attention_mask=mask, fused_lm_head=True, **given)
        (out.loss + out.entropy.sum()).backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (trl, trl_grads), (mine, my_grads) = results
    assert torch.equal(mine.label_mask, trl.label_mask)
    for field in ("loss", "log_probs", "entropy"):
        torch.testing.assert_close(getattr(mine, field), getattr(trl, field), **TOLERANCE)
    assert my_grads.keys() == trl_grads.keys()
    for name, grad in trl_grads.items():
        torch.testing.assert_close(my_grads[name], grad, **TOLERANCE, msg=name)
    # a call without the fused head is the model's own
    model = fused(tiny, True)
    assert model(input_ids=ids).logits.shape == (3, 9, model.config.vocab_size)
    # and one with the head but no labels fails as TRL's does (it was an assertion of ours)
    for ours in (False, True):
        with pytest.raises(TypeError):
            fused(tiny, ours)(input_ids=ids, fused_lm_head=True)


def test_models_it_does_not_cover_keep_trls_head(tiny: Path) -> None:
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny)
    assert not cpu_lm_head(plain, 1.0, ("log_probs",))  # TRL added no head
    model = fused(tiny, False)
    assert not cpu_lm_head(model, 1.0, ("log_probs", "is_top1"))  # an output it lacks
    model.config.logit_scale = 0.5
    assert logprobs.unsupported(model) == "the model scales its logits"
    assert not cpu_lm_head(model, 1.0, ("log_probs",))
    assert model.forward.__func__.__code__.co_name == "_fused_forward"  # still TRL's


def test_the_trainer_scores_policy_and_reference_with_it(
    tiny: Path, sums_file: Path, tmp_path: Path
) -> None:
    from tests.training.test_prefix_sharing import config_for, trainer_for

    lora = trainer_for(config_for(tiny, sums_file), tmp_path / "lora")
    full = trainer_for(config_for(tiny, sums_file, beta=0.04, lora=None), tmp_path / "full")
    for model in (lora.model.get_base_model(), full.model, full.ref_model):
        code = model.forward.__func__.__code__  # ours, in front of TRL's
        assert code.co_filename == logprobs.__file__
