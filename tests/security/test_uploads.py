"""Hostile uploads against a real `openrft serve`: an oversized body is refused while it is still
arriving and never lands on disk past the limit; lines that used to be 500s (a 5,000-digit
integer, 100k-deep nesting) are 400s naming the line; whatever fails leaves no file behind."""

from __future__ import annotations

import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from tests.service.conftest import Server, wait_for

from openrft.service.files import MAX_LINE_BYTES, jsonl_problems

LIMIT = 1_000_000
BIG = 5_000_000
BOUNDARY = "openrft-test-boundary"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("uploads") / "data", OPENRFT_MAX_FILE_BYTES=str(LIMIT))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[openai.OpenAI]:
    with server.client("alpha") as client:
        yield client


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return server.key("alpha")


def files_dir(server: Server) -> Path:
    return server.data_dir / "files"


def on_disk(server: Server) -> set[str]:
    folder = files_dir(server)
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def orphans(server: Server, client: openai.OpenAI) -> set[str]:
    """Files in `files/` that no database row names (the server is shared by this module)."""
    return on_disk(server) - {f"{f.id}.jsonl" for f in client.files.list()}


def healthy(server: Server) -> bool:
    return httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200


def head(name: str, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    return f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()


def multipart(file: bytes, purpose: str = "fine-tune") -> bytes:
    return (
        head("purpose") + purpose.encode() + b"\r\n" + head("file", "data.jsonl") + file
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )  # fmt: skip


def headers(key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {key}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }


# --- size ---------------------------------------------------------------------------------------


def refused_or_cut_off(send: object) -> int | None:
    """The status of a response to an oversized upload, or None if the server closed the
    connection before httpx could read one (it stops reading the body, so both can happen)."""
    try:
        response = send()  # type: ignore[operator]
    except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
        return None
    assert isinstance(response, httpx.Response)
    if response.status_code == 413:
        assert response.json()["error"]["code"] == "file_too_large"
    return response.status_code


def test_oversized_upload_with_content_length_is_refused_unread(
    server: Server, client: openai.OpenAI, key: str
) -> None:
    status = refused_or_cut_off(
        lambda: httpx.post(
            f"{server.base_url}/files",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": ("big.jsonl", b'{"a": 1}\n' * (BIG // 9))},
            data={"purpose": "fine-tune"},
            timeout=60,
        )
    )
    assert status in (413, None)
    assert orphans(server, client) == set()
    assert healthy(server)


def test_oversized_chunked_upload_is_refused_while_arriving(
    server: Server, client: openai.OpenAI, key: str
) -> None:
    """No Content-Length: the server must count. It answers (or hangs up) long before the body
    ends; the generator records how much of it httpx ever asked for."""
    chunk, chunks = b'{"a": 1}\n' * 7000, 4000  # 63 kB × 4000 ≈ 250 MB, far past any buffer
    consumed = 0

    def body() -> Iterator[bytes]:
        nonlocal consumed
        yield head("purpose") + b"fine-tune\r\n" + head("file", "big.jsonl")
        for _ in range(chunks):
            consumed += 1
            yield chunk
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    status = refused_or_cut_off(
        lambda: httpx.post(
            f"{server.base_url}/files", headers=headers(key), content=body(), timeout=60
        )
    )
    assert status in (413, None)
    assert consumed < chunks
    assert orphans(server, client) == set()
    assert healthy(server)


def test_client_hanging_up_mid_upload_leaves_no_file(
    server: Server, client: openai.OpenAI, key: str
) -> None:
    before = on_disk(server)
    body = multipart(b'{"a": 1}\n' * (LIMIT // 10))
    request = (
        f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(request + body[: len(body) // 2])
        partial = wait_for(lambda: on_disk(server) - before)
        (name,) = partial
        assert (files_dir(server) / name).stat().st_size <= LIMIT
    wait_for(lambda: not (on_disk(server) - before))
    assert orphans(server, client) == set()
    assert healthy(server)


# --- content ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"a": 1}\n{"b": 2}\n{"n": ' + b"7" * 5000 + b"}\n", "line 3: a number has more than"),
        (b'{"a": 1}\n\n{}\n{"deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "line 4: nested"),
        (b"[" * 100_000 + b"\n", "line 1: nested too deeply"),
    ],
)
def test_lines_that_used_to_be_500s_are_400s_naming_the_line(
    server: Server, client: openai.OpenAI, content: bytes, expected: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("bad.jsonl", content), purpose="fine-tune")
    assert expected in caught.value.message
    assert caught.value.code == "invalid_file_format"
    assert orphans(server, client) == set()


def test_a_line_past_the_line_cap_is_a_problem_not_a_read(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl"
    path.write_bytes(b"{}\n" + b'{"a": "' + b"x" * MAX_LINE_BYTES + b'"}\n' + b"[]\n")
    assert jsonl_problems(path) == [
        "line 2: longer than 32 MiB; put one example per line",
        "line 3: expected a JSON object, got list",
    ]


# --- the multipart body -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (head("purpose") + b"fine-tune\r\n" + f"--{BOUNDARY}--\r\n".encode(), "file"),
        (head("file", "x.jsonl") + b"{}\n\r\n" + f"--{BOUNDARY}--\r\n".encode(), "purpose"),
        (head("file") + b"{}\n\r\n" + head("purpose") + b"fine-tune\r\n--" + BOUNDARY.encode()
         + b"--\r\n", "file"),  # a `file` field without a filename is not a file part
        (head("purpose") + b"fine-tune\r\n" + head("file", "x.jsonl") + b"{}\n", "file"),
    ],
)  # fmt: skip
def test_missing_parts_are_400s_naming_them(
    server: Server, client: openai.OpenAI, key: str, body: bytes, param: str
) -> None:
    response = httpx.post(f"{server.base_url}/files", headers=headers(key), content=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert orphans(server, client) == set()


def test_not_multipart_is_a_400(server: Server, key: str) -> None:
    response = httpx.post(
        f"{server.base_url}/files",
        headers={"Authorization": f"Bearer {key}"},
        json={"file": "{}", "purpose": "fine-tune"},
    )
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]


@pytest.mark.parametrize("purpose", ["batch", "x" * 100_000])
def test_bad_purpose_is_refused_before_the_file(
    server: Server, client: openai.OpenAI, key: str, purpose: str
) -> None:
    body = multipart(b"{}\n", purpose=purpose)
    response = httpx.post(f"{server.base_url}/files", headers=headers(key), content=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "purpose"
    assert orphans(server, client) == set()


# --- at rest ------------------------------------------------------------------------------------


def test_a_good_upload_is_private_to_the_server_user(server: Server, client: openai.OpenAI) -> None:
    data = b'{"a": 1}\n' * 1000
    uploaded = client.files.create(file=("../../etc/good.jsonl", data), purpose="fine-tune")
    assert (uploaded.bytes, uploaded.filename) == (len(data), "good.jsonl")
    path = files_dir(server) / f"{uploaded.id}.jsonl"
    assert path.read_bytes() == data
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(files_dir(server).stat().st_mode) == 0o700
    assert client.files.content(uploaded.id).read() == data


def test_the_upload_body_is_documented(server: Server) -> None:
    root = server.base_url.removesuffix("/v1")
    route = httpx.get(f"{root}/openapi.json").json()["paths"]["/v1/files"]["post"]
    schema = route["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert schema["required"] == ["file", "purpose"]
    assert schema["properties"]["file"]["format"] == "binary"
