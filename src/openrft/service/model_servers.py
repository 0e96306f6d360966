"""`ModelServers`: the model-server subprocesses `openrft serve` answers chat completions with.

The API process never imports torch. For each base model a chat request needs, it starts one
`python -m openrft.inference BASE` on a free 127.0.0.1 port (on first use), with a random bearer
key, and keeps it for the life of that process (an API process for chat; a worker's eval
runner for eval runs with a `completions` source).
`get(base)` waits for that server's `/health`: at most `Settings.chat_load_timeout_seconds`,
then 503 `model_loading` (the load goes on; a retry waits again); a server that exits while
loading is a 500 `model_load_failed` with the last line of its log (under
`<data_dir>/model-servers/`), server paths redacted (`api_errors.redact_paths`). A server
found dead is started again on the next request.
`close()` stops those this process started (a server also exits by itself when it dies). `ft:` and
checkpoint models are LoRA adapters that the base model's server loads on demand (see
`inference/backends.py`).

Processes given the same directory share one server per base model: the API processes of
`openrft serve --api-processes N` and the workers' eval runners do (`<data_dir>/model-servers`).
Whichever asks first starts it, under a file lock (`<stem>.lock`), and leaves a record
(`<stem>.json`, mode 0600: pid, port, key) that the others connect through; a server outlives
only the process that started it (it watches its parent), after which the next request of
another process starts a new one (as does a request that was waiting for it to load).

What it does not do: place models on devices or check they fit, stop an idle server, or back
off from a model that keeps failing to load (each request tries once more).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from openrft.api_errors import ServerError, redact_paths
from openrft.inference.__main__ import KEY_ENV
from openrft.service.environment import TRAINING_ENV
from openrft.service.settings import Settings
from openrft.service.supervisor import describe_exit

HEALTH_POLL_SECONDS = 0.1
STOP_SECONDS = 10.0
"""How long a stopped server may take to exit before SIGKILL."""
log = logging.getLogger("openrft.model_servers")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b")
"""The first line of a traceback's final exception (`ValueError: ...`)."""


def load_error(path: Path) -> str:
    """The last exception line of a server's log (why its load failed), at most 300 chars."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    found = [line for line in lines if EXCEPTION_LINE.match(line)]
    return (found or lines or [""])[-1][:300]


@dataclass
class Record:
    """What `<stem>.json` says of a running server, for the other processes of the service."""

    pid: int
    port: int
    key: str


@dataclass
class ModelServer:
    """One running (or loading) model server."""

    base: str
    port: int
    pid: int
    process: subprocess.Popen[bytes] | None
    """The process when this one started it; `None` when another process of the service did
    (found through its record) and this one only talks to it."""
    log_path: Path
    client: httpx.AsyncClient
    """Its own connection pool: a restarted server may get the port of a dead one, whose
    kept-alive connections must not be reused."""
    ready: asyncio.Task[str] = field(init=False)
    """Resolves to the base URL once `/health` answers; fails if the process exits first."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return serving(self.pid)

    def exit(self) -> str:
        """How it ended, in words."""
        if self.process is not None:
            return describe_exit(self.process.poll())
        return "exited (it was started by another process of this service)"


def serving(pid: int) -> bool:
    """Whether `pid` is a live model server (not a zombie, not a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z" and b"openrft.inference" in command


class ModelServers:
    """The model servers of one process, keyed by base model source; processes given the same
    `directory` share them (one server per base model between them)."""

    def __init__(self, settings: Settings, directory: Path | None = None) -> None:
        self.settings = settings
        self.directory = directory or settings.data_dir / "model-servers"
        """Where the servers' logs, pid files and records go (a worker's eval runs use their
        own)."""
        self.key = secrets.token_urlsafe(32)
        """The bearer key of the servers this process starts."""
        self.servers: dict[str, ModelServer] = {}
        self._lock = asyncio.Lock()

    async def get(self, base: str, label: str) -> ModelServer:
        """`base`'s server, started if needed, once it answers; `label` names the model in
        errors (the name the caller used, not a server path)."""
        server = await self._live(base, label)
        try:
            wait = self.settings.chat_load_timeout_seconds
            try:
                await asyncio.wait_for(asyncio.shield(server.ready), wait)
            except ServerError:
                if server.process is not None:
                    raise  # ours: its log says why it failed to load
                # another process's server, which outlives only that process: it ended while
                # we waited (say, the worker that started it was killed), so start our own
                server = await self._live(base, label)
                await asyncio.wait_for(asyncio.shield(server.ready), wait)
            return server
        except TimeoutError:
            message = f"the model {label!r} is still loading; retry in a few seconds"
            raise ServerError(
                message, code="model_loading", status=503, headers={"Retry-After": "5"}
            ) from None

    async def _live(self, base: str, label: str) -> ModelServer:
        """`base`'s server as this process knows it, claimed (or started) again when it has
        exited."""
        async with self._lock:
            server = self.servers.get(base)
            if server is None or not server.alive():
                if server is not None:
                    log.warning("model server for %s %s; restarting", label, server.exit())
                    server.ready.cancel()
                    await server.client.aclose()
                record, process = await asyncio.to_thread(self._claim, base, label)
                server = self.servers[base] = self._connect(base, label, record, process)
            return server

    async def died(self, server: ModelServer) -> bool:
        """After a failed request: whether `server`'s process has exited, or does within
        `STOP_SECONDS` (a killed process with many threads takes a moment to be reaped)."""
        if server.process is not None:
            try:
                await asyncio.to_thread(server.process.wait, STOP_SECONDS)
            except subprocess.TimeoutExpired:
                return False
            return True
        for _ in range(int(STOP_SECONDS / HEALTH_POLL_SECONDS)):
            if not serving(server.pid):
                return True
            await asyncio.sleep(HEALTH_POLL_SECONDS)
        return False

    def _paths(self, base: str) -> tuple[Path, Path, Path]:
        """`(log, record, lock)` of `base`'s server."""
        stem = self.directory / hashlib.sha256(base.encode()).hexdigest()[:16]
        return stem.with_suffix(".log"), stem.with_suffix(".json"), stem.with_suffix(".lock")

    def _claim(self, base: str, label: str) -> tuple[Record, subprocess.Popen[bytes] | None]:
        """(blocking) The live server of `base` another process of the service started, or a
        new one started here; decided under a file lock, so that two processes asking at once
        start one server."""
        self.directory.mkdir(parents=True, exist_ok=True)
        log_path, record_path, lock_path = self._paths(base)
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            record = read_record(record_path)
            if record is not None and serving(record.pid):
                return record, None
            process, port = self._spawn(base, label, log_path)
            record = Record(process.pid, port, self.key)
            write_private(record_path, json.dumps(asdict(record)))
            pid_file = log_path.with_suffix(".pid")
            pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
            return record, process

    def _spawn(self, base: str, label: str, log_path: Path) -> tuple[subprocess.Popen[bytes], int]:
        port = free_port()
        command = [sys.executable, "-m", "openrft.inference", base, "--port", str(port)]
        command += ["--name", label, "--max-adapters", str(self.settings.chat_max_adapters)]
        command += ["--parent-pid", str(os.getpid())]
        env = {k: v for k, v in os.environ.items() if _inherited(k)}
        env.update({KEY_ENV: self.key, "PYTHONUNBUFFERED": "1"})
        with log_path.open("ab") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=out)  # noqa: S603
        return process, port

    def _connect(
        self, base: str, label: str, record: Record, process: subprocess.Popen[bytes] | None
    ) -> ModelServer:
        timeout = httpx.Timeout(self.settings.chat_timeout_seconds, connect=5.0)
        headers = {"Authorization": f"Bearer {record.key}"}
        client = httpx.AsyncClient(timeout=timeout, headers=headers)
        log_path = self._paths(base)[0]
        server = ModelServer(base, record.port, record.pid, process, log_path, client)
        ready = asyncio.get_running_loop().create_task(self._wait_ready(server, label))
        ready.add_done_callback(_retrieve)
        server.ready = ready
        return server

    async def _wait_ready(self, server: ModelServer, label: str) -> str:
        while True:
            if not server.alive():
                # the log names server paths (the model's, the data dir's): never the tenant's
                reason = redact_paths(load_error(server.log_path), {server.base: label})
                message = f"the model {label!r} failed to load: its server {server.exit()}"
                raise ServerError(
                    f"{message}: {reason}" if reason else message,
                    code="model_load_failed",
                    status=500,
                )
            with contextlib.suppress(httpx.TransportError):
                answer = await server.client.get(f"{server.url}/health", timeout=2.0)
                if answer.status_code == 200:
                    return server.url
            await asyncio.sleep(HEALTH_POLL_SECONDS)

    async def close(self) -> None:
        """Stop the servers this process started (SIGTERM, then SIGKILL after
        `STOP_SECONDS`); forget the others."""
        servers, self.servers = list(self.servers.values()), {}
        for server in servers:
            server.ready.cancel()
            if server.process is not None and server.process.poll() is None:
                server.process.terminate()
        for server in servers:
            if server.process is not None:
                try:
                    await asyncio.to_thread(server.process.wait, STOP_SECONDS)
                except subprocess.TimeoutExpired:
                    server.process.kill()
                    await asyncio.to_thread(server.process.wait)
            await server.client.aclose()


def read_record(path: Path) -> Record | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Record(int(data["pid"]), int(data["port"]), str(data["key"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` atomically, readable by this user only (it holds a key)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(text)
    os.replace(temporary, path)


def _inherited(name: str) -> bool:
    """Where things are, never this server's credentials (as for training subprocesses)."""
    return name in TRAINING_ENV or (
        name.startswith(("HF_", "TRANSFORMERS_")) and "TOKEN" not in name
    )


def _retrieve(task: asyncio.Task[str]) -> None:
    """Mark a failed load as seen (its waiters got the error; nobody else will ask)."""
    if not task.cancelled():
        task.exception()
