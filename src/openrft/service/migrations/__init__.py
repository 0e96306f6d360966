"""Schema migrations for the store (Alembic), run by `open_engine` before the store is used.

`upgrade(engine)` brings a database to the newest revision in `versions/`:
- a fresh database gets every revision;
- one made by an OpenRFT from before migrations (tables from `create_all`, no `alembic_version`)
  is first stamped at the revision its tables match (`CREATE_ALL_SCHEMAS`);
- one already at head costs one read and takes no lock.

Processes that start together (the API and its workers) upgrade one at a time: the upgrade is
one transaction that first takes the database's write lock (`BEGIN IMMEDIATE` on SQLite, a
transaction-scoped advisory lock on PostgreSQL) and re-reads the revision under it, so the later
one finds the work done. Where neither lock exists, a peer's DDL may fail ours; we re-read the
revision and accept it if the peer reached head.

Revisions use Alembic's dialect-neutral operations (`op.create_table`; `op.batch_alter_table`
for column changes, which SQLite runs as copy-and-move) and run through Alembic's
`MigrationContext`, with no `env.py` or ini file. `python -m openrft.service.migrations MESSAGE`
writes the next one from the difference between the tables and head. History is linear; nothing
here backs the database up first, and the service never downgrades.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, func, inspect, select
from sqlalchemy.exc import DBAPIError

DIRECTORY = Path(__file__).parent
"""Alembic's script location: `script.py.mako` and `versions/`."""

_FIRST = {"api_keys", "files", "jobs", "job_metadata", "events", "checkpoints"}
CREATE_ALL_SCHEMAS = (
    ("0002", _FIRST | {"workers", "project_secrets", "registered_models", "project_quotas"}),
    ("0001", _FIRST),
)
"""The tables `create_all` made before migrations, newest first: a database holding all of a
revision's tables (and no `alembic_version`) is at that revision."""

_LOCK_KEY = 0x6F7266746D6967  # "orftmig": PostgreSQL's advisory locks are keyed by a bigint


def target_metadata() -> MetaData:
    """Every table the store defines (the tenancy tables live beside their queries)."""
    import openrft.service.tenancy  # noqa: F401  (registers its tables on `metadata`)
    from openrft.service.store import metadata

    return metadata


def script_directory(location: Path = DIRECTORY) -> ScriptDirectory:
    """The revisions under `location`; new ones are named `v0003_add_x.py`."""
    return ScriptDirectory(str(location), file_template="v%(rev)s_%(slug)s")


@functools.cache
def scripts() -> ScriptDirectory:
    return script_directory()


def head() -> str:
    """The newest revision."""
    newest = scripts().get_current_head()
    if newest is None:  # only if versions/ went missing from the installation
        raise RuntimeError(f"no migrations found in {DIRECTORY / 'versions'}")
    return newest


def revision(conn: Connection) -> str | None:
    """The database's revision: None for a fresh one or one made before migrations."""
    return MigrationContext.configure(conn).get_current_revision()


def migrate(
    conn: Connection, target: str = "head", directory: ScriptDirectory | None = None
) -> None:
    """Run the revisions from the database's to `target`, in the caller's transaction, recording
    each as it completes. No lock and no recognising `create_all`: that is `upgrade`."""
    directory = directory or scripts()
    context = MigrationContext.configure(conn)
    pending = directory.iterate_revisions(target, context.get_current_revision() or "base")
    with Operations.context(context):  # what `from alembic import op` in a revision reaches
        for script in reversed(list(pending)):
            script.module.upgrade()
            context.stamp(directory, script.revision)


def upgrade(engine: Engine) -> None:
    """Bring the database to head (see the module docstring)."""
    if _revision(engine) == head():
        return
    try:
        with _locked(engine) as conn:
            if revision(conn) is None:  # re-read under the lock: a peer may have finished
                _stamp_create_all(conn)
            migrate(conn)
    except DBAPIError:
        if _revision(engine) != head():  # accept only a racing peer having finished the job
            raise


def _revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return revision(conn)


def _stamp_create_all(conn: Connection) -> None:
    """Record the revision whose tables a database from before migrations holds, if any."""
    tables = set(inspect(conn).get_table_names())
    made = next((rev for rev, needs in CREATE_ALL_SCHEMAS if needs <= tables), None)
    if made is not None:
        MigrationContext.configure(conn).stamp(scripts(), made)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the database's write (or migration) lock from its start."""
    with engine.connect() as conn:
        if engine.dialect.driver != "pysqlite":
            with conn.begin():
                if engine.dialect.name == "postgresql":
                    conn.execute(select(func.pg_advisory_xact_lock(_LOCK_KEY)))
                yield conn
            return
        # sqlite3 opens its own (deferred) transaction only before DML and commits before DDL;
        # taking BEGIN over from it makes the DDL transactional and the write lock come first
        raw = conn.connection.driver_connection
        own = raw.isolation_level  # type: ignore[union-attr]
        raw.isolation_level = None  # type: ignore[union-attr]
        try:
            with conn.begin():
                conn.exec_driver_sql("BEGIN IMMEDIATE")
                yield conn
        finally:
            raw.isolation_level = own  # type: ignore[union-attr]
