"""The service's job body: OpenAI's (`openai.py`) plus `openrft`, native `TrainingConfig`
fields that override the mapped ones, which the `openai` SDK sends with
`extra_body={"openrft": {...}}` (e.g. `num_generations`, `max_completion_length`, `budget`).

The body's own `training_file` and `validation_file` win over any given in `openrft`; problems
in an override are reported at `$.openrft.<field>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from openrft.errors import ConfigError, Problem
from openrft.training.dialects import openai
from openrft.training.dialects.base import Dialect, Mapped, apply_overrides, keys_of

FILES = frozenset({"training_file", "validation_file"})
"""Fields the body's own values win for over an `openrft` override."""


class JobCreate(openai.OpenAIJob):
    """`POST /v1/fine_tuning/jobs`: OpenAI's job body, plus OpenRFT's extension."""

    openrft: dict[str, Any] | None = None
    """OpenRFT extension: native `TrainingConfig` fields that override the mapped ones."""


def to_native(data: Mapping[str, Any]) -> Mapped:
    """Map the OpenAI part, then apply the `openrft` overrides."""
    overrides = data.get("openrft")
    if overrides is not None and not isinstance(overrides, Mapping):
        raise ConfigError([Problem("$.openrft", "must be an object of TrainingConfig fields")])
    mapped = openai.to_native({k: v for k, v in data.items() if k != "openrft"})
    apply_overrides(mapped, overrides, FILES)
    return mapped


DIALECT = Dialect(
    "service", "OpenAI job body", to_native, keys_of(frozenset({"openrft"})), extends="openai"
)
