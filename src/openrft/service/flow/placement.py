"""SeekrFlow's `infrastructure_config` (accelerator kind and count, nodes) mapped onto what an
OpenRFT worker can run: one machine, `num_processes` data-parallel ranks.

- **Nodes**: a job runs on one worker's machine, so `n_node` > 1 gets one node.
- **Accelerators**: on a machine with accelerators (`Settings.accelerators`, else the GPUs it
  shows), `n_accel` becomes `num_processes`, one rank per accelerator, at most what the
  machine has, and lowered to a divisor of `batch_size × num_generations` (the ranks split the
  batch evenly). On a machine with none the job runs as one process on the CPU.
- **Kind**: `Settings.accelerator_type` names the machines' kind; another kind asked for runs
  on what there is.

Nothing is silently ignored: the job's first event says what was asked for and what it got
(a warning when it got less), and the job's `placement` records it. With
`Settings.strict_placement` a request no worker could honour (more nodes or accelerators than a
machine has, or another kind) is refused with a 400 naming the fields instead. This module
decides; it starts nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openrft.errors import ConfigError, Problem
from openrft.service.flow.schemas import Infrastructure
from openrft.service.settings import Settings
from openrft.training.config import TrainingConfig

GPU_DEVICE = re.compile(r"^nvidia\d+$")


def machine(settings: Settings, dev: Path = Path("/dev")) -> tuple[str, int]:
    """The workers' accelerator kind (`""` when not said; `CPU` when there are none) and
    count per machine."""
    count = settings.accelerators
    if count is None:
        try:
            count = sum(1 for entry in dev.iterdir() if GPU_DEVICE.match(entry.name))
        except OSError:
            count = 0
    if not count:
        return "CPU", 0
    return settings.accelerator_type, count


@dataclass(frozen=True)
class Placement:
    """What a job asked for and what it got."""

    processes: int
    """`num_processes` for the job."""
    device: str
    """The accelerator kind it runs on, or `CPU`."""
    accelerators: int
    """Accelerators it uses (0 on CPU)."""
    message: str
    """The job's first event."""
    short: bool
    """It got less than it asked for (the event is a warning)."""

    def record(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "device": self.device,
            "accelerators": self.accelerators,
            "nodes": 1,
        }


def place(
    asked: Infrastructure, config: TrainingConfig, settings: Settings, fixed: bool = False
) -> Placement:
    """Map `asked` onto this server's workers (`ConfigError` under strict placement when no
    worker could honour it); `fixed`: the job set its own `num_processes`, which it keeps."""
    kind, count = machine(settings)
    shortfalls: list[Problem] = []
    where = "$.infrastructure_config"
    if asked.n_node > 1:
        message = f"{asked.n_node} nodes asked for; a job runs on one machine"
        shortfalls.append(Problem(f"{where}.n_node", message))
    if asked.n_accel > count:
        message = (
            f"{asked.n_accel} accelerators asked for; a worker's machine has {count or 'none'}"
        )
        shortfalls.append(Problem(f"{where}.n_accel", message))
    if count and kind and asked.accel_type != kind:
        message = f"{asked.accel_type} asked for; the workers have {kind}"
        shortfalls.append(Problem(f"{where}.accel_type", message))
    if settings.strict_placement and shortfalls:
        raise ConfigError(
            shortfalls,
            "no worker of this server can run the infrastructure_config asked for (the "
            "operator set strict placement); ask for what the server has",
        )
    used = min(asked.n_accel, count)
    processes = _divisor_at_most(config.batch_size * config.num_generations, max(used, 1))
    device = (kind or "GPU") if count else "CPU"
    wanted = f"{asked.n_accel} × {asked.accel_type} on {asked.n_node} node(s)"
    if fixed:
        processes = config.num_processes
        got = f"{processes} process(es) on {device}, as the job's `openrft.num_processes` says"
    elif count:
        got = f"{processes} process(es), one per {device} ({used} of {count} on one machine)"
    else:
        got = "1 process on the CPU"
    short = bool(shortfalls) or processes < asked.n_accel
    why = "; ".join(p.message for p in shortfalls)
    message = f"Placement: asked for {wanted}; running on {got}" + (f" ({why})" if why else "")
    return Placement(processes, device, min(processes, count), message, short)


def _divisor_at_most(total: int, limit: int) -> int:
    """The largest divisor of `total` that is at most `limit`."""
    return next(n for n in range(min(limit, total), 0, -1) if total % n == 0)
