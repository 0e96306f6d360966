"""`GradeContext`: what a deployment tells graders that is not part of a grader spec.

Who is grading (so sandbox workers are never shared between owners), the owner's secrets (for
`${secret:NAME}` in endpoint headers), which hosts tenant-chosen URLs may reach, and, for the
graders that call out, where judge models live and what limits apply. Pure-text graders ignore
it; they lift their one-sample `grade` to the batch contract with `per_sample`.

The service builds one per request or job from the caller's project (`for_project`); a training
subprocess started by a worker rebuilds it from `$OPENRFT_GRADE_CONTEXT` (`from_environment`),
which the worker sets to that project's context alone. The default context is for local,
single-user use (the user is also the operator): outbound calls unrestricted, and the local
commands (`openrft train`, `openrft graders run|audit`) read secrets from
`$OPENRFT_SECRET_<NAME>` variables. No context ever expands `${VAR}` from the environment.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from openrft.graders.result import GradeResult
from openrft.graders.sample import Item, Sample

SpecT = TypeVar("SpecT")

CONTEXT_ENV = "OPENRFT_GRADE_CONTEXT"
"""Environment variable through which a worker hands a training subprocess its job's context
(JSON of `to_json`); never set in the service's own environment."""


@dataclass(frozen=True)
class OutboundPolicy:
    """Where URLs chosen by a tenant (endpoint graders) may connect.

    Public addresses are allowed; loopback, link-local, private, shared (CGNAT), multicast,
    reserved and unspecified ranges are refused unless `allow_hosts` names the host or a
    network containing the address (e.g. `127.0.0.1`, `10.0.0.0/8`, `grader.internal`)."""

    allow_hosts: tuple[str, ...] = ()
    """Host names, IP addresses or CIDR networks the operator allows despite the rules above."""


@dataclass
class GradeContext:
    """Deployment settings for one grading call; the default suits local use."""

    owner: str = "local"
    """Project or user the grading is for; a sandbox worker never serves two owners."""
    judges: dict[str, Any] = field(default_factory=dict)
    """Judge endpoint settings per model name (see `graders/judges.py`)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Further per-grader-kind settings (sandbox limits, embedding endpoint, …)."""
    secrets: Mapping[str, str] = field(default_factory=dict)
    """The owner's secrets by name, for `${secret:NAME}` in endpoint headers."""
    outbound: OutboundPolicy | None = None
    """Restrictions on tenant-chosen URLs; None (local use) leaves them unrestricted."""

    @classmethod
    def for_project(
        cls,
        project: str,
        secrets: Mapping[str, str] | None = None,
        allow_hosts: Sequence[str] = (),
    ) -> GradeContext:
        """The context of one tenant of the service: its secrets, restricted outbound calls."""
        return cls(
            owner=f"project:{project}",
            secrets=dict(secrets or {}),
            outbound=OutboundPolicy(tuple(allow_hosts)),
        )

    def to_json(self) -> str:
        """What `from_environment` reads back (owner, secrets, outbound policy, options)."""
        outbound = None if self.outbound is None else list(self.outbound.allow_hosts)
        return json.dumps(
            {
                "owner": self.owner,
                "secrets": dict(self.secrets),
                "outbound": outbound,
                "options": self.options,
            }
        )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> GradeContext:
        """The context a worker handed this process in `$OPENRFT_GRADE_CONTEXT`; else the local
        default, with secrets from `$OPENRFT_SECRET_<NAME>` variables (local use only: the
        service's workers never pass those on)."""
        environ = os.environ if environ is None else environ
        raw = environ.get(CONTEXT_ENV)
        if not raw:
            return cls(secrets=local_secrets(environ))
        data = json.loads(raw)
        outbound = data.get("outbound")
        return cls(
            owner=str(data.get("owner", "local")),
            secrets={str(k): str(v) for k, v in (data.get("secrets") or {}).items()},
            outbound=None if outbound is None else OutboundPolicy(tuple(map(str, outbound))),
            options=dict(data.get("options") or {}),
        )


SECRET_ENV_PREFIX = "OPENRFT_SECRET_"  # noqa: S105 - a variable-name prefix, not a secret


def local_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """`${secret:NAME}` values for local runs: `$OPENRFT_SECRET_NAME`, for each NAME set."""
    return {
        name.removeprefix(SECRET_ENV_PREFIX): value
        for name, value in environ.items()
        if name.startswith(SECRET_ENV_PREFIX) and len(name) > len(SECRET_ENV_PREFIX)
    }


def per_sample(
    grade: Callable[[SpecT, Sample, Item], GradeResult],
) -> Callable[[SpecT, Sequence[Sample], Sequence[Item], GradeContext], list[GradeResult]]:
    """The `grade_batch` of a grader that needs no context and nothing shared across samples."""

    def grade_batch(
        spec: SpecT, samples: Sequence[Sample], items: Sequence[Item], context: GradeContext
    ) -> list[GradeResult]:
        del context
        return [grade(spec, sample, item) for sample, item in zip(samples, items, strict=True)]

    return grade_batch
