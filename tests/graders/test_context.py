"""`GradeContext` across the worker → training boundary, and local secrets."""

from __future__ import annotations

from openrft.graders.context import CONTEXT_ENV, GradeContext, OutboundPolicy


def test_a_projects_context_survives_the_environment_round_trip() -> None:
    sent = GradeContext.for_project("alpha", {"TOKEN": "t"}, ["127.0.0.1"])
    got = GradeContext.from_environment({CONTEXT_ENV: sent.to_json()})
    assert got.owner == "project:alpha"
    assert dict(got.secrets) == {"TOKEN": "t"}
    assert got.outbound == OutboundPolicy(("127.0.0.1",))


def test_local_runs_read_secrets_from_openrft_secret_variables_only() -> None:
    environ = {"OPENRFT_SECRET_TOKEN": "local", "OPENAI_API_KEY": "sk-x", "OPENRFT_SECRET_": "-"}
    got = GradeContext.from_environment(environ)
    assert dict(got.secrets) == {"TOKEN": "local"}
    assert got.outbound is None  # local use: the user is the operator
    assert got.owner == "local"


def test_a_workers_context_ignores_local_secret_variables() -> None:
    sent = GradeContext.for_project("beta")
    environ = {CONTEXT_ENV: sent.to_json(), "OPENRFT_SECRET_TOKEN": "from-the-server-env"}
    assert dict(GradeContext.from_environment(environ).secrets) == {}
