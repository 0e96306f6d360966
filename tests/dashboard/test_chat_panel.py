"""The chat panel and the checkpoints' Promote button in a real browser (the headless Chromium
and Playwright set-up of `test_dashboard.py`), against a real `openrft serve` (API keys on, one
worker) whose tiny reinforcement job has two checkpoints: a streamed reply from the job's
fine-tuned model, a non-streamed one from a checkpoint model (each the same text the API gives
for that conversation), a refused request shown in the panel, and a promotion from the job page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from tests.dashboard.test_dashboard import (  # noqa: F401  (fixtures used by name)
    WAIT_MS,
    browser,
    status_is,
    sync_api,
    tiny_model,
    url,
)
from tests.service.conftest import MULTI, Server, arithmetic_rows, jsonl, tiny_training

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model: str) -> Iterator[Server]:  # noqa: F811
    running = Server(tmp_path_factory.mktemp("chat-panel") / "data", workers=1)
    running.register_model("tiny", tiny_model)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[openai.OpenAI]:
    with server.client("chat") as made:
        yield made


@pytest.fixture(scope="module")
def job_id(client: openai.OpenAI) -> str:
    train = client.files.create(
        file=("train.jsonl", jsonl(arithmetic_rows(8))), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model="tiny",
        training_file=train.id,
        suffix="chat",
        method={"type": "reinforcement", "reinforcement": {"grader": MULTI}},  # type: ignore[typeddict-item]
        extra_body={"openrft": tiny_training(2, 2)},
    )
    return job.id


@pytest.fixture(scope="module")
def page(browser: Any, server: Server, client: openai.OpenAI) -> Any:  # noqa: F811
    tab = browser.new_page()
    tab.goto(url(server, "/login"))
    tab.evaluate("key => sessionStorage.setItem('openrft.apiKey', key)", client.api_key)
    return tab


def api_reply(client: openai.OpenAI, model: str, messages: list[dict[str, str]]) -> str:
    reply = client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        max_completion_tokens=6,
    )
    return reply.choices[0].message.content or ""


def send(page: Any, text: str) -> Any:
    """Send `text`; the new assistant bubble once its answer is in."""
    replies = page.locator("#chat-log .msg.assistant")
    before = replies.count()
    page.fill("#chat-input", text)
    page.click("#chat-send")
    sync_api.expect(replies).to_have_count(before + 1)
    sync_api.expect(page.locator("#chat")).not_to_have_attribute(
        "data-busy", "true", timeout=WAIT_MS
    )
    return replies.nth(before)


def test_chat_with_the_fine_tuned_model_and_a_checkpoint(
    page: Any, server: Server, client: openai.OpenAI, job_id: str
) -> None:
    page.goto(url(server, f"/jobs/{job_id}"))
    status_is(page, "succeeded")
    job = client.fine_tuning.jobs.retrieve(job_id)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job_id).data
    page.click("#chat-link")
    page.wait_for_url(f"**/jobs/{job_id}/chat")
    page.wait_for_selector("body[data-ready=true]")
    options = page.locator("#chat-model option")
    values = [options.nth(i).get_attribute("value") for i in range(options.count())]
    assert values == [
        job.fine_tuned_model,
        *[c.fine_tuned_model_checkpoint for c in checkpoints],
        "tiny",
    ]
    page.fill("#chat-max-tokens", "6")

    first = send(page, "What is 1 + 1?")  # streamed (the default)
    conversation = [{"role": "user", "content": "What is 1 + 1?"}]
    expected = api_reply(client, job.fine_tuned_model, conversation)
    assert first.locator(".text").text_content() == expected
    assert first.locator(".who").text_content().startswith(job.fine_tuned_model)

    checkpoint = checkpoints[-1].fine_tuned_model_checkpoint
    page.select_option("#chat-model", checkpoint)
    page.uncheck("#chat-stream")
    second = send(page, "And 2 + 2?")
    conversation += [
        {"role": "assistant", "content": expected},
        {"role": "user", "content": "And 2 + 2?"},
    ]
    assert second.locator(".text").text_content() == api_reply(client, checkpoint, conversation)
    assert second.locator(".who").text_content().startswith(checkpoint)

    # a refused request is shown, and the message waits in the box to be sent again
    page.fill("#chat-temperature", "3")
    page.fill("#chat-input", "Too hot")
    page.click("#chat-send")
    sync_api.expect(page.locator("#chat-error")).to_contain_text("temperature")
    assert page.input_value("#chat-input") == "Too hot"
    assert page.locator("#chat-log .msg").count() == 4


def test_promote_a_checkpoint_from_the_job_page(
    page: Any, server: Server, client: openai.OpenAI, job_id: str
) -> None:
    page.goto(url(server, f"/jobs/{job_id}"))
    status_is(page, "succeeded")
    first, last = sorted(
        client.fine_tuning.jobs.checkpoints.list(job_id).data, key=lambda c: c.step_number
    )

    def row(checkpoint: Any) -> Any:
        return page.locator(f"#checkpoints tbody tr:has(td[data-checkpoint='{checkpoint.id}'])")

    served = row(last).locator(".served")
    sync_api.expect(served).to_have_text("fine-tuned model")  # the last, until one is promoted
    sync_api.expect(row(last).locator("button.promote")).to_be_disabled()
    row(first).locator("button.promote").click()
    sync_api.expect(row(first).locator(".served")).to_have_text("fine-tuned model")
    sync_api.expect(row(last).locator(".served")).to_have_count(0)
    assert (
        getattr(client.fine_tuning.jobs.retrieve(job_id), "promoted_checkpoint", None) == first.id
    )

    # the chat panel's fine-tuned model now names the promoted step
    row(first).get_by_role("link", name="Chat", exact=True).click()
    page.wait_for_url(f"**/jobs/{job_id}/chat?model=*")
    page.wait_for_selector("body[data-ready=true]")
    label = page.locator("#chat-model option").first.text_content()
    assert label.startswith(f"Fine-tuned model (step {first.step_number})")
    assert page.input_value("#chat-model") == first.fine_tuned_model_checkpoint
