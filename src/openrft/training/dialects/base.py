"""What every dialect module shares: the `Dialect` row it registers, its schema base class,
`Mapped` (native fields plus where in the user's config each came from), and the checks that
report every problem at once at the user's own JSON paths.

A dialect module maps; it does not validate the native config (the registry in `__init__.py`
does that once, for every dialect), read datasets or train.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from openrft.errors import ConfigError, Problem, SpecError, problems_from, reroot
from openrft.graders import Grader, load_grader
from openrft.training.config import TrainingConfig


class DialectModel(BaseModel):
    """Base of the foreign-dialect schemas: unknown keys are errors, every field documented."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class Mapped:
    """A config mapped to native fields, remembering where each came from."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self.values: dict[str, Any] = dict(values or {})
        """Native `TrainingConfig` fields (not validated yet)."""
        self.origin: dict[str, str] = {}
        """Native field -> the JSON path in the user's config it came from (absent: `$.field`)."""

    def set(self, field: str, value: Any, origin: str) -> None:
        """Set a native field unless `value` is `None` (then the native default applies)."""
        if value is not None:
            self.values[field] = value
            self.origin[field] = origin

    def user_path(self, problem: Problem) -> Problem:
        """A native-path problem (`$.lora.r`) at the user's own path (`$.lora_config.r`)."""
        if not problem.where.startswith("$."):
            return problem
        head = problem.where[2:].split(".", 1)[0].split("[", 1)[0]
        if head not in self.origin:
            return problem
        return Problem(self.origin[head] + problem.where[2 + len(head) :], problem.message)


@dataclass(frozen=True)
class Dialect:
    """One row of the registry: a form job configs come in, and how it maps to native."""

    name: str
    """`native`, `openai`, `seekrflow`, `service`."""
    title: str
    """How errors name it: "invalid training config (<title>)"."""
    to_native: Callable[[Mapping[str, Any]], Mapped]
    """Map a config in this form onto native fields; `ConfigError` at the user's paths."""
    marks: Callable[[Mapping[str, Any]], list[str]] = lambda data: []
    """The top-level keys of `data` only this form has (how `detect_dialect` recognises it)."""
    extends: str | None = None
    """The dialect this one adds to (its marks then win over that one's)."""


def keys_of(keys: frozenset[str]) -> Callable[[Mapping[str, Any]], list[str]]:
    """A `marks` function: which of `keys` a config has."""
    return lambda data: sorted(keys & data.keys())


def native_default(field: str) -> Any:
    """The native `TrainingConfig` default of `field` (what `"auto"` falls back to)."""
    return TrainingConfig.model_fields[field].default


def validate_section(model: type[BaseModel], data: Any, root: str) -> Any:
    """Validate `data` against a dialect schema; `ConfigError` with every problem, paths under
    `root`, and a "did you mean" for each unknown key."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(problems_from(exc, model, root)) from None


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


def grader_at(data: Any, root: str) -> Grader:
    """The grader spec found at `root` of a job config (either grader dialect), its problems
    re-rooted there."""
    try:
        return load_grader(data)
    except SpecError as exc:
        problems = [Problem(reroot(p.where, root), p.message) for p in exc.problems]
        raise ConfigError(problems) from None


def apply_overrides(mapped: Mapped, overrides: Any, keep: frozenset[str] = frozenset()) -> None:
    """Apply an `openrft` extension (native `TrainingConfig` fields overriding the mapped
    ones, reported at `$.openrft.<field>`); fields in `keep` that the mapping set win."""
    if overrides is None:
        return
    if not isinstance(overrides, Mapping):
        raise ConfigError([Problem("$.openrft", "must be an object of TrainingConfig fields")])
    for field, value in overrides.items():
        if field in keep and field in mapped.values:
            continue
        mapped.values[field] = value
        mapped.origin[field] = f"$.openrft.{field}"
