"""A SeekrFlow `TrainingConfig` as an OpenRFT job: the native config (resources resolved for
the project) and the columns the job shows, for `POST /v1/flow/fine-tune` (under its
`training_config`) and for `POST /v1/fine_tuning/jobs`, which takes the same `TrainingConfig`
as its whole body (what a SeekrFlow user posting their config to OpenAI's route gets).

Problems are reported at their place in the request: `$.training_config.reward_components…`
on SeekrFlow's route, `$.reward_components…` on OpenAI's, and a file or model the project
cannot use at `….training_files` / `….model` (SeekrFlow's names, not the native ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openrft.errors import ConfigError, Problem, reroot
from openrft.graders.seekr import DEFAULT_REWARD_COMPONENTS
from openrft.service.flow.schemas import normalized_components
from openrft.service.resources import resolve_resources
from openrft.service.settings import Settings
from openrft.service.store import Store
from openrft.training.config import TrainingConfig
from openrft.training.dialects import load

NATIVE_PATHS = {
    "$.training_file": ".training_files",
    "$.validation_file": ".validation_files",
    "$.model": ".model",
}
"""Where a native field's resource problem is, in SeekrFlow's names."""


def seekrflow_job(
    raw: Mapping[str, Any], store: Store, settings: Settings, project: str, root: str = "$"
) -> tuple[TrainingConfig, dict[str, Any]]:
    """The native config of the SeekrFlow `TrainingConfig` `raw` (at `root` in the request),
    and the job columns it shows (`model`, `training_file`, …, and `flow`: its
    `fine_tune_type` and the `reward_components` seekrai resolves)."""
    try:
        config = resolve_resources(load(raw, dialect="seekrflow"), store, settings, project)
    except ConfigError as exc:
        problems = [
            Problem(
                root + NATIVE_PATHS[p.where] if p.where in NATIVE_PATHS else reroot(p.where, root),
                p.message,
            )
            for p in exc.problems
        ]
        raise ConfigError(problems, "invalid SeekrFlow TrainingConfig") from None
    kind = str(raw.get("fine_tune_type", "STANDARD")).upper()
    components = raw.get("reward_components")
    if components is None and kind in ("REINFORCEMENT", "GRPO"):  # seekrai's default reward
        components = DEFAULT_REWARD_COMPONENTS
    shown = {
        "model": raw["model"],
        "training_file": raw["training_files"][0],
        "validation_file": (raw.get("validation_files") or [None])[0],
        "suffix": raw.get("experiment_name"),
        "method": {"type": config.method},
        "hyperparameters": {"n_epochs": config.n_epochs, "batch_size": config.batch_size},
        "flow": {
            "fine_tune_type": kind,
            "reward_components": normalized_components(components) if components else None,
        },
    }
    return config, shown
