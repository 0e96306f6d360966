"""Real servers and workers for the service tests: `openrft serve` / the worker module run as
subprocesses on 127.0.0.1, driven with the official `openai` SDK."""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from openrft.service import tenancy
from openrft.service.deps import create_key
from openrft.service.settings import Settings, default_train_command
from openrft.service.store import Store

PYTHON = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def train_command() -> str:
    """The worker's default: `openrft train` through the root CLI."""
    return shlex.join(default_train_command())


class Server:
    """`openrft serve` in a subprocess, plus any extra worker processes."""

    def __init__(
        self, data_dir: Path, workers: int = 0, api_processes: int = 1, **env: str
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.env = {
            **os.environ,
            "OPENRFT_TRAIN_COMMAND": train_command(),
            "OPENRFT_POLL_SECONDS": "0.2",
            "OPENRFT_HEARTBEAT_SECONDS": "0.5",
            **env,
        }
        command = [PYTHON, "-m", "openrft.cli.serve", "serve", "--data-dir", str(data_dir)]
        command += ["--port", str(self.port), "--workers", str(workers)]
        command += ["--api-processes", str(api_processes)]
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = (data_dir / "server.log").open("ab")
        self.proc = subprocess.Popen(command, env=self.env, stdout=self.log, stderr=self.log)
        self.workers: list[subprocess.Popen[bytes]] = []
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        """Until `/health` answers, for as long as the server lives (a start-up deadline would
        fail on a loaded machine; a server that exits fails at once, with its log)."""
        while self.proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server exited: {(self.data_dir / 'server.log').read_text()}")

    def key(self, project: str) -> str:
        store = self.store()
        try:
            return create_key(store, project)
        finally:
            store.engine.dispose()

    def store(self) -> Store:
        """The server's store, opened from this process (dispose its engine when done)."""
        return Store.open(
            self.env.get("OPENRFT_DATABASE_URL") or Settings(data_dir=self.data_dir).url
        )

    def register_model(self, name: str, source: str) -> None:
        """`openrft models add NAME SOURCE`: a base model jobs through the API may name."""
        store = self.store()
        try:
            tenancy.add_model(store, name, source)
        finally:
            store.engine.dispose()

    def client(self, project: str = "alpha", key: str | None = None) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base_url, api_key=key or self.key(project), max_retries=0, timeout=30
        )

    def start_worker(self, **env: str) -> subprocess.Popen[bytes]:
        command = [PYTHON, "-m", "openrft.service.worker", "--data-dir", str(self.data_dir)]
        proc = subprocess.Popen(command, env={**self.env, **env}, stdout=self.log, stderr=self.log)
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in [*self.workers, self.proc]:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in [*self.workers, self.proc]:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


PG_BIN = Path("/usr/lib/postgresql")


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(PG_BIN.glob("*/bin/initdb")) if PG_BIN.exists() else []
    return versions[-1].parent if versions else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free port (as user `postgres` when we are root,
    because PostgreSQL refuses to run as root)."""
    bin_dir = _pg_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL binaries not installed (apt-get install -y postgresql)")
    prefix: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="openrft-pg-"))
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no `postgres` user to run PostgreSQL as")
        os.chown(base, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", free_port()
    run = lambda *args: subprocess.run([*prefix, *args], check=True, capture_output=True)  # noqa: E731
    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust")
    options = f"-p {port} -k {base} -h 127.0.0.1"
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-w",
        "-l",
        str(base / "log"),
        "start",
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Any]:
    servers: list[Server] = []

    def start(workers: int = 0, **env: str) -> Server:
        server = Server(tmp_path / f"data{len(servers)}", workers, **env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return ("\n".join(json.dumps(r) for r in rows) + "\n").encode()


def arithmetic_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [{"role": "user", "content": f"What is {i} + {i % 3}?"}],
            "reference_answer": str(i + i % 3),
        }
        for i in range(n)
    ]


EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference_answer }}",
    "operation": "eq",
}

MULTI = {
    "type": "multi",
    "name": "answer",
    "graders": {
        "exact": EXACT,
        "contains": {**EXACT, "name": "contains", "operation": "like"},
    },
    "calculate_output": "0.5 * exact + 0.5 * contains",
}


def wait_for(predicate: Any, interval: float = 0.2) -> Any:
    """Poll `predicate` until it returns something truthy, and return that. No deadline: on a
    loaded machine a job may take any time, a server that died fails the predicate's request at
    once, and pytest-timeout's per-test limit (pyproject.toml) is the one guard against a hang."""
    while not (value := predicate()):
        time.sleep(interval)
    return value


def tiny_training(steps: int, checkpoints: int) -> dict[str, Any]:
    """Native settings that keep a step well under a second on CPU."""
    return {
        "num_generations": 2,
        "batch_size": 2,
        "max_steps": steps,
        "max_completion_length": 6,
        "eval_interval": None,
        "eval_samples": 2,
        "n_checkpoints": checkpoints,
        "keep_best_k": checkpoints,
        "lora": {"r": 4, "alpha": 8},
        # a random model scores (almost) nothing on these graders: the pre-flight would refuse
        # the job (its own tests: test_preflight.py)
        "preflight": {"enabled": False},
    }
