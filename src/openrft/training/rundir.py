"""The run directory's contract between a training run and whoever watches it (the service's
worker, the CLI, the dashboard): file names, the pause request, exit codes and the pause info.

Torch-free on purpose: the worker and the API import it without importing training.

```
RUN_DIR/
  config.json             the native config the worker wrote
  metrics.jsonl           one line per step (callbacks.py writes, progress.py tails)
  PAUSE                   created by a watcher: checkpoint after this step, exit EXIT_PAUSED
  paused.json             written by the run when it pauses: {"reason": "request"|"budget", "step"}
  checkpoints/checkpoint-N/openrft_checkpoint.json   each checkpoint's step and scores
```

A run that stops for its budget exits 0 (a local `openrft train` finished what it was asked to
do); `paused_info` tells a watcher that it paused rather than finished.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, TypedDict

METRICS = "metrics.jsonl"
PAUSE_REQUEST = "PAUSE"
"""Created in the run dir by whoever wants the run to pause: the run checkpoints after the
current step and exits `EXIT_PAUSED`; `--resume` continues it."""
PAUSED_INFO = "paused.json"
"""Written when a run pauses: `PausedInfo`."""
CHECKPOINT_INFO = "openrft_checkpoint.json"
"""File in each checkpoint dir recording its step and `valid_reward_mean`."""
EXIT_PAUSED = 75
"""Exit status of a run paused on request (BSD's EX_TEMPFAIL: try again later)."""

PauseReason = Literal["request", "budget"]


class PausedInfo(TypedDict):
    """Why and where a run paused."""

    reason: PauseReason
    step: int


def write_paused(run_dir: Path, reason: PauseReason, step: int) -> None:
    info: PausedInfo = {"reason": reason, "step": step}
    (run_dir / PAUSED_INFO).write_text(json.dumps(info), encoding="utf-8")


def paused_info(run_dir: Path) -> PausedInfo | None:
    """The run's pause info, or None when it did not pause (or the file is unreadable)."""
    try:
        data = json.loads((run_dir / PAUSED_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("reason") not in ("request", "budget"):
        return None
    step = data.get("step")
    return {"reason": data["reason"], "step": step if isinstance(step, int) else 0}
