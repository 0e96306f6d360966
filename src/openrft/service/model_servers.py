"""`ModelServers`: the model-server subprocesses `openrft serve` answers chat completions with.

The API process never imports torch. For each base model a chat request needs, it starts one
`python -m openrft.inference BASE` on a free 127.0.0.1 port (on first use), with a random bearer
key only this process knows, and keeps it for the life of that process (the API process for
chat; a worker's eval runner for eval runs with a `completions` source, with its own servers).
`get(base)` waits for that server's `/health`: at most `Settings.chat_load_timeout_seconds`,
then 503 `model_loading` (the load goes on; a retry waits again); a server that exits while
loading is a 500 `model_load_failed` with the last line of its log (under
`<data_dir>/model-servers/`). A server found dead is started again on the next request.
`close()` stops them all (a server also exits by itself when this process dies). `ft:` and
checkpoint models are LoRA adapters that the base model's server loads on demand (see
`inference/backends.py`).

What it does not do: share servers between API processes (`--api-processes N` starts up to N
servers per base model), place models on devices or check they fit, stop an idle server, or
back off from a model that keeps failing to load (each request tries once more).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from openrft.api_errors import ServerError
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
class ModelServer:
    """One running (or loading) model server."""

    base: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    client: httpx.AsyncClient
    """Its own connection pool: a restarted server may get the port of a dead one, whose
    kept-alive connections must not be reused."""
    ready: asyncio.Task[str]
    """Resolves to the base URL once `/health` answers; fails if the process exits first."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class ModelServers:
    """The model servers of one API process, keyed by base model source."""

    def __init__(self, settings: Settings, directory: Path | None = None) -> None:
        self.settings = settings
        self.directory = directory or settings.data_dir / "model-servers"
        """Where the servers' logs and pid files go (a worker's eval runs use their own)."""
        self.key = secrets.token_urlsafe(32)
        self.servers: dict[str, ModelServer] = {}
        self._lock = asyncio.Lock()

    async def get(self, base: str, label: str) -> ModelServer:
        """`base`'s server, started if needed, once it answers; `label` names the model in
        errors (the name the caller used, not a server path)."""
        async with self._lock:
            server = self.servers.get(base)
            if server is None or server.process.poll() is not None:
                if server is not None:
                    log.warning("model server for %s %s; restarting", label, self._exit(server))
                    await server.client.aclose()
                server = self.servers[base] = self._start(base, label)
        try:
            wait = self.settings.chat_load_timeout_seconds
            await asyncio.wait_for(asyncio.shield(server.ready), wait)
            return server
        except TimeoutError:
            message = f"the model {label!r} is still loading; retry in a few seconds"
            raise ServerError(
                message, code="model_loading", status=503, headers={"Retry-After": "5"}
            ) from None

    async def died(self, server: ModelServer) -> bool:
        """After a failed request: whether `server`'s process has exited, or does within
        `STOP_SECONDS` (a killed process with many threads takes a moment to be reaped)."""
        try:
            await asyncio.to_thread(server.process.wait, STOP_SECONDS)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _exit(self, server: ModelServer) -> str:
        return describe_exit(server.process.poll())

    def _start(self, base: str, label: str) -> ModelServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = hashlib.sha256(base.encode()).hexdigest()[:16]
        log_path = self.directory / f"{stem}.log"
        port = free_port()
        command = [sys.executable, "-m", "openrft.inference", base, "--port", str(port)]
        command += ["--name", label, "--max-adapters", str(self.settings.chat_max_adapters)]
        command += ["--parent-pid", str(os.getpid())]
        env = {k: v for k, v in os.environ.items() if _inherited(k)}
        env.update({KEY_ENV: self.key, "PYTHONUNBUFFERED": "1"})
        with log_path.open("ab") as out:
            process = subprocess.Popen(command, env=env, stdout=out, stderr=out)  # noqa: S603
        (self.directory / f"{stem}.pid").write_text(f"{process.pid}\n", encoding="utf-8")
        timeout = httpx.Timeout(self.settings.chat_timeout_seconds, connect=5.0)
        headers = {"Authorization": f"Bearer {self.key}"}
        client = httpx.AsyncClient(timeout=timeout, headers=headers)
        waiting = self._wait_ready(process, client, f"http://127.0.0.1:{port}", label, log_path)
        ready = asyncio.get_running_loop().create_task(waiting)
        ready.add_done_callback(_retrieve)
        return ModelServer(base, port, process, log_path, client, ready)

    async def _wait_ready(
        self,
        process: subprocess.Popen[bytes],
        client: httpx.AsyncClient,
        url: str,
        label: str,
        log_path: Path,
    ) -> str:
        while True:
            code = process.poll()
            if code is not None:
                reason = load_error(log_path)
                message = f"the model {label!r} failed to load: its server {describe_exit(code)}"
                raise ServerError(
                    f"{message}: {reason}" if reason else message,
                    code="model_load_failed",
                    status=500,
                )
            with contextlib.suppress(httpx.TransportError):
                answer = await client.get(f"{url}/health", timeout=2.0)
                if answer.status_code == 200:
                    return url
            await asyncio.sleep(HEALTH_POLL_SECONDS)

    async def close(self) -> None:
        """Stop every server (SIGTERM, then SIGKILL after `STOP_SECONDS`)."""
        servers, self.servers = list(self.servers.values()), {}
        for server in servers:
            server.ready.cancel()
            if server.process.poll() is None:
                server.process.terminate()
        for server in servers:
            try:
                await asyncio.to_thread(server.process.wait, STOP_SECONDS)
            except subprocess.TimeoutExpired:
                server.process.kill()
                await asyncio.to_thread(server.process.wait)
            await server.client.aclose()


def _inherited(name: str) -> bool:
    """Where things are, never this server's credentials (as for training subprocesses)."""
    return name in TRAINING_ENV or (
        name.startswith(("HF_", "TRANSFORMERS_")) and "TOKEN" not in name
    )


def _retrieve(task: asyncio.Task[str]) -> None:
    """Mark a failed load as seen (its waiters got the error; nobody else will ask)."""
    if not task.cancelled():
        task.exception()
