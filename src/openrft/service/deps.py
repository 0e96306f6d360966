"""Request dependencies: the store, the settings, and the caller's project (API-key auth).

A key looks like `ork-<key id>-<secret>`. Only the key id, a per-key random salt and
`sha256(salt + secret)` are stored. A salted fast hash is enough here because the secret is 256
random bits (nothing to brute-force, unlike a password); it keeps auth to microseconds per
request. Every object belongs to one project: routes filter by it, so another project's ids are
simply not found (404), and a missing or unknown key is 401.

The dependencies are `async`: they do no I/O but a cached check (a short indexed read on a
miss), and a thread-pool hop per dependency costs more than that under load.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated

from fastapi import Depends, Request

from openrft.service.errors import AuthenticationError
from openrft.service.settings import Settings
from openrft.service.store import Store

KEY_PREFIX = "ork"
NO_AUTH_PROJECT = "default"


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256((salt + secret).encode()).hexdigest()


def create_key(store: Store, project: str) -> str:
    """Make a new API key for `project`; the returned text is the only copy of the secret."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_hex(16)
    store.add_key(key_id, project, salt, _digest(salt, secret))
    return f"{KEY_PREFIX}-{key_id}-{secret}"


_VERIFIED: dict[str, str] = {}
"""sha256(key) → project for keys already checked; keys are never revoked or changed, so a hit
skips the database (a read per request otherwise). Bounded by `_VERIFIED_MAX`."""
_VERIFIED_MAX = 10_000


def project_of_key(store: Store, key: str) -> str | None:
    """The project `key` belongs to, or None if it is not a valid key."""
    fingerprint = hashlib.sha256(key.encode()).hexdigest()
    if fingerprint in _VERIFIED:
        return _VERIFIED[fingerprint]
    project = _lookup(store, key)
    if project is not None:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[fingerprint] = project
    return project


def _lookup(store: Store, key: str) -> str | None:
    prefix, _, rest = key.partition("-")
    key_id, _, secret = rest.partition("-")
    if prefix != KEY_PREFIX or not key_id or not secret:
        return None
    row = store.key(key_id)
    if row is None or not hmac.compare_digest(row["digest"], _digest(row["salt"], secret)):
        return None
    return str(row["project"])


async def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def bearer_key(header: str) -> str:
    """The key in an `Authorization` header: `Bearer <key>` (OpenAI's SDK), or the bare key
    (SeekrFlow's SDK sends it without a scheme); empty when there is none."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    if scheme.startswith(f"{KEY_PREFIX}-") and not rest:
        return scheme
    return ""


async def get_project(request: Request) -> str:
    """The caller's project, from `Authorization: Bearer <key>` or `Authorization: <key>` (or
    `default` with --no-auth)."""
    settings: Settings = request.app.state.settings
    if not settings.auth:
        return NO_AUTH_PROJECT
    key = bearer_key(request.headers.get("authorization", ""))
    if not key:
        raise AuthenticationError(
            "You didn't provide an API key. Send `Authorization: Bearer <key>`; create one with "
            "`openrft keys create --project NAME`.",
            code="missing_api_key",
        )
    project = project_of_key(request.app.state.store, key)
    if project is None:
        raise AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
    return project


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ProjectDep = Annotated[str, Depends(get_project)]
