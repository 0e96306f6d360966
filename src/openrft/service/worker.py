"""The worker: claims queued jobs and runs each one's training as a subprocess.

Per job (the job dir is a run dir, `training/rundir.py`; the protocol is in the module docs of
`progress.py` and the service docs): `<train_command> JOBDIR/config.json --output-dir JOBDIR
[--resume JOBDIR]` in its own process group, with `--resume` whenever a checkpoint exists. While
it runs, the worker copies new lines of `metrics.jsonl` into the store (de-duplicated by step),
mirrors checkpoints, heartbeats, and acts on `control`: `pause` creates `JOBDIR/PAUSE`
(training checkpoints and exits 75), `cancel` sends SIGTERM to the group and SIGKILL after a
grace period. Exit 0 is `succeeded` (or `paused`, when `paused.json` says the budget ran out),
75 `paused`, anything else `failed` with the `error.json` the training wrote (its code, message
and the setting at fault), or `training_failed` and the tail of stderr when it wrote none (it
was killed, or crashed too hard to write one).

The training's pre-flight report (`preflight.json`) becomes one event (source `preflight`, the
report as `data.preflight`; level `error` when it failed, the job then fails `preflight_failed`);
a `preflight.only` job succeeds with that report as its result file and no model.

Every worker also re-queues running jobs whose worker died: at once when that worker was a
process on this host that is gone (e.g. `kill -9`), else once its heartbeat is `stale_seconds`
old; a dead attempt's training still running here is killed first. Training cannot outlive
its worker unsupervised, nor share its job dir with another attempt (`orphans.py`). On
SIGTERM/SIGINT a worker asks its training to checkpoint, then re-queues the job.

Store errors (`database is locked` past the busy timeout, a lost connection) never end a
worker: they are logged and retried with a bounded backoff, while a running training goes on
and its heartbeats resume once the store answers. Each worker keeps its row in the `workers`
table current (at most once per `heartbeat_seconds`) and marks it `stopped` on a clean exit.

A reinforcement job with a validation file gets an eval when it is claimed, and each
evaluation its training writes (`evals/step-N.jsonl`) becomes a completed run of that eval
once its metrics line is read (`job_evals.py`); a re-claimed job re-reads its run dir and
imports only the steps that are not runs yet.

Beside the job loop, a thread claims and grades eval runs (`eval_runner.py`).

It never imports torch: training is only ever a subprocess.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import DBAPIError

from openrft.errors import SpecError
from openrft.service import job_evals, progress, tenancy
from openrft.service.environment import training_environment
from openrft.service.eval_runner import EvalRunner
from openrft.service.lifecycle import fine_tuned_model_name
from openrft.service.orphans import (
    HOST,
    PID_NAMESPACE,
    die_with_parent,
    kill_orphan,
    lock_holder,
    process_alive,
    record_holder,
    take_jobdir,
)
from openrft.service.settings import Settings
from openrft.service.store import Store, jobs, new_id, now, workers
from openrft.service.supervisor import Backoff
from openrft.training.rundir import (
    CONFIG,
    EXIT_DONE,
    EXIT_PAUSED,
    FAILED,
    METRICS,
    PAUSE_REQUEST,
    PREFLIGHT,
    PausedInfo,
    clear_error,
    parse_metrics_line,
    paused_info,
    read_error,
    read_preflight,
)

STDOUT_LOG = "stdout.log"
STDERR_LOG = "stderr.log"
"""The training's output, appended over its attempts, in the job dir."""
STDERR_TAIL = 4096
PREFLIGHT_KEY = ("preflight", 0)
"""The `(source, key)` of the pre-flight's event (one per job)."""
STORE_BACKOFF = (0.5, 30.0)
"""First and longest wait (seconds) before retrying after a store error."""
T = TypeVar("T")
log = logging.getLogger("openrft.worker")


@dataclass
class Run:
    """One attempt at one job."""

    job: RowMapping
    jobdir: Path
    proc: subprocess.Popen[bytes]
    stderr_start: int
    metrics: progress.Tail
    seen: set[tuple[str, int]] = field(default_factory=set)
    scores: dict[int, dict[str, Any]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    first_step: int | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)
    """Events read from the progress files (or written by the worker) not yet in the store."""
    values: dict[str, Any] = field(default_factory=dict)
    """Job columns (pid, ETA, tokens) to write in the next store round."""
    unsure: bool = False
    """The last store round failed, perhaps after committing part of it: re-check `pending`."""
    result_files: list[str] | None = None
    last_beat: float = field(default_factory=time.monotonic)
    control: str = ""
    """The job's `control` as last read (kept while the store is unavailable)."""
    pause_sent: bool = False
    stop_sent: bool = False
    term_at: float | None = None
    eval_id: str | None = None
    """The job's eval (`job_evals.py`), None when it gets none."""
    evaluated: dict[int, int] = field(default_factory=dict)
    """Steps whose metrics line carries a validation reward (so `evals/step-N.jsonl` is
    complete), with the run's total steps."""
    last_step: int = -1
    """The newest step a metrics line was read for."""
    imported: set[int] = field(default_factory=set)
    """Evaluated steps that are runs of the job's eval."""

    @property
    def id(self) -> str:
        return str(self.job["id"])

    @property
    def claim(self) -> str:
        return str(self.job["claim"])


class JobWorker:
    """Claims and runs jobs until stopped."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store.open(settings.url, settings.store_busy_seconds)
        self.name = f"{HOST}:{os.getpid()}"
        self.stopping = False
        """Set by SIGTERM/SIGINT: finish (checkpoint and re-queue) the current job, then exit.
        A plain flag, not a `threading.Event`: a signal handler runs between two bytecodes of the
        main thread, and `Event.set` takes a lock the main thread may be holding just then."""
        self.parent_pid: int | None = None
        """Stop (as on SIGTERM) once this process is no longer our parent (`--parent-pid`:
        `openrft serve` may die without stopping us, e.g. uvicorn re-raises SIGTERM)."""
        self.backoff = Backoff(*STORE_BACKOFF)
        self._beaten = (float("-inf"), "")
        """When (monotonic) and in which state this worker's row was last written."""
        self._adopted = False
        self._store_failing = False
        self._store_back = float("-inf")
        """When (monotonic) the store answered again after an outage."""

    def _orphaned(self) -> bool:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.stopping = True
        return self.stopping

    # --- the loop -----------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until `stopping` (SIGTERM/SIGINT set it when run from `main`)."""
        log.info("worker %s polling %s", self.name, self.settings.url)
        evals = EvalRunner(self.settings, self.store, self.name, self._orphaned).start()
        while not self._orphaned():
            try:
                worked = self._round()
            except DBAPIError as exc:
                time.sleep(self._store_down(exc, self.backoff))
                continue
            self.backoff.reset()
            if not worked:
                time.sleep(self.settings.poll_seconds)
        evals.join(self.settings.cancel_grace_seconds)  # it re-queues the run it was grading

    def _round(self) -> bool:
        """Heartbeat, reap, and run one job if there is one; False when the queue was empty."""
        self._beat("idle")
        if not self._adopted:
            self.adopt_dead_workers()
            self._adopted = True
        self.reap_dead_here()
        self.reap_stale()
        return self.run_next()

    def run_next(self) -> bool:
        """Claim and run one job to its end; False when the queue is empty."""
        job = self.store.claim_job(self.name)
        if job is None:
            return False
        return self.run_job(job)

    def reap_stale(self) -> None:
        """Re-queue (or settle) running jobs whose worker stopped heartbeating, but not until
        the store has worked for `stale_seconds` after an outage: every worker's heartbeats
        failed then too, and each gets that long to resume them."""
        if self._store_failing:  # we are called after store calls that worked: it is back
            self._store_failing, self._store_back = False, time.monotonic()
        if time.monotonic() - self._store_back < self.settings.stale_seconds:
            return
        for job in self.store.stale_jobs(time.time() - self.settings.stale_seconds):
            self._requeue(job)

    def reap_dead_here(self) -> None:
        """Re-queue at once running jobs whose worker was a process on this host that is gone
        (killed, crashed): nobody heartbeats for them, so there is no need to wait
        `stale_seconds`. "This host" is this hostname *and* PID namespace, as its `workers` row
        says (containers may share a hostname, not their pids); other workers are only known
        dead by their stale heartbeat."""
        query = select(jobs).join(workers, workers.c.name == jobs.c.worker)
        query = query.where(jobs.c.status == "running", *self._here())
        for job in self.store.all(query):
            pid = _pid_of(job["worker"])
            if pid is None or pid == os.getpid() or process_alive(pid, "openrft"):
                continue
            self._requeue(job, " (its process on this host is gone)")

    def adopt_dead_workers(self) -> None:
        """Mark this host's workers whose process is gone (a crash, a reboot) as replaced by
        this one, so `/health` stops counting them; their jobs are `reap_dead_here`'s."""
        query = select(workers.c.name, workers.c.pid).where(
            *self._here(), workers.c.state != "stopped", workers.c.replaced_by.is_(None)
        )
        for row in self.store.all(query):
            if row["pid"] != os.getpid() and not process_alive(row["pid"], "openrft"):
                self.store.worker_exited(row["name"], None, replaced_by=self.name)

    def _here(self) -> tuple[Any, ...]:
        """`workers` rows of processes this one can see: same host, same PID namespace."""
        return (workers.c.host == HOST, workers.c.pid_ns == PID_NAMESPACE)

    def _requeue(self, job: RowMapping, why: str = "") -> None:
        """Give a job whose worker died back to the queue (or settle it), killing what is left
        of its training on this machine first."""
        kill_orphan(job["pid"], self.settings.jobs_dir / job["id"])
        values: dict[str, Any] = {"status": "queued", "control": ""}
        message = f"Worker {job['worker']} stopped responding; job re-queued{why}"
        if job["control"] in ("cancel", "pause"):
            status = "cancelled" if job["control"] == "cancel" else "paused"
            values = {"status": status, "control": ""}
            message = f"Worker {job['worker']} stopped responding; job {status}{why}"
        elif job["attempts"] >= self.settings.max_attempts:
            message = f"Job lost its worker {job['attempts']} times; giving up"
            error = {"code": "worker_lost", "message": message, "param": None}
            values = {"status": "failed", "error": error, "finished_at": now()}
        if values["status"] in ("cancelled",):
            values["finished_at"] = now()
        if self.store.set_job(job["id"], where={"claim": job["claim"]}, **values):
            level = "error" if values["status"] == "failed" else "warn"
            self._event(job["id"], message, level)

    # --- one job ------------------------------------------------------------------------------

    def run_job(self, job: RowMapping) -> bool:
        """Run a claimed job to its end, seeing it through store outages. False if its job dir
        is still locked by another attempt's training that cannot be killed from here (it runs
        on another machine): the job goes back to the queue."""
        jobdir = self.settings.jobs_dir / job["id"]
        jobdir.mkdir(parents=True, exist_ok=True)
        lock = take_jobdir(jobdir, wait=self.settings.cancel_grace_seconds)
        if lock is None:
            self._stored(lambda: self._give_back(job, jobdir))
            return False
        try:
            run = self._stored(lambda: self._start(job, jobdir, lock))
            outcome = self._monitor(run)
            self._stored(lambda: self._collect(run))
            if outcome == "lost":
                log.warning("job %s was taken from this worker; stopped its training", run.id)
            else:
                self._stored(lambda: self._finish(run))
        finally:
            os.close(lock)
        return True

    def _give_back(self, job: RowMapping, jobdir: Path) -> None:
        if self.store.set_job(job["id"], where={"claim": job["claim"]}, status="queued"):
            holder = lock_holder(jobdir)
            message = f"Job directory still in use by training process {holder}; job re-queued"
            self._event(job["id"], message, "warn")

    def _start(self, job: RowMapping, jobdir: Path, lock: int) -> Run:
        """Start the training (holding `lock`, the job dir's). Its store work comes before
        `Popen`, so a store error retries this whole; what follows is written by `_collect`."""
        seen = self.store.event_keys(job["id"])
        eval_id = job_evals.ensure_eval(self.store, job)
        config_path = jobdir / CONFIG
        config_path.write_text(json.dumps(job["config"], indent=2), encoding="utf-8")
        (jobdir / PAUSE_REQUEST).unlink(missing_ok=True)
        clear_error(jobdir)  # an earlier attempt's: this one may be killed before writing its own
        resume = bool(progress.checkpoint_dirs(jobdir))
        command = [*self.settings.train_command, str(config_path), "--output-dir", str(jobdir)]
        if resume:
            command += ["--resume", str(jobdir)]  # the run dir: training picks its latest
        stderr_path = jobdir / STDERR_LOG
        stderr_start = stderr_path.stat().st_size if stderr_path.exists() else 0
        with (jobdir / STDOUT_LOG).open("ab") as out, stderr_path.open("ab") as err:
            proc = subprocess.Popen(  # noqa: S603 - our own command line, no shell
                command,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=jobdir,
                env=self._env(job),
                start_new_session=True,  # its own process group: cancel signals the whole tree
                pass_fds=(lock,),  # the training holds the job dir's lock as long as it runs
                preexec_fn=die_with_parent(),  # this main thread's death kills the training
            )
        record_holder(lock, proc.pid)
        metrics = progress.Tail(jobdir / METRICS)
        run = Run(job, jobdir, proc, stderr_start, metrics, seen=seen, eval_id=eval_id)
        run.values["pid"] = proc.pid
        attempt = job["attempts"]
        if resume:
            message = f"Resuming from the latest checkpoint (attempt {attempt})"
        else:
            message = "Fine-tuning job started"
        run.pending.append({"level": "info", "message": message, "type": "message"})
        return run

    def _env(self, job: RowMapping) -> dict[str, str]:
        context = tenancy.grade_context(self.store, self.settings, job["project"])
        return training_environment(job, context, self.settings)

    def _monitor(self, run: Run) -> str:
        """Wait for the training to end; returns `exited` or `lost` (job taken by a reaper).
        A store error is logged and retried with backoff; the training runs on meanwhile."""
        backoff, retry_at = self._job_backoff(), 0.0
        while run.proc.poll() is None:
            if time.monotonic() >= retry_at:
                try:
                    if not self._tick(run):
                        self._kill(run)
                        return "lost"
                    backoff.reset()
                except DBAPIError as exc:
                    retry_at = time.monotonic() + self._store_down(exc, backoff)
            self._steer(run)
            with contextlib.suppress(subprocess.TimeoutExpired):  # wakes at once on exit
                run.proc.wait(timeout=min(self.settings.poll_seconds, 0.5))
        return "exited"

    def _tick(self, run: Run) -> bool:
        """One round of store work for a running job; False if a reaper took the job. The
        heartbeat goes first: whatever else fails, it is what keeps the job ours."""
        if time.monotonic() - run.last_beat >= self.settings.heartbeat_seconds:
            beat = time.time()
            if not self.store.set_job(run.id, where={"claim": run.claim}, heartbeat_at=beat):
                return False
            run.last_beat = time.monotonic()
        self._beat("busy", run.id)
        self._collect(run)
        run.control = self._control(run)
        return True

    def _steer(self, run: Run) -> None:
        """Act on the last known `control` and on our own stopping, store or no store."""
        if run.control == "pause" and not run.pause_sent:
            (run.jobdir / PAUSE_REQUEST).touch()
            run.pause_sent = True
        if self._orphaned() and not run.stop_sent:
            (run.jobdir / PAUSE_REQUEST).touch()  # checkpoint, then another worker resumes it
            run.stop_sent = True
        if run.control == "cancel" and run.term_at is None:
            self._signal(run, signal.SIGTERM)
            run.term_at = time.monotonic()
        if run.term_at and time.monotonic() - run.term_at > self.settings.cancel_grace_seconds:
            self._signal(run, signal.SIGKILL)

    def _control(self, run: Run) -> str:
        row = self.store.one(select(jobs.c.control).where(jobs.c.id == run.id))
        return str(row["control"]) if row else ""

    def _signal(self, run: Run, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(run.proc.pid, sig)

    def _kill(self, run: Run) -> None:
        self._signal(run, signal.SIGKILL)
        run.proc.wait()

    # --- progress -----------------------------------------------------------------------------

    def _collect(self, run: Run) -> None:
        """Copy new progress lines, job columns and the checkpoint list into the store. Safe to
        repeat after a store error: what was read but not stored waits on `run`."""
        self._read_progress(run)
        if run.unsure and run.pending:
            have = self.store.event_keys(run.id)
            run.pending = [r for r in run.pending if (r.get("source"), r.get("key")) not in have]
        run.unsure = True
        self.store.add_events(run.id, run.pending)
        run.pending = []
        if run.values:
            self.store.set_job(run.id, where={"claim": run.claim}, **run.values)
            run.values = {}
        model = fine_tuned_model_name(run.job["model"], run.job["suffix"], run.id)
        found = progress.read_checkpoints(run.jobdir, run.scores, model)
        self.store.sync_checkpoints(run.id, found)
        self._import_evals(run)
        run.unsure = False

    def _import_evals(self, run: Run) -> None:
        """Store the job's finished evaluations as runs of its eval. A step waits for a later
        step's line (or the training's end) so that its checkpoint, if it saved one, is known."""
        if run.eval_id is None:
            return
        ended = run.proc.poll() is not None
        ready = {
            step: total
            for step, total in run.evaluated.items()
            if step not in run.imported and (step < run.last_step or ended)
        }
        if not ready:
            return
        job = {**run.job, "eval_id": run.eval_id}
        try:
            run.imported |= job_evals.import_steps(self.store, job, run.eval_id, run.jobdir, ready)
        except (OSError, ValueError, SpecError) as exc:  # the job's own files went bad
            log.warning("job %s: its evaluations are no longer imported: %s", run.id, exc)
            run.eval_id = None

    def _read_progress(self, run: Run) -> None:
        for row in (progress.metrics_event(n, t) for n, t in run.metrics.read()):
            said = []  # a diagnosis, the validation carve-out: events of their own
            if row["type"] == "metrics":
                run.scores[row["key"]] = progress.step_scores(row)
                self._estimate(run, row["data"])
                self._note_evaluation(run, row["data"])
                said = progress.run_events(row["data"])
            for event in [row, *said]:
                if (event["source"], event["key"]) not in run.seen:
                    run.seen.add((event["source"], event["key"]))
                    run.pending.append(event)
        found = None if PREFLIGHT_KEY in run.seen else read_preflight(run.jobdir)
        if found is not None:  # the pre-flight's verdict, once, passed or not
            run.seen.add(PREFLIGHT_KEY)
            run.pending.append(_preflight_event(found))

    def _note_evaluation(self, run: Run, line: dict[str, Any]) -> None:
        step = line["step"]
        run.last_step = max(run.last_step, step)
        if (line.get("scores") or {}).get("valid_reward_mean") is not None:
            total = line.get("total_steps")
            run.evaluated[step] = total if isinstance(total, int) else -1

    def _estimate(self, run: Run, line: dict[str, Any]) -> None:
        step, total = line.get("step"), line.get("total_steps")
        if not isinstance(step, int) or not isinstance(total, int) or step <= 0:
            return
        if run.first_step is None:
            run.first_step, run.started = step, time.monotonic()
            return
        done = step - run.first_step
        if done > 0:
            rate = (time.monotonic() - run.started) / done
            run.values["estimated_finish"] = int(time.time() + rate * max(0, total - step))
            tokens = (line.get("usage") or {}).get("trained_tokens")
            if isinstance(tokens, int):
                run.values["trained_tokens"] = tokens

    # --- the end ------------------------------------------------------------------------------

    def _finish(self, run: Run) -> None:
        """Record how the training ended (safe to repeat after a store error)."""
        done, notes = self._settle(run)
        if self.store.set_job(run.id, where={"claim": run.claim}, **done):
            self.store.add_events(run.id, notes)

    def _settle(self, run: Run) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The job's final columns and the events that say so. A pause's event carries its
        `PausedInfo` as `data.pause` (the dashboard shows why a job paused from it)."""
        code = run.proc.returncode
        control = self._control(run)
        done: dict[str, Any] = {"control": "", "pid": None, "estimated_finish": None}
        notes: list[dict[str, Any]] = []
        pause = paused_info(run.jobdir)
        if control == "cancel":
            done |= {"status": "cancelled", "finished_at": now()}
            notes.append(_note("Job cancelled"))
        elif code == EXIT_DONE and pause is not None:
            # the run stopped at its budget: paused (with why), not finished; resume continues
            done |= {"status": "paused"}
            said = pause.get("message") if pause["reason"] == "diagnosis" else None
            message = said or _budget_message(run.job["config"], pause["step"])
            notes.append(_note(message, "warn" if said else "info", pause=pause))
        elif code == EXIT_DONE and _preflight_only(run.job["config"]):
            if run.result_files is None:  # `preflight.only`: its report is the result
                run.result_files = self._result_files(run, PREFLIGHT)
            done |= {"status": "succeeded", "finished_at": now(), "result_files": run.result_files}
            notes.append(_note("Pre-flight finished; no model was trained (`preflight.only`)"))
        elif code == EXIT_DONE:
            model = fine_tuned_model_name(run.job["model"], run.job["suffix"], run.id)
            if run.result_files is None:  # once: a retry must not register a second copy
                run.result_files = self._result_files(run)
            done |= {"status": "succeeded", "finished_at": now(), "fine_tuned_model": model}
            done["result_files"] = run.result_files
            notes.append(_note(f"New fine-tuned model created: {model}"))
            notes.append(_note("The job has successfully completed"))
        elif code == EXIT_PAUSED and self.stopping and control != "pause":
            done |= {"status": "queued"}
            notes.append(_note("Worker stopping; job checkpointed and re-queued", "warn"))
        elif code == EXIT_PAUSED:
            done |= {"status": "paused"}
            notes.append(_note("Job paused; resume continues from its checkpoint", pause=pause))
        else:
            error = self._error(run)
            done |= {"status": "failed", "finished_at": now(), "error": error}
            message = f"Training failed (exit code {code}): {error['message']}"
            notes.append(_note(message, "error"))
        return done, notes

    def _error(self, run: Run) -> dict[str, Any]:
        """The job's `error`: from the training's `error.json`, else `training_failed` with
        the tail of its stderr (it was killed, or crashed before it could write one)."""
        found = read_error(run.jobdir)
        if found is None:
            return {"code": FAILED, "message": self._stderr_tail(run), "param": None}
        return {"code": found["code"], "message": found["message"], "param": found["param"]}

    def _stderr_tail(self, run: Run) -> str:
        path = run.jobdir / STDERR_LOG
        with path.open("rb") as handle:
            handle.seek(max(run.stderr_start, path.stat().st_size - STDERR_TAIL))
            text = handle.read().decode("utf-8", "replace").strip()
        return text or f"training exited with code {run.proc.returncode} and no stderr output"

    def _result_files(self, run: Run, name: str = METRICS) -> list[str]:
        """Register `metrics.jsonl` (or the pre-flight's report) as the job's
        `fine-tune-results` file."""
        source = run.jobdir / name
        if not source.exists():
            return []
        file_id = new_id("file")
        self.settings.files_dir.mkdir(parents=True, exist_ok=True)
        target = self.settings.files_dir / f"{file_id}{source.suffix}"
        text = _one_line_per_step(source) if name == METRICS else source.read_text("utf-8")
        target.write_text(text, encoding="utf-8")
        self.store.add_file(
            {
                "id": file_id,
                "project": run.job["project"],
                "filename": name,
                "purpose": "fine-tune-results",
                "bytes": target.stat().st_size,
                "created_at": now(),
                "path": str(target),
            }
        )
        return [file_id]

    def _event(self, job_id: str, message: str, level: str = "info") -> None:
        self.store.log(job_id, message, level)

    # --- the store's bad days -----------------------------------------------------------------

    def _beat(self, state: str, job_id: str | None = None) -> None:
        """Keep this worker's `workers` row current: on a change of state, else at most once
        per `heartbeat_seconds`."""
        at, was = self._beaten
        if state == was and time.monotonic() - at < self.settings.heartbeat_seconds:
            return
        values = {"host": HOST, "pid_ns": PID_NAMESPACE, "pid": os.getpid(), "state": state}
        values["job_id"] = job_id
        self.store.save_worker(self.name, heartbeat_at=time.time(), **values)
        self._beaten = (time.monotonic(), state)

    def stopped(self) -> None:
        """Mark this worker's row `stopped` (a clean exit), if the store lets us."""
        try:
            self.store.save_worker(self.name, state="stopped", job_id=None)
        except DBAPIError as exc:
            log.warning("could not mark worker %s stopped: %s", self.name, exc.orig)

    def _stored(self, call: Callable[[], T]) -> T:
        """`call()`, retried through store errors until it works: a claimed job's bookkeeping
        must not be lost. Gives up (raises) only once this worker is stopping."""
        backoff = self._job_backoff()
        while True:
            try:
                return call()
            except DBAPIError as exc:
                if self._orphaned():
                    raise
                time.sleep(self._store_down(exc, backoff))

    def _job_backoff(self) -> Backoff:
        """Store retries while holding a job: at least as often as heartbeats are due, so they
        resume as the store comes back, well before other workers would reap the job."""
        first = STORE_BACKOFF[0]
        return Backoff(first, max(first, min(STORE_BACKOFF[1], self.settings.heartbeat_seconds)))

    def _store_down(self, exc: DBAPIError, backoff: Backoff) -> float:
        """Log a store error; returns how long to wait before trying again."""
        self._store_failing = True
        wait = backoff.next()
        log.warning(
            "worker %s: store unavailable (%s: %s); retrying in %.1f s",
            self.name,
            type(exc).__name__,
            exc.orig,
            wait,
        )
        return wait


def _one_line_per_step(metrics: Path) -> str:
    """`metrics.jsonl` with one line per step, in step order: a resumed run repeats the steps
    after its checkpoint, and the later line is the one the final model descends from."""
    lines: dict[int, str] = {}
    for text in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
        line = parse_metrics_line(text)
        if line is not None:
            lines[line["step"]] = text
    return "".join(lines[step] + "\n" for step in sorted(lines))


def _pid_of(worker: str | None) -> int | None:
    """The pid in a worker name `host:pid`."""
    try:
        return int((worker or "").rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return None


def _note(message: str, level: str = "info", pause: PausedInfo | None = None) -> dict[str, Any]:
    """A message event of the worker's."""
    data = {"pause": pause} if pause is not None else None
    return {"level": level, "message": message, "type": "message", "data": data}


def _preflight_only(config: Any) -> bool:
    """The job runs only the pre-flight (`preflight.only`, `openrft jobs create --preflight`)."""
    return bool(((config or {}).get("preflight") or {}).get("only"))


def _preflight_event(report: dict[str, Any]) -> dict[str, Any]:
    """The `preflight` event: the verdict as its message, the whole report as `data.preflight`
    (`info` when it passed, `warn` when forced through, `error` when it failed)."""
    level = "info" if report["passed"] else "warn" if report.get("forced") else "error"
    message = str(report.get("message") or "pre-flight finished")
    source, key = PREFLIGHT_KEY
    data = {"preflight": report}
    event = {"level": level, "message": message, "type": "message", "data": data}
    return event | {"source": source, "key": key}


def _budget_message(config: Any, step: int) -> str:
    limits = (config or {}).get("budget") or {}
    said = ", ".join(f"{k} {v}" for k, v in limits.items() if v is not None) or "its budget"
    return (
        f"Job paused at step {step}: it reached its budget ({said}); resume continues from "
        "its checkpoint"
    )


def main(argv: list[str] | None = None) -> None:
    """`python -m openrft.service.worker [--data-dir DIR] [--database-url URL]`."""
    parser = argparse.ArgumentParser(prog="openrft worker", description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="stop once this process is not our parent"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_env(data_dir=args.data_dir, database_url=args.database_url)
    os.umask(0o077)  # job dirs, checkpoints and result files are the tenants' data
    worker = JobWorker(settings)
    worker.parent_pid = args.parent_pid  # given, not read here: the parent may already be gone
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(worker, "stopping", True))
    worker.serve()
    worker.stopped()


if __name__ == "__main__":
    main()
