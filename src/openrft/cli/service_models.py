"""What the operator's commands (`openrft export`, `openrft serve-model`) need to name a
service's model by its id (`ft:…`, `ft:…:ckpt-step-N`): its checkpoint directory, found in the
service's store on this machine (any project's: the operator runs these on the server)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from openrft.errors import MissingResourceError

DataDirOption = Annotated[
    Path | None,
    typer.Option(help="The service's data dir, for an `ft:` id; default as `openrft serve`."),
]
"""`--data-dir` of the commands that take a service model id."""
DatabaseUrlOption = Annotated[
    str | None, typer.Option(help="The service's store URL, when not SQLite in data dir.")
]
"""`--database-url` of the commands that take a service model id."""


def service_checkpoint(name: str, data_dir: Path | None, database_url: str | None) -> Path:
    """The checkpoint directory the `ft:` id `name` names in the service at `data_dir` (default
    as `openrft serve`) or `database_url`; `MissingResourceError` saying where it looked."""
    from openrft.service.resources import checkpoint_path
    from openrft.service.settings import Settings
    from openrft.service.store import Store

    settings = Settings.from_env(data_dir=data_dir, database_url=database_url)
    if settings.database_url is None and not (settings.data_dir / "openrft.db").is_file():
        raise MissingResourceError(
            f"no service data dir at {settings.data_dir}: give the `--data-dir` that "
            "`openrft serve` uses (or `--database-url`)"
        )
    store = Store.open(settings.url)
    try:
        path = checkpoint_path(store, name, project=None)
    finally:
        store.engine.dispose()
    if path is None:
        raise MissingResourceError(
            f"no model {name!r} in the service at {settings.data_dir}: give the "
            "`fine_tuned_model` of a succeeded job or a `fine_tuned_model_checkpoint`, and "
            "`--data-dir` (or `--database-url`) of that service"
        )
    return Path(path)
