"""`openrft` command line: thin shells over the library; errors become exit codes only here.

Exit codes: 0 success, 1 the command ran and found something wrong (e.g. an audit flagged a
probe), 2 invalid input (every problem printed).
"""

from __future__ import annotations

import typer

from openrft.cli import data, graders, jobs, serve, setup, tenancy, train
from openrft.cli.doctor import doctor
from openrft.cli.serve_model import serve_model

app = typer.Typer(
    name="openrft",
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


def main() -> None:
    app()
