"""`Settings`: where the service keeps its state and how its workers behave.

The data directory defaults to `~/.openrft` (`$OPENRFT_DATA_DIR` or `--data-dir` override it):
one place per user, like `~/.cache`, so `openrft serve` and `openrft keys create` agree without
flags. It holds `openrft.db` (the SQLite store, unless `database_url` names another database),
`files/` (uploads) and `jobs/<job id>/` (each job's config, logs, metrics and checkpoints).

This module only describes settings; it opens no database and starts nothing.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "OPENRFT_"


def default_data_dir() -> Path:
    """`$OPENRFT_DATA_DIR`, else `~/.openrft`."""
    return Path(os.environ.get(f"{ENV_PREFIX}DATA_DIR", Path.home() / ".openrft")).expanduser()


def default_train_command() -> list[str]:
    """`python -m openrft.cli train --dialect native` with the worker's own interpreter (a job's
    config.json is the native config the API validated: nothing to recognise again)."""
    return [sys.executable, "-m", "openrft.cli", "train", "--dialect", "native"]


class Settings(BaseModel):
    """Service and worker settings; every field can come from an `OPENRFT_<NAME>` variable."""

    model_config = ConfigDict(use_attribute_docstrings=True, frozen=True)

    data_dir: Path = Field(default_factory=default_data_dir)
    """Uploads, job directories and (by default) the SQLite database live here."""
    database_url: str | None = None
    """SQLAlchemy URL of the store, e.g. `postgresql+psycopg://user@host/openrft`, so workers on
    several machines share one queue; default: `sqlite:///<data_dir>/openrft.db`."""
    auth: bool = True
    """Require `Authorization: Bearer <key>`; off (`--no-auth`) everything is project `default`."""
    max_file_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    """Largest accepted upload (OpenAI's fine-tuning limit is 512 MB)."""
    poll_seconds: float = Field(default=0.5, gt=0)
    """How often an idle worker looks for a queued job, and a busy one reads progress files."""
    heartbeat_seconds: float = Field(default=2.0, gt=0)
    """How often a busy worker proves it is alive."""
    stale_seconds: float = Field(default=30.0, gt=0)
    """A running job whose heartbeat is older than this is re-queued (its worker is presumed
    dead). Workers on several machines compare wall clocks, so keep them in sync (NTP)."""
    max_attempts: int = Field(default=5, ge=1)
    """A job whose worker died this many times fails with `worker_lost` instead of re-queueing."""
    cancel_grace_seconds: float = Field(default=10.0, ge=0)
    """After SIGTERM, how long a cancelled training process may take before SIGKILL."""
    train_command: list[str] = Field(default_factory=lambda: default_train_command())
    """The training command; the worker appends `CONFIG.json --output-dir JOBDIR [--resume JOBDIR]`.
    Change it to wrap training (`nice`, a cluster launcher) or to a stand-in for benchmarks."""

    # --- tenancy (docs/service.md, "Threat model") -----------------------------------------------
    allow_grader_hosts: list[str] = []
    """Hosts, IPs or CIDR networks that tenant-chosen URLs (endpoint graders) may reach although
    they are loopback, link-local or private (`--allow-grader-hosts 127.0.0.1,10.0.0.0/8`)."""
    allow_local_paths: bool = False
    """Let jobs name server paths (datasets, model directories, accelerate configs) through the
    API. Only for a single-user server: `--no-auth` implies it."""
    pass_env: list[str] = []
    """Names of this server's environment variables that training subprocesses inherit (e.g. a
    judge's API key variable). Everything else is left out: workers start training with a minimal
    environment (`PATH`, `HOME`, locale, OpenRFT's and Hugging Face's cache settings)."""
    grading_threads: int = Field(default=16, ge=1)
    """Threads that run `graders/run` calls, apart from the threads serving other requests."""
    grading_concurrency: int = Field(default=4, ge=1)
    """`graders/run` calls one project may have in flight; more are refused with 429."""

    chat_load_timeout_seconds: float = Field(default=300.0, gt=0)
    """How long a chat request waits for its model server to load before 503 `model_loading`."""
    chat_timeout_seconds: float = Field(default=600.0, gt=0)
    """Longest a model server may take to answer one chat completion (then 504)."""
    chat_max_adapters: int = Field(default=8, ge=1)
    """LoRA adapters (`ft:`/checkpoint models) each model server keeps loaded (LRU evicted)."""

    # --- quotas: defaults for every project (`openrft quotas set` overrides per project) --------
    max_active_jobs: int = Field(default=16, ge=1)
    """Jobs a project may have validating, queued or running at once."""
    max_job_steps: int = Field(default=100_000, ge=1)
    """Most optimizer steps one job may plan (`max_steps`, or epochs × steps per epoch)."""
    max_job_epochs: int = Field(default=100, ge=1)
    """Most passes over the training data (`n_epochs`) of one job."""
    max_job_processes: int = Field(default=8, ge=1)
    """Most data-parallel ranks (`num_processes`) of one job."""
    max_project_bytes: int = Field(default=50 * 1024**3, ge=1)
    """Total bytes of uploaded files a project may keep."""

    # --- placement: SeekrFlow's `infrastructure_config` (service/flow/placement.py) -------------
    accelerator_type: str = ""
    """The kind of accelerator the workers' machines have, in SeekrFlow's names (`H100`,
    `A100`, `A10`, `MI300X`, `GAUDI2`, `GAUDI3`); empty: none, or not said."""
    accelerators: int | None = Field(default=None, ge=0)
    """Accelerators each worker's machine has; None: the GPUs this machine shows
    (`/dev/nvidia<N>`)."""
    strict_placement: bool = False
    """Refuse (400) a SeekrFlow job whose `infrastructure_config` asks for more nodes or
    accelerators than a worker has (or another accelerator kind), instead of running it on
    what there is and saying so in its first event."""

    # --- supervision --------------------------------------------------------------------------
    restart_backoff_seconds: float = Field(default=1.0, gt=0)
    """`openrft serve` restarts a dead worker after this long, doubling for each death in a row
    (capped at `restart_backoff_max_seconds`)."""
    restart_backoff_max_seconds: float = Field(default=60.0, gt=0)
    """Longest wait before restarting a worker that keeps dying; one that stayed up this long
    before dying is restarted after `restart_backoff_seconds` again."""
    store_busy_seconds: float = Field(default=30.0, gt=0)
    """How long an SQLite write waits for another process's lock before failing (`database is
    locked`); workers retry such failures with backoff instead of exiting."""

    @property
    def local_paths(self) -> bool:
        """Whether the API accepts server paths in jobs (single-user servers only)."""
        return self.allow_local_paths or not self.auth

    @property
    def url(self) -> str:
        """The store's SQLAlchemy URL."""
        return self.database_url or f"sqlite:///{self.data_dir / 'openrft.db'}"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from `OPENRFT_*` variables, then `overrides` (CLI flags) where not None."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = _parse_env(name, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)


def _parse_env(name: str, raw: str) -> object:
    if name == "train_command":
        return shlex.split(raw)
    if name in ("allow_grader_hosts", "pass_env"):
        return [part.strip() for part in raw.split(",") if part.strip()]
    if name in ("auth", "allow_local_paths", "strict_placement"):
        return raw.strip().lower() not in {"0", "false", "no", "off"}
    return raw
