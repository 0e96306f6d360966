"""Shared-prefix GRPO is exact: the same log-probabilities, losses, gradients and updated weights
as TRL's one-row-per-completion path, on two architecture families (Llama; Qwen2: biased q/k/v
projections, untied embeddings).

Tolerance: float32 values agree within atol 1e-5 / rtol 1e-4. Packing changes the shapes the
matmuls and softmaxes reduce over (a packed row is longer than TRL's rows and holds masked-out
keys that contribute exact zeros), so sums are taken in a different order; float32 rounds each
to ~6e-8 relative and the differences seen are ~5e-7 on log-probabilities, far inside the
bound and far below any change the tests would otherwise miss (a token attending to the wrong
prefix moves its log-probability by >1e-2 on these models).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from tests.training.conftest import GRADER
from trl.trainer.grpo_trainer import GRPOTrainer

from openrft.errors import ConfigError
from openrft.graders.context import GradeContext
from openrft.training import prefix_sharing
from openrft.training.callbacks import build_run_callback
from openrft.training.config import TrainingConfig
from openrft.training.dialects import load
from openrft.training.evaluate import build_evaluator
from openrft.training.grpo import build_grpo_trainer, load_model, run
from openrft.training.models import build_tiny_model, known_deprecations_silenced
from openrft.training.records import load_rows
from openrft.training.rewards import GraderReward

TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}
LOSS_TYPES = ["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def arch_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp(request.param) / "model"
    return build_tiny_model(target, hidden=32, architecture=request.param)


@pytest.fixture(autouse=True)
def _silenced() -> Iterator[None]:
    with known_deprecations_silenced():  # the deprecation our pinned trl/transformers raise
        yield


def config_for(model: Path, data: Path, **overrides: Any) -> TrainingConfig:
    fields: dict[str, Any] = {
        "model": str(model),
        "training_file": str(data),
        "grader": GRADER,
        "max_steps": 1,
        "batch_size": 2,
        "num_generations": 4,
        "max_completion_length": 8,
        "learning_rate": 1e-2,
        "eval_interval": None,
        "eval_samples": 2,
        "n_checkpoints": 1,
        "bf16": False,
        "preflight": {"enabled": False},
    }
    return load({**fields, **overrides}, dialect="native")


def trainer_for(config: TrainingConfig, out: Path) -> Any:
    model, tokenizer = load_model(config)
    rows = load_rows(config.training_file, config.grader)
    reward = GraderReward(config.grader or GRADER, GradeContext())
    evaluator = build_evaluator(config, model, tokenizer, rows[:2], reward)
    callback = build_run_callback(config, out, reward, evaluator)
    return build_grpo_trainer(config, model, tokenizer, rows, reward, callback, out)


def grpo_batch(vocab: int, *, seed: int = 0, right_padded: bool = False) -> dict[str, Any]:
    """Two prompts (5 and 7 tokens) × 4 completions of 0-6 tokens, rows shuffled as TRL's
    `shuffle_sequence_dict` leaves them; one completion fully masked (truncated and
    `mask_truncated_completions`)."""
    generator = torch.Generator().manual_seed(seed)
    width, new = 7, 6
    prompts = [torch.randint(3, vocab, (n,), generator=generator) for n in (5, 7)]
    lengths = [6, 3, 1, 0, 6, 2, 5, 4]
    prompt_ids = torch.zeros(8, width, dtype=torch.long)
    prompt_mask = torch.zeros(8, width, dtype=torch.long)
    completion_ids = torch.zeros(8, new, dtype=torch.long)
    completion_mask = torch.zeros(8, new, dtype=torch.long)
    for row, n in enumerate(lengths):
        prompt = prompts[row // 4]
        start = 0 if right_padded else width - len(prompt)
        prompt_ids[row, start : start + len(prompt)] = prompt
        prompt_mask[row, start : start + len(prompt)] = 1
        completion_ids[row] = torch.randint(3, vocab, (new,), generator=generator)
        completion_mask[row, :n] = 1
    order = torch.randperm(8, generator=generator)
    advantages = torch.randn(8, generator=generator)
    return {
        "prompt_ids": prompt_ids[order],
        "prompt_mask": prompt_mask[order],
        "completion_ids": completion_ids[order],
        "completion_mask": completion_mask[order],
        "advantages": advantages,
        "num_items_in_batch": completion_mask.sum().float(),
    }


def joined(inputs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, int]:
    ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
    mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
    return ids, mask, inputs["completion_ids"].size(1)


def test_packing_forwards_each_prompt_once(arch_model: Path) -> None:
    ids, mask, new = joined(grpo_batch(50))
    packed = prefix_sharing.pack(ids, mask, new)
    assert packed.input_ids.shape[0] == 2  # one row per distinct prompt
    # each prompt once, plus its last token again per completion that has tokens
    real = int(mask[:, -new:].sum())
    assert packed.shift_labels.ne(-100).sum() == real
    assert packed.tokens < ids.numel()


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_log_probs_and_entropies_equal_trls(
    arch_model: Path, sums_file: Path, tmp_path: Path, lora: bool
) -> None:
    config = config_for(arch_model, sums_file, **({} if lora else {"lora": None}))
    trainer = trainer_for(config, tmp_path)
    assert trainer.prefix_sharing  # `auto` turns it on for both families
    ids, mask, new = joined(grpo_batch(trainer.model.config.vocab_size))
    expected = GRPOTrainer._get_per_token_logps_and_entropies(
        trainer, trainer.model, ids, mask, new, compute_entropy=True
    )
    logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, ids, mask, new, compute_entropy=True
    )
    torch.testing.assert_close(logps, expected[0], **TOLERANCE)
    torch.testing.assert_close(entropies, expected[1], **TOLERANCE)
    # chunked as TRL chunks its no-grad passes (old policy, reference model)
    chunked, _, _ = trainer._get_per_token_logps_and_entropies(
        trainer.model, ids, mask, new, batch_size=3
    )
    torch.testing.assert_close(chunked, expected[0], **TOLERANCE)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_loss_and_every_gradient_equal_trls(
    arch_model: Path, sums_file: Path, tmp_path: Path, loss_type: str
) -> None:
    config = config_for(arch_model, sums_file, loss_type=loss_type, beta=0.04, lora=None)
    trainer = trainer_for(config, tmp_path)
    model = trainer.model
    inputs = grpo_batch(model.config.vocab_size)
    ids, mask, new = joined(inputs)
    with torch.no_grad():  # an earlier policy, so ratios and clipping are not all trivial
        logps, _, _ = GRPOTrainer._get_per_token_logps_and_entropies(trainer, model, ids, mask, new)
    noise = torch.randn(logps.shape, generator=torch.Generator().manual_seed(1))
    inputs["old_per_token_logps"] = logps + 0.3 * noise
    inputs["ref_per_token_logps"] = logps - 0.2 * noise
    results = []
    for sharing in (False, True):
        trainer.prefix_sharing = sharing
        model.zero_grad()
        loss = trainer._compute_loss(model, inputs)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads))
    (loss_trl, grads_trl), (loss_ours, grads_ours) = results
    torch.testing.assert_close(loss_ours, loss_trl, **TOLERANCE)
    assert grads_trl.keys() == grads_ours.keys()
    assert any(g.abs().sum() > 0 for g in grads_trl.values())
    for name, grad in grads_trl.items():
        torch.testing.assert_close(grads_ours[name], grad, **TOLERANCE, msg=name)


def test_right_padded_prompts_score_as_unpadded_rows(arch_model: Path) -> None:
    """A right-padded prompt leaves pads between prompt and completion; every completion token
    still sees exactly its row's real tokens at their columns, as if the pads were not there."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    model = AutoModelForCausalLM.from_pretrained(arch_model)
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    ids, mask, new = joined(grpo_batch(model.config.vocab_size, right_padded=True))
    logps, _ = prefix_sharing.score(
        model,
        ids,
        mask,
        new,
        batch_size=None,
        compute_entropy=False,
        autocast=nullcontext,
        pad_id=0,
    )
    for row in range(ids.size(0)):
        keep = mask[row].bool()
        real, columns = ids[row][keep][None], keep.nonzero().flatten()[None]
        labels = real.clone()
        labels[0, : int(mask[row, :-new].sum())] = -100
        # with a mask given, transformers does not read the position gap as a packed sequence
        ones = torch.ones_like(real)
        out = model(
            input_ids=real,
            attention_mask=ones,
            position_ids=columns,
            labels=labels,
            fused_lm_head=True,
        )
        scored = out.log_probs[0, -int(mask[row, -new:].sum()) :] if labels.ne(-100).any() else []
        expected = torch.zeros(new)
        expected[: len(scored)] = torch.as_tensor(scored)
        torch.testing.assert_close(logps[row], expected, **TOLERANCE)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"beta": 0.04, "num_iterations": 2, "max_steps": 2, "mask_truncated_completions": True},
        {"lora": None, "loss_type": "grpo", "max_completion_length": 3},
        {"gradient_checkpointing": True},
    ],
    ids=["default", "kl-iterations-masked", "full-truncated", "activation-checkpointing"],
)
def test_training_steps_give_the_same_weights(
    arch_model: Path, sums_file: Path, tmp_path: Path, overrides: dict[str, Any]
) -> None:
    """The whole path: sampling (prompts prefilled once), the old-policy and reference passes
    and the update, against `prefix_sharing: false`."""
    weights = []
    for sharing in (False, True):
        out = tmp_path / str(sharing)
        result = run(config_for(arch_model, sums_file, prefix_sharing=sharing, **overrides), out)
        [checkpoint] = result.checkpoints
        files = sorted(checkpoint.glob("*.safetensors"))
        weights.append({k: v for f in files for k, v in load_file(f).items()})
        events = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["events"]
        [setup] = [e for e in events if e["code"] == "run_setup"]
        assert setup["data"]["prefix_sharing"] is sharing
    assert weights[0].keys() == weights[1].keys()
    # Adam's first step moves a weight by lr * g / (|g| + 1e-8): on a gradient near 1e-8 the
    # float noise above becomes a visible share of lr (seen: one weight in 2048 off by 1.8e-5
    # at lr 1e-2), so weights are compared to 1% of the learning rate.
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, atol=1e-4, rtol=0, msg=name)


def test_greedy_generation_with_shared_prefill_is_unchanged(arch_model: Path) -> None:
    from transformers import AutoModelForCausalLM, GenerationConfig

    model = AutoModelForCausalLM.from_pretrained(arch_model)
    inputs = grpo_batch(model.config.vocab_size)
    ids, mask = inputs["prompt_ids"], inputs["prompt_mask"]
    settings = GenerationConfig(max_new_tokens=6, do_sample=False, pad_token_id=0)
    plain = model.generate(input_ids=ids, attention_mask=mask, generation_config=settings)
    cache = prefix_sharing.prefill(model, ids, mask)
    assert cache is not None
    assert cache.get_seq_length() == ids.size(1) - 1
    with prefix_sharing.shared_prefill(model):
        shared = model.generate(input_ids=ids, attention_mask=mask, generation_config=settings)
    assert torch.equal(shared, plain)
    assert "generate" not in vars(model)  # the wrapper is gone again


def test_auto_turns_off_with_a_reason_and_true_refuses(tmp_path: Path) -> None:
    from transformers import MistralConfig, MistralForCausalLM

    windowed = MistralForCausalLM(
        MistralConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            sliding_window=8,
        )
    )
    decision = prefix_sharing.decide("auto", windowed)
    assert not decision.on
    assert "sliding-window" in decision.reason
    with pytest.raises(ConfigError, match=r"\$\.prefix_sharing.*sliding-window"):
        prefix_sharing.decide(True, windowed)
    windowed.config._attn_implementation = "flash_attention_2"
    assert "takes no custom mask" in prefix_sharing.decide("auto", windowed).reason
    assert not prefix_sharing.decide(False, windowed).on


@pytest.mark.parametrize("kind", sorted(prefix_sharing.VERIFIED))
def test_every_type_auto_turns_on_for_scores_like_trl(kind: str) -> None:
    """`auto` turns prefix sharing on for these model types: each packs to TRL's numbers."""
    from transformers import AutoConfig, AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    shape = {
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "pad_token_id": 0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "sliding_window": None,  # Mistral v0.1's 4096 window turns `auto` off (tested above)
    }
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(kind, **shape))
    assert prefix_sharing.decide("auto", model).on
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    ids, mask, new = joined(grpo_batch(64))
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :-new] = -100
    expected = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
    logps, entropies = prefix_sharing.score(
        model, ids, mask, new, batch_size=None, compute_entropy=True, autocast=nullcontext, pad_id=0
    )
    torch.testing.assert_close(logps, expected.log_probs[:, -new:], **TOLERANCE)
    torch.testing.assert_close(entropies, expected.entropy[:, -new:], **TOLERANCE)
