"""`bf16: auto` resolves against the hardware, says why, and keeps fp32 master weights."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from openrft.training import precision
from openrft.training.grpo import build_grpo_trainer, load_model, run
from openrft.training.models import build_tiny_model, known_deprecations_silenced
from openrft.training.precision import bf16_hardware, resolve_bf16, store_frozen_in_bf16


@pytest.fixture(autouse=True)
def _silenced() -> Iterator[None]:
    with known_deprecations_silenced():  # the deprecation our pinned trl/transformers raise
        yield


@pytest.mark.parametrize("lora", [True, False])
def test_auto_follows_the_hardware_and_says_why(lora: bool) -> None:
    hardware = bf16_hardware(lora)
    auto = resolve_bf16("auto", lora)
    assert auto.on is (hardware is not None)
    if hardware:
        assert hardware in auto.reason
    else:
        assert "fp32" in auto.reason
    assert resolve_bf16(True).on
    assert not resolve_bf16(False).on
    assert resolve_bf16(False).reason == "fp32 (`bf16: false`)"


@pytest.mark.parametrize(
    ("flags", "lora", "on", "says"),
    [
        ({"amx_bf16", "avx512_bf16"}, False, True, "the CPU has AMX-BF16"),
        ({"avx512_bf16"}, True, True, "AVX512-BF16 and the LoRA base is stored in bf16"),
        ({"avx512_bf16"}, False, False, "a full fine-tune's fp32 weights gained nothing"),
        (set(), True, False, "neither a bf16 GPU nor a CPU with bf16"),
    ],
)
def test_auto_on_each_cpu_kind(
    monkeypatch: pytest.MonkeyPatch, flags: set[str], lora: bool, on: bool, says: str
) -> None:
    """The CPU kinds this project has run on, as /proc/cpuinfo and torch's probes report
    them (the probes are the edge: this machine is one kind only)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "_flag", lambda module, name: False)
    monkeypatch.setattr(precision, "_cpu_flag", lambda flag: flag in flags)
    auto = resolve_bf16("auto", lora)
    assert auto.on is on
    assert says in auto.reason
    slow = "expect it slower" in resolve_bf16(True, lora).reason
    assert slow is (not flags)


@pytest.mark.parametrize("architecture", ["llama", "qwen2"])
def test_the_frozen_base_is_stored_in_bf16_once(
    architecture: str, make_config: Any, tmp_path: Path
) -> None:
    """Under LoRA every frozen weight is bf16 (tied ones still one parameter), the adapter and
    the rotary buffers fp32; the model samples without autocast (the evaluator's path) and
    trains under it, with fp32 gradients on the adapter only."""
    source = build_tiny_model(tmp_path / "model", architecture=architecture)  # type: ignore[arg-type]
    config = make_config(model=str(source), bf16=True)
    model, tokenizer = load_model(config)
    stored = store_frozen_in_bf16(model)
    frozen = [p for p in model.parameters() if not p.requires_grad]
    trained = [p for p in model.parameters() if p.requires_grad]
    assert stored == sum(p.numel() for p in frozen) > 0
    assert {p.dtype for p in frozen} == {torch.bfloat16}
    assert {p.dtype for p in trained} == {torch.float32}
    assert {b.dtype for b in model.buffers()} <= {torch.float32}
    base = model.get_base_model()
    tied = base.config.tie_word_embeddings
    same = base.get_input_embeddings().weight is base.get_output_embeddings().weight
    assert same is bool(tied)
    assert store_frozen_in_bf16(model) == stored  # idempotent
    ids = tokenizer("What is 1 + 2?", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == ids["input_ids"].shape[1] + 4
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**ids, labels=ids["input_ids"]).loss
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trained)
    assert all(p.grad is None for p in frozen)


def test_a_bf16_lora_trainer_stores_its_base_and_a_full_fine_tune_does_not(
    make_config: Any, tmp_path: Path
) -> None:
    from openrft.graders.context import GradeContext
    from openrft.training.callbacks import build_run_callback
    from openrft.training.records import load_rows
    from openrft.training.rewards import GraderReward

    for lora, dtype in [(True, torch.bfloat16), (False, torch.float32)]:
        config = make_config(bf16=True) if lora else make_config(bf16=True, lora=None)
        model, tokenizer = load_model(config)
        rows = load_rows(config.training_file, config.grader)
        reward = GraderReward(config.grader, GradeContext())
        callback = build_run_callback(config, tmp_path / str(lora), reward, None)
        trainer = build_grpo_trainer(
            config, model, tokenizer, rows, reward, callback, tmp_path / str(lora)
        )
        assert trainer.args.bf16
        frozen = {p.dtype for p in trainer.model.parameters() if not p.requires_grad}
        assert frozen == ({dtype} if lora else set())
        assert {p.dtype for p in trainer.model.parameters() if p.requires_grad} == {torch.float32}


def test_a_bad_setting_is_refused_at_its_path(make_config: Any) -> None:
    from openrft.errors import ConfigError

    with pytest.raises(ConfigError, match=r"\$\.bf16"):
        make_config(bf16="fast")


def test_bf16_run_autocasts_and_keeps_fp32_trainable_weights(
    make_config: Any, tmp_path: Path, read_lines: Any
) -> None:
    """`bf16: true` trains (autocast through accelerate) and says so in the run's first event;
    the adapter it saves is fp32, the master weights' dtype."""
    with known_deprecations_silenced():
        result = run(make_config(bf16=True), tmp_path)
    [setup] = [e for e in read_lines(tmp_path)[0]["events"] if e["code"] == "run_setup"]
    assert setup["data"] == {"bf16": True, "prefix_sharing": True}
    assert setup["message"].startswith("Step 0: bf16 autocast on")
    from safetensors.torch import load_file

    [adapter] = result.checkpoints[0].glob("adapter_model.safetensors")
    dtypes = {tensor.dtype for tensor in load_file(adapter).values()}
    assert dtypes == {torch.float32}
    state = json.loads((result.checkpoints[0] / "trainer_state.json").read_text())
    assert state["global_step"] == 2


def test_a_bf16_supervised_stage_stores_its_base_and_saves_an_fp32_adapter(
    make_config: Any, tmp_path: Path
) -> None:
    """The SFT stage (a warm-up, or a `method: supervised` job) stores the base as the GRPO
    stage does, and what it trains and saves is the fp32 adapter."""
    from safetensors.torch import load_file

    from openrft.training.config import SFTSettings
    from openrft.training.grpo import supervise
    from openrft.training.records import load_rows

    config = make_config(bf16=True)
    model, tokenizer = load_model(config)
    rows = load_rows(config.training_file, config.grader)
    settings = SFTSettings(completion="{{ item.reference_answer }}", max_steps=1, batch_size=2)
    trainer = supervise(config, settings, model, tokenizer, rows, tmp_path / "sft")
    assert trainer.args.bf16
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}
    trainer.save_model(str(tmp_path / "adapter"))
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert {tensor.dtype for tensor in saved.values()} == {torch.float32}


def test_a_vllm_run_keeps_its_base_fp32_through_a_warm_up(make_config: Any) -> None:
    """vLLM's weight sync merges the adapter into the base and unmerges it every step: a bf16
    base would round a little more each time, so neither stage stores it in bf16."""
    from openrft.training.grpo import store_frozen

    config = make_config(bf16=True, use_vllm=True)
    model, _ = load_model(config)
    store_frozen(config, model)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    store_frozen(make_config(bf16=True), model)
    assert {p.dtype for p in model.parameters() if not p.requires_grad} == {torch.bfloat16}
