"""`openrft` command line: thin shells over the library; errors become exit codes only here.

Commands raise; the command group's entry point (`exits.Group.main`, which `main()` runs) prints
the error and exits with the code `exits.EXIT_CODES` gives it: 0 success, 1 the command ran and
found something wrong (e.g. an audit flagged a probe), 2 invalid input (every problem printed),
3 a resource or a safe sandbox missing here, 4 too many samples failed to grade, 5 the API
refused or did not answer, 75 training paused on request.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer

from openrft.cli import data, graders, jobs, serve, setup, tenancy, train
from openrft.cli.doctor import doctor
from openrft.cli.exits import Group
from openrft.cli.serve_model import serve_model

app = typer.Typer(
    name="openrft",
    cls=Group,
    help="OpenRFT: reinforcement fine-tuning with OpenAI- and SeekrFlow-compatible graders.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(graders.app, name="graders")
app.add_typer(data.app, name="data")
app.add_typer(setup.app, name="setup")
app.command("serve-model")(serve_model)
app.command("doctor")(doctor)
app.command()(serve.serve)
app.command()(serve.worker)
app.add_typer(serve.keys, name="keys")
app.add_typer(tenancy.secrets, name="secrets")
app.add_typer(tenancy.models, name="models")
app.add_typer(tenancy.quotas, name="quotas")
app.add_typer(jobs.app, name="jobs")
app.command()(train.train)
app.command()(train.export)


def main(argv: Sequence[str] | None = None) -> None:
    """Run `openrft` with `argv` (default: the process's arguments)."""
    app(args=argv, prog_name="openrft")
