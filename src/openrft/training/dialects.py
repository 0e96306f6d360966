"""Job configs in three dialects, mapped onto the one native `TrainingConfig`.

- **openai**: OpenAI's fine-tuning job body (`model`, `training_file`, `method: {type:
  reinforcement, reinforcement: {grader, hyperparameters, response_format}}`, or `supervised`,
  or the legacy top-level `hyperparameters`) — `openai_job.py`.
- **seekrflow**: SeekrFlow's `TrainingConfig` (`training_files`, `fine_tune_type`,
  `reward_components`, `lora_config`, …) as in the `seekrai` 0.35 SDK — `seekr_job.py`.
- **native**: `TrainingConfig`'s own fields (every GRPO knob) — `config.py`.

The dialect is recognised from keys only one form has (`detect_dialect`); a config mixing them is
an error. Every problem is reported at once as a `ConfigError` whose title names the dialect and
whose paths are the user's own (`$.method.reinforcement.hyperparameters.n_epochs`), with a "did
you mean" for unknown keys. This module maps and validates; it reads no dataset and trains nothing.
"""

from __future__ import annotations

import difflib
import importlib
import types
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError

from openrft.errors import ConfigError, Problem, SpecError
from openrft.graders import Grader, load_grader
from openrft.training.config import TrainingConfig, load_config_file, parse_config

Dialect = Literal["openai", "seekrflow", "native"]

DIALECT_NAMES: dict[Dialect, str] = {
    "openai": "OpenAI job body",
    "seekrflow": "SeekrFlow TrainingConfig",
    "native": "native OpenRFT form",
}

MODULES: dict[str, str] = {
    "openai": "openrft.training.openai_job",
    "seekrflow": "openrft.training.seekr_job",
}
"""The module mapping each foreign dialect; each exposes `to_native(data) -> Mapped`."""

OPENAI_KEYS = frozenset({"hyperparameters", "integrations", "metadata"})
"""Top-level keys only the OpenAI job body has (besides `method` given as an object)."""
SEEKR_KEYS = frozenset(
    {
        "training_files",
        "validation_files",
        "fine_tune_type",
        "reward_components",
        "lora_config",
        "experiment_name",
        "pre_train",
        "max_length",
    }
)
"""Top-level keys only SeekrFlow's `TrainingConfig` has."""


class DialectModel(BaseModel):
    """Base of the foreign-dialect schemas: unknown keys are errors, every field documented."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class Mapped:
    """A foreign config mapped to native fields, remembering where each came from."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}
        """Native `TrainingConfig` fields."""
        self.origin: dict[str, str] = {}
        """Native field -> the JSON path in the user's config it came from."""

    def set(self, field: str, value: Any, origin: str) -> None:
        """Set a native field unless `value` is `None` (then the native default applies)."""
        if value is not None:
            self.values[field] = value
            self.origin[field] = origin


def native_default(field: str) -> Any:
    """The native `TrainingConfig` default of `field` (what `"auto"` falls back to)."""
    return TrainingConfig.model_fields[field].default


def detect_dialect(data: Mapping[str, Any]) -> Dialect:
    """Which form `data` is in; `ConfigError` when it mixes OpenAI and SeekrFlow keys."""
    openai = sorted(OPENAI_KEYS & data.keys())
    if isinstance(data.get("method"), Mapping):
        openai.insert(0, "method")
    seekr = sorted(SEEKR_KEYS & data.keys())
    if openai and seekr:
        message = (
            f"mixes OpenAI job-body keys ({', '.join(openai)}) with SeekrFlow keys "
            f"({', '.join(seekr)}); write the whole config in one form"
        )
        raise ConfigError([Problem("$", message)], "invalid training config (dialect unclear)")
    return "openai" if openai else "seekrflow" if seekr else "native"


def to_training_config(data: Mapping[str, Any]) -> TrainingConfig:
    """Validate a config in any of the three dialects and map it onto `TrainingConfig`."""
    if not isinstance(data, Mapping):
        raise ConfigError([Problem("$", "the config must be a mapping of keys to values")])
    dialect = detect_dialect(data)
    title = f"invalid training config ({DIALECT_NAMES[dialect]})"
    if dialect == "native":
        try:
            return parse_config(data)
        except ConfigError as exc:
            raise ConfigError(exc.problems, title) from None
    to_native: Callable[[Mapping[str, Any]], Mapped] = importlib.import_module(
        MODULES[dialect]
    ).to_native
    try:
        mapped = to_native(data)
    except ConfigError as exc:  # already at the user's paths
        raise ConfigError(exc.problems, title) from None
    try:
        return parse_config(mapped.values)
    except ConfigError as exc:
        raise ConfigError([_translate(p, mapped.origin) for p in exc.problems], title) from None


def load_training_config(source: str | Path | Mapping[str, Any]) -> TrainingConfig:
    """A `TrainingConfig` from a YAML/JSON file (relative dataset paths resolved against the
    file's directory) or from an already-parsed mapping, in any dialect."""
    if isinstance(source, Mapping):
        return to_training_config(source)
    return load_config_file(source)


def validate_section(model: type[BaseModel], data: Any, root: str) -> Any:
    """Validate `data` against a dialect schema; `ConfigError` with every problem, paths under
    `root`, and a "did you mean" for each unknown key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_problem(error, model, root) for error in exc.errors()]) from None


def check_all(*checks: Callable[[], Any]) -> list[Any]:
    """Run every check; their results, or one `ConfigError` with all their problems together
    (so a bad grader and a misspelt hyperparameter are reported in the same run)."""
    results, problems = [], []
    for check in checks:
        try:
            results.append(check())
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return results


def compile_grader(data: Any, root: str) -> Grader:
    """A grader spec in either grader dialect; its problems re-rooted under `root`."""
    try:
        return load_grader(data)
    except SpecError as exc:
        problems = [Problem(_reroot(p.where, root), p.message) for p in exc.problems]
        raise ConfigError(problems) from None


def _reroot(where: str, root: str) -> str:
    if where.startswith(root) or not where.startswith("$"):
        return where
    return root + where[1:]


def _problem(error: Any, model: type[BaseModel], root: str) -> Problem:
    loc = [part for part in error["loc"] if not _is_union_tag(part)]
    where = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        owner = _model_at(model, loc[:-1])
        names = list(owner.model_fields) if owner else []
        hint = difflib.get_close_matches(str(loc[-1]), names, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        message = f"unknown key {loc[-1]!r}{did}; remove it or fix its name"
    elif error["type"] == "missing":
        message = f"required key {loc[-1]!r} is missing; add it"
    elif error["type"] == "literal_error":
        message = message.replace("Input should be", "must be")
    return Problem(where, message)


def _is_union_tag(part: int | str) -> bool:
    scalar = ("int", "float", "str", "bool", "list[str]")
    return isinstance(part, str) and (part.startswith(("function-", "literal[")) or part in scalar)


def _model_at(model: type[BaseModel], loc: list[int | str]) -> type[BaseModel] | None:
    """The schema class at `loc` inside `model` (through optionals, lists and dicts)."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if _is_model(current) else None
        if field is None:
            return None
        current = _inner_model(field.annotation)
    return current if _is_model(current) else None


def _inner_model(annotation: Any) -> Any:
    if _is_model(annotation):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, list, dict):
        for arg in get_args(annotation):
            inner = _inner_model(arg)
            if inner is not None:
                return inner
    return None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _translate(problem: Problem, origin: Mapping[str, str]) -> Problem:
    """A native-path problem (`$.lora.r`) at the user's own path (`$.lora_config.r`)."""
    if not problem.where.startswith("$."):
        return problem
    head = problem.where[2:].split(".", 1)[0].split("[", 1)[0]
    if head not in origin:
        return problem
    tail = problem.where[2 + len(head) :]
    return Problem(origin[head] + tail, problem.message)
