"""The dashboard in a real browser: headless Debian Chromium, driven by Playwright, against a real
`openrft serve` (API keys on, one worker) training a tiny local model through the real
`openrft train` subprocess. One browser and one server for the whole module.

Chromium is launched with flags that keep it off the network (no component updates, no sync,
no background requests); Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.service.conftest import MULTI, Server, arithmetic_rows, jsonl

from openrft.training import rundir

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = os.environ.get("OPENRFT_DASHBOARD_SCREENSHOT")
"""Set to a path (docs/dashboard.png) to save the finished job's page there."""
WAIT_MS = 0
"""Playwright's "no timeout", for waits on training (the training subprocess starts torch and
TRL first, on a shared 2-core machine, so it may take any time): a dead server fails the page's
requests, and pytest-timeout's per-test limit (pyproject.toml) is the one guard against a hang."""

PARTIAL = {
    "type": "multi",
    "name": "answer",
    "graders": {
        "exact": MULTI["graders"]["exact"],  # type: ignore[index]
        "similar": {
            "type": "text_similarity",
            "name": "similar",
            "evaluation_metric": "fuzzy_match",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.reference_answer }}",
        },
    },
    "calculate_output": "0.5 * exact + 0.5 * similar",
}
"""Partial credit, so a tiny random model's curves move (an exact match alone stays at 0)."""

if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (scripts/bootstrap.sh installs it as root)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from openrft.training.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("dashboard") / "data", workers=1)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def key(server: Server) -> str:
    return server.key("dash")


@pytest.fixture(scope="module")
def client(server: Server, key: str) -> openai.OpenAI:
    return server.client(key=key)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
        )
        context.set_default_timeout(WAIT_MS)  # clicks and selectors wait as long
        context.set_default_navigation_timeout(WAIT_MS)
        sync_api.expect.set_options(timeout=WAIT_MS)  # and so do assertions (5 s by default)
        yield context
        context.close()


@pytest.fixture(scope="module")
def page(browser: Any, server: Server, key: str) -> Any:
    """A tab logged in with the `dash` project's key (the login test goes through the form)."""
    tab = browser.new_page()
    tab.on("dialog", lambda dialog: dialog.accept())  # the cancel button asks first
    tab.goto(url(server, "/login"))
    tab.evaluate("key => sessionStorage.setItem('openrft.apiKey', key)", key)
    return tab


def url(server: Server, path: str) -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def log_in(page: Any, server: Server, key: str) -> None:
    page.goto(url(server, "/"))
    page.wait_for_url("**/login?next=*")
    page.fill("#api-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(url(server, "/"))


def create_job(client: openai.OpenAI, model: str, steps: int) -> str:
    train = client.files.create(
        file=("train.jsonl", jsonl(arithmetic_rows(16))), purpose="fine-tune"
    )
    valid = client.files.create(
        file=("valid.jsonl", jsonl(arithmetic_rows(4))), purpose="fine-tune"
    )
    native = {
        "num_generations": 2,
        "batch_size": 2,
        "max_steps": steps,
        "max_completion_length": 6,
        "beta": 0.04,  # so the KL curve has values
        "eval_interval": 4,
        "eval_samples": 3,
        "eval_temperature": 0.7,
        "n_checkpoints": 2,
        "keep_best_k": 2,
        "lora": {"r": 4, "alpha": 8},
        "preflight": {"enabled": False},  # a random model: too little reward variance
    }
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=train.id,
        validation_file=valid.id,
        suffix="dash",
        method={"type": "reinforcement", "reinforcement": {"grader": PARTIAL}},  # type: ignore[typeddict-item]
        extra_body={"openrft": native},
    )
    return job.id


@pytest.fixture(scope="module")
def short_job(server: Server, client: openai.OpenAI, tiny_model: str) -> str:
    """A job that runs to the end (first in the queue: the module's one worker takes it first)."""
    server.register_model("tiny", tiny_model)
    return create_job(client, "tiny", steps=24)


@pytest.fixture(scope="module")
def long_job(client: openai.OpenAI, tiny_model: str, short_job: str) -> str:
    """A job long enough to be paused while running (it is cancelled in the end)."""
    return create_job(client, "tiny", steps=5000)


def chart_points(page: Any, chart: str = "chart-reward") -> int:
    return int(page.get_attribute(f"#{chart}", "data-points") or 0)


def status_is(page: Any, status: str) -> None:
    page.wait_for_function(
        "s => document.getElementById('job-status').textContent === s", arg=status, timeout=WAIT_MS
    )


# --- tests --------------------------------------------------------------------------------------


def test_login_form_keeps_the_key_and_shows_its_project(page: Any, server: Server) -> None:
    page.goto(url(server, "/"))
    page.click("#logout")
    page.wait_for_url(url(server, "/login"))
    page.goto(url(server, "/"))  # no key any more: the login form, then back here
    page.wait_for_url("**/login?next=*")
    page.fill("#api-key", "ork-not-a-real-key")
    page.click("#login-form button[type=submit]")
    sync_api.expect(page.locator("#login-error")).to_contain_text("Incorrect API key")
    other = server.key("someone-else")
    log_in(page, server, server.key("dash"))
    sync_api.expect(page.locator("#who")).to_have_text("project: dash")
    # another project's job is not listed (the API scopes by key)
    openai.OpenAI(base_url=server.base_url, api_key=other).files.create(
        file=("x.jsonl", jsonl(arithmetic_rows(2))), purpose="fine-tune"
    )
    page.goto(url(server, "/files"))
    sync_api.expect(page.locator("#files-empty")).to_be_visible()


def test_running_job_curve_grows_live_then_pause_resume_cancel(
    page: Any, server: Server, client: openai.OpenAI, long_job: str
) -> None:
    page.goto(url(server, "/"))
    sync_api.expect(page.locator(f"#jobs tr[data-job-id='{long_job}']")).to_be_visible()
    page.click(f"a[href='/jobs/{long_job}']")
    page.evaluate("window.notReloaded = true")
    status_is(page, "running")
    page.wait_for_function(
        "() => Number(document.getElementById('chart-reward').dataset.points) >= 2",
        timeout=WAIT_MS,
    )
    before = chart_points(page)
    page.wait_for_function(
        "n => Number(document.getElementById('chart-reward').dataset.points) > n",
        arg=before,
        timeout=WAIT_MS,
    )
    assert chart_points(page, "chart-graders") > 0
    page.click("#pause")
    status_is(page, "paused")
    assert client.fine_tuning.jobs.retrieve(long_job).status == "paused"
    sync_api.expect(page.locator("#checkpoints tbody tr").first).to_be_visible()  # pause saved one
    why = page.locator("#job-paused")
    sync_api.expect(why).to_contain_text("Job paused on request at step ")
    sync_api.expect(why).to_have_attribute("data-reason", "request")
    page.click("#resume")
    status_is(page, "running")
    sync_api.expect(why).to_be_hidden()
    page.click("#cancel")  # confirmed by the dialog handler
    status_is(page, "cancelled")
    sync_api.expect(page.locator("#cancel")).to_be_disabled()
    assert client.fine_tuning.jobs.retrieve(long_job).status == "cancelled"
    assert page.evaluate("window.notReloaded")  # every change arrived without a reload


def test_a_budget_pause_shows_its_reason(
    page: Any, server: Server, client: openai.OpenAI, short_job: str
) -> None:
    train = client.files.create(
        file=("train.jsonl", jsonl(arithmetic_rows(8))), purpose="fine-tune"
    )
    native = {
        "num_generations": 2,
        "batch_size": 2,
        "max_steps": 6,
        "max_completion_length": 6,
        "eval_interval": None,
        "eval_samples": 2,
        "lora": {"r": 4, "alpha": 8},
        "budget": {"max_steps": 2},
        "preflight": {"enabled": False},  # a random model: too little reward variance
    }
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        method={"type": "reinforcement", "reinforcement": {"grader": PARTIAL}},  # type: ignore[typeddict-item]
        extra_body={"openrft": native},
    )
    page.goto(url(server, f"/jobs/{job.id}"))
    status_is(page, "paused")
    why = page.locator("#job-paused")
    sync_api.expect(why).to_have_text(
        "Job paused at step 2: it reached its budget (max_steps 2); resume continues from its "
        "checkpoint"
    )
    sync_api.expect(why).to_have_attribute("data-reason", "budget")
    base = f"http://127.0.0.1:{server.port}/dashboard/api/jobs"
    mine = {"Authorization": f"Bearer {client.api_key}"}
    body = httpx.get(f"{base}/{job.id}/pause", headers=mine).json()
    assert (body["paused"], body["reason"], body["step"]) == (True, "budget", 2)
    assert httpx.get(f"{base}/{short_job}/pause", headers=mine).json() == {"paused": False}
    other = {"Authorization": f"Bearer {server.key('outsider')}"}
    assert httpx.get(f"{base}/{job.id}/pause", headers=other).status_code == 404
    client.fine_tuning.jobs.cancel(job.id)


def test_finished_job_page_has_samples_and_checkpoints(
    page: Any, server: Server, short_job: str
) -> None:
    page.goto(url(server, f"/jobs/{short_job}"))
    status_is(page, "succeeded")
    page.wait_for_function(
        "() => document.querySelectorAll('#samples tbody tr').length > 0", timeout=WAIT_MS
    )
    first = page.locator("#samples tbody tr").first
    prompt = first.locator("td").nth(0).inner_text()
    assert prompt.startswith("What is")
    i = int(prompt.split()[2])  # "What is {i} + {i % 3}?" has the reference {i + i % 3}
    sync_api.expect(first.locator("td").nth(1)).to_have_text(str(i + i % 3))
    assert chart_points(page, "chart-kl") > 0
    assert page.locator("#checkpoints tbody tr").count() >= 1
    sync_api.expect(page.locator("#pause")).to_be_disabled()
    with page.expect_download() as download:
        page.locator("#checkpoints tbody tr").first.get_by_text("Download").click()
    assert download.value.suggested_filename.endswith(".tar.gz")
    page.locator("#checkpoints tbody tr").first.get_by_text("Export").click()
    sync_api.expect(page.locator("#export-command")).to_contain_text("openrft export")
    if SCREENSHOT:
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=SCREENSHOT, full_page=True)


AGENT_SAMPLE = {
    "step": 9,
    "prompt": "Code of a?",
    "reference": "7",
    "completion": "7",
    "reward": 1.0,
    "sub_rewards": {},
    "trajectory": [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "lookup", "arguments": "{}"}}],
        },
        {"role": "tool", "name": "lookup", "content": "<b>7</b>"},
        {"role": "assistant", "content": "7"},
    ],
    "turns": 2,
    "tool_calls": [{"name": "lookup", "arguments": "{}", "error": None, "seconds": 0.01}],
    "dropped": False,
    "truncated": False,
}
TOOLS_LINE = {
    "step": 1,
    "tools": {
        "rollouts": 4,
        "calls_per_rollout": 1.5,
        "turns_mean": 2.0,
        "error_rate": 0.25,
        "dropped_rollouts": 1,
        "per_tool": {"lookup": {"calls": 6, "calls_per_rollout": 1.5}},
    },
}


def test_an_agent_jobs_samples_open_as_trajectories_and_its_tool_calls_are_charted(
    page: Any, server: Server, client: openai.OpenAI, short_job: str
) -> None:
    page.goto(url(server, f"/jobs/{short_job}"))
    status_is(page, "succeeded")  # then nothing else writes its samples
    path = rundir.eval_samples_path(server.data_dir / "jobs" / short_job, 9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(AGENT_SAMPLE) + "\n")
    base = f"http://127.0.0.1:{server.port}/dashboard/api/jobs/{short_job}"
    mine = {"Authorization": f"Bearer {client.api_key}"}
    [shown] = httpx.get(base + "/samples?step=9", headers=mine).json()["samples"]
    assert [m["role"] for m in shown["trajectory"]] == ["assistant", "tool", "assistant"]
    assert shown["trajectory"][0]["tool_calls"] == [{"name": "lookup", "arguments": "{}"}]
    page.reload()
    status_is(page, "succeeded")
    page.select_option("#sample-step", "9")
    viewer = page.locator("#samples tbody tr .trajectory").first
    viewer.locator("summary").click()
    sync_api.expect(viewer.locator(".tool-call")).to_have_text("→ lookup({})")
    # a tool's answer is text, never markup
    sync_api.expect(viewer.locator(".turn-tool pre")).to_have_text("<b>7</b>")
    assert page.locator("#samples b").count() == 0
    sync_api.expect(page.locator("#tools-card")).to_be_hidden()  # a job without tools
    # the page's charts, fed the line a job with tools writes (charts.js is what is tested)
    feed = """line => {
        for (const canvas of document.querySelectorAll("canvas")) Chart.getChart(canvas)?.destroy();
        new JobCharts().add([line]);
    }"""
    page.evaluate(feed, TOOLS_LINE)
    sync_api.expect(page.locator("#tools-card")).to_be_visible()
    assert chart_points(page, "chart-tools") == 5  # calls, turns, lookup, errors, dropped


def test_playground_runs_graders_in_both_dialects_and_audits(
    page: Any, server: Server, client: openai.OpenAI
) -> None:
    client.files.create(file=("audit.jsonl", jsonl(arithmetic_rows(6))), purpose="fine-tune")
    # A slow link: the user types and clicks before the page's script has started. What they
    # typed must survive it, and the click must wait for the button's handler.
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    slow = {"offline": False, "latency": 700, "downloadThroughput": -1, "uploadThroughput": -1}
    cdp.send("Network.emulateNetworkConditions", slow)
    try:
        page.goto(url(server, "/playground"))
        page.fill("#sample", "41")
        assert page.evaluate("document.body.dataset.ready") is None  # the script is still starting
        page.click("#run")  # the button stays disabled until its handler is attached
        sync_api.expect(page.locator("#reward")).to_have_text("0.1500")  # fuzzy 0.5 * 0.3
    finally:
        cdp.send("Network.emulateNetworkConditions", {**slow, "latency": 0})
        cdp.detach()
    sync_api.expect(page.locator("#sub-rewards")).to_contain_text("exact")
    sync_api.expect(page.locator("#flags")).to_contain_text("No error flags")
    page.select_option("#example", "seekr")  # SeekrFlow reward_components, in YAML
    page.click("#run")
    sync_api.expect(page.locator("#reward")).to_have_text("1.0000")
    page.fill("#item", '{"answer": "42"}')  # the grader reads item.reference_answer
    page.click("#run")
    sync_api.expect(page.locator("#flags")).to_contain_text("invalid_variable_error")
    page.fill("#grader", '{"type": "string_check", "name": "x", "operation": "nope"}')
    page.click("#run")
    sync_api.expect(page.locator("#grader-error")).to_contain_text("operation")
    like = {**MULTI["graders"]["contains"], "name": "contains"}  # type: ignore[index]
    page.fill("#grader", json.dumps(like))
    page.click("#audit")
    sync_api.expect(page.locator("#audit-table tr.flagged").first).to_contain_text("all_references")


def test_bad_upload_lists_every_problem_by_line(page: Any, server: Server) -> None:
    page.goto(url(server, "/files"))
    broken = b'{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n[1, 2]\n'
    page.set_input_files(
        "#upload-file", {"name": "broken.jsonl", "mimeType": "text/plain", "buffer": broken}
    )
    page.click("#upload-form button[type=submit]")
    sync_api.expect(page.locator("#report-title")).to_contain_text("upload refused")
    rows = page.locator("#problems tbody tr")
    sync_api.expect(rows).to_have_count(2)
    assert rows.nth(0).locator("td").first.inner_text() == "2"
    assert "invalid JSON" in rows.nth(0).inner_text()
    assert rows.nth(1).locator("td").first.inner_text() == "3"
    # valid JSONL but not chat data: stored, then validated line by line
    chat = b'{"messages": [{"role": "user", "content": "hi"}]}\n{"messages": []}\n{"prompt": "x"}\n'
    page.set_input_files(
        "#upload-file", {"name": "chat.jsonl", "mimeType": "text/plain", "buffer": chat}
    )
    page.click("#upload-form button[type=submit]")
    sync_api.expect(page.locator("#report-title")).to_contain_text("chat.jsonl (file-")
    lines = page.locator("#problems tbody tr td:first-child")
    sync_api.expect(lines).to_have_text(["2", "3"])
    sync_api.expect(page.locator("#files tbody")).to_contain_text("chat.jsonl")


def test_no_auth_server_needs_no_login(browser: Any, tmp_path: Path) -> None:
    plain = Server(tmp_path / "data", workers=0, OPENRFT_AUTH="false")
    try:
        tab = browser.new_page()
        tab.goto(f"http://127.0.0.1:{plain.port}/")
        sync_api.expect(tab.locator("#who")).to_have_text("project: default")
        sync_api.expect(tab.locator("#logout")).to_be_hidden()
        assert tab.url.endswith(f":{plain.port}/")
        tab.close()
    finally:
        plain.stop()


def test_dashboard_api_is_scoped_to_the_key(
    server: Server, client: openai.OpenAI, short_job: str
) -> None:
    job_id = short_job
    base = f"http://127.0.0.1:{server.port}/dashboard/api/jobs/{job_id}"
    other = {"Authorization": f"Bearer {server.key('outsider')}"}
    assert httpx.get(base + "/metrics", headers=other).status_code == 404
    assert httpx.get(base + "/samples").status_code == 401
    # an evaluation's samples file (with the reference training wrote) is served as it is
    line = {"step": 7, "prompt": "p", "reference": "r", "completion": "c", "reward": 1.0}
    samples = rundir.eval_samples_path(server.data_dir / "jobs" / job_id, 7)
    samples.write_text(json.dumps({**line, "sub_rewards": {"a": 1.0}}) + "\n")
    mine = {"Authorization": f"Bearer {client.api_key}"}
    body = httpx.get(base + "/samples?step=7", headers=mine).json()
    assert (7 in body["steps"], body["step"], body["samples"][0]["reference"]) == (True, 7, "r")
    assert httpx.get(base + "/samples?step=3", headers=mine).status_code == 404


# --- a job's eval -------------------------------------------------------------------------------


def job_eval(client: openai.OpenAI, job_id: str) -> str:
    found = getattr(client.fine_tuning.jobs.retrieve(job_id), "eval_id", None)  # an extension
    assert isinstance(found, str)
    return found


def rows_are(page: Any, selector: str, n: int) -> None:
    page.wait_for_function(
        "([s, n]) => document.querySelectorAll(s + ' tbody tr').length === n",
        arg=[selector, n],
        timeout=WAIT_MS,
    )


def test_a_job_eval_is_one_click_away_with_base_and_tuned_side_by_side(
    page: Any, server: Server, client: openai.OpenAI, short_job: str
) -> None:
    page.goto(url(server, f"/jobs/{short_job}"))
    status_is(page, "succeeded")
    sync_api.expect(page.locator("#eval-link")).to_be_visible()
    page.locator("#eval-link").click()
    eval_id = job_eval(client, short_job)
    page.wait_for_url(url(server, f"/dashboard/evals/{eval_id}"))
    runs = client.evals.runs.list(eval_id, limit=100).data
    assert runs[0].name == "baseline (step 0)"
    assert runs[-1].name == "final (step 24)"
    rows_are(page, "#runs", len(runs))
    rows_are(page, "#compare", 3)  # eval_samples: one row per validation row evaluated
    sync_api.expect(page.locator("#compare-base option:checked")).to_have_text("baseline (step 0)")
    sync_api.expect(page.locator("#compare-tuned option:checked")).to_have_text("final (step 24)")

    def outputs(run_id: str) -> list[str]:
        items = client.evals.runs.output_items.list(run_id, eval_id=eval_id).data
        return [str(i.sample.output[0].content) for i in items]

    first = page.locator("#compare tbody tr").first
    prompt = first.locator("td").nth(0).inner_text()
    i = int(prompt.split()[2])  # "What is {i} + {i % 3}?" has the reference {i + i % 3}
    sync_api.expect(first.locator("td").nth(1)).to_have_text(str(i + i % 3))
    sync_api.expect(first.locator("td.output pre").nth(0)).to_have_text(outputs(runs[0].id)[0])
    sync_api.expect(first.locator("td.output pre").nth(1)).to_have_text(outputs(runs[-1].id)[0])
    page.select_option("#compare-tuned", label=runs[1].name)
    sync_api.expect(first.locator("td.output pre").nth(1)).to_have_text(outputs(runs[1].id)[0])
    page.locator("#runs tbody tr").last.get_by_role("link").click()
    page.wait_for_url(runs[-1].report_url)


def test_an_eval_run_page_is_the_report_url(
    browser: Any, page: Any, server: Server, client: openai.OpenAI, short_job: str
) -> None:
    eval_id = job_eval(client, short_job)
    final = client.evals.runs.list(eval_id, limit=100).data[-1]
    assert final.report_url == url(server, f"/dashboard/evals/{eval_id}/runs/{final.id}")
    page.goto(final.report_url)
    sync_api.expect(page.locator("#run-title")).to_have_text("final (step 24)")
    sync_api.expect(page.locator("#counts dd").first).to_have_text("3")  # total
    criterion = page.locator('#criteria tr[data-criterion="answer"] td')
    passed = final.per_testing_criteria_results[0].passed
    sync_api.expect(criterion.nth(1)).to_have_text(str(passed))
    rows_are(page, "#items", 3)
    items = client.evals.runs.output_items.list(final.id, eval_id=eval_id).data
    first = page.locator("#items tbody tr").first
    sync_api.expect(first.locator("td").nth(3)).to_have_text(str(items[0].sample.output[0].content))
    score = items[0].results[0].score
    sync_api.expect(first.locator("li[data-criterion=answer]")).to_contain_text(f"{score:.3f}")
    page.select_option("#item-status", "pass")
    rows_are(page, "#items", final.result_counts.passed)
    outsider = browser.new_page()  # another project's key: the run is a 404, as in the API
    outsider.goto(url(server, "/login"))
    outsider.evaluate("k => sessionStorage.setItem('openrft.apiKey', k)", server.key("outsider"))
    outsider.goto(final.report_url)
    sync_api.expect(outsider.locator("#run-error")).to_contain_text("No such eval")
    outsider.goto(url(server, f"/dashboard/evals/{eval_id}"))
    sync_api.expect(outsider.locator("#eval-missing")).to_contain_text("No such eval")
    outsider.close()
