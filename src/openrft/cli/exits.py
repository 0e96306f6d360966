"""The exit codes of `openrft`, and the one place errors become them.

Commands raise. `Group.main`, the entry point of the `openrft` group (`openrft.cli.main`) and of
any command group run on its own (a test's `CliRunner`), catches what `EXIT_CODES` names, prints
it to stderr (every problem, one per line, never wrapped: paths and commands stay
copy-pasteable) and exits with the code of the error's class or its nearest listed base:

- 0: done (also when a budget paused a training run).
- 1 `EXIT_FAILED`: the command ran and the answer is no: an audit flagged a probe, a job or a
  training rank failed, there was nothing to delete.
- 2 `EXIT_INVALID`: the caller's input is invalid: a spec, config, dataset, template or formula
  (click's usage errors exit 2 too).
- 3 `EXIT_UNAVAILABLE`: this machine lacks what the command needs: an optional resource
  (WordNet, a tokenizer) or a python-grader sandbox that can run code safely.
- 4 `EXIT_GRADING`: too many samples failed to grade.
- 5 `EXIT_API`: the fine-tuning API refused the request, or did not answer.
- 75 `EXIT_PAUSED`: training paused because `RUN_DIR/PAUSE` asked it to (`--resume` continues).

An `OpenRFTError` no row covers exits `EXIT_FAILED`; other exceptions (bugs) keep their
traceback.
"""

from __future__ import annotations

import sys
from typing import Any, NoReturn

from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from openrft.api_errors import ApiError
from openrft.cli.client import ApiCallError
from openrft.errors import (
    ConfigError,
    DatasetError,
    FormulaError,
    GradingError,
    MissingResourceError,
    OpenRFTError,
    ProblemsError,
    SandboxError,
    SpecError,
    TemplateError,
)
from openrft.training.rundir import EXIT_PAUSED

EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNAVAILABLE = 3
EXIT_GRADING = 4
EXIT_API = 5

EXIT_CODES: dict[type[Exception], int] = {
    SpecError: EXIT_INVALID,
    ConfigError: EXIT_INVALID,
    DatasetError: EXIT_INVALID,
    TemplateError: EXIT_INVALID,
    FormulaError: EXIT_INVALID,
    ProblemsError: EXIT_INVALID,
    MissingResourceError: EXIT_UNAVAILABLE,
    SandboxError: EXIT_UNAVAILABLE,
    GradingError: EXIT_GRADING,
    ApiError: EXIT_API,  # a service function run in-process refused (as it would over HTTP)
    ApiCallError: EXIT_API,
}
"""Every `OpenRFTError` has a row here or under a base class other than `OpenRFTError` (a test
walks the tree); an unlisted one exits `EXIT_FAILED`."""

__all__ = [
    "EXIT_API",
    "EXIT_CODES",
    "EXIT_FAILED",
    "EXIT_GRADING",
    "EXIT_INVALID",
    "EXIT_PAUSED",
    "EXIT_UNAVAILABLE",
    "Group",
    "exit_code",
]

err = Console(stderr=True)


def exit_code(exc: BaseException) -> int | None:
    """The code of `exc`'s class or its nearest listed base; `None` when none is listed."""
    for kind in type(exc).__mro__:
        if kind in EXIT_CODES:
            return EXIT_CODES[kind]
    return None


def fail(exc: OpenRFTError | ApiCallError) -> NoReturn:
    """Print `exc` (every problem of a `ProblemsError`, one per line) and exit with its code."""
    status = exc.status if isinstance(exc, ApiCallError) else None
    label = "error: " if status is None else f"error ({status}): "
    err.print(Text.assemble((label, "red"), str(exc)), soft_wrap=True, highlight=False)
    code = exit_code(exc)
    sys.exit(EXIT_FAILED if code is None else code)


class Group(TyperGroup):
    """A command group whose entry point turns OpenRFT's errors into exit codes."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except (OpenRFTError, ApiCallError) as exc:
            fail(exc)
