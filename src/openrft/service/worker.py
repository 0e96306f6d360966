"""The worker: claims queued jobs and runs each one's training as a subprocess.

Per job (the protocol is in the module docs of `progress.py` and the service docs):
`<train_command> JOBDIR/config.json --output-dir JOBDIR [--resume JOBDIR]` in its own process group,
with `--resume` whenever a checkpoint exists. While it runs, the worker copies new lines of
`metrics.jsonl`/`events.jsonl` into the store (de-duplicated by key), mirrors checkpoints,
heartbeats, and acts on `control`: `pause` creates `JOBDIR/PAUSE` (training checkpoints and
exits 75), `cancel` sends SIGTERM to the group and SIGKILL after a grace period. Exit 0 is
`succeeded`, 75 `paused`, anything else `failed` with the tail of stderr.

Every worker also re-queues running jobs whose heartbeat is stale (their worker died), killing
the dead worker's orphaned training process when it is on this machine. On SIGTERM/SIGINT a
worker asks its training to checkpoint, then re-queues the job for another worker.

It never imports torch: training is only ever a subprocess.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import RowMapping

from openrft.service import progress
from openrft.service.lifecycle import fine_tuned_model_name
from openrft.service.settings import Settings
from openrft.service.store import Store, jobs, new_id, now

EXIT_PAUSED = 75
STDERR_TAIL = 4096
log = logging.getLogger("openrft.worker")


def process_alive(pid: int, marker: str) -> bool:
    """True if `pid` is a live process whose command line contains `marker` (guards against a
    recycled pid). Without /proc (not Linux) we cannot tell, and say False."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z" and marker.encode() in cmdline


def kill_orphan(pid: int | None, jobdir: Path, wait: float = 10.0) -> bool:
    """Kill the process group of a previous attempt's training if it still runs here."""
    if not pid or not process_alive(pid, str(jobdir)):
        return False
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + wait
    while process_alive(pid, str(jobdir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


@dataclass
class Run:
    """One attempt at one job."""

    job: RowMapping
    jobdir: Path
    proc: subprocess.Popen[bytes]
    stderr_start: int
    tails: dict[str, progress.Tail] = field(default_factory=dict)
    seen: set[tuple[str, int]] = field(default_factory=set)
    scores: dict[int, dict[str, Any]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    first_step: int | None = None

    @property
    def id(self) -> str:
        return str(self.job["id"])

    @property
    def claim(self) -> str:
        return str(self.job["claim"])


class Worker:
    """Claims and runs jobs until stopped."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self.store = store or Store.open(settings.url)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.stopping = False
        """Set by SIGTERM/SIGINT: finish (checkpoint and re-queue) the current job, then exit.
        A plain flag, not a `threading.Event`: a signal handler runs between two bytecodes of the
        main thread, and `Event.set` takes a lock the main thread may be holding just then."""
        self.parent_pid: int | None = None
        """Stop (as on SIGTERM) once this process is no longer our parent (`--parent-pid`:
        `openrft serve` may die without stopping us, e.g. uvicorn re-raises SIGTERM)."""

    def _orphaned(self) -> bool:
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            self.stopping = True
        return self.stopping

    # --- the loop -----------------------------------------------------------------------------

    def serve(self) -> None:
        """Run until `stopping` (SIGTERM/SIGINT set it when run from `main`)."""
        log.info("worker %s polling %s", self.name, self.settings.url)
        while not self._orphaned():
            self.reap_stale()
            if not self.run_next():
                time.sleep(self.settings.poll_seconds)

    def run_next(self) -> bool:
        """Claim and run one job to its end; False when the queue is empty."""
        job = self.store.claim_job(self.name)
        if job is None:
            return False
        self.run_job(job)
        return True

    def reap_stale(self) -> None:
        """Re-queue (or settle) running jobs whose worker stopped heartbeating."""
        cutoff = time.time() - self.settings.stale_seconds
        for job in self.store.stale_jobs(cutoff):
            kill_orphan(job["pid"], self.settings.jobs_dir / job["id"])
            values: dict[str, Any] = {"status": "queued", "control": ""}
            message = f"Worker {job['worker']} stopped responding; job re-queued"
            if job["control"] in ("cancel", "pause"):
                status = "cancelled" if job["control"] == "cancel" else "paused"
                values = {"status": status, "control": ""}
                message = f"Worker {job['worker']} stopped responding; job {status}"
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

    def run_job(self, job: RowMapping) -> None:
        jobdir = self.settings.jobs_dir / job["id"]
        jobdir.mkdir(parents=True, exist_ok=True)
        kill_orphan(job["pid"], jobdir)
        run = self._start(job, jobdir)
        outcome = self._monitor(run)
        self._collect(run)
        if outcome == "lost":
            log.warning("job %s was taken from this worker; stopped its training", run.id)
            return
        self._finish(run, outcome)

    def _start(self, job: RowMapping, jobdir: Path) -> Run:
        config_path = jobdir / "config.json"
        config_path.write_text(json.dumps(job["config"], indent=2), encoding="utf-8")
        (jobdir / "PAUSE").unlink(missing_ok=True)
        resume = bool(progress.checkpoint_dirs(jobdir))
        command = [*self.settings.train_command, str(config_path), "--output-dir", str(jobdir)]
        if resume:
            command += ["--resume", str(jobdir)]  # the run dir: training picks its latest
        stderr_path = jobdir / "stderr.log"
        stderr_start = stderr_path.stat().st_size if stderr_path.exists() else 0
        with (jobdir / "stdout.log").open("ab") as out, stderr_path.open("ab") as err:
            proc = subprocess.Popen(  # noqa: S603 - our own command line, no shell
                command,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=jobdir,
                env=self._env(job),
                start_new_session=True,  # its own process group: cancel signals the whole tree
            )
        self.store.set_job(job["id"], where={"claim": job["claim"]}, pid=proc.pid)
        run = Run(job=job, jobdir=jobdir, proc=proc, stderr_start=stderr_start)
        run.tails = {
            "metrics": progress.Tail(jobdir / "metrics.jsonl"),
            "events": progress.Tail(jobdir / "events.jsonl"),
        }
        run.seen = self.store.event_keys(run.id)
        attempt = job["attempts"]
        if resume:
            message = f"Resuming from the latest checkpoint (attempt {attempt})"
        else:
            message = "Fine-tuning job started"
        self._event(run.id, message)
        return run

    def _env(self, job: RowMapping) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for integration in job["integrations"] or []:
            wandb = integration.get("wandb") or {}
            for key in ("project", "entity", "name"):
                if wandb.get(key):
                    env[f"WANDB_{key.upper()}"] = str(wandb[key])
            if wandb.get("tags"):
                env["WANDB_TAGS"] = ",".join(wandb["tags"])
        return env

    def _monitor(self, run: Run) -> str:
        """Wait for the training to end; returns `exited` or `lost` (job taken by a reaper)."""
        pause_sent = False
        stop_sent = False
        term_at: float | None = None
        last_beat = time.monotonic()
        while run.proc.poll() is None:
            self._collect(run)
            if time.monotonic() - last_beat >= self.settings.heartbeat_seconds:
                last_beat = time.monotonic()
                alive = self.store.set_job(
                    run.id, where={"claim": run.claim}, heartbeat_at=time.time()
                )
                if not alive:
                    self._kill(run)
                    return "lost"
            control = self._control(run)
            if control == "pause" and not pause_sent:
                (run.jobdir / "PAUSE").touch()
                pause_sent = True
            if self._orphaned() and not stop_sent:
                (run.jobdir / "PAUSE").touch()  # checkpoint, then another worker resumes it
                stop_sent = True
            if control == "cancel" and term_at is None:
                self._signal(run, signal.SIGTERM)
                term_at = time.monotonic()
            if term_at and time.monotonic() - term_at > self.settings.cancel_grace_seconds:
                self._signal(run, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):  # wakes at once on exit
                run.proc.wait(timeout=min(self.settings.poll_seconds, 0.5))
        return "exited"

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
        """Copy new progress lines and the checkpoint list into the store."""
        rows = [progress.metrics_event(n, t) for n, t in run.tails["metrics"].read()]
        rows += [progress.message_event(n, t) for n, t in run.tails["events"].read()]
        fresh = []
        for row in rows:
            if row["type"] == "metrics":
                run.scores[row["key"]] = progress.step_scores(row)
                self._estimate(run, row["data"])
            if (row["source"], row["key"]) not in run.seen:
                run.seen.add((row["source"], row["key"]))
                fresh.append(row)
        self.store.add_events(run.id, fresh)
        model = fine_tuned_model_name(run.job["model"], run.job["suffix"], run.id)
        found = progress.read_checkpoints(run.jobdir, run.scores, model)
        self.store.sync_checkpoints(run.id, found)

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
            eta = int(time.time() + rate * max(0, total - step))
            usage = line.get("usage") or {}
            tokens = usage.get("trained_tokens")
            values: dict[str, Any] = {"estimated_finish": eta}
            if isinstance(tokens, int):
                values["trained_tokens"] = tokens
            self.store.set_job(run.id, where={"claim": run.claim}, **values)

    # --- the end ------------------------------------------------------------------------------

    def _finish(self, run: Run, _outcome: str) -> None:
        code = run.proc.returncode
        control = self._control(run)
        done: dict[str, Any] = {"control": "", "pid": None, "estimated_finish": None}
        if control == "cancel":
            done |= {"status": "cancelled", "finished_at": now()}
            message, level = "Job cancelled", "info"
        elif code == 0:
            model = fine_tuned_model_name(run.job["model"], run.job["suffix"], run.id)
            done |= {"status": "succeeded", "finished_at": now(), "fine_tuned_model": model}
            done["result_files"] = self._result_files(run)
            self._event(run.id, f"New fine-tuned model created: {model}")
            message, level = "The job has successfully completed", "info"
        elif code == EXIT_PAUSED and self.stopping and control != "pause":
            done |= {"status": "queued"}
            message, level = "Worker stopping; job checkpointed and re-queued", "warn"
        elif code == EXIT_PAUSED:
            done |= {"status": "paused"}
            message, level = "Job paused; resume continues from its checkpoint", "info"
        else:
            error = {"code": "training_failed", "message": self._stderr_tail(run), "param": None}
            done |= {"status": "failed", "finished_at": now(), "error": error}
            message, level = f"Training failed (exit code {code}): {error['message']}", "error"
        if self.store.set_job(run.id, where={"claim": run.claim}, **done):
            self._event(run.id, message, level)

    def _stderr_tail(self, run: Run) -> str:
        path = run.jobdir / "stderr.log"
        with path.open("rb") as handle:
            handle.seek(max(run.stderr_start, path.stat().st_size - STDERR_TAIL))
            text = handle.read().decode("utf-8", "replace").strip()
        return text or f"training exited with code {run.proc.returncode} and no stderr output"

    def _result_files(self, run: Run) -> list[str]:
        """Register `metrics.jsonl` as the job's `fine-tune-results` file."""
        source = run.jobdir / "metrics.jsonl"
        if not source.exists():
            return []
        file_id = new_id("file")
        self.settings.files_dir.mkdir(parents=True, exist_ok=True)
        target = self.settings.files_dir / f"{file_id}.jsonl"
        shutil.copyfile(source, target)
        self.store.add_file(
            {
                "id": file_id,
                "project": run.job["project"],
                "filename": "metrics.jsonl",
                "purpose": "fine-tune-results",
                "bytes": target.stat().st_size,
                "created_at": now(),
                "path": str(target),
            }
        )
        return [file_id]

    def _event(self, job_id: str, message: str, level: str = "info") -> None:
        self.store.log(job_id, message, level)


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
    worker = Worker(settings)
    worker.parent_pid = args.parent_pid  # given, not read here: the parent may already be gone
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: setattr(worker, "stopping", True))
    worker.serve()


if __name__ == "__main__":
    main()
