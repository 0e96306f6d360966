"""The store on SQLite and on a real PostgreSQL (started here; skipped without its binaries):
atomic claims under concurrency, event de-duplication, pagination, metadata filters, and the
re-queueing of jobs whose worker stopped heartbeating."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from openrft.service.settings import Settings
from openrft.service.store import Store, new_id, now
from openrft.service.worker import JobWorker


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    opened = Store.open(url)
    yield opened
    if request.param == "postgresql":  # the cluster is shared by the module's tests: empty it
        with opened.engine.begin() as conn:  # (every table, `alembic_version` too)
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    opened.engine.dispose()


def add_job(store: Store, project: str = "p", **meta: str) -> str:
    job_id = new_id("ftjob")
    row = {
        "id": job_id,
        "project": project,
        "status": "queued",
        "model": "m",
        "training_file": "file-x",
        "seed": 1,
        "config": {},
        "created_at": now(),
        "control": "",
        "attempts": 0,
    }
    store.add_job(row, meta)
    return job_id


def test_each_job_is_claimed_exactly_once(store: Store) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    jobs = {add_job(store) for _ in range(12)}
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(n: int) -> None:
        own = Store.open(url)
        while (job := own.claim_job(f"w{n}")) is not None:
            with lock:
                claimed.append(job["id"])
        own.engine.dispose()

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == sorted(jobs)


def test_claim_takes_the_oldest_and_counts_attempts(store: Store) -> None:
    first, second = add_job(store), add_job(store)
    job = store.claim_job("w")
    assert job is not None
    assert (job["id"], job["status"], job["attempts"], job["worker"]) == (first, "running", 1, "w")
    assert store.claim_job("w")["id"] == second  # type: ignore[index]
    assert store.claim_job("w") is None


def test_events_are_unique_per_source_key_and_paged(store: Store) -> None:
    job = add_job(store)
    store.add_events(
        job,
        [
            {"level": "info", "message": f"m{i}", "type": "message", "source": "events", "key": i}
            for i in range(5)
        ],
    )
    with pytest.raises(IntegrityError):
        store.add_events(
            job,
            [
                {
                    "level": "info",
                    "message": "again",
                    "type": "message",
                    "source": "events",
                    "key": 3,
                }
            ],
        )
    store.log(job, "service events have no key")
    store.log(job, "service events have no key")
    assert {("events", i) for i in range(5)} == store.event_keys(job)
    page, more = store.list_events(job, None, 4)
    assert [r["message"] for r in page] == ["service events have no key"] * 2 + ["m4", "m3"]
    assert more
    rest, more = store.list_events(job, page[-1]["id"], 4)
    assert [r["message"] for r in rest] == ["m2", "m1", "m0"]
    assert not more


def test_metadata_filter(store: Store) -> None:
    red = add_job(store, team="red", tier="1")
    add_job(store, team="blue", tier="1")
    add_job(store, project="other", team="red")
    rows, _ = store.list_jobs("p", None, 10, {"team": "red"})
    assert [r["id"] for r in rows] == [red]
    rows, _ = store.list_jobs("p", None, 10, {"tier": "1"})
    assert len(rows) == 2


def test_stale_jobs_are_requeued_then_given_up(store: Store, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, stale_seconds=5, max_attempts=2)
    worker = JobWorker(settings, store)
    job = add_job(store)
    for attempt in (1, 2):
        claimed = store.claim_job("dead")
        assert claimed is not None
        assert claimed["attempts"] == attempt
        worker.reap_stale()  # fresh heartbeat: left alone
        assert store.job(job)["status"] == "running"  # type: ignore[index]
        store.set_job(job, heartbeat_at=time.time() - 60)
        worker.reap_stale()
    final = store.job(job)
    assert final is not None
    assert final["status"] == "failed"
    assert final["error"]["code"] == "worker_lost"
    messages = [r["message"] for r in store.list_events(job, None, 10)[0]]
    assert any("re-queued" in m for m in messages)


def test_stale_job_with_a_cancel_request_is_cancelled(store: Store, tmp_path: Path) -> None:
    worker = JobWorker(Settings(data_dir=tmp_path, stale_seconds=5), store)
    job = add_job(store)
    store.claim_job("dead")
    store.set_job(job, control="cancel", heartbeat_at=time.time() - 60)
    worker.reap_stale()
    assert store.job(job)["status"] == "cancelled"  # type: ignore[index]
