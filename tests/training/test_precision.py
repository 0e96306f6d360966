"""`bf16: auto` resolves against the hardware, says why, and keeps fp32 master weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from openrft.training.grpo import run
from openrft.training.models import known_deprecations_silenced
from openrft.training.precision import bf16_hardware, resolve_bf16


def test_auto_follows_the_hardware_and_says_why() -> None:
    hardware = bf16_hardware()
    auto = resolve_bf16("auto")
    assert auto.on is (hardware is not None)
    if hardware:
        assert hardware in auto.reason
    else:
        assert "fp32" in auto.reason
    assert resolve_bf16(True).on
    assert not resolve_bf16(False).on
    assert resolve_bf16(False).reason == "fp32 (`bf16: false`)"


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
