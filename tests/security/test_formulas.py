"""A hostile tenant's `calculate_output` against a real `openrft serve`: the formula that used to
hold the GIL for ~20 s (exact integers with millions of digits) is now a clean zero-reward
result with `formula_parse_error`, and the server keeps answering."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from tests.service.conftest import MULTI, Server

HOSTILE = "((9^999)^999)^10"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("formulas") / "data")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {server.key('alpha')}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
        yield client


def run_grader(http: httpx.Client, formula: str) -> httpx.Response:
    body = {
        "grader": {**MULTI, "calculate_output": formula},
        "model_sample": "4",
        "item": {"reference_answer": "4"},
    }
    return http.post("/fine_tuning/alpha/graders/run", json=body)


def test_overflowing_formula_scores_zero_with_the_error_flag(
    server: Server, http: httpx.Client
) -> None:
    # a few at once, as a hostile tenant would send them, with /health asked meanwhile
    with ThreadPoolExecutor(max_workers=3) as pool:
        pending = [pool.submit(run_grader, http, HOSTILE) for _ in range(3)]
        health = httpx.get(f"http://127.0.0.1:{server.port}/health", timeout=60)
        responses = [future.result() for future in pending]
    assert health.status_code == 200
    for response in responses:
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        assert result["reward"] == 0.0
        errors = result["metadata"]["errors"]
        assert errors["formula_parse_error"] is True
        assert "could not be evaluated" in errors["other_error_details"]
        assert result["sub_rewards"] == {"exact": 1.0, "contains": 1.0}
    assert httpx.get(f"http://127.0.0.1:{server.port}/health").status_code == 200


def test_intermediates_are_floats_not_exact_integers(http: httpx.Client) -> None:
    """Exact integers made this 10 (after building 400-digit numbers); floats overflow at the
    first step, which is what keeps `((9^999)^999)^10` cheap."""
    response = run_grader(http, "exact * 10 ^ 400 / 10 ^ 399")
    assert response.status_code == 200, response.text
    assert response.json()["reward"] == 0.0
    assert response.json()["metadata"]["errors"]["formula_parse_error"] is True


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("1e999 * exact", "too large to be a float"),
        ("-(" * 190 + "exact" + ")" * 190, "nests more than 64 levels"),
        ("-" * 1990 + "exact", "nests more than 64 levels"),
        ("exact + " * 300 + "exact", "the limit is 2000"),
    ],
)
def test_unparsable_formula_is_a_400_naming_calculate_output(
    http: httpx.Client, formula: str, message: str
) -> None:
    response = run_grader(http, formula)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert message in error["message"]
    assert error["param"] == "calculate_output"


def test_caret_has_powers_precedence_over_http(http: httpx.Client) -> None:
    # both sub-rewards are 1; with XOR's precedence these were (2 * 1) ^ (2 + 1) = 8 and
    # ((1 + 1) * 3) ^ (2 / 18) ≈ 1.22
    for formula, expected in [("2 * exact ^ 2 + contains", 3.0), ("(exact + 1) * 3 ^ 2 / 18", 1.0)]:
        response = run_grader(http, formula)
        assert response.status_code == 200, response.text
        assert response.json()["reward"] == expected
