"""Chained jobs through the service: a `method: supervised` job on OpenAI's SFT rows (ending with
the assistant's answer), its `fine_tuned_model` as the base of a reinforcement job, a checkpoint
model (`…:ckpt-step-N`) as the base of a third; another project cannot name them; and
`openrft export` of an `ft:` id. The LoRA-on-LoRA load itself (merge the earlier adapter, train
a new one on top) is checked on weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
from tests.service.conftest import (
    EXACT,
    Server,
    arithmetic_rows,
    jsonl,
    tiny_training,
    wait_for,
)
from transformers import AutoModelForCausalLM
from typer.testing import CliRunner

from openrft.cli import app
from openrft.cli.service_models import service_checkpoint
from openrft.inference.backends import load_model as serve_load
from openrft.service.resources import checkpoint_path
from openrft.training.models import known_deprecations_silenced, load_causal_lm

pytestmark = pytest.mark.slow

FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from openrft.training.models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny"))


def sft_rows(n: int) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"What is {i} + {i % 3}?"},
                {"role": "assistant", "content": str(i + i % 3)},
            ]
        }
        for i in range(n)
    ]


def upload(client: openai.OpenAI, rows: list[dict[str, Any]]) -> str:
    return client.files.create(file=("rows.jsonl", jsonl(rows)), purpose="fine-tune").id


def supervised(client: openai.OpenAI, model: str, rows: list[dict[str, Any]]) -> Any:
    return client.fine_tuning.jobs.create(
        model=model,
        training_file=upload(client, rows),
        validation_file=upload(client, rows[:4]),
        suffix="sft",
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"batch_size": 2, "learning_rate_multiplier": 2}},
        },
        extra_body={"openrft": {"max_steps": 3, "lora": {"r": 4, "alpha": 8}}},
    )


def reinforcement(client: openai.OpenAI, model: str, steps: int = 2) -> Any:
    return client.fine_tuning.jobs.create(
        model=model,
        training_file=upload(client, arithmetic_rows(8)),
        validation_file=upload(client, arithmetic_rows(4)),
        suffix="rft",
        method={"type": "reinforcement", "reinforcement": {"grader": EXACT}},  # type: ignore[typeddict-item]
        extra_body={"openrft": tiny_training(steps, checkpoints=1)},
    )


def finish(server: Server, client: openai.OpenAI, job_id: str) -> Any:
    wait_for(lambda: client.fine_tuning.jobs.retrieve(job_id).status in FINAL)
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert job.status == "succeeded", (job.error, (server.data_dir / "server.log").read_text())
    return job


def stored_config(server: Server, job_id: str) -> dict[str, Any]:
    store = server.store()
    try:
        row = store.job(job_id)
    finally:
        store.engine.dispose()
    assert row is not None
    config = row["config"]
    return dict(json.loads(config) if isinstance(config, str) else config)


def stored_checkpoint(server: Server, name: str) -> str:
    """The server path a checkpoint model names (what the worker trains from)."""
    store = server.store()
    try:
        path = checkpoint_path(store, name, project="alpha")
    finally:
        store.engine.dispose()
    assert path is not None
    return path


def weights(model: Any) -> dict[str, Any]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def adapter_base(checkpoint: str) -> str:
    config = json.loads((Path(checkpoint) / "adapter_config.json").read_text())
    return str(config["base_model_name_or_path"])


def test_sft_then_rft_then_a_checkpoint_chain_through_the_api(
    make_server: Any, tiny_model: str, tmp_path: Path
) -> None:
    server: Server = make_server(workers=1)
    server.register_model("tiny", tiny_model)
    client = server.client()

    sft = finish(server, client, supervised(client, "tiny", sft_rows(8)).id)
    assert sft.fine_tuned_model == f"ft:tiny:sft:{sft.id.removeprefix('ftjob-')}"
    assert sft.method.type == "supervised"
    (sft_checkpoint,) = client.fine_tuning.jobs.checkpoints.list(sft.id)
    assert sft_checkpoint.step_number == 3
    sft_path = stored_checkpoint(server, sft_checkpoint.fine_tuned_model_checkpoint)

    rft = finish(server, client, reinforcement(client, sft.fine_tuned_model).id)
    assert stored_config(server, rft.id)["model"] == sft_path  # the base is the SFT result
    assert rft.model == sft.fine_tuned_model
    assert rft.fine_tuned_model == f"ft:tiny:rft:{rft.id.removeprefix('ftjob-')}"
    (rft_checkpoint,) = client.fine_tuning.jobs.checkpoints.list(rft.id)
    rft_path = stored_checkpoint(server, rft_checkpoint.fine_tuned_model_checkpoint)
    assert adapter_base(rft_path) == sft_path  # the new adapter stacks on the merged SFT one

    third = reinforcement(client, rft_checkpoint.fine_tuned_model_checkpoint, steps=1)
    third = finish(server, client, third.id)
    assert stored_config(server, third.id)["model"] == rft_path

    other = server.client("beta")
    with pytest.raises(openai.BadRequestError) as refused:
        reinforcement(other, sft.fine_tuned_model)
    assert "unknown model" in str(refused.value)  # another project's id reads as unknown

    (third_checkpoint,) = client.fine_tuning.jobs.checkpoints.list(third.id)
    third_path = stored_checkpoint(server, third_checkpoint.fine_tuned_model_checkpoint)
    out = tmp_path / "exported"
    command = ["export", third.fine_tuned_model, "--merge", str(out)]
    result = CliRunner().invoke(app, [*command, "--data-dir", str(server.data_dir)])
    assert result.exit_code == 0, result.output
    exported = weights(AutoModelForCausalLM.from_pretrained(out))  # no peft needed
    chain = weights(load_causal_lm(third_path))  # tiny + SFT + RFT + third's adapters
    assert exported.keys() == chain.keys()
    assert all(torch.equal(v, chain[k]) for k, v in exported.items())
    base = weights(AutoModelForCausalLM.from_pretrained(tiny_model))
    assert any(not torch.equal(v, base[k]) for k, v in exported.items())
    # the model server (chat, `openrft serve-model ft:…`) loads the chain the same way
    served, _ = serve_load(str(service_checkpoint(third.fine_tuned_model, server.data_dir, None)))
    assert all(torch.equal(v, chain[k]) for k, v in weights(served).items())


def test_a_supervised_job_refuses_rows_without_the_answer(
    make_server: Any, tiny_model: str
) -> None:
    server: Server = make_server(workers=0)
    server.register_model("tiny", tiny_model)
    client = server.client()
    job = supervised(client, "tiny", arithmetic_rows(8))  # prompts only: nothing to learn
    wait_for(lambda: client.fine_tuning.jobs.retrieve(job.id).status == "failed")
    failed = client.fine_tuning.jobs.retrieve(job.id)
    assert failed.error.code == "invalid_training_file"
    assert "not 'assistant'" in failed.error.message


def random_adapter(model: Any, target: Path, seed: int) -> Path:
    """A LoRA adapter on `model` with non-zero random weights, saved at `target`."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator))
    peft_model.save_pretrained(target)
    return target


def merged(base: str, *adapters: Path) -> dict[str, Any]:
    """`base` with each adapter merged in turn, by hand."""
    from peft import PeftModel

    model = AutoModelForCausalLM.from_pretrained(base)
    for adapter in adapters:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return weights(model)


def test_lora_on_lora_merges_the_earlier_adapter_then_stacks_the_new_one(
    tiny_model: str, tmp_path: Path
) -> None:
    with known_deprecations_silenced():  # peft reads a deprecated transformers attribute
        first = random_adapter(AutoModelForCausalLM.from_pretrained(tiny_model), tmp_path / "a", 1)
        second = random_adapter(load_causal_lm(str(first)), tmp_path / "b", 2)
        loaded = weights(load_causal_lm(str(second)))
        both, only_second = merged(tiny_model, first, second), merged(tiny_model, second)
    assert adapter_base(str(second)) == str(first)  # the chain is recorded in the adapter
    assert all(torch.allclose(v, both[k]) for k, v in loaded.items())
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(loaded[q], merged(tiny_model)[q])
    assert not torch.allclose(loaded[q], only_second[q])  # the first adapter is not lost


def test_export_of_an_unknown_ft_id_says_where_it_looked(tmp_path: Path) -> None:
    from openrft.cli.exits import EXIT_UNAVAILABLE

    command = ["export", "ft:tiny::nope", "--merge", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*command, "--data-dir", str(tmp_path / "none")])
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "no service data dir" in result.output
    assert not (tmp_path / "none").exists()  # looking does not create a store
