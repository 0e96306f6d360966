"""The durable store: API keys, files, jobs, events, checkpoints, workers, evals (SQLAlchemy Core).

SQLite (a file under the data dir) by default; any SQLAlchemy URL PostgreSQL understands works
too, because nothing here relies on SQLite-only behaviour:
- ordering and cursors use an integer `seq` column (autoincrement on both);
- JSON goes through `sqlalchemy.JSON`; metadata filters use a side table, not JSON operators;
- a job is claimed with one `UPDATE … WHERE status='queued' AND id=(SELECT … LIMIT 1)` that
  stamps a fresh claim token; the row count tells whether this worker won (under PostgreSQL's
  READ COMMITTED a concurrent claimer re-checks `status` after the row lock and updates nothing);
- events are unique on `(job_id, source, key)`, so re-reading a progress file never duplicates.

SQLite is put in WAL mode with a busy timeout (`store_busy_seconds`) so the API and workers
(separate processes) can share the file; past it a write raises `OperationalError`, which the
worker retries. Opening the store brings its schema to the tables below (`migrations/`: add a
revision whenever they change). This module knows nothing about HTTP or training.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    case,
    create_engine,
    event,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry

if TYPE_CHECKING:
    from openrft.service.settings import Settings

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("project", String(128), nullable=False),
    Column("salt", String(64), nullable=False),
    Column("digest", String(128), nullable=False),
    Column("created_at", Integer, nullable=False),
)

files = Table(
    "files",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(128), nullable=False, index=True),
    Column("filename", String(512), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("path", Text, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
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
    Column("eval_id", String(64)),
    Column("promoted_checkpoint", String(64)),
    Column("flow", JSON),
)
"""`eval_id`: the eval the worker made of a reinforcement job's validation evaluations
(`job_evals.py`), None until its first claim (or when it has no validation file).
`promoted_checkpoint`: the checkpoint id a succeeded job's `fine_tuned_model` serves (`POST
…/checkpoints/{id}/promote`); None: its last checkpoint.
`flow`: what a job created through SeekrFlow's API asked for (`service/flow/`): its SeekrFlow
project, `fine_tune_type`, `reward_components`, `infrastructure_config` and the placement it got;
None for a job created through OpenAI's API (both APIs show every job)."""

job_metadata = Table(
    "job_metadata",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("value", String(512), nullable=False),
    Index("ix_job_metadata_kv", "key", "value"),
)

events = Table(
    "events",
    metadata,
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

checkpoints = Table(
    "checkpoints",
    metadata,
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

workers = Table(
    "workers",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("host", String(256), nullable=False),
    Column("pid_ns", String(64)),
    Column("pid", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("job_id", String(64)),
    Column("restarts", Integer, nullable=False, default=0),
    Column("exit_code", Integer),
    Column("replaced_by", String(256)),
)
"""One row per worker process (`host:pid`): `starting` (the supervisor just started it), `idle`
or `busy` (its heartbeats), `stopped` (a clean exit) or `dead` (its process ended otherwise);
`pid_ns` is its PID namespace (`pid:[…]`), which with `host` says who can see its pid.
`restarts` counts the supervisor's restarts of its slot; `replaced_by` names the process that
took over, after which the row is history."""

flow_projects = Table(
    "flow_projects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("updated_at", Integer, nullable=False),
)
"""SeekrFlow's projects (integer ids a fine-tune names as `project_id`): groupings inside one
OpenRFT project (the tenant, `project`), which alone decides who sees what."""

deployments = Table(
    "deployments",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(128), nullable=False, index=True),
    Column("model_type", String(32), nullable=False),
    Column("model_id", Text, nullable=False),
    Column("job_id", String(64), index=True),
    Column("name", String(128), nullable=False),
    Column("description", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("n_instances", Integer, nullable=False),
    Column("input_tokens", Integer, nullable=False, default=0),
    Column("output_tokens", Integer, nullable=False, default=0),
    Column("created_at", Integer, nullable=False),
    Column("updated_at", Integer, nullable=False),
    Column("last_deployed_at", Integer),
)
"""SeekrFlow's deployments: a base model or a fine-tuned run (`job_id`) made `Active` for
`/v1/inference/chat/completions` (`Inactive` after a demote); the model servers answer either
way, a deployment only gates SeekrFlow's inference route and counts its tokens."""

TERMINAL = ("succeeded", "failed", "cancelled")
_INTERNAL = {"config", "claim", "worker", "heartbeat_at", "pid", "attempts", "control", "seq"}
_WIRE_JOB = select(*[c for c in jobs.c if c.name not in _INTERNAL]).where(
    jobs.c.id == bindparam("job_id"), jobs.c.project == bindparam("project")
)
"""A job as the API shows it, without the (large) config: built once, as it runs per request."""
_JOB_EXISTS = select(jobs.c.id).where(
    jobs.c.id == bindparam("job_id"), jobs.c.project == bindparam("project")
)
"""Statuses a job never leaves."""


def new_id(prefix: str) -> str:
    """An OpenAI-style identifier such as `ftjob-3f9a…` (96 random bits)."""
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


BUSY_SECONDS = 30.0
"""How long an SQLite write waits for another connection's lock (`Settings.store_busy_seconds`)."""


@contextmanager
def _bounded_wait(conn: Connection, seconds: float) -> Iterator[None]:
    """Make `conn` give up on a lock (or, on PostgreSQL, a statement) after `seconds`."""
    ms = max(1, int(seconds * 1000))
    if conn.dialect.name == "postgresql":  # SET LOCAL ends with the transaction
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {ms}")
        conn.exec_driver_sql(f"SET LOCAL statement_timeout = {ms}")
        yield
    elif conn.dialect.name == "sqlite":  # a connection setting: put the pool's value back
        before = int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())
        conn.exec_driver_sql(f"PRAGMA busy_timeout={ms}")
        try:
            yield
        finally:
            conn.exec_driver_sql(f"PRAGMA busy_timeout={before}")
    else:
        yield


def _sqlite_pragmas(busy_seconds: float) -> Callable[[Any, ConnectionPoolEntry], None]:
    """The `connect` listener: WAL mode (readers never wait for the writer) and how long a
    writer waits for the write lock before SQLite says `database is locked`."""

    def apply(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")  # first: WAL may wait
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return apply


def open_engine(url: str, busy_seconds: float = BUSY_SECONDS) -> Engine:
    """An engine on a database at the newest schema (created or upgraded in place); SQLite gets
    WAL mode and a busy timeout."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs: dict[str, Any] = {"pool_size": 20, "max_overflow": 40, "pool_pre_ping": False}
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(busy_seconds))
    from openrft.service import migrations  # Alembic loads only when a store is opened

    migrations.upgrade(engine)
    return engine


class Store:
    """Typed queries over the tables above; every method runs in its own transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, busy_seconds: float = BUSY_SECONDS) -> Store:
        return cls(open_engine(url, busy_seconds))

    @classmethod
    def open_private(cls, settings: Settings) -> Store:
        """The store `settings` names, in a data dir only its owner can read (`secure_data_dir`,
        `secure_database`): uploads, checkpoints, key digests and secrets live there."""
        secure_data_dir(settings)
        store = cls.open(settings.url, settings.store_busy_seconds)
        secure_database(settings)
        return store

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    def one(self, query: Any) -> RowMapping | None:
        with self.engine.connect() as conn:
            return conn.execute(query).mappings().first()

    def all(self, query: Any) -> list[RowMapping]:
        with self.engine.connect() as conn:
            return list(conn.execute(query).mappings())

    # --- keys -------------------------------------------------------------------------------

    def add_key(self, key_id: str, project: str, salt: str, digest: str) -> None:
        with self.tx() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key_id, project=project, salt=salt, digest=digest, created_at=now()
                )
            )

    def key(self, key_id: str) -> RowMapping | None:
        return self.one(select(api_keys).where(api_keys.c.id == key_id))

    # --- files ------------------------------------------------------------------------------

    def add_file(self, row: Mapping[str, Any]) -> None:
        self.add_files([row])

    def add_files(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Add file rows, all or none."""
        with self.tx() as conn:
            conn.execute(files.insert(), [dict(row) for row in rows])

    def file(self, project: str, file_id: str) -> RowMapping | None:
        return self.one(select(files).where(files.c.id == file_id, files.c.project == project))

    def list_files(
        self, project: str, after: str | None, limit: int, purpose: str | None, ascending: bool
    ) -> tuple[list[RowMapping], bool]:
        query = select(files).where(files.c.project == project)
        if purpose:
            query = query.where(files.c.purpose == purpose)
        return self._page(query, files, after, limit, ascending)

    def delete_file(self, project: str, file_id: str) -> bool:
        with self.tx() as conn:
            gone = conn.execute(
                files.delete().where(files.c.id == file_id, files.c.project == project)
            )
            return gone.rowcount == 1

    # --- jobs: API side --------------------------------------------------------------------

    def add_job(self, row: Mapping[str, Any], user_metadata: Mapping[str, str]) -> None:
        with self.tx() as conn:
            conn.execute(jobs.insert().values(**row, user_metadata=dict(user_metadata)))
            if user_metadata:
                conn.execute(
                    job_metadata.insert(),
                    [{"job_id": row["id"], "key": k, "value": v} for k, v in user_metadata.items()],
                )

    def job(self, job_id: str, project: str | None = None) -> RowMapping | None:
        query = select(jobs).where(jobs.c.id == job_id)
        if project is not None:
            query = query.where(jobs.c.project == project)
        return self.one(query)

    def wire_job(self, job_id: str, project: str) -> RowMapping | None:
        """The columns the API shows of one of `project`'s jobs."""
        with self.engine.connect() as conn:
            return (
                conn.execute(_WIRE_JOB, {"job_id": job_id, "project": project}).mappings().first()
            )

    def has_job(self, job_id: str, project: str) -> bool:
        with self.engine.connect() as conn:
            found = conn.execute(_JOB_EXISTS, {"job_id": job_id, "project": project}).first()
            return found is not None

    def list_jobs(
        self, project: str, after: str | None, limit: int, meta: Mapping[str, str]
    ) -> tuple[list[RowMapping], bool]:
        query = select(*[c for c in jobs.c if c.name not in _INTERNAL]).where(
            jobs.c.project == project
        )
        for key, value in meta.items():
            query = query.where(
                exists().where(
                    job_metadata.c.job_id == jobs.c.id,
                    job_metadata.c.key == key,
                    job_metadata.c.value == value,
                )
            )
        return self._page(query, jobs, after, limit, ascending=False)

    def set_job(
        self, job_id: str, *, where: Mapping[str, Any] | None = None, **values: Any
    ) -> bool:
        """Update a job if it still matches `where` (`status` may be a tuple); True if it did."""
        query = update(jobs).where(jobs.c.id == job_id)
        for name, expected in (where or {}).items():
            column = jobs.c[name]
            query = query.where(
                column.in_(expected) if isinstance(expected, tuple) else column == expected
            )
        with self.tx() as conn:
            return conn.execute(query.values(**values)).rowcount == 1

    def base_models(self, project: str) -> list[str]:
        query = select(jobs.c.model).where(jobs.c.project == project).distinct()
        return [row["model"] for row in self.all(query)]

    def fine_tuned_models(self, project: str) -> list[RowMapping]:
        query = select(jobs.c.fine_tuned_model, jobs.c.finished_at, jobs.c.id).where(
            jobs.c.project == project, jobs.c.fine_tuned_model.is_not(None)
        )
        return self.all(query.order_by(jobs.c.seq))

    # --- jobs: worker side -----------------------------------------------------------------

    def claim_job(self, worker: str) -> RowMapping | None:
        """Atomically move the oldest queued job to `running` for this worker, or None."""
        return self.claim_oldest(jobs, "running", worker, pid=None)

    def claim_oldest(
        self, table: Table, status: str, worker: str, **values: Any
    ) -> RowMapping | None:
        """Atomically move the oldest `queued` row of `table` (jobs, eval runs: each has `seq`,
        `claim`, `worker`, `heartbeat_at`, `attempts`) to `status` for `worker`, with a fresh
        claim token and `values`; the claimed row, or None when none was queued (or a peer
        took it first)."""
        token = secrets.token_hex(16)
        oldest = (
            select(table.c.id)
            .where(table.c.status == "queued")
            .order_by(table.c.seq)
            .limit(1)
            .scalar_subquery()
        )
        claim = (
            update(table)
            .where(table.c.status == "queued", table.c.id == oldest)
            .values(
                status=status,
                claim=token,
                worker=worker,
                heartbeat_at=time.time(),
                attempts=table.c.attempts + 1,
                **values,
            )
        )
        with self.tx() as conn:
            if conn.execute(claim).rowcount != 1:
                return None
        return self.one(select(table).where(table.c.claim == token))

    def stale_jobs(self, cutoff: float) -> list[RowMapping]:
        query = select(jobs).where(jobs.c.status == "running", jobs.c.heartbeat_at < cutoff)
        return self.all(query)

    # --- events -----------------------------------------------------------------------------

    def event_keys(self, job_id: str) -> set[tuple[str, int]]:
        query = select(events.c.source, events.c.key).where(
            events.c.job_id == job_id, events.c.key.is_not(None)
        )
        return {(row["source"], row["key"]) for row in self.all(query)}

    def add_events(self, job_id: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert events (each with `level`, `message`, `type`, and `data`/`source`/`key`)."""
        if not rows:
            return
        stamped = [
            {
                "id": new_id("ftevent"),
                "job_id": job_id,
                "created_at": now(),
                "source": "service",
                "key": None,
                "data": None,
                **row,
            }
            for row in rows
        ]
        with self.tx() as conn:
            conn.execute(events.insert(), stamped)

    def log(self, job_id: str, message: str, level: str = "info") -> None:
        """Add one message event written by the service itself."""
        self.add_events(job_id, [{"level": level, "message": message, "type": "message"}])

    def list_events(
        self, job_id: str, after: str | None, limit: int
    ) -> tuple[list[RowMapping], bool]:
        return self._page(select(events).where(events.c.job_id == job_id), events, after, limit)

    # --- checkpoints ------------------------------------------------------------------------

    def sync_checkpoints(self, job_id: str, found: Sequence[Mapping[str, Any]]) -> None:
        """Make the job's checkpoint rows match `found` (dicts with name, step, metrics, …)."""
        names = {row["name"] for row in found}
        with self.tx() as conn:
            have = {
                row.name: row
                for row in conn.execute(
                    select(checkpoints.c.name, checkpoints.c.metrics, checkpoints.c.step).where(
                        checkpoints.c.job_id == job_id
                    )
                )
            }
            gone = [name for name in have if name not in names]
            if gone:
                conn.execute(
                    checkpoints.delete().where(
                        checkpoints.c.job_id == job_id, checkpoints.c.name.in_(gone)
                    )
                )
            for row in found:
                if row["name"] not in have:
                    conn.execute(
                        checkpoints.insert().values(
                            id=new_id("ftckpt"), job_id=job_id, created_at=now(), **row
                        )
                    )
                elif have[row["name"]].metrics != row["metrics"]:
                    conn.execute(
                        update(checkpoints)
                        .where(checkpoints.c.job_id == job_id, checkpoints.c.name == row["name"])
                        .values(metrics=row["metrics"], step=row["step"])
                    )

    def list_checkpoints(
        self, job_id: str, after: str | None, limit: int
    ) -> tuple[list[RowMapping], bool]:
        query = select(checkpoints).where(checkpoints.c.job_id == job_id)
        return self._page(query, checkpoints, after, limit)

    # --- pagination -------------------------------------------------------------------------

    def _page(
        self, query: Any, table: Table, after: str | None, limit: int, ascending: bool = False
    ) -> tuple[list[RowMapping], bool]:
        """One page, newest first unless `ascending`; `after` is the last id of the previous
        page. Fetches one extra row to know `has_more`."""
        seq = table.c.seq
        if after:
            cursor = select(seq).where(table.c.id == after).scalar_subquery()
            query = query.where(seq > cursor if ascending else seq < cursor)
        query = query.order_by(seq if ascending else seq.desc()).limit(limit + 1)
        rows = self.all(query)
        return rows[:limit], len(rows) > limit

    def count(self, table: Table) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

    # --- workers ----------------------------------------------------------------------------

    def save_worker(self, name: str, **values: Any) -> None:
        """Update worker `name`'s row, or create it (started now): the supervisor records each
        process it starts and the worker heartbeats through here, whichever comes first."""
        change = update(workers).where(workers.c.name == name).values(**values)
        with self.tx() as conn:
            if conn.execute(change).rowcount == 1:
                return
        try:
            with self.tx() as conn:
                conn.execute(workers.insert().values(name=name, started_at=time.time(), **values))
        except IntegrityError:  # the other writer created it in between
            with self.tx() as conn:
                conn.execute(change)

    def worker_exited(
        self, name: str, exit_code: int | None, replaced_by: str | None = None
    ) -> None:
        """Record that worker `name`'s process is gone; a cleanly stopped one stays `stopped`."""
        state = case((workers.c.state == "stopped", "stopped"), else_="dead")
        values: dict[str, Any] = {"state": state, "exit_code": exit_code}
        if replaced_by is not None:
            values["replaced_by"] = replaced_by
        with self.tx() as conn:
            conn.execute(update(workers).where(workers.c.name == name).values(**values))

    def current_workers(self, wait_seconds: float) -> list[RowMapping]:
        """Workers neither stopped nor replaced, in one query that waits at most
        `wait_seconds` for a lock: `/health` answers an error rather than hang."""
        query = select(workers).where(workers.c.state != "stopped", workers.c.replaced_by.is_(None))
        with self.engine.connect() as conn, _bounded_wait(conn, wait_seconds):
            return list(conn.execute(query.order_by(workers.c.started_at)).mappings())


def secure_data_dir(settings: Settings) -> None:
    """Create the data dir and its `files/` and `jobs/` as 0700 (tightening existing ones):
    uploads, checkpoints and the database are the tenants' data."""
    for directory in (settings.data_dir, settings.files_dir, settings.jobs_dir):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)


def secure_database(settings: Settings) -> None:
    """Make the SQLite database (and its WAL files) 0600: it holds key digests and secrets."""
    if settings.database_url is not None:
        return
    for suffix in ("", "-wal", "-shm"):
        path = settings.data_dir / f"openrft.db{suffix}"
        if path.exists():
            path.chmod(0o600)


# --- evals (the Evals API: `evals.py`, `eval_runs.py`; run by `eval_runner.py`) ---------------

evals = Table(
    "evals",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("project", String(128), nullable=False, index=True),
    Column("name", String(512), nullable=False),
    Column("data_source_config", JSON, nullable=False),
    Column("testing_criteria", JSON, nullable=False),
    Column("user_metadata", JSON),
    Column("created_at", Integer, nullable=False),
)
"""One eval: its `custom` data source config and its testing criteria, as the API shows them."""

eval_runs = Table(
    "eval_runs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("eval_id", String(64), nullable=False, index=True),
    Column("project", String(128), nullable=False),
    Column("name", String(512), nullable=False),
    Column("status", String(32), nullable=False, index=True),
    Column("data_source", JSON, nullable=False),
    Column("user_metadata", JSON),
    Column("result_counts", JSON),
    Column("per_testing_criteria_results", JSON),
    Column("per_model_usage", JSON),
    Column("error", JSON),
    Column("report_url", Text, nullable=False),
    Column("created_at", Integer, nullable=False),
    Column("claim", String(64)),
    Column("worker", String(256)),
    Column("heartbeat_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("job_step", Integer),
    UniqueConstraint("eval_id", "job_step", name="uq_eval_runs_job_step"),
)
"""One run of an eval: `queued`, `in_progress` (claimed by a worker, which heartbeats), then
`completed`, `failed` or `canceled`. A run imported from a job's evaluation at step N
(`job_evals.py`) is born `completed` with `job_step` N, unique per eval: re-importing the step
adds nothing."""

eval_output_items = Table(
    "eval_output_items",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(64), nullable=False, unique=True),
    Column("run_id", String(64), nullable=False),
    Column("eval_id", String(64), nullable=False),
    Column("datasource_item_id", Integer, nullable=False),
    Column("datasource_item", JSON, nullable=False),
    Column("sample", JSON, nullable=False),
    Column("results", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Integer, nullable=False),
    UniqueConstraint("run_id", "datasource_item_id", name="uq_eval_output_items_row"),
    Index("ix_eval_output_items_run_seq", "run_id", "seq"),
)
"""One graded row of a run; unique per row, so a re-claimed run never grades a row twice."""
