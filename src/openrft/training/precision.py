"""Where bf16 pays: `bf16: auto` resolved against the hardware the run is on.

bf16 here is autocast (accelerate's `mixed_precision="bf16"`, which TRL's `bf16=True` turns on):
matmuls run in bf16, the trainable parameters and optimizer state stay fp32. The frozen weights
(a LoRA run's base model, a reference model) are stored in bf16 once (`store_frozen_in_bf16`)
instead of being cast by autocast on every call. It pays on GPUs with bf16, on CPUs with
AMX-BF16, and on CPUs with AVX512-BF16 under LoRA: there a GRPO step's matmuls are small and
memory-bound, and autocast's per-call cast of each fp32 weight cost what bf16 saved (1.3x on
TRL's path, nothing on top of prefix sharing), while bf16-stored weights run the same matmuls
2-5x faster (docs/benchmarks.md). A full fine-tune there has no frozen weights to store, so
`auto` keeps it fp32 and says so. On a CPU with none of these, bf16 is emulated and ~80x
slower. Nothing here imports torch until asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Precision:
    """What a run computes in, and why."""

    on: bool
    reason: str
    """A sentence for the run's first event, e.g. `bf16 autocast on: the CPU has AMX-BF16`."""


def bf16_hardware(lora: bool = True) -> str | None:
    """What makes bf16 pay here (`the GPU (NVIDIA H200) has bf16`, `the CPU has AMX-BF16`), or
    `None` when nothing does. AVX512-BF16 without AMX counts only for a LoRA run (`lora`), whose
    frozen base is stored in bf16: autocast's per-call casts of fp32 weights (all a full
    fine-tune has) cost there what bf16 saves."""
    import torch

    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return f"the GPU ({torch.cuda.get_device_name(0)}) has bf16"
        return None
    if _flag(torch.cpu, "_is_amx_tile_supported") or _cpu_flag("amx_bf16"):
        return "the CPU has AMX-BF16"
    if lora and _avx512_bf16():
        return "the CPU has AVX512-BF16 and the LoRA base is stored in bf16"
    return None


def resolve_bf16(setting: bool | Literal["auto"], lora: bool = True) -> Precision:
    """The `bf16` setting made concrete for this machine and run (`lora`: a LoRA run)."""
    hardware = bf16_hardware(lora)
    if setting == "auto":
        if hardware is not None:
            return Precision(True, f"bf16 autocast on (`bf16: auto`): {hardware}")
        if _avx512_bf16():
            why = "autocast over a full fine-tune's fp32 weights gained nothing"
            return Precision(False, f"fp32 (`bf16: auto`): AVX512-BF16 but no AMX, where {why}")
        return Precision(False, "fp32 (`bf16: auto`): neither a bf16 GPU nor a CPU with bf16")
    if setting:
        slow = "" if hardware or _avx512_bf16() else " (no bf16 hardware here: expect it slower)"
        return Precision(True, f"bf16 autocast on (`bf16: true`){slow}")
    return Precision(False, "fp32 (`bf16: false`)")


def store_frozen_in_bf16(model: Any) -> int:
    """Store `model`'s frozen floating-point parameters in bf16, in place: under LoRA the whole
    base model, under full fine-tuning nothing (every parameter trains; autocast casts its fp32
    master weight per call). Autocast multiplies by a weight's bf16 value anyway, so the base's
    matmuls compute the same products; what changes is that the embedding and norm outputs, and
    so the residual stream, are bf16 too, as in a model loaded in bf16. The trainable parameters
    (the adapter, its optimizer state) and buffers (rotary frequencies) stay fp32; tied weights
    stay tied (one parameter). A model so stored runs with or without autocast (peft casts the
    adapter's input). Returns how many values are stored in bf16."""
    import torch

    stored = 0
    for parameter in model.parameters():
        if parameter.requires_grad or not parameter.is_floating_point():
            continue
        if parameter.dtype != torch.bfloat16:
            parameter.data = parameter.data.to(torch.bfloat16)
        stored += parameter.numel()
    return stored


def _avx512_bf16() -> bool:
    import torch

    return _flag(torch.cpu, "_is_avx512_bf16_supported") or _cpu_flag("avx512_bf16")


def _flag(module: object, name: str) -> bool:
    probe = getattr(module, name, None)
    return bool(probe()) if callable(probe) else False


def _cpu_flag(flag: str) -> bool:
    """A flag of /proc/cpuinfo (Linux), for torch builds without the probe."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            return any(line.startswith("flags") and flag in line.split() for line in info)
    except OSError:
        return False
