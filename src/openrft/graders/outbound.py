"""Where a tenant-chosen URL may connect: `resolve` checks one URL against an `OutboundPolicy`,
and `PinnedTransport` then sends every request to exactly the address that was checked.

A URL must be http(s) with a host. The host is resolved once (off the event loop) and refused
if ANY of its addresses is loopback, link-local, private, shared (CGNAT, 100.64.0.0/10),
site-local, multicast, reserved, unspecified or otherwise not globally routable; an IPv6 address
that embeds an IPv4 one (IPv4-mapped, 6to4, NAT64 `64:ff9b::/96`) is judged by the IPv4 address
it reaches. `allow_hosts` overrides the refusal for a host name, an address, or a CIDR network.
Because the request goes to the checked address (the URL keeps its host name for `Host` and TLS
SNI/certificate checks), a second DNS answer cannot swap in an internal address (DNS rebinding).

It does NOT follow redirects, use proxies, bound time or sizes (callers do: `graders/retry.py`),
or stop a public host from relaying requests onward. Local use (no policy) never comes here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from openrft.graders.context import OutboundPolicy

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SPECIAL: tuple[Network, ...] = (ipaddress.IPv4Network("192.0.0.0/24"),)
"""Non-global ranges (IANA special-purpose registry) some Python versions count as global."""
_CLASSES: tuple[tuple[str, Callable[[Any], bool]], ...] = (
    ("unspecified", lambda a: a.is_unspecified),
    ("loopback", lambda a: a.is_loopback),
    ("link-local", lambda a: a.is_link_local),
    ("multicast", lambda a: a.is_multicast),
    ("shared (CGNAT)", lambda a: a in _SHARED),
    ("site-local", lambda a: isinstance(a, ipaddress.IPv6Address) and a.is_site_local),
    ("reserved", lambda a: a.is_reserved),
    ("private", lambda a: a.is_private),
    ("non-global", lambda a: not a.is_global or any(a in net for net in _SPECIAL)),
)
"""Refused address classes, most telling name first (0.0.0.0 is private too, but unspecified
says more). The last entry catches what the others miss (e.g. 192.0.0.0/24)."""


class Refused(Exception):
    """The policy forbids this URL; the message says why and how the operator can allow it."""


class Unresolvable(Exception):
    """The URL's host has no address (DNS failed); the message names the host."""


@dataclass(frozen=True)
class Destination:
    """A checked URL's origin and the one address every request to it goes to."""

    scheme: str
    host: str
    """The host as the URL names it (ASCII, lower case; IPv6 without brackets)."""
    port: int
    address: Address


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches through mapping, 6to4 or NAT64; else None."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_class(address: Address) -> str | None:
    """The refused class `address` is in (e.g. `loopback`), or None for a public address."""
    inner = embedded_ipv4(address)
    if inner is not None:  # judged by where it leads: ::ffff:8.8.8.8 is 8.8.8.8
        return address_class(inner)
    return next((name for name, test in _CLASSES if test(address)), None)


def parse_allow_list(entries: Sequence[str]) -> tuple[frozenset[str], tuple[Network, ...]]:
    """Split the operator's `allow_hosts` into host names and networks (an address is a /32)."""
    names, networks = set(), []
    for entry in entries:
        text = entry.strip().strip("[]")
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            names.add(text.rstrip(".").lower())
    return frozenset(names), tuple(networks)


def allowed(host: str, address: Address, allow_hosts: Sequence[str]) -> bool:
    """Whether the operator allows `host` (by name) or `address` (or what it embeds)."""
    names, networks = parse_allow_list(allow_hosts)
    if host.rstrip(".").lower() in names:
        return True
    candidates = [a for a in (address, embedded_ipv4(address)) if a is not None]
    return any(a in network for a in candidates for network in networks)


def check_address(host: str, address: Address, policy: OutboundPolicy) -> None:
    """`Refused` unless `address` is public or the operator allows it."""
    found = address_class(address)
    if found is None or allowed(host, address, policy.allow_hosts):
        return
    shown = f"{host} resolves to {address}" if host != str(address) else str(address)
    inner = embedded_ipv4(address)
    via = f" (it leads to {inner})" if inner is not None else ""
    raise Refused(
        f"{shown}{via}, a {found} address: graders may not reach {found} addresses on this "
        "server, so no request was sent. The server's operator can allow it with "
        f"`openrft serve --allow-grader-hosts {host}` (host names, addresses or CIDR networks)"
    )


def destination_of(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL with a host; `Refused` for anything else."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise Refused(f"{url[:200]!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise Refused(f"{url[:200]!r} must be an http(s) URL with a host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, parsed.raw_host.decode("ascii").lower(), port


async def resolve(url: str, policy: OutboundPolicy, timeout: float | None = None) -> Destination:
    """Resolve the URL's host (within `timeout` seconds) and check every address it has; the
    first one is pinned."""
    scheme, host, port = destination_of(url)
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):  # a tenant's own DNS server may answer slowly
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise Unresolvable(f"cannot resolve {host!r}: no answer within {timeout} s") from None
    except (OSError, UnicodeError) as exc:
        raise Unresolvable(f"cannot resolve {host!r}: {exc}") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
    if not addresses:
        raise Unresolvable(f"cannot resolve {host!r}: no addresses")
    for address in addresses:  # all of them: a client may try any, so one bad one refuses
        check_address(host, address, policy)
    return Destination(scheme, host, port, addresses[0])


class PinnedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that connects to `destination.address` whatever the URL's host
    resolves to now, keeping the host name for `Host` and TLS (SNI and certificate checks).

    The pinning uses only public httpx API: the request is re-addressed to the IP, and the
    documented `sni_hostname` request extension names the host to TLS. Requests for any other
    origin (a redirect someone followed by hand) are refused."""

    def __init__(self, destination: Destination, **options: Any) -> None:
        self.destination = destination
        self._inner = httpx.AsyncHTTPTransport(trust_env=False, **options)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        target = self.destination
        if destination_of(str(request.url)) != (target.scheme, target.host, target.port):
            raise httpx.ConnectError(f"{request.url} was not checked; refused", request=request)
        try:
            url = request.url.copy_with(host=str(target.address))
        except httpx.InvalidURL as exc:  # e.g. a scoped IPv6 address httpx cannot write
            raise httpx.ConnectError(f"cannot address {target.address}: {exc}") from None
        pinned = httpx.Request(
            request.method,
            url,
            headers=request.headers,  # already carries `Host: <name>` from the original URL
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": target.host},
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        await self._inner.aclose()
