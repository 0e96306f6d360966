"""The job page's diagnosis in a real browser (the headless Chromium and Playwright set-up of
`test_dashboard.py`), against a real `openrft serve` with one worker:

- a tiny job with no validation file whose completions all run into `max_completion_length`:
  the run's truncation finding and its validation carve-out go through `metrics.jsonl`, the
  worker and the store to the page, listed at their steps and marked on the reward chart;
- a job held paused in the queue whose metrics events are a scripted reward-hacking run (the
  lines `Diagnosis` writes, turned into events by the worker's own `progress` functions): the
  finding is shown at step 12 with the validation samples whose reward changed most.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.dashboard.test_dashboard import (  # noqa: F401  (fixtures used by name)
    PARTIAL,
    WAIT_MS,
    browser,
    status_is,
    sync_api,
    tiny_model,
    url,
)
from tests.service.conftest import Server, arithmetic_rows, jsonl, tiny_training, wait_for
from tests.training.test_diagnosis import hacking_run, only

from openrft.service import progress
from openrft.training.diagnosis import Diagnosis

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> Iterator[Server]:  # noqa: F811
    running = Server(tmp_path_factory.mktemp("diagnosis-page") / "data", workers=1)
    running.register_model("tiny", tiny_model)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[openai.OpenAI]:
    with server.client("diagnosis") as made:
        yield made


@pytest.fixture(scope="module")
def jobs(client: openai.OpenAI) -> dict[str, str]:
    """`truncated`: runs (the worker's first job); `scripted`: created next and paused while it
    waits behind the first, so no training ever writes its events but the test."""
    train = client.files.create(
        file=("train.jsonl", jsonl(arithmetic_rows(12))), purpose="fine-tune"
    )
    native = tiny_training(3, 1) | {
        "max_completion_length": 2,  # a random model's completions all run past 2 tokens
        "diagnosis": {"length_limit": {"window": 1, "threshold": 0.5}},
    }
    method: Any = {"type": "reinforcement", "reinforcement": {"grader": PARTIAL}}
    made = {}
    for name in ("truncated", "scripted"):
        job = client.fine_tuning.jobs.create(
            model="tiny",
            training_file=train.id,
            suffix=name,
            method=method,
            extra_body={"openrft": native},
        )
        made[name] = job.id
    # files are validated after the create call answers: a job pauses once it is queued
    wait_for(
        lambda: client.fine_tuning.jobs.retrieve(made["scripted"]).status != "validating_files",
    )
    client.fine_tuning.jobs.pause(made["scripted"])
    return made


@pytest.fixture(scope="module")
def page(browser: Any, server: Server, client: openai.OpenAI) -> Any:  # noqa: F811
    tab = browser.new_page()
    tab.goto(url(server, "/login"))
    tab.evaluate("key => sessionStorage.setItem('openrft.apiKey', key)", client.api_key)
    return tab


def test_a_runs_findings_reach_the_job_page_at_their_steps(
    page: Any, server: Server, client: openai.OpenAI, jobs: dict[str, str]
) -> None:
    job_id = jobs["truncated"]
    page.goto(url(server, f"/jobs/{job_id}"))
    status_is(page, "succeeded")
    page.wait_for_function(
        "() => document.querySelectorAll('#diagnoses tbody tr').length >= 2", timeout=WAIT_MS
    )
    limit = page.locator('#diagnoses tr[data-code="length_limit"]')
    sync_api.expect(limit).to_have_attribute("data-step", "1")
    sync_api.expect(limit).to_contain_text("100% of completions hit max_completion_length")
    carved = page.locator('#diagnoses tr[data-code="validation_carved_out"]')
    sync_api.expect(carved).to_have_attribute("data-step", "0")
    sync_api.expect(carved).to_contain_text("no validation_file given")
    assert page.get_attribute("#chart-reward", "data-markers") == "1"  # the warning, not the note
    sync_api.expect(page.locator("#diagnoses-empty")).to_be_hidden()
    # the job's events say the same, as `warn` at the step (what the CLI and SDK see)
    events = client.fine_tuning.jobs.list_events(job_id, limit=100).data
    [finding] = [e for e in events if (e.data or {}).get("code") == "length_limit"]
    assert finding.level == "warn"
    assert finding.data["step"] == 1
    assert finding.message.startswith("Step 1: 100% of completions hit max_completion_length")
    sync_api.expect(page.locator("#events tr.level-warn").first).to_be_visible()
    # OpenAI's reasoning-token metric names, next to the rewards, on the checkpoint
    [checkpoint] = client.fine_tuning.jobs.checkpoints.list(job_id).data
    assert {"train_reasoning_tokens_mean", "valid_reasoning_tokens_mean"} <= set(
        checkpoint.metrics.model_dump()
    )


def test_a_reward_hacking_finding_shows_its_samples(
    page: Any, server: Server, jobs: dict[str, str], tmp_path: Path
) -> None:
    job_id = jobs["scripted"]
    diagnosis = Diagnosis(only(reward_hacking={"window": 8, "smooth": 1}), tmp_path)
    rows = []
    for number, line in enumerate(hacking_run(tmp_path), start=1):
        line["events"] = [finding.event() for finding in diagnosis.observe(line)]
        rows += [progress.metrics_event(number, json.dumps(line)), *progress.run_events(line)]
    store = server.store()
    try:
        store.add_events(job_id, rows)
    finally:
        store.engine.dispose()
    page.goto(url(server, f"/jobs/{job_id}"))
    status_is(page, "paused")
    hacking = page.locator('#diagnoses tr[data-code="reward_hacking"]')
    sync_api.expect(hacking).to_have_attribute("data-step", "12")
    sync_api.expect(hacking).to_contain_text(
        "train reward rose 0.00 → 0.19 while valid reward fell 0.50 → 0.25 over steps 4–12: "
        "likely reward hacking"
    )
    hacking.locator("summary").click()
    pairs = hacking.locator("details tbody tr")
    sync_api.expect(pairs).to_have_count(3)  # rows 1 and 3 fell, row 2 rose
    sync_api.expect(pairs.nth(0)).to_contain_text("answer 1 at step 12")
    page.wait_for_function("() => document.getElementById('chart-reward').dataset.markers === '1'")
