"""The New job page in a real browser (the headless Chromium and Playwright set-up of
`test_dashboard.py`) against a real `openrft serve` with one worker and a tiny local model:

- the form: `auto` values and what a value maps to, the model picker, uploads refused with
  every problem at its line, grader JSON errors at their line and column, SeekrFlow weights
  refused by the server's rules and shown verbatim, a grader taken from the playground, and API
  errors shown as text (never as markup);
- a pre-flight that passes (a grader random completions satisfy often enough), then Start: the
  page lands on the new job's page, and the job the server stored is the body the page built;
- a pre-flight that fails (`eq` on a random model's output), with its advice and the samples
  next to their references; "Start anyway" sends `preflight.force`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.dashboard.test_dashboard import (  # noqa: F401  (fixtures used by name)
    WAIT_MS,
    browser,
    sync_api,
    tiny_model,
    url,
)
from tests.service.conftest import EXACT, Server, arithmetic_rows, jsonl, tiny_training, wait_for

from openrft.training.config import DEFAULT_MODEL

pytestmark = pytest.mark.slow

PROJECT = "newjob"
HAS_E = {**EXACT, "name": "has_e", "reference": "e", "operation": "like"}
"""Random completions contain an `e` often enough for most groups to differ (as in
tests/service/test_preflight.py)."""
OVERRIDES = tiny_training(2, 1) | {"preflight": {"prompts": 4}}
"""Small and fast; the pre-flight on 4 prompts × 2 completions."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> Iterator[Server]:  # noqa: F811
    running = Server(tmp_path_factory.mktemp("new-job") / "data", workers=1)
    running.register_model("tiny", tiny_model)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return server.key(PROJECT)


@pytest.fixture(scope="module")
def client(server: Server, key: str) -> Iterator[openai.OpenAI]:
    with server.client(PROJECT, key) as made:
        yield made


@pytest.fixture(scope="module")
def page(browser: Any, server: Server, key: str) -> Iterator[Any]:  # noqa: F811
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.goto(url(server, "/login"))
    tab.evaluate("key => sessionStorage.setItem('openrft.apiKey', key)", key)
    yield tab
    assert errors == []  # no script on the page threw


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("files")
    (folder / "train.jsonl").write_bytes(jsonl(arithmetic_rows(16)))
    (folder / "valid.jsonl").write_bytes(jsonl(arithmetic_rows(4)))
    good = jsonl(arithmetic_rows(3)).decode().splitlines()
    (folder / "broken.jsonl").write_text(f"{good[0]}\nnot json\n{good[2]}\n{{}}\n")
    return folder


def open_form(page: Any, server: Server) -> None:
    page.goto(url(server, "/jobs/new"))
    page.wait_for_selector("body[data-ready=true]")


def cell(page: Any, name: str, column: str) -> Any:
    return page.locator(f"#hyperparameters tr[data-hp={name}] td.{column}")


def fill_job(page: Any, data: Path, grader: dict[str, Any], suffix: str) -> None:
    """Upload the training file, pick the tiny model, paste `grader` and the small settings."""
    page.set_input_files("#training-upload", str(data / "train.jsonl"))
    sync_api.expect(page.locator("#training-summary")).to_contain_text("no problems")
    page.select_option("#model", "tiny")
    page.fill("#grader-json", json.dumps(grader, indent=2))
    sync_api.expect(page.locator("#grader-status")).to_contain_text("Valid: string_check")
    page.fill("#suffix", suffix)
    page.click("#advanced summary")
    page.fill("#overrides", json.dumps(OVERRIDES))


def run_preflight(page: Any) -> str:
    page.click("#run-preflight")
    page.wait_for_function(
        "() => document.getElementById('new-job').dataset.preflight", timeout=WAIT_MS
    )
    return str(page.get_attribute("#new-job", "data-preflight-job"))


def config_of(server: Server, job_id: str) -> dict[str, Any]:
    """The native config the server stored for a job (what the worker runs)."""
    store = server.store()
    try:
        row = store.job(job_id, PROJECT)
        assert row is not None
        return dict(row["config"])
    finally:
        store.engine.dispose()


def settled(client: openai.OpenAI, job_id: str) -> Any:
    final = ("succeeded", "failed", "cancelled")
    return wait_for(lambda: (j := client.fine_tuning.jobs.retrieve(job_id)).status in final and j)


# --- tests --------------------------------------------------------------------------------------


def test_the_form_shows_auto_values_models_and_problems_by_line(
    page: Any, server: Server, data: Path
) -> None:
    page.goto(url(server, "/"))
    page.click("#new-job-link")
    page.wait_for_url(url(server, "/jobs/new"))
    page.wait_for_selector("body[data-ready=true]")
    sync_api.expect(cell(page, "batch_size", "auto")).to_contain_text("auto = 4")
    sync_api.expect(cell(page, "compute_multiplier", "auto")).to_contain_text(
        "num_generations 8 completions per prompt"
    )
    sync_api.expect(cell(page, "reasoning_effort", "sets")).to_have_text(
        "max_completion_length 256 tokens"
    )
    page.fill("#hp-learning_rate_multiplier", "2")
    sync_api.expect(cell(page, "learning_rate_multiplier", "sets")).to_have_text(
        "learning_rate 0.0004"
    )
    page.fill("#hp-compute_multiplier", "0.5")
    sync_api.expect(cell(page, "compute_multiplier", "sets")).to_have_text("num_generations 4")
    page.select_option("#hp-reasoning_effort", "high")
    sync_api.expect(cell(page, "reasoning_effort", "sets")).to_have_text(
        "max_completion_length 512 tokens"
    )
    models = page.locator("#model optgroup[label='Base models'] option").all_inner_texts()
    assert {"tiny", DEFAULT_MODEL} <= set(models)

    page.set_input_files("#training-upload", str(data / "broken.jsonl"))
    summary = page.locator("#training-summary")
    sync_api.expect(summary).to_contain_text("broken.jsonl: upload refused")
    sync_api.expect(summary).to_contain_text("the file was not stored")
    lines = page.locator("#training-problems tbody tr td.num").all_inner_texts()
    assert {"2", "4"} <= set(lines)

    page.set_input_files("#training-upload", str(data / "train.jsonl"))
    sync_api.expect(summary).to_contain_text("16 valid rows")
    sync_api.expect(summary).to_contain_text("no problems")
    sync_api.expect(page.locator("#training-problems")).to_be_hidden()
    # 16 rows, 1 held out for validation: 15 // batch 4 = 3 steps of 4 prompts × 4 completions
    sync_api.expect(page.locator("#plan")).to_contain_text("≈ 3 optimizer steps")
    sync_api.expect(page.locator("#plan")).to_contain_text("16 completions a step")
    chosen = page.locator("#training-pick option:checked").inner_text()
    assert chosen.startswith("train.jsonl (file-")
    page.select_option(
        "#validation-pick",
        label=page.locator("#validation-pick option", has_text="train.jsonl").first.inner_text(),
    )
    sync_api.expect(page.locator("#validation-summary")).to_contain_text("no problems")
    sync_api.expect(page.locator("#plan")).to_contain_text("≈ 4 optimizer steps")
    sync_api.expect(page.locator("#start")).to_be_disabled()


def test_grader_and_settings_errors_are_shown_where_they_are(
    page: Any, server: Server, data: Path
) -> None:
    open_form(page, server)
    status = page.locator("#grader-status")
    page.fill("#grader-json", '{"type": "string_check",\n  "name": }')
    sync_api.expect(status).to_contain_text("The grader is not valid JSON at line 2, column 11")
    page.fill("#grader-json", json.dumps({**EXACT, "operation": "equals"}))
    sync_api.expect(status).to_contain_text("operation")  # the server's problem, verbatim

    page.check("input[name=grader-source][value=seekr]")
    sync_api.expect(status).to_contain_text("Valid: multi grader")
    compiled = page.locator("#grader-compiled")
    sync_api.expect(compiled).to_contain_text("0.1 * format + 0.9 * math_accuracy")
    page.click("#seekr-add")  # string_check contains
    page.locator("#seekr-graders .seekr-weight").first.fill("0.5")
    sync_api.expect(status).to_contain_text("only some graders have a weight")
    page.locator("#seekr-graders .seekr-weight").nth(1).fill("0.3")
    sync_api.expect(status).to_contain_text("must sum to 1.0")
    page.locator("#seekr-graders .seekr-weight").nth(1).fill("0.4")
    sync_api.expect(status).to_contain_text("Valid: multi grader")
    sync_api.expect(compiled).to_contain_text(
        "0.1 * format + 0.5 * math_accuracy + 0.4 * string_check_contains"
    )

    # a grader written in the playground (YAML there) is the third source
    page.goto(url(server, "/playground"))
    page.wait_for_selector("body[data-ready=true]")
    page.fill(
        "#grader",
        "type: string_check\nname: yaml_made\noperation: ilike\n"
        "input: '{{ sample.output_text }}'\nreference: '{{ item.reference_answer }}'\n",
    )
    open_form(page, server)
    page.check("input[name=grader-source][value=playground]")
    sync_api.expect(page.locator("#playground-grader")).to_contain_text("name: yaml_made")
    sync_api.expect(status).to_contain_text('Valid: string_check grader "yaml_made"')

    # the API's refusal shown as text: markup in it is not markup
    page.set_input_files("#training-upload", str(data / "train.jsonl"))
    sync_api.expect(page.locator("#training-summary")).to_contain_text("no problems")
    page.click("#advanced summary")
    page.fill("#overrides", '{"num_generations": 2,\n "lora": {"r": 4}, }')
    page.click("#run-preflight")
    error = page.locator("#form-error")
    sync_api.expect(error).to_contain_text("The OpenRFT settings field is not valid JSON at line 2")
    page.fill("#overrides", '{"<b>bold</b>": 1}')
    page.click("#run-preflight")
    sync_api.expect(error).to_contain_text("<b>bold</b>")
    assert error.locator("b").count() == 0
    page.fill("#overrides", "")
    page.fill("#hp-n_epochs", "two")
    page.click("#run-preflight")
    sync_api.expect(error).to_contain_text('must be "auto" or a whole number ≥ 1')
    sync_api.expect(error).to_contain_text("n_epochs")


def test_a_passing_preflight_then_start_lands_on_the_new_job(
    page: Any, server: Server, client: openai.OpenAI, data: Path, key: str
) -> None:
    open_form(page, server)
    fill_job(page, data, HAS_E, "nj-pass")
    page.fill("#hp-batch_size", "2")
    preflight_id = run_preflight(page)
    assert page.get_attribute("#new-job", "data-preflight") == "passed"
    sync_api.expect(page.locator("#verdict")).to_contain_text("Passed:")
    facts = page.locator("#preflight-facts").inner_text()
    assert "Zero-variance groups" in facts
    assert "8 (4 prompts × 2)" in facts
    assert page.locator("#histogram .bin").count() == 10
    examples = page.locator("#examples tbody tr")
    assert examples.count() == 2
    prompt = examples.first.locator("td").nth(0).inner_text()
    i = int(prompt.split()[2])  # "What is {i} + {i % 3}?" has the reference {i + i % 3}
    sync_api.expect(examples.first.locator("td.reference")).to_have_text(str(i + i % 3))

    # the route the page read: the report the worker's `preflight` event carries, this project's
    route = f"http://127.0.0.1:{server.port}/dashboard/api/jobs/{preflight_id}/preflight"
    found = httpx.get(route, headers={"Authorization": f"Bearer {key}"}).json()
    assert found["status"] == "succeeded"
    [event] = [
        e
        for e in client.fine_tuning.jobs.list_events(preflight_id, limit=50)
        if (e.data or {}).get("preflight")
    ]
    assert found["report"] == event.data["preflight"]
    outsider = {"Authorization": f"Bearer {server.key('outsider')}"}
    assert httpx.get(route, headers=outsider).status_code == 404

    start = page.locator("#start")
    sync_api.expect(start).to_have_text("Start")
    start.click()
    page.wait_for_url("**/jobs/ftjob-*")
    job_id = page.url.rsplit("/", 1)[1]
    assert job_id != preflight_id
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert (job.model, job.suffix, job.metadata) == (
        "tiny",
        "nj-pass",
        {"preflight_job": preflight_id},
    )
    assert job.method is not None
    assert job.method.reinforcement is not None
    assert job.method.reinforcement.grader.model_dump(exclude_none=True) == HAS_E  # type: ignore[union-attr]
    config = config_of(server, job_id)
    assert config["batch_size"] == 2  # the hyperparameter
    assert config["num_generations"] == 2  # the override wins over compute_multiplier's auto
    assert config["preflight"]["only"] is False
    assert config["preflight"]["force"] is False
    first = config_of(server, preflight_id)
    assert first["preflight"]["only"] is True
    assert client.fine_tuning.jobs.retrieve(preflight_id).metadata == {"dashboard": "preflight"}
    assert settled(client, job_id).status == "succeeded"


def test_a_failing_preflight_shows_advice_and_start_anyway_forces(
    page: Any, server: Server, client: openai.OpenAI, data: Path
) -> None:
    open_form(page, server)
    fill_job(page, data, EXACT, "nj-fail")
    run_preflight(page)
    assert page.get_attribute("#new-job", "data-preflight") == "failed"
    sync_api.expect(page.locator("#verdict")).to_contain_text("Failed: 0 of 4 groups (0%)")
    sync_api.expect(page.locator("#advice")).to_contain_text("`eq` never matches")
    zero = page.locator("#preflight-facts div", has_text="Zero-variance groups").locator("dd")
    sync_api.expect(zero).to_have_text("100%")
    for row in page.locator("#examples tbody tr").all():
        i = int(row.locator("td").nth(0).inner_text().split()[2])
        sync_api.expect(row.locator("td.reference")).to_have_text(str(i + i % 3))
    start = page.locator("#start")
    sync_api.expect(start).to_have_text("Start anyway")
    page.fill("#suffix", "nj-other")  # not what the pre-flight ran with
    sync_api.expect(start).to_be_disabled()
    sync_api.expect(page.locator("#start-note")).to_contain_text("changed since the pre-flight")
    page.fill("#suffix", "nj-fail")
    sync_api.expect(start).to_be_enabled()
    start.click()
    page.wait_for_url("**/jobs/ftjob-*")
    job_id = page.url.rsplit("/", 1)[1]
    config = config_of(server, job_id)
    assert config["preflight"]["force"] is True
    assert config["preflight"]["only"] is False
    client.fine_tuning.jobs.cancel(job_id)


def test_the_model_picker_lists_the_projects_fine_tuned_models(
    page: Any, server: Server, client: openai.OpenAI
) -> None:
    tuned = [j.fine_tuned_model for j in client.fine_tuning.jobs.list() if j.fine_tuned_model]
    assert tuned  # the job the passing pre-flight started
    open_form(page, server)
    listed = page.locator("#model optgroup[label='Fine-tuned models'] option").all_inner_texts()
    assert tuned[0] in listed
    assert page.locator("#model optgroup[label='Checkpoints'] option").count() >= 1
