"""Store migrations on real databases (SQLite files, and a real PostgreSQL where its binaries
are installed): a database from before migrations is upgraded in place with its rows kept, a
fresh one reaches head and matches the tables exactly, a second open changes nothing, and
processes that open one fresh database at once all succeed."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    func,
    inspect,
    select,
)

from openrft.service import migrations, tenancy
from openrft.service.migrations.__main__ import write_revision
from openrft.service.store import Store, api_keys, now

# --- the schema as `create_all` made it before migrations (940a5c0), frozen -------------------

OLD = MetaData()
Table(
    "api_keys",
    OLD,
    Column("id", String(32), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("digest", String(128), nullable=False),
    Column("created_at", Integer, nullable=False),
)
Table(
    "files",
    OLD,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(128), nullable=False, index=True),
    Column("filename", String(512), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("path", Text, nullable=False),
)
OLD_JOBS = Table(
    "jobs",
    OLD,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(128), nullable=False, index=True),
    Column("status", String(32), nullable=False, index=True),
    Column("model", Text, nullable=False),
    Column("training_file", String(64), nullable=False),
    Column("validation_file", String(64)),
    Column("seed", Integer, nullable=False),
    Column("suffix", String(64)),
    Column("method", JSON),
    Column("hyperparameters", JSON),
    Column("integrations", JSON),
    Column("user_metadata", JSON),
    Column("config", JSON),
    Column("error", JSON),
    Column("fine_tuned_model", Text),
    Column("trained_tokens", Integer),
    Column("result_files", JSON),
    Column("created_at", Integer, nullable=False),
    Column("finished_at", Integer),
    Column("estimated_finish", Integer),
    Column("control", String(16), nullable=False, default=""),
    Column("claim", String(64)),
    Column("worker", String(256)),
    Column("heartbeat_at", Float),
    Column("pid", Integer),
    Column("attempts", Integer, nullable=False, default=0),
)
OLD_JOB_METADATA = Table(
    "job_metadata",
    OLD,
    Column("job_id", String(64), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("value", String(512), nullable=False),
    Index("ix_job_metadata_kv", "key", "value"),
)
Table(
    "events",
    OLD,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("job_id", String(64), nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("level", String(8), nullable=False),
    Column("message", Text, nullable=False),
    Column("type", String(16), nullable=False),
    Column("data", JSON),
    Column("source", String(32), nullable=False),
    Column("key", Integer),
    UniqueConstraint("job_id", "source", "key", name="uq_events_source_key"),
    Index("ix_events_job_seq", "job_id", "seq"),
)
Table(
    "checkpoints",
    OLD,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("name", String(256), nullable=False),
    Column("step", Integer, nullable=False),
    Column("metrics", JSON),
    Column("model", Text, nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("path", Text, nullable=False),
    UniqueConstraint("job_id", "name", name="uq_checkpoints_name"),
)

NEW_TABLES = {"workers", "project_secrets", "registered_models", "project_quotas"}
"""What revision 0002 adds."""


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    found: str = request.getfixturevalue("postgres_url")
    yield found
    engine = connect(found)  # the cluster is shared by the module's tests: empty it
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


def connect(url: str) -> Engine:
    """A plain engine on `url` (the store's own driver for PostgreSQL), no migrations run."""
    return create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def schema_diff(engine: Engine) -> list[Any]:
    """What autogenerate would change to make the database match the store's tables."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, migrations.target_metadata()))


def revision_of(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return migrations.revision(conn)


def add_old_job(engine: Engine) -> str:
    """A job row as the old schema held it, with one metadata pair."""
    row = {
        "id": "ftjob-old",
        "project": "p",
        "status": "succeeded",
        "model": "m",
        "training_file": "file-x",
        "seed": 7,
        "config": {"max_steps": 3},
        "user_metadata": {"team": "red"},
        "fine_tuned_model": "ft:m:old",
        "created_at": now(),
        "control": "",
        "attempts": 1,
    }
    with engine.begin() as conn:
        conn.execute(OLD_JOBS.insert().values(**row))
        conn.execute(OLD_JOB_METADATA.insert().values(job_id="ftjob-old", key="team", value="red"))
    return "ftjob-old"


def test_a_database_from_before_migrations_is_upgraded_and_keeps_its_rows(url: str) -> None:
    old = connect(url)
    OLD.create_all(old)
    job_id = add_old_job(old)
    assert not NEW_TABLES & set(inspect(old).get_table_names())

    store = Store.open(url)
    try:
        assert revision_of(store.engine) == migrations.head()
        assert set(inspect(store.engine).get_table_names()) >= NEW_TABLES
        assert schema_diff(store.engine) == []
        job = store.wire_job(job_id, "p")
        assert job is not None
        assert (job["seed"], job["fine_tuned_model"]) == (7, "ft:m:old")
        rows, _ = store.list_jobs("p", None, 10, {"team": "red"})
        assert [r["id"] for r in rows] == [job_id]
        store.save_worker("host:1", host="host", pid=1, state="idle", heartbeat_at=1.0)
        tenancy.set_secret(store, "p", "TOKEN", "s3cret")
        assert tenancy.secrets_of(store, "p") == {"TOKEN": "s3cret"}
    finally:
        store.engine.dispose()
        old.dispose()


def test_a_database_from_just_before_migrations_is_stamped_not_recreated(url: str) -> None:
    engine = connect(url)
    with engine.begin() as conn:  # what `create_all` made since 8f7200a: revision 0002's tables
        migrations.migrate(conn, "0002")
        conn.exec_driver_sql("DROP TABLE alembic_version")
        conn.execute(
            api_keys.insert().values(id="k", project="p", salt="s", digest="d", created_at=1)
        )
    store = Store.open(url)  # would fail with "table already exists" if it re-created them
    try:
        assert revision_of(store.engine) == migrations.head()
        assert schema_diff(store.engine) == []
        assert store.key("k") is not None
    finally:
        store.engine.dispose()
        engine.dispose()


def test_a_fresh_database_is_at_head_and_matches_the_tables(url: str) -> None:
    store = Store.open(url)
    try:
        assert revision_of(store.engine) == migrations.head()
        # fails when a table changed without a revision: `python -m openrft.service.migrations`
        assert schema_diff(store.engine) == []
    finally:
        store.engine.dispose()


def test_opening_twice_changes_nothing(url: str) -> None:
    Store.open(url).engine.dispose()
    engine = connect(url)
    before = (revision_of(engine), sorted(inspect(engine).get_table_names()))
    engine.dispose()
    store = Store.open(url)
    try:
        after = (revision_of(store.engine), sorted(inspect(store.engine).get_table_names()))
        assert after == before
        assert schema_diff(store.engine) == []
    finally:
        store.engine.dispose()


def test_opening_an_upgraded_sqlite_database_takes_no_write_lock(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    Store.open(f"sqlite:///{path}").engine.dispose()
    schema = "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    holder = sqlite3.connect(path, isolation_level=None)
    before = holder.execute(schema).fetchall()
    holder.execute("BEGIN IMMEDIATE")  # another process mid-write: an upgrade would wait for it
    try:
        store = Store.open(f"sqlite:///{path}", busy_seconds=0.01)  # so one fails, not waits
        assert store.key("none") is None
        store.engine.dispose()
    finally:
        holder.rollback()
    assert holder.execute(schema).fetchall() == before
    holder.close()


OPEN_WHEN_TOLD = """
import sys
from openrft.service.store import Store
print("ready", flush=True)
sys.stdin.readline()
store = Store.open(sys.argv[1])
store.add_key(sys.argv[2], "p", "salt", "digest")
"""


def test_processes_opening_one_fresh_database_at_once_all_succeed(url: str) -> None:
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_WHEN_TOLD, url, f"key{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for proc in starters:  # each has imported everything: what remains is the open itself
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
    for proc in starters:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    results = [(proc.communicate(timeout=120), proc.returncode) for proc in starters]
    assert [code for _, code in results] == [0] * 4, [err for (_, err), _ in results]
    engine = connect(url)
    try:
        assert revision_of(engine) == migrations.head()
        assert schema_diff(engine) == []
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(api_keys)).scalar_one() == 4
    finally:
        engine.dispose()


def test_revisions_downgrade_to_nothing_and_upgrade_again(tmp_path: Path) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.begin() as conn:
        migrations.migrate(conn)
        context = MigrationContext.configure(conn)
        scripts = migrations.scripts()
        with Operations.context(context):  # the service never downgrades; people might
            for script in scripts.iterate_revisions("head", "base"):
                script.module.downgrade()
                context.stamp(scripts, script.down_revision or "base")
        assert set(inspect(conn).get_table_names()) == {"alembic_version"}
        migrations.migrate(conn)
    assert schema_diff(engine) == []
    engine.dispose()


def test_a_new_revision_is_numbered_after_head_and_empty_when_nothing_changed(
    tmp_path: Path,
) -> None:
    location = tmp_path / "migrations"
    shutil.copytree(migrations.DIRECTORY, location, ignore=shutil.ignore_patterns("__pycache__"))
    head = ScriptDirectory(str(location)).get_current_head()
    assert head is not None
    after = f"{int(head) + 1:04d}"
    written = write_revision("nothing changed", location)
    assert written == location / "versions" / f"v{after}_nothing_changed.py"
    text = written.read_text()
    assert f"down_revision = '{head}'" in text
    assert "op." not in text.split("def upgrade")[1]  # the tables match head: nothing to do
    assert ScriptDirectory(str(location)).get_current_head() == after


def test_0004_moves_per_model_usage_out_of_result_counts(url: str) -> None:
    """Runs stored at 0003 kept `per_model_usage` inside `result_counts`; the API shows the
    same run after the upgrade, now read from a column of its own."""
    from openrft.service.eval_runs import run_object
    from openrft.service.store import eval_runs

    usage = [{"model_name": "m", "invocation_count": 2, "prompt_tokens": 5}]
    counts = {"total": 2, "passed": 1, "failed": 1, "errored": 0}
    old_runs = Table(
        "eval_runs",
        MetaData(),
        Column("id", String(64)),
        Column("result_counts", JSON),
        *(Column(name, String(64)) for name in ("eval_id", "project", "name", "status")),
        Column("data_source", JSON),
        Column("report_url", Text),
        Column("created_at", Integer),
        Column("attempts", Integer),
    )
    engine = connect(url)
    with engine.begin() as conn:
        migrations.migrate(conn, "0003")
        base = {"eval_id": "eval-1", "project": "p", "name": "r", "status": "completed"}
        base |= {"data_source": {"type": "jsonl"}, "report_url": "u", "created_at": 1}
        conn.execute(
            old_runs.insert(),
            [
                {
                    **base,
                    "id": "run-1",
                    "attempts": 1,
                    "result_counts": {**counts, "per_model_usage": usage},
                },
                {**base, "id": "run-2", "attempts": 1, "result_counts": None},
            ],
        )
    store = Store.open(url)
    try:
        assert revision_of(store.engine) == migrations.head()
        rows = {r["id"]: r for r in store.all(select(eval_runs))}
        assert (rows["run-1"]["result_counts"], rows["run-1"]["per_model_usage"]) == (counts, usage)
        shown = run_object(rows["run-1"])
        assert (shown["result_counts"], shown["per_model_usage"]) == (counts, usage)
        assert run_object(rows["run-2"])["per_model_usage"] == []
    finally:
        store.engine.dispose()
        engine.dispose()
