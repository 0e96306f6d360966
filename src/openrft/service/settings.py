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
    """`python -m openrft.cli train` with the worker's own interpreter."""
    return [sys.executable, "-m", "openrft.cli", "train"]


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
    base_models: list[str] = ["smollm2-135m-instruct"]
    """Models `/v1/models` lists besides the ones jobs have used."""
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
    if name == "base_models":
        return [part.strip() for part in raw.split(",") if part.strip()]
    if name == "auth":
        return raw.strip().lower() not in {"0", "false", "no", "off"}
    return raw
