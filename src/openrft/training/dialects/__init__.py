"""Job configs in every dialect, mapped onto the one native `TrainingConfig`: the only loader.

- `native` (`native.py`): `TrainingConfig`'s own fields (every GRPO knob).
- `openai` (`openai.py`): OpenAI's job body, `method: {type, reinforcement: {grader, …}}`.
- `seekrflow` (`seekrflow.py`): SeekrFlow's `TrainingConfig` (`training_files`,
  `fine_tune_type`, `reward_components`, `lora_config`, …) as in the `seekrai` 0.35 SDK.
- `service` (`service.py`): the API's job body, OpenAI's plus `openrft` (native overrides).

`load(source)` takes a YAML/JSON file (relative dataset paths resolved against its directory) or
a mapping. The dialect is recognised from keys only one form has (`detect_dialect`), or given
(`load(data, dialect="native")`, as the service's worker runs the native JSON it stored); a
config mixing forms is an error. The mapped fields are validated as a `TrainingConfig` once, and
every problem is reported together as a `ConfigError` whose title names the dialect and whose
paths are the user's own (`$.method.reinforcement.hyperparameters.n_epochs`,
`$.method.reinforcement.grader.graders.ans.operation`), with a "did you mean" for unknown keys.

Adding a dialect is one module exposing a `DIALECT` row and one entry in `DIALECTS`. Nothing
here reads a dataset or trains; `config.py` keeps the model and the builders.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from openrft.errors import ConfigError, Problem, problems_from
from openrft.training.config import TrainingConfig
from openrft.training.dialects import native, openai, seekrflow, service
from openrft.training.dialects.base import Dialect, Mapped

__all__ = ["DIALECTS", "Dialect", "Mapped", "detect_dialect", "load", "load_file"]

DIALECTS: dict[str, Dialect] = {
    row.name: row for row in (native.DIALECT, openai.DIALECT, seekrflow.DIALECT, service.DIALECT)
}
"""Every form a job config comes in, by name."""


def detect_dialect(data: Mapping[str, Any]) -> str:
    """Which form `data` is in (`native` when no other form's keys are there); `ConfigError`
    when it mixes two forms."""
    hits = {name: marks for name, row in DIALECTS.items() if (marks := row.marks(data))}
    for name in list(hits):
        extends = DIALECTS[name].extends
        if extends in hits:  # a dialect's own marks win over those of the one it extends
            hits[name] = hits.pop(extends) + hits[name]
    if len(hits) > 1:
        (first, keys), (second, more) = list(hits.items())[:2]
        message = (
            f"mixes {_noun(first)} keys ({', '.join(keys)}) with {_noun(second)} keys "
            f"({', '.join(more)}); write the whole config in one form"
        )
        raise ConfigError([Problem("$", message)], "invalid training config (dialect unclear)")
    return next(iter(hits), "native")


def _noun(name: str) -> str:
    return {"openai": "OpenAI job-body", "service": "OpenAI job-body", "seekrflow": "SeekrFlow"}[
        name
    ]


def load(source: str | Path | Mapping[str, Any], dialect: str | None = None) -> TrainingConfig:
    """A `TrainingConfig` from a config file or an already-parsed mapping, in any dialect (or
    the one named); `ConfigError` listing every problem."""
    if isinstance(source, str | Path):
        return load_file(source, dialect)
    if not isinstance(source, Mapping):
        raise ConfigError([Problem("$", "the config must be a mapping of keys to values")])
    name = dialect or detect_dialect(source)
    row = DIALECTS.get(name)
    if row is None:
        message = f"unknown dialect {name!r}; use one of {', '.join(DIALECTS)}"
        raise ConfigError([Problem("$", message)], "invalid training config")
    title = f"invalid training config ({row.title})"
    try:
        mapped = row.to_native(source)
    except ConfigError as exc:  # already at the user's paths
        raise ConfigError(exc.problems, title) from None
    try:
        return TrainingConfig.model_validate(mapped.values)
    except ValidationError as exc:
        problems = problems_from(exc, TrainingConfig)
        raise ConfigError([mapped.user_path(p) for p in problems], title) from None


def load_file(path: str | Path, dialect: str | None = None) -> TrainingConfig:
    """Read a YAML or JSON job config and validate it; relative file paths in it are resolved
    against the config file's directory."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError([Problem(str(path), f"cannot read the config: {exc}")]) from None
    if not isinstance(data, Mapping):
        raise ConfigError([Problem(str(path), "the config must be a mapping of keys to values")])
    return _resolve_paths(load(data, dialect), path.parent)


def _resolve_paths(config: TrainingConfig, base: Path) -> TrainingConfig:
    """Make relative dataset paths relative to `base` (a config file's directory)."""

    def fix(value: str | None) -> str | None:
        if value is None or Path(value).is_absolute() or not (base / value).exists():
            return value
        return str(base / value)

    updates: dict[str, Any] = {
        "training_file": fix(config.training_file),
        "validation_file": fix(config.validation_file),
    }
    if config.sft_warmup is not None and config.sft_warmup.training_file:
        sft = config.sft_warmup.model_copy(
            update={"training_file": fix(config.sft_warmup.training_file)}
        )
        updates["sft_warmup"] = sft
    return config.model_copy(update=updates)
