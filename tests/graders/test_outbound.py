"""The outbound policy for tenant-chosen URLs: address classes (IPv4, IPv6 and the IPv6 forms
that embed an IPv4 address), the operator's allow-list by name, address and CIDR, resolution
that refuses when any address is refused, and a transport pinned to the checked address."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from openrft.graders.context import OutboundPolicy
from openrft.graders.outbound import (
    Destination,
    PinnedTransport,
    Refused,
    Unresolvable,
    address_class,
    allowed,
    embedded_ipv4,
    resolve,
)
from openrft.inference.local import serve_in_thread


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("100.127.255.254", "shared (CGNAT)"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.0.8", "non-global"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("64:ff9b:1::1", "reserved"),  # NAT64 local-use prefix
        ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible form
        ("2001::1", "private"),  # Teredo
    ],
)
def test_refused_address_classes(address: str, expected: str) -> None:
    assert address_class(ipaddress.ip_address(address)) == expected


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_pass(address: str) -> None:
    assert address_class(ipaddress.ip_address(address)) is None


def test_embedded_ipv4_forms() -> None:
    ip = ipaddress.ip_address
    assert embedded_ipv4(ip("::ffff:1.2.3.4")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("2002:102:304::")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("64:ff9b::102:304")) == ip("1.2.3.4")
    assert embedded_ipv4(ip("2606:4700::1")) is None
    assert embedded_ipv4(ip("1.2.3.4")) is None


@pytest.mark.parametrize(
    ("host", "address", "allow", "expected"),
    [
        ("grader.internal", "10.0.0.5", ["grader.internal"], True),
        ("Grader.Internal.", "10.0.0.5", ["grader.internal"], True),  # case, trailing dot
        ("other.internal", "10.0.0.5", ["grader.internal"], False),
        ("10.0.0.5", "10.0.0.5", ["10.0.0.5"], True),
        ("x", "10.0.0.6", ["10.0.0.5"], False),
        ("x", "10.9.8.7", ["10.0.0.0/8"], True),
        ("x", "11.0.0.1", ["10.0.0.0/8"], False),
        ("x", "::1", ["::1"], True),
        ("x", "::1", ["[::1]"], True),
        ("x", "fd00::7", ["fd00::/8"], True),
        ("x", "::ffff:127.0.0.1", ["127.0.0.1"], True),  # the same host, mapped
        ("x", "127.0.0.1", ["::1"], False),
        ("x", "127.0.0.2", ["127.0.0.1"], False),
        ("x", "127.0.0.2", [], False),
    ],
)
def test_allow_list_by_name_address_and_network(
    host: str, address: str, allow: list[str], expected: bool
) -> None:
    assert allowed(host, ipaddress.ip_address(address), allow) is expected


def _resolve(url: str, *allow: str) -> Destination:
    return asyncio.run(resolve(url, OutboundPolicy(allow)))


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://127.0.0.1:9/grade", "loopback"),
        ("http://localhost:9/grade", "loopback"),
        ("http://2130706433/grade", "loopback"),  # 127.0.0.1 written as one number
        ("http://[::1]:9/grade", "loopback"),
        ("http://[::ffff:7f00:1]:9/grade", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/", "private"),
        ("https://100.64.0.1/", "shared (CGNAT)"),
        ("http://0.0.0.0:9/", "unspecified"),
    ],
)
def test_resolve_refuses_internal_destinations(url: str, needle: str) -> None:
    with pytest.raises(Refused) as caught:
        _resolve(url)
    message = str(caught.value)
    assert needle in message
    assert "--allow-grader-hosts" in message
    assert "no request was sent" in message


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http:///nohost", "file:///etc/passwd"])
def test_resolve_refuses_non_http_urls(url: str) -> None:
    with pytest.raises(Refused, match="http"):
        _resolve(url)


def test_resolve_pins_the_first_address_of_an_allowed_host() -> None:
    assert _resolve("http://127.0.0.1:9/g", "127.0.0.1") == Destination(
        "http", "127.0.0.1", 9, ipaddress.ip_address("127.0.0.1")
    )
    by_name = _resolve("https://LOCALHOST/g", "localhost")
    assert (by_name.host, by_name.port, by_name.address.is_loopback) == ("localhost", 443, True)
    assert _resolve("http://127.0.0.1:9/g", "127.0.0.0/8").address.is_loopback


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names under `.test` resolve to what the returned table says; anything else resolves as
    usual (IP literals, `localhost`). No network is needed."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name in table:
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, int(port)),
                )
                for a in table[name]
            ]
        if name.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def test_one_refused_address_refuses_the_host(fake_dns: dict[str, list[str]]) -> None:
    fake_dns["mixed.test"] = ["93.184.215.14", "10.1.2.3"]
    with pytest.raises(Refused, match=r"mixed\.test resolves to 10\.1\.2\.3, a private"):
        _resolve("https://mixed.test/grade")
    fake_dns["public.test"] = ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"]
    assert str(_resolve("https://public.test/grade").address) == "93.184.215.14"


def test_unresolvable_host(fake_dns: dict[str, list[str]]) -> None:
    with pytest.raises(Unresolvable, match=r"cannot resolve 'nowhere\.test'"):
        _resolve("https://nowhere.test/grade")


def test_a_slow_resolver_is_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(*_args: Any, **_kwargs: Any) -> Any:
        time.sleep(1)  # a tenant's own DNS server, taking its time
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", slow)

    async def go() -> Destination:
        return await resolve("https://slow.test/grade", OutboundPolicy(), timeout=0.1)

    with pytest.raises(Unresolvable, match=r"no answer within 0\.1 s"):
        asyncio.run(go())


@pytest.fixture
def echo() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A server on 127.0.0.1 that records the headers of every request it gets."""
    seen: list[dict[str, str]] = []
    app = FastAPI()

    @app.post("/grade")
    async def grade(request: Request) -> dict[str, Any]:
        seen.append(dict(request.headers))
        return {"score": 1}

    with serve_in_thread(app) as url:
        yield url, seen


def test_transport_connects_to_the_checked_address_not_a_new_answer(
    echo: tuple[str, list[dict[str, str]]], fake_dns: dict[str, list[str]]
) -> None:
    url, seen = echo
    port = httpx.URL(url).port
    fake_dns["grader.test"] = ["127.0.0.1"]
    destination = _resolve(f"http://grader.test:{port}/grade", "grader.test")
    fake_dns["grader.test"] = ["10.255.255.1"]  # rebinding: a later lookup would go elsewhere

    async def post() -> httpx.Response:
        transport = PinnedTransport(destination)
        async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
            return await client.post(f"http://grader.test:{port}/grade", json={})

    response = asyncio.run(post())
    assert response.json() == {"score": 1}
    assert str(response.request.url) == f"http://grader.test:{port}/grade"
    assert len(seen) == 1
    assert seen[0]["host"] == f"grader.test:{port}"


def test_transport_refuses_an_origin_it_did_not_check(
    echo: tuple[str, list[dict[str, str]]],
) -> None:
    url, seen = echo
    destination = _resolve(f"{url}/grade", "127.0.0.1")

    async def post(target: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=PinnedTransport(destination)) as client:
            return await client.post(target, json={})

    with pytest.raises(httpx.ConnectError, match="not checked"):
        asyncio.run(post("http://elsewhere.test/grade"))
    port = httpx.URL(url).port or 0
    with pytest.raises(httpx.ConnectError, match="not checked"):
        asyncio.run(post(f"http://127.0.0.1:{port + 1}/grade"))
    assert seen == []
