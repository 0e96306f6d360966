"""`sampling.draw` and `sampling.decode`: the sampling distribution `torch.multinomial` gives,
and transformers' decoding loop around it unchanged."""

from contextlib import nullcontext

import pytest
import torch
from transformers import AutoModelForCausalLM, GenerationConfig

from openrft.training import prefix_sharing, sampling
from openrft.training.models import build_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> object:
    path = build_tiny_model(tmp_path_factory.mktemp("sampling") / "model", hidden=32)
    return AutoModelForCausalLM.from_pretrained(path).eval()


def test_draw_follows_the_distribution_and_never_draws_a_zero() -> None:
    torch.manual_seed(0)
    rows = 400_000
    probs = torch.tensor([0.1, 0.0, 0.6, 0.3, 0.0]).expand(rows, 5).contiguous()
    counts = torch.bincount(sampling.draw(probs), minlength=5).double()
    # the trailing zero too: u stays below a row's total
    assert counts[1] == 0
    assert counts[4] == 0
    expected = probs[0].double() * rows
    sigma = (expected * (1 - probs[0].double())).sqrt()
    # 5 standard deviations of a binomial count: a false alarm once in ~3 million runs
    assert ((counts - expected).abs() <= 5 * sigma + 1e-9).all(), counts


def test_draw_takes_unnormalised_rows_and_tiny_masses() -> None:
    torch.manual_seed(1)
    probs = torch.zeros(1000, 49152)
    probs[:, 7] = 3.0  # unnormalised, as multinomial accepts
    probs[:, 49151] = 1e-30  # a mass float32 keeps but a float32 cumulative sum would lose
    drawn = sampling.draw(probs)
    assert set(drawn.tolist()) <= {7, 49151}
    one_hot = torch.zeros(5, 49152)
    one_hot[torch.arange(5), torch.tensor([0, 1, 2, 49150, 49151])] = 1.0
    assert sampling.draw(one_hot).tolist() == [0, 1, 2, 49150, 49151]


def test_draw_with_a_generator_repeats_and_leaves_the_global_stream_alone() -> None:
    probs = torch.softmax(torch.randn(3, 1000, generator=torch.Generator().manual_seed(3)), -1)
    first = sampling.draw(probs, torch.Generator().manual_seed(7))
    assert torch.equal(first, sampling.draw(probs, torch.Generator().manual_seed(7)))
    torch.manual_seed(0)
    expected = torch.rand(4)
    torch.manual_seed(0)
    sampling.draw(probs, torch.Generator().manual_seed(7))
    assert torch.equal(torch.rand(4), expected)  # a seeded request's draws are its own


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 0.0])
def test_draw_refuses_rows_multinomial_refuses(bad: float) -> None:
    probs = torch.full((2, 4), 0.25)
    probs[1] = bad
    with pytest.raises(RuntimeError, match="probability tensor"):
        sampling.draw(probs)
    if bad != 0.0:  # the same refusal as torch's
        with pytest.raises(RuntimeError, match="probability tensor"):
            torch.multinomial(probs, 1)


def _batch(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (6, 7), generator=generator)
    mask = torch.ones_like(ids)
    mask[2:4, :3] = 0  # left padding
    ids[mask == 0] = 0
    return ids.repeat_interleave(2, dim=0), mask.repeat_interleave(2, dim=0)


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "shared-prefill"])
def test_decode_is_transformers_loop(model: object, shared: bool) -> None:
    """With every row's distribution one token (top_k=1), sampling is deterministic, so
    `decode` must give transformers' `_sample` tokens exactly: the same cache use (a
    prefilled one too), eos stops and pad-filled finished rows."""
    ids, mask = _batch(model.config.vocab_size)  # type: ignore[attr-defined]
    plain = model.generate(  # type: ignore[attr-defined]
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=9,
        do_sample=True,
        top_k=1,
        pad_token_id=0,
    )
    # an eos some rows reach midway: the token the plain run gives row 0 at step 3
    eos = int(plain[0, ids.size(1) + 2])
    settings = GenerationConfig(
        max_new_tokens=9, do_sample=True, top_k=1, pad_token_id=0, eos_token_id=eos
    )
    expected = model.generate(  # type: ignore[attr-defined]
        input_ids=ids, attention_mask=mask, generation_config=settings
    )
    assert (expected[:, ids.size(1) :] == eos).any(dim=1).sum() >= 1
    shared_context = prefix_sharing.shared_prefill(model) if shared else nullcontext()
    with shared_context, sampling.sampled_fast(model):
        got = model.generate(  # type: ignore[attr-defined]
            input_ids=ids, attention_mask=mask, generation_config=settings
        )
    assert torch.equal(got, expected)
    assert "generate" not in vars(model)


def test_decode_samples_reproducibly_and_hands_the_rest_to_transformers(model: object) -> None:
    ids, mask = _batch(model.config.vocab_size)  # type: ignore[attr-defined]
    kwargs = {"input_ids": ids, "attention_mask": mask, "max_new_tokens": 6, "pad_token_id": 0}
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append(model.generate(**kwargs, do_sample=True, custom_generate=sampling.decode))  # type: ignore[attr-defined]
    assert torch.equal(runs[0], runs[1])
    # not sampling the same prompt's rows identically
    assert not torch.equal(runs[0][0], runs[0][1])
    # greedy and dictionary outputs go through transformers' own loop
    greedy = model.generate(**kwargs, do_sample=False)  # type: ignore[attr-defined]
    assert torch.equal(
        model.generate(**kwargs, do_sample=False, custom_generate=sampling.decode),  # type: ignore[attr-defined]
        greedy,
    )
    out = model.generate(  # type: ignore[attr-defined]
        **kwargs, do_sample=True, return_dict_in_generate=True, custom_generate=sampling.decode
    )
    assert out.sequences.shape == runs[0].shape
