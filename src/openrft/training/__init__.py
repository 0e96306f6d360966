"""Training: GRPO (and supervised) fine-tuning on TRL + peft, driven by OpenRFT graders.

The only package that imports torch/trl/peft, and only inside the modules that need them:
`config.py` (the job config and builders), `dialects/` (the one loader: every dialect of job
config onto `TrainingConfig`), `rewards.py` (graders as TRL reward functions),
`grpo.py` (`run(config)`, the recipe), `callbacks.py` (metrics, evaluation, checkpoints, budget),
`report.py` (plots and report.md), `export.py` (merge a LoRA checkpoint), `models.py`.
"""

from __future__ import annotations

from openrft.training.config import TrainingConfig
from openrft.training.dialects import load

__all__ = ["TrainingConfig", "load"]
