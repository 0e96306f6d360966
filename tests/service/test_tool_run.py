"""`POST /v1/fine_tuning/alpha/tool/run` on a real `openrft serve`: a tool server on 127.0.0.1
gets the documented `function_call` body with the project's secret in its headers; the answer
shows the request and the `function_call_output`; a dropped call and a tenant-refused URL say
so; a malformed body is a 400 at its field."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response
from tests.service.conftest import Server

from openrft.inference.local import serve_in_thread

RUN = "/fine_tuning/alpha/tool/run"


@pytest.fixture(scope="module")
def tool_server() -> Iterator[tuple[list[dict[str, Any]], str]]:
    seen: list[dict[str, Any]] = []
    app = FastAPI()

    @app.post("/lookup")
    async def lookup(request: Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        return {"type": "function_call_output", "call_id": body["call_id"], "output": "Paris"}

    @app.post("/down")
    async def down(request: Request) -> Response:
        return Response("no", status_code=503)

    with serve_in_thread(app) as url:
        yield seen, url


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("tools") / "data", OPENRFT_ALLOW_GRADER_HOSTS="127.0.0.1"
    )
    yield running
    running.stop()


def post(server: Server, body: dict[str, Any], project: str = "alpha") -> httpx.Response:
    auth = {"Authorization": f"Bearer {server.key(project)}"}
    return httpx.post(server.base_url + RUN, json=body, headers=auth, timeout=120)


def test_a_call_reaches_the_tool_with_the_projects_secret(
    server: Server, tool_server: tuple[list[dict[str, Any]], str]
) -> None:
    seen, url = tool_server
    auth = {"Authorization": f"Bearer {server.key('alpha')}"}
    put = httpx.put(f"{server.base_url}/secrets/TOOL_KEY", json={"value": "k-1"}, headers=auth)
    assert put.status_code == 200, put.text
    tool = {
        "name": "lookup",
        "server_url": f"{url}/lookup",
        "headers": {"Authorization": "Bearer ${secret:TOOL_KEY}"},
    }
    item = {"country": "France"}
    response = post(server, {"tool": tool, "arguments": {"q": "capital"}, "item": item})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["output"] == {
        "type": "function_call_output",
        "call_id": answer["request"]["call_id"],
        "output": "Paris",
    }
    assert answer["error"] is None
    assert answer["dropped"] is False
    assert answer["attempts"] == 1
    sent = seen[-1]
    assert sent["auth"] == "Bearer k-1"
    assert sent["body"] == answer["request"]
    assert sent["body"]["type"] == "function_call"
    assert sent["body"]["arguments"] == '{"q": "capital"}'
    assert sent["body"]["item"] == item
    assert "k-1" not in response.text  # the secret is sent, never echoed


def test_a_failing_tool_is_reported_dropped(
    server: Server, tool_server: tuple[list[dict[str, Any]], str]
) -> None:
    _, url = tool_server
    tool = {"name": "lookup", "server_url": f"{url}/down", "timeout": 5}
    answer = post(server, {"tool": tool}).json()
    assert answer["dropped"] is True
    assert answer["output"] is None
    assert answer["attempts"] == 4
    assert "HTTP 503" in answer["error"]


def test_a_url_outside_the_allow_list_is_refused_unsent(server: Server) -> None:
    tool = {"name": "lookup", "server_url": "http://127.0.0.2:9/lookup"}
    answer = post(server, {"tool": tool}).json()
    assert answer["output"] is None
    assert "127.0.0.2, a loopback address" in answer["error"]
    assert answer["attempts"] == 0


def test_a_bad_body_is_a_400_at_its_field(server: Server) -> None:
    response = post(server, {"tool": {"name": "no spaces allowed", "server_url": "x"}})
    assert response.status_code == 400
    assert "tool.name" in response.text


AGENT_GRADER = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference_answer }}",
    "operation": "eq",
}


def test_an_agent_rft_job_body_is_accepted_and_a_bad_tool_refused_at_its_path(
    server: Server, tool_server: tuple[list[dict[str, Any]], str]
) -> None:
    """An OpenAI SDK job with `method.reinforcement.tools` and `max_episode_steps` (Agent RFT)
    is created as it is sent; a tool named like TRL's environment hooks is a 400 at its path."""
    import openai

    _, url = tool_server
    client = server.client("alpha")
    rows = [
        {"messages": [{"role": "user", "content": f"Capital {i}?"}], "reference_answer": "Paris"}
        for i in range(4)
    ]
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    upload = client.files.create(file=("agent.jsonl", text), purpose="fine-tune")
    tools = [
        {
            "name": "lookup",
            "server_url": f"{url}/lookup",
            "headers": {"X-Key": "${secret:TOOL_KEY}"},
        },
        {
            "type": "python",
            "name": "shout",
            "description": "Upper-case a word",
            "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
            "source": "def shout(word):\n    return word.upper()\n",
        },
    ]
    method: Any = {
        "type": "reinforcement",
        "reinforcement": {"grader": AGENT_GRADER, "tools": tools, "max_episode_steps": 3},
    }
    job = client.fine_tuning.jobs.create(
        model="smollm2-135m-instruct", training_file=upload.id, method=method
    )
    assert job.status in ("validating_files", "queued")
    bad: Any = {
        "type": "reinforcement",
        "reinforcement": {
            "grader": AGENT_GRADER,
            "tools": [{"name": "reset", "server_url": f"{url}/lookup"}],
        },
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            model="smollm2-135m-instruct", training_file=upload.id, method=bad
        )
    assert (caught.value.param or "").startswith("method.reinforcement.tools")
    assert "reset" in caught.value.message
    client.close()


def test_a_python_tool_runs_in_the_projects_sandbox(server: Server) -> None:
    tool = {
        "type": "python",
        "name": "shout",
        "source": "def shout(word, item):\n    return word.upper() + item['mark']\n",
        "parameters": {"type": "object", "properties": {"word": {"type": "string"}}},
    }
    body = {"tool": tool, "arguments": {"word": "paris"}, "item": {"mark": "!"}}
    answer = post(server, body).json()
    assert answer["output"]["output"] == "PARIS!"
    assert answer["error"] is None
    failing = post(server, {**body, "arguments": {"nope": 1}}).json()
    assert "unexpected keyword argument 'nope'" in failing["error"]
    assert failing["dropped"] is False
