"""Where bf16 pays: `bf16: auto` resolved against the hardware the run is on.

bf16 here is autocast (accelerate's `mixed_precision="bf16"`, which TRL's `bf16=True` turns on):
matmuls run in bf16, the trainable parameters and optimizer state stay fp32. It pays on GPUs with
bf16 and on CPUs with AMX-BF16 tiles. On a CPU with only AVX512-BF16 (this project's CI kind:
large square matmuls run ~3x faster in bf16, but a GRPO step's small, memory-bound ones do not),
bf16 autocast measured 1.3x on TRL's own path and nothing on top of prefix sharing, so `auto`
keeps fp32 there and says so; `bf16: true` still turns it on. On a CPU with neither, bf16 is
emulated and slower. Nothing here imports torch until asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Precision:
    """What a run computes in, and why."""

    on: bool
    reason: str
    """A sentence for the run's first event, e.g. `bf16 autocast on: the CPU has AMX-BF16`."""


def bf16_hardware() -> str | None:
    """What makes bf16 pay here (`the GPU (NVIDIA H200) has bf16`, `the CPU has AMX-BF16`), or
    `None` when nothing does. AVX512-BF16 without AMX does not count: on such a CPU bf16
    autocast measured 1.3x on TRL's row-per-completion path but no gain on top of prefix
    sharing (`benchmarks/prefix_sharing.py`, docs/benchmarks.md), so `auto` leaves it off."""
    import torch

    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return f"the GPU ({torch.cuda.get_device_name(0)}) has bf16"
        return None
    if _flag(torch.cpu, "_is_amx_tile_supported") or _cpu_flag("amx_bf16"):
        return "the CPU has AMX-BF16"
    return None


def resolve_bf16(setting: bool | Literal["auto"]) -> Precision:
    """The `bf16` setting made concrete for this machine."""
    hardware = bf16_hardware()
    if setting == "auto":
        if hardware is not None:
            return Precision(True, f"bf16 autocast on (`bf16: auto`): {hardware}")
        if _avx512_bf16():
            why = "the CPU has AVX512-BF16 but no AMX, where bf16 measured no gain over fp32"
            return Precision(False, f"fp32 (`bf16: auto`): {why} with prefix sharing")
        return Precision(False, "fp32 (`bf16: auto`): neither a bf16 GPU nor a CPU with AMX-BF16")
    if setting:
        slow = "" if hardware or _avx512_bf16() else " (no bf16 hardware here: expect it slower)"
        return Precision(True, f"bf16 autocast on (`bf16: true`){slow}")
    return Precision(False, "fp32 (`bf16: false`)")


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
