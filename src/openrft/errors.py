"""The one exception tree of OpenRFT, and the one translation of pydantic errors into `Problem`s.

Library code raises these. Each boundary maps them once: `cli/exits.py` to exit codes, in the
`openrft` command group's `main` only (`EXIT_CODES`: the caller's mistakes 2,
`MissingResourceError`/`SandboxError` 3, `GradingError` 4); `api_errors.py` to HTTP for both
servers (`LIBRARY_ERRORS`: the caller's mistakes 400 with OpenAI-style codes,
`MissingResourceError`/`SandboxError` 503); and a failed training run to its job's `error.code`
(through the run directory's error file, `training/rundir.py`). A grading
failure on one sample is *data* (a flag in `GradeResult.metadata.errors`), never an exception.

```
OpenRFTError
├── ProblemsError             user input with problems: every one, each at its JSON path or line
│   ├── SpecError             a grader spec is invalid
│   ├── ConfigError           a job config is invalid
│   └── DatasetError          a dataset file has problems
├── TemplateError             a template names a variable the sample/item lacks
├── FormulaError              a `calculate_output` formula cannot be parsed or evaluated
├── MissingResourceError      an optional resource is not installed (WordNet, an embedding model)
├── SandboxError              the python-grader sandbox cannot run code safely here
├── GradingError              too many samples failed to grade (error rate above threshold)
└── ApiError                  a request an HTTP server refuses (`api_errors.py`)
```

`problems_from(exc, schema, root)` turns a pydantic `ValidationError` into `Problem`s at their
JSON paths (union tags dropped, "did you mean" for misspelt keys); specs, job configs and every
dialect use it. A validator that checks a nested document (a grader inside a job config) raises
`NestedProblems`, whose problems keep their own paths under the field's.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails


class OpenRFTError(Exception):
    """Base class of every error OpenRFT raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with user input: where, what, and what to do about it."""

    where: str
    """A JSON path (`$.graders.exact.operation`) or a `file:line` location."""
    message: str
    """What is wrong and what to do, in one or two sentences."""

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class ProblemsError(OpenRFTError):
    """An error that carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem], title: str = "") -> None:
        self.problems = problems
        head = title or f"{len(problems)} problem(s)"
        super().__init__(head + "\n" + "\n".join(f"  {p}" for p in problems))


class SpecError(ProblemsError):
    """A grader spec is invalid."""


class ConfigError(ProblemsError):
    """A training job config is invalid."""


class DatasetError(ProblemsError):
    """A dataset file has problems."""


class TemplateError(OpenRFTError):
    """A template refers to a variable the sample or item does not have."""


class FormulaError(OpenRFTError):
    """A `calculate_output` formula is malformed or cannot be evaluated."""


class MissingResourceError(OpenRFTError):
    """An optional resource (WordNet, an embedding model, a grader runtime) is not installed."""


class SandboxError(OpenRFTError):
    """The python-grader sandbox cannot run code safely on this machine."""


class GradingError(OpenRFTError):
    """Too many samples failed to grade (the error rate passed its threshold)."""


# --- pydantic errors -> Problems ---------------------------------------------------------------


class NestedProblems(ValueError):
    """Raised inside a pydantic validator to report a nested document's own problems (a grader
    inside a job config): `problems_from` re-roots each one under the field's path, so they keep
    their full JSON paths instead of collapsing into one message."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = list(problems)


Advice = Callable[[ErrorDetails], str | None]
"""A caller's own wording for some pydantic errors (`None`: use the generic wording)."""


def problems_from(
    exc: ValidationError, schema: Any, root: str = "$", advice: Advice | None = None
) -> list[Problem]:
    """Every pydantic error of validating against `schema` (a model class or a type such as a
    discriminated union) as a `Problem` at its JSON path under `root`, with advice: "did you
    mean" for a misspelt key, "add it" for a missing one. Pydantic's union-tag segments
    (`string_check`, `list[str]`, `function-after[...]`) are not keys and are left out."""
    problems: list[Problem] = []
    for error in exc.errors():
        path, owner = _locate(schema, error["loc"], root)
        nested = error.get("ctx", {}).get("error")
        if isinstance(nested, NestedProblems):
            problems += [Problem(reroot(p.where, path), p.message) for p in nested.problems]
            continue
        message = (advice(error) if advice else None) or _advice(error, owner)
        problems.append(Problem(path, message))
    return problems


def reroot(where: str, root: str) -> str:
    """A `$`-rooted JSON path moved under `root` (`$.a` under `$.grader` -> `$.grader.a`);
    paths already under `root` and `file:line` locations are kept."""
    if where == root or where.startswith((root + ".", root + "[")) or not where.startswith("$"):
        return where
    return root + where[1:]


def json_key(part: int | str) -> str:
    """One JSON-path segment: `[0]`, `.name`, or `['a key']`."""
    if isinstance(part, int):
        return f"[{part}]"
    return f".{part}" if part.isidentifier() else f"[{part!r}]"


def _locate(schema: Any, loc: tuple[int | str, ...], root: str) -> tuple[str, Any]:
    """Walk `loc` through the types of `schema`: the JSON path, and the type holding the last
    segment (for "did you mean")."""
    path, current, owner = root, schema, None
    for part in loc:
        members = _members(current)
        if len(members) > 1 and isinstance(part, str):  # pydantic names the union member
            current = next((m for m in members if _tagged(m, part)), None)
            continue
        if current is None and isinstance(part, str) and _looks_like_tag(part):
            continue
        owner = members[0] if len(members) == 1 else None
        current = _step(owner, part)
        path += json_key(part)
    return path, owner


def _members(annotation: Any) -> list[Any]:
    """The non-`None` alternatives of a type, through `Annotated` and nested unions."""
    if annotation is None:
        return []
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg)]
    return [] if annotation is type(None) else [annotation]


def _tagged(member: Any, tag: str) -> bool:
    """Whether pydantic's union tag `tag` names `member` (its discriminator value or class)."""
    if not _is_model(member):
        return False
    if member.__name__ == tag:
        return True
    return any(
        get_origin(field.annotation) is Literal and tag in get_args(field.annotation)
        for field in member.model_fields.values()
    )


def _step(annotation: Any, part: int | str) -> Any:
    """The type found at `part` inside `annotation` (`None` when unknown)."""
    if _is_model(annotation):
        return _field_types(annotation).get(str(part)) if isinstance(part, str) else None
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (list, tuple, set, frozenset, Sequence) and args and isinstance(part, int):
        return args[0]
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    return None


@functools.cache
def _field_types(model: type[BaseModel]) -> dict[str, Any]:
    """A model's field types with forward references resolved (a spec naming `Grader` before
    it is defined keeps a `ForwardRef` in `model_fields`)."""
    try:
        hints = typing.get_type_hints(model, include_extras=True)
    except (NameError, TypeError):  # unresolvable: fall back to what pydantic holds
        hints = {}
    return {name: hints.get(name, field.annotation) for name, field in model.model_fields.items()}


def _looks_like_tag(part: str) -> bool:
    scalars = ("int", "float", "str", "bool", "none", "dict", "list")
    return part in scalars or part.startswith(("function-", "literal[", "list[", "dict["))


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _advice(error: ErrorDetails, owner: Any) -> str:
    kind, loc, msg = error["type"], error["loc"], str(error["msg"])
    field = str(loc[-1]) if loc else ""
    ctx: Mapping[str, Any] = error.get("ctx", {})
    if kind == "extra_forbidden":
        names = list(owner.model_fields) if _is_model(owner) else []
        return f"unknown key {field!r}{did_you_mean(field, names)}; remove it or fix its name"
    if kind == "missing":
        return f"required key {field!r} is missing; add it"
    if kind == "union_tag_invalid":
        tag, expected = str(ctx.get("tag", "?")), _tags(ctx)
        did = did_you_mean(tag, expected)
        return f"unknown {_discriminator(ctx)} {tag!r}{did}; use one of {', '.join(expected)}"
    if kind == "union_tag_not_found":
        return f"needs a `{_discriminator(ctx)}`"
    if kind == "literal_error":
        return msg.replace("Input should be", "must be")
    return msg.removeprefix("Value error, ")


def _tags(ctx: Mapping[str, Any]) -> list[str]:
    return [tag.strip().strip("'") for tag in str(ctx.get("expected_tags", "")).split(",") if tag]


def _discriminator(ctx: Mapping[str, Any]) -> str:
    return str(ctx.get("discriminator", "type")).strip("'")


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or ``."""
    hint = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""
