"""Hostile tenants' endpoint and python graders against a real `openrft serve` with two projects
(alpha, beta): the operator's environment never reaches a header, a project's secret reaches
only its own grader, local and internal addresses are refused unless the operator allows them,
a dripping, huge or hanging endpoint is bounded, and one project's calls cannot starve another's
or read what its python grader left behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.service.conftest import EXACT, PYTHON, Server, free_port

from openrft.graders.sandbox import SandboxLimits, detect_layers
from openrft.service.deps import create_key
from openrft.service.settings import Settings
from openrft.service.store import Store

OPERATOR_SECRET = "sk-operator-secret"
RUN = "/fine_tuning/alpha/graders/run"


class Listener:
    """A plain HTTP server on `host` standing in for a tenant's endpoint; it records every
    request and answers by path: `/grade` a score, `/hang` never, `/drip` a valid answer one
    byte a second, `/big` 10 MB."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.requests: list[dict[str, Any]] = []
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def seen(self, path: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:  # quiet test output
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with listener._lock:
                    listener.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body}
                    )
                # a grader that gave up closes the connection, as it should
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._answer()

            def _answer(self) -> None:
                if self.path == "/hang":
                    listener.release.wait(120)
                    return
                payload = b'{"score": 1}'
                if self.path == "/drip":
                    payload = payload.ljust(60)
                elif self.path == "/big":
                    payload = b'{"score": 1, "pad": "' + b"x" * 10_000_000 + b'"}'
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                if self.path != "/drip":
                    self.wfile.write(payload)
                    return
                for byte in payload:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    if listener.release.wait(1):
                        return

        return Handler


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    running = Listener()
    yield running
    running.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Allows 127.0.0.1 (where the listeners are); the operator's key is in its environment."""
    running = Server(
        tmp_path_factory.mktemp("outbound") / "data",
        OPENAI_API_KEY=OPERATOR_SECRET,
        OPENRFT_ALLOW_GRADER_HOSTS="127.0.0.1",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """No allow-list: the default for a shared server."""
    running = Server(tmp_path_factory.mktemp("strict") / "data", OPENAI_API_KEY=OPERATOR_SECRET)
    yield running
    running.stop()


def headers(server: Server, project: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.key(project)}"}


def endpoint(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "endpoint", "name": "remote", "url": url, **extra}


def run(server: Server, project: str, grader: dict[str, Any], sample: str = "x") -> httpx.Response:
    return httpx.post(
        server.base_url + RUN,
        json={"grader": grader, "model_sample": sample},
        headers=headers(server, project),
        timeout=60,
    )


def errors(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["metadata"]["errors"]
    return found


def flags(response: httpx.Response) -> list[str]:
    return [name for name, value in errors(response).items() if value is True]


# --- secrets, never the environment ---------------------------------------------------------


def test_the_operators_environment_never_reaches_a_header(
    server: Server, listener: Listener
) -> None:
    grader = endpoint(
        f"{listener.url}/grade", headers={"Authorization": "Bearer ${OPENAI_API_KEY}"}
    )
    before = len(listener.seen())
    response = run(server, "alpha", grader)
    assert flags(response) == ["other_error"]
    assert "environment variables are never read" in errors(response)["other_error_details"]
    assert OPERATOR_SECRET not in response.text
    sent = listener.seen()[before:]
    assert all(OPERATOR_SECRET not in json.dumps(r["headers"]) for r in sent)
    assert sent == []  # refused before any request


def test_an_unset_variable_reads_the_same_whether_or_not_the_server_has_it(
    server: Server,
) -> None:
    def details(var: str) -> str:
        grader = endpoint("https://grader.example/grade", headers={"X-Key": f"${{{var}}}"})
        text: str = errors(run(server, "alpha", grader))["other_error_details"]
        return text.replace(var, "VAR")

    assert details("OPENAI_API_KEY") == details("SURELY_NOT_SET_ANYWHERE_42")


def test_a_project_secret_reaches_only_its_own_grader(server: Server, listener: Listener) -> None:
    put = httpx.put(
        f"{server.base_url}/secrets/TOK",
        json={"value": "alpha-token"},
        headers=headers(server, "alpha"),
    )
    assert put.status_code == 200, put.text
    grader = endpoint(f"{listener.url}/grade", headers={"Authorization": "Bearer ${secret:TOK}"})
    before = len(listener.seen())
    mine = run(server, "alpha", grader)
    theirs = run(server, "beta", grader)
    assert mine.json()["reward"] == 1.0
    sent = listener.seen()[before:]
    assert [r["headers"]["Authorization"] for r in sent] == ["Bearer alpha-token"]
    assert flags(theirs) == ["other_error"]
    details = errors(theirs)["other_error_details"]
    assert "${secret:TOK}, which this project has not set" in details
    assert "openrft secrets set --project beta TOK" in details
    assert "alpha-token" not in theirs.text


# --- where a tenant's URL may go ------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "address_class"),
    [
        ("127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("2130706433", "loopback"),  # 127.0.0.1 as one number
        ("[::ffff:127.0.0.1]", "loopback"),
        ("[::1]", "loopback"),
        ("169.254.169.254", "link-local"),
        ("10.0.0.1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
    ],
)
def test_without_an_allow_list_internal_urls_are_refused_unsent(
    strict: Server, listener: Listener, host: str, address_class: str
) -> None:
    before = len(listener.seen())
    response = run(strict, "alpha", endpoint(f"http://{host}:{listener.port}/grade"))
    assert flags(response) == ["other_error"]
    details = errors(response)["other_error_details"]
    assert f"a {address_class} address" in details
    assert "--allow-grader-hosts" in details
    assert len(listener.seen()) == before


def test_the_allow_list_admits_only_what_it_names(server: Server) -> None:
    other = Listener("127.0.0.2")  # loopback too, but not on the list
    try:
        response = run(server, "alpha", endpoint(f"{other.url}/grade"))
        assert flags(response) == ["other_error"]
        assert "127.0.0.2, a loopback address" in errors(response)["other_error_details"]
        assert other.seen() == []
    finally:
        other.close()


def test_the_serve_flag_sets_the_allow_list(tmp_path: Path, listener: Listener) -> None:
    data_dir, port = tmp_path / "data", free_port()
    command = [PYTHON, "-m", "openrft.cli.serve", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--workers", "0", "--allow-grader-hosts", " 127.0.0.1 ,"]
    env = {k: v for k, v in os.environ.items() if k != "OPENRFT_ALLOW_GRADER_HOSTS"}
    log = (tmp_path / "serve.log").open("ab")
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{port}"
        while not _healthy(base):  # for as long as it lives: no start-up deadline
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        store = Store.open(Settings(data_dir=data_dir).url)
        key = create_key(store, "alpha")
        store.engine.dispose()
        response = httpx.post(
            base + "/v1" + RUN,
            json={"grader": endpoint(f"{listener.url}/grade"), "model_sample": "x"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert response.json()["reward"] == 1.0, response.text
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health").status_code == 200
    except httpx.HTTPError:
        return False


# --- bounded calls --------------------------------------------------------------------------


def test_a_dripping_endpoint_ends_at_its_deadline(server: Server, listener: Listener) -> None:
    response = run(server, "alpha", endpoint(f"{listener.url}/drip", timeout=2))
    assert flags(response) == ["unresponsive_reward_error"]
    assert "timed out" in errors(response)["unresponsive_reward_error_details"]


def test_a_huge_body_is_refused_and_never_reflected(server: Server, listener: Listener) -> None:
    response = run(server, "alpha", endpoint(f"{listener.url}/big"))
    assert flags(response) == ["other_error"]
    assert "response larger than 1 MiB" in errors(response)["other_error_details"]
    assert len(response.content) < 10_000


def test_a_hanging_endpoint_cannot_starve_other_projects(
    server: Server, listener: Listener
) -> None:
    alpha, beta = headers(server, "alpha"), headers(server, "beta")
    hang = {"grader": endpoint(f"{listener.url}/hang", timeout=2), "model_sample": "x"}
    quick = {"grader": EXACT, "model_sample": "4", "item": {"reference_answer": "4"}}
    before = len(listener.seen("/hang"))

    async def storm() -> tuple[list[httpx.Response], httpx.Response, httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60, limits=limits) as http:
            calls = [
                asyncio.create_task(http.post(RUN, json=hang, headers=alpha)) for _ in range(45)
            ]
            while len(listener.seen("/hang")) == before:  # alpha's calls are now in flight
                await asyncio.sleep(0.05)
            files = await http.get("/files", headers=beta, timeout=30)
            graded = await http.post(RUN, json=quick, headers=beta, timeout=30)
            return list(await asyncio.gather(*calls)), files, graded

    answers, files, graded = asyncio.run(asyncio.wait_for(storm(), 120))
    assert files.status_code == 200
    assert graded.json()["reward"] == 1.0
    refused = [a for a in answers if a.status_code == 429]
    admitted = [a for a in answers if a.status_code != 429]
    assert len(refused) >= 30
    assert {a.json()["error"]["code"] for a in refused} == {"rate_limit_exceeded"}
    for answer in admitted:  # each ended at its deadline, flagged, not hanging
        assert flags(answer) == ["unresponsive_reward_error"]
        assert "timed out" in errors(answer)["unresponsive_reward_error_details"]
    traced = {json.loads(r["body"])["trace_id"] for r in listener.seen("/hang")[before:]}
    assert len(traced) == len(admitted)  # the refused never reached the endpoint


# --- python graders -------------------------------------------------------------------------

LEAKY = """
import os

def grade(sample, item):
    if sample["output_text"] == "write":
        with open("/tmp/leak.txt", "w") as f:
            f.write("alpha was here")
        return 1.0
    return 1.0 if os.path.exists("/tmp/leak.txt") else 0.0
"""


def test_a_python_graders_scratch_space_is_per_project(server: Server) -> None:
    missing = detect_layers().missing_requirements(SandboxLimits())
    if missing:
        pytest.skip(f"the python-grader sandbox cannot run here: {missing}")
    grader = {"type": "python", "name": "leaky", "source": LEAKY}
    assert run(server, "alpha", grader, "write").json()["reward"] == 1.0
    assert run(server, "alpha", grader, "read").json()["reward"] == 1.0  # its own warm worker
    assert run(server, "beta", grader, "read").json()["reward"] == 0.0


def test_a_judge_is_never_sent_an_internal_image_url() -> None:
    """A judge that fetches `image_url`s sits in the operator's network: the tenant's image URLs
    must name public hosts (or be `data:` URLs) before the judge is asked at all."""
    from openrft.graders import GradeContext, grade_batch, load_grader

    spec = load_grader(
        {
            "type": "score_model",
            "name": "looks",
            "model": "judge",
            "input": [
                {
                    "role": "user",
                    "content": [
                        {"type": "input_text", "text": "Rate {{ sample.output_text }}"},
                        {"type": "input_image", "image_url": "http://169.254.169.254/latest"},
                    ],
                }
            ],
        }
    )
    judges = {"judge": {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0}}
    context = GradeContext.for_project("alpha")
    context.judges.update(judges)
    result = grade_batch(spec, ["x"], [{}], context)[0]
    assert result.errors.other_error
    assert "169.254.169.254" in (result.errors.other_error_details or "")
    assert "link-local" in (result.errors.other_error_details or "")
