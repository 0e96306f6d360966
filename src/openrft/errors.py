"""The one exception tree of OpenRFT.

Library code raises these; only `cli/` turns them into exit codes and only `service/app.py`
into HTTP responses (with the status and code `service/errors.py`'s `LIBRARY_ERRORS` gives
each: the caller's mistakes 400, `MissingResourceError`/`SandboxError` 503). A grading failure
on one sample is *data* (a flag in `GradeResult.metadata.errors`), never an exception.

```
OpenRFTError
├── SpecError                 a grader spec is invalid (every problem, each with its JSON path)
├── TemplateError             a template names a variable the sample/item lacks
├── FormulaError              a `calculate_output` formula cannot be parsed or evaluated
├── DatasetError              a dataset file has problems (every problem, each with its line)
├── ConfigError               a job config is invalid (every problem, each with its JSON path)
├── MissingResourceError      an optional resource is not installed (WordNet, an embedding model)
├── SandboxError              the python-grader sandbox cannot run code safely here
└── GradingError              too many samples failed to grade (error rate above threshold)
```
"""

from __future__ import annotations

from dataclasses import dataclass


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
