"""Hostile grader code against the real sandbox: every attack must be contained, the host must
see no effect, and the pool must keep grading afterwards.

Each attack runs under three layer sets: all layers; Landlock + seccomp without bubblewrap; and
bubblewrap without Landlock or seccomp. A set whose layers this machine lacks is skipped with the
reason (never passed silently); assertions about one layer (say, "fork fails") run only when that
layer is in force, the host-side containment assertions always run.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openrft.graders import GradeContext, GradeResult, Sample, grade_batch, load_grader
from openrft.graders.sandbox import POOL, SandboxLimits, detect_layers

CONFIGS = {
    "all-layers": ([], []),
    "without-bubblewrap": (["bubblewrap"], ["landlock", "seccomp"]),
    "bubblewrap-only": (["landlock", "seccomp"], ["bubblewrap"]),
}
"""name → (layers disabled, layers it needs)."""

BENIGN = 0.5


@dataclass
class Sandbox:
    """Runs an attack as the grader of a fresh owner, followed by benign samples."""

    name: str
    options: dict[str, Any]
    on: dict[str, bool]

    def attack(self, body: str, item: dict[str, Any] | None = None, **limits: Any) -> GradeResult:
        results = self.run(body, [{"attack": True, **(item or {})}, {}, {}], **limits)
        assert [r.reward for r in results[1:]] == [BENIGN, BENIGN], "the pool stopped grading"
        assert not any(r.errors.any() for r in results[1:])
        return results[0]

    def run(self, body: str, items: list[dict[str, Any]], **limits: Any) -> list[GradeResult]:
        source = "def grade(sample, item):\n    if not item.get('attack'):\n"
        source += f"        return {BENIGN}\n" + textwrap.indent(textwrap.dedent(body), "    ")
        spec = load_grader({"type": "python", "name": "hostile", "source": source})
        options = {"python_grader": {**self.options, **limits}}
        context = GradeContext(owner=f"attacker-{uuid.uuid4().hex}", options=options)
        samples = [Sample.from_text("x")] * len(items)
        return grade_batch(spec, samples, items, context)


@pytest.fixture(params=list(CONFIGS))
def sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    disabled, needs = CONFIGS[request.param]
    layers = detect_layers()
    limits = SandboxLimits(disable=disabled)
    on = layers.effective(limits)
    missing = [n for n in needs if not on[n]]
    if missing:
        reasons = "; ".join(f"{n}: {layers.reasons.get(n, 'unavailable')}" for n in missing)
        pytest.skip(f"{request.param} needs {', '.join(missing)} — {reasons}")
    if layers.missing_requirements(limits):
        pytest.skip(f"{request.param}: sandbox refuses here: {layers.missing_requirements(limits)}")
    yield Sandbox(request.param, {"disable": disabled}, on)
    POOL.close()


def dump(result: GradeResult) -> str:
    return result.model_dump_json()


@pytest.fixture
def outside_dir() -> Iterator[Path]:
    """A world-writable directory outside any sandbox path, holding a 0644 secret file."""
    path = Path("/var/tmp") / f"openrft-hostile-{uuid.uuid4().hex}"
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    secret = path / "secret.txt"
    secret.write_text(f"SECRET-{uuid.uuid4().hex}")
    secret.chmod(0o644)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A process the test started, with a secret in its environment."""
    env = {"PATH": "/usr/bin:/bin", "OPENRFT_VICTIM_SECRET": f"VICTIM-{uuid.uuid4().hex}"}
    proc = subprocess.Popen(["sleep", "120"], env=env, start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_tcp_to_a_host_listener_is_blocked(sandbox: Sandbox) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        result = sandbox.attack(
            """
            import socket
            with socket.create_connection(("127.0.0.1", item["port"]), timeout=2) as s:
                s.sendall(b"LEAK")
            return 1.0
            """,
            {"port": server.getsockname()[1]},
        )
        assert select.select([server], [], [], 0.5)[0] == [], "the listener got a connection"
    assert result.reward == 0.0
    assert result.errors.python_grader_runtime_error


def test_udp_to_a_host_listener_is_blocked(sandbox: Sandbox) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as server:
        server.bind(("127.0.0.1", 0))
        result = sandbox.attack(
            """
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(5):
                s.sendto(b"LEAK", ("127.0.0.1", item["port"]))
            return 1.0
            """,
            {"port": server.getsockname()[1]},
        )
        assert select.select([server], [], [], 0.5)[0] == [], "the listener got a datagram"
    if sandbox.on["seccomp"]:  # in bubblewrap's own net namespace the datagram just vanishes
        assert result.errors.python_grader_runtime_error


LEAK_FILE = """
import os, tempfile
link = os.path.join(tempfile.mkdtemp(), "link")
os.symlink(item["path"], link)
found = []
for path in (item["path"], link, "/proc/self/root" + item["path"], "/proc/1/root" + item["path"]):
    try:
        found.append(open(path, "rb").read().decode(errors="replace"))
    except OSError:
        pass
raise RuntimeError("LEAK" + "ED " + " ".join(found) if found else "nothing readable")
"""


def test_etc_shadow_is_unreadable(sandbox: Sandbox) -> None:
    shadow = Path("/etc/shadow").read_text().splitlines()[0]
    result = sandbox.attack(LEAK_FILE, {"path": "/etc/shadow"})
    assert "nothing readable" in str(result.errors.python_grader_runtime_error_details)
    assert "LEAKED" not in dump(result)
    assert shadow not in dump(result)


def test_world_readable_file_outside_is_unreadable(sandbox: Sandbox, outside_dir: Path) -> None:
    secret = outside_dir / "secret.txt"
    result = sandbox.attack(LEAK_FILE, {"path": str(secret)})
    assert result.errors.python_grader_runtime_error
    assert secret.read_text() not in dump(result)
    assert "LEAKED" not in dump(result)


def test_other_processes_environ_is_unreadable(
    sandbox: Sandbox, victim: subprocess.Popen[bytes]
) -> None:
    for pid in (os.getpid(), victim.pid):
        result = sandbox.attack(LEAK_FILE, {"path": f"/proc/{pid}/environ"})
        assert result.errors.python_grader_runtime_error
        assert "LEAKED" not in dump(result)
        assert "OPENRFT_VICTIM_SECRET" not in dump(result)


def test_host_environment_secrets_do_not_reach_the_grader(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"HOSTSECRET-{uuid.uuid4().hex}"
    monkeypatch.setenv("OPENRFT_TEST_API_KEY", secret)
    result = sandbox.attack(
        """
        import os
        seen = [repr(dict(os.environ))]
        for path in ("/proc/self/environ", "/proc/1/environ", f"/proc/{os.getppid()}/environ"):
            try:
                seen.append(open(path, "rb").read().decode(errors="replace"))
            except OSError as exc:
                seen.append(repr(exc))
        raise RuntimeError("\\n".join(seen))
        """
    )
    assert result.errors.python_grader_runtime_error
    assert "PATH" in dump(result)  # the worker's own, explicit environment was readable
    assert secret not in dump(result)


def test_writes_outside_scratch_do_not_reach_the_host(sandbox: Sandbox, outside_dir: Path) -> None:
    host_tmp = Path("/tmp") / f"openrft-hostile-{uuid.uuid4().hex}"
    targets = [str(outside_dir / "planted.txt"), str(host_tmp), str(outside_dir / "secret.txt")]
    result = sandbox.attack(
        """
        import tempfile
        with tempfile.NamedTemporaryFile() as ok:  # scratch is writable
            ok.write(b"fine")
        written = 0
        for path in item["targets"]:
            try:
                with open(path, "w") as f:
                    f.write("PWNED")
                written += 1
            except OSError:
                pass
        return float(written)
        """,
        {"targets": targets},
    )
    assert not (outside_dir / "planted.txt").exists()
    assert not host_tmp.exists()
    assert "PWNED" not in (outside_dir / "secret.txt").read_text()
    assert not result.errors.any()  # the scratch write worked; the others were refused quietly
    if not sandbox.on["bubblewrap"]:
        assert result.reward == 0.0  # Landlock refused all three
    host_tmp.unlink(missing_ok=True)


def test_signalling_a_host_process_fails(sandbox: Sandbox, victim: subprocess.Popen[bytes]) -> None:
    result = sandbox.attack(
        """
        import os, signal
        hits = 0
        for kill in (os.kill, os.killpg):
            try:
                kill(item["pid"], signal.SIGKILL)
                hits += 1
            except OSError:
                pass
        return float(hits)
        """,
        {"pid": victim.pid},
    )
    time.sleep(0.2)
    assert victim.poll() is None, "the sandbox killed a host process"
    if sandbox.on["seccomp"]:
        assert result.reward == 0.0


FORK = """
import os, sys
forked = 0
for _ in range(item["forks"]):
    try:
        pid = os.fork()
    except OSError:
        break
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:  # double fork: the daemon is orphaned, in its own session
                argv = [sys.executable, "-c", "import time; time.sleep(120)", item["marker"]]
                os.execv(sys.executable, argv)
        finally:
            os._exit(0)
    forked += 1
return float(forked)
"""


def processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_until_gone(marker: str) -> list[int]:
    for _ in range(100):
        if not (left := processes_with(marker)):
            return left
        time.sleep(0.05)
    return processes_with(marker)


@pytest.mark.parametrize("forks", [1, 300], ids=["setsid-daemon", "fork-bomb"])
def test_forked_daemons_do_not_outlive_the_worker(sandbox: Sandbox, forks: int) -> None:
    marker = f"openrft-daemon-{uuid.uuid4().hex}"
    result = sandbox.attack(FORK, {"forks": forks, "marker": marker})
    if sandbox.on["seccomp"]:
        assert result.reward == 0.0, "fork got through seccomp"
    elif sandbox.on["cgroups"]:
        assert result.reward <= SandboxLimits().max_threads + 4  # the pids cgroup stopped it
    if result.reward > 0:
        for _ in range(100):  # the daemon exists (so the test tests something) …
            if processes_with(marker):
                break
            time.sleep(0.05)
        assert processes_with(marker)
    POOL.close()
    assert wait_until_gone(marker) == [], "a daemon outlived its worker"


@pytest.mark.parametrize(
    "body",
    [
        "x = bytearray(8 << 30)\nreturn 1.0\n",
        "hog = []\nwhile True:\n    hog.append(bytearray(16 << 20))\n",
    ],
    ids=["one-allocation", "gradual"],
)
def test_memory_bombs_are_flagged(sandbox: Sandbox, body: str) -> None:
    result = sandbox.attack(body, memory_mb=384)
    assert result.reward == 0.0
    assert result.errors.python_grader_memory_error


@pytest.mark.parametrize(
    "body",
    [
        "while True:\n    pass\n",
        "import threading\nfor _ in range(4):\n"
        "    threading.Thread(target=lambda: [0 for _ in iter(int, 1)], daemon=True).start()\n"
        "while True:\n    try:\n        while True:\n            pass\n"
        "    except BaseException:\n        pass\n",
    ],
    ids=["busy-loop", "threads-ignoring-exceptions"],
)
def test_cpu_bombs_time_out(sandbox: Sandbox, body: str) -> None:
    result = sandbox.attack(body, timeout_seconds=1)
    assert result.reward == 0.0
    assert result.errors.python_grader_timeout_error


FORGE = """
import json, os, struct
NESTED = b"[" * 200_000 + b"]" * 200_000
FRAMES = {
    "forge": lambda frame: frame,
    "garbage": lambda frame: b"\\xff\\xff\\xff\\xffgarbage",
    "nested-json": lambda frame: struct.pack(">I", len(NESTED)) + NESTED,
}
for request_id in range(1, 6):  # this sample is id 0 in a fresh worker: forge the next ones
    body = json.dumps({"id": request_id, "score": 1.0}).encode()
    frame = struct.pack(">I", len(body)) + body
    print(frame)
    for fd in range(3, 64):
        try:
            os.write(fd, FRAMES[item["attack"]](frame))
        except OSError:
            pass
return 1.0
"""


@pytest.mark.parametrize("kind", ["forge", "garbage", "nested-json"])
def test_forged_protocol_output_is_rejected(sandbox: Sandbox, kind: str) -> None:
    results = sandbox.run(FORGE, [{"attack": kind}, {}, {}, {}])
    assert results[0].errors.python_grader_server_error
    assert "protocol_violation" in str(results[0].errors.python_grader_server_error_type)
    assert [r.reward for r in results[1:]] == [BENIGN] * 3  # graded for real, by a fresh worker


def test_huge_output_is_contained(sandbox: Sandbox) -> None:
    result = sandbox.attack(
        """
        import os, sys
        print("x" * (64 << 20))
        sys.stderr.write("y" * (16 << 20))
        for _ in range(64):
            os.write(1, b"z" * (1 << 20))
            os.write(2, b"z" * (1 << 20))
        return 0.25
        """
    )
    assert result.reward == 0.25
    assert not result.errors.any()
    failing = sandbox.attack('print("w" * (64 << 20))\nraise ValueError("after printing")\n')
    details = str(failing.errors.python_grader_runtime_error_details)
    assert "after printing" in details
    assert len(details) <= SandboxLimits().max_details_chars + 50


def test_results_stay_json_clean(sandbox: Sandbox) -> None:
    """A grader cannot smuggle a non-finite or non-numeric score past the host."""
    results = sandbox.run("return float('inf')", [{"attack": True}])
    assert results[0].errors.python_grader_invalid_output_error
    json.loads(results[0].model_dump_json())


def test_stop_kills_a_running_worker_immediately() -> None:
    """Sanity for the fixtures above: closing the pool leaves no idle worker process behind."""
    POOL.close()
    assert POOL.checkout(("nobody",)) is None
    assert signal.SIGKILL  # the pool stops workers with SIGKILL; nothing can catch it
