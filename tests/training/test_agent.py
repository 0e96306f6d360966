"""Agent RFT: a tiny model trained for a few steps with multi-turn rollouts whose tool calls
reach a real tool server on 127.0.0.1 (or a python tool in the sandbox).

The model is a tiny random Llama taught, in a few seconds of supervised steps, to call `lookup`
and then answer: a random model never writes a well-formed tool call, and these tests are
about what happens once it does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi import FastAPI, Request
from fastapi.responses import Response
from transformers import AutoModelForCausalLM, AutoTokenizer

from openrft.graders import GradeContext
from openrft.inference.local import serve_in_thread
from openrft.training.agent import (
    HERMES_TEMPLATE,
    Agent,
    agent_rewards,
    prepare_tokenizer,
    rollout,
)
from openrft.training.callbacks import build_run_callback
from openrft.training.config import TrainingConfig
from openrft.training.dialects import load
from openrft.training.evaluate import build_evaluator
from openrft.training.grpo import build_grpo_trainer, run
from openrft.training.models import build_tiny_model, known_deprecations_silenced
from openrft.training.records import load_rows
from openrft.training.rewards import GraderReward
from openrft.training.rundir import eval_samples_path, read_eval_samples

LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "",
        "parameters": {"type": "object", "properties": {}},
    },
}
CODES = {"a": "7", "b": "8", "c": "9", "d": "6"}
# the answer is right when it is what the tool returned for the row
GRADER = {
    "type": "string_check",
    "name": "copied",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.code }}",
    "operation": "eq",
}
PYTHON_LOOKUP = {
    "type": "python",
    "name": "lookup",
    "description": "",
    "parameters": {"type": "object", "properties": {}},
    "source": "def lookup(item):\n    return item['code']\n",
}


@pytest.fixture(autouse=True)
def _known_deprecations() -> Iterator[None]:
    with known_deprecations_silenced():  # as `grpo.run` does for the trainer built here
        yield


def _conversation(key: str) -> list[dict[str, Any]]:
    call = {"type": "function", "function": {"name": "lookup", "arguments": {}}}
    return [
        {"role": "user", "content": f"Code of {key}?"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": "lookup", "content": CODES[key]},
        {"role": "assistant", "content": CODES[key]},
    ]


@pytest.fixture(scope="module")
def agent_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama that calls `lookup` and then answers (memorised from two dialogues)."""
    target = build_tiny_model(tmp_path_factory.mktemp("agent") / "model", hidden=64)
    config_path = target / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["max_position_embeddings"] = 4096  # the tool prompt alone is ~450 byte-level tokens
    config_path.write_text(json.dumps(config), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(target)
    prepare_tokenizer(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(target)
    texts = [
        tokenizer.apply_chat_template(_conversation(k), tools=[LOOKUP], tokenize=False)
        for k in "ab"
    ]
    batch = tokenizer(texts, return_tensors="pt", add_special_tokens=False)["input_ids"]
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    # until memorised (~160 steps), not a fixed count: 120 steps left the loss at ~0.15 on an
    # AVX512 CPU, where one dialogue's greedy call came out as broken JSON and no rollout
    # called the tool
    for _ in range(600):
        loss = model(input_ids=batch, labels=batch).loss
        if loss.item() < 0.01:
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.01, f"the agent model did not memorise its dialogues: {loss.item()}"
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def codes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("agent-data") / "codes.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"Code of {k}?"}], "code": code}
        for k, code in CODES.items()
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


class LookupServer:
    """A tool server answering `lookup` with the row's code; records every body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.failing = False
        self.app = FastAPI()
        self.app.post("/lookup")(self.lookup)

    async def lookup(self, request: Request) -> Any:
        body: dict[str, Any] = await request.json()
        self.bodies.append(body)
        if self.failing:
            return Response("down", status_code=503)
        output = body["item"]["code"]
        return {"type": "function_call_output", "call_id": body["call_id"], "output": output}


@pytest.fixture
def server() -> Iterator[tuple[LookupServer, str]]:
    tools = LookupServer()
    with serve_in_thread(tools.app) as url:
        yield tools, url


def agent_config(
    model: Path, data: Path, tools: list[dict[str, Any]], **extra: Any
) -> TrainingConfig:
    body: dict[str, Any] = {
        "model": str(model),
        "training_file": str(data),
        "validation_file": str(data),
        "grader": GRADER,
        "tools": tools,
        "max_episode_steps": 2,
        "max_steps": 2,
        "batch_size": 2,
        "num_generations": 2,
        "max_completion_length": 160,
        "learning_rate": 1e-3,
        "eval_interval": 1,
        "eval_samples": 2,
        "n_checkpoints": 1,
        "preflight": {"enabled": False},
    }
    return load(body | extra, dialect="native")


def test_rollouts_call_the_tool_server_with_the_documented_body_and_see_its_answer(
    agent_model: Path,
    codes_file: Path,
    server: tuple[LookupServer, str],
    tmp_path: Path,
    read_lines: Any,
) -> None:
    tools, url = server
    spec = {"name": "lookup", "server_url": f"{url}/lookup"}
    config = agent_config(agent_model, codes_file, [spec])
    result = run(config, tmp_path / "run")
    assert result.steps == 2
    items = [{"code": c} for c in CODES.values()]
    assert tools.bodies, "no call reached the tool server"
    for body in tools.bodies:
        assert set(body) == {"type", "name", "arguments", "call_id", "id", "item", "trace_id"}
        assert body["type"] == "function_call"
        assert body["name"] == "lookup"
        assert json.loads(body["arguments"]) == {}
        assert body["item"] in items
    # the training steps' metrics count the calls, overall and per tool
    lines = [line for line in read_lines(tmp_path / "run") if line["step"] > 0]
    section = lines[0]["tools"]
    assert section["rollouts"] == 4
    assert section["calls_per_rollout"] > 0
    assert section["per_tool"]["lookup"]["calls"] >= 1
    assert section["tool_tokens_per_call"] > 0
    assert section["dropped_rollouts"] == 0
    assert lines[0]["trl"]["tools/call_frequency"] > 0
    # evaluation rows are whole rollouts: the tool's answer is in the trajectory
    [sample, *_] = read_eval_samples(eval_samples_path(tmp_path / "run", 2))
    tool_turns = [m for m in sample["trajectory"] if m["role"] == "tool"]
    assert tool_turns
    assert tool_turns[0]["content"] in CODES.values()
    assert sample["turns"] >= 2
    assert sample["tool_calls"][0]["name"] == "lookup"
    # the checkpoint carries the tool template, so the model servers render tools the same way
    checkpoint = result.best_checkpoint or result.checkpoints[-1]
    saved = AutoTokenizer.from_pretrained(checkpoint)
    assert saved.chat_template == HERMES_TEMPLATE


def test_a_python_tool_runs_in_the_sandbox_during_rollouts(
    agent_model: Path, codes_file: Path, tmp_path: Path, read_lines: Any
) -> None:
    config = agent_config(agent_model, codes_file, [PYTHON_LOOKUP], eval_interval=None)
    run(config, tmp_path / "run")
    section = next(line for line in read_lines(tmp_path / "run") if line["step"] > 0)["tools"]
    assert section["per_tool"]["lookup"]["calls"] >= 1
    assert section["error_rate"] == 0.0  # the function got the row's item and answered
    samples = read_eval_samples(eval_samples_path(tmp_path / "run", 0))
    outputs = [m["content"] for s in samples for m in s["trajectory"] if m["role"] == "tool"]
    assert outputs
    assert set(outputs) <= set(CODES.values())


def _trainer(config: TrainingConfig, out: Path) -> Any:
    model = AutoModelForCausalLM.from_pretrained(config.model)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    context = GradeContext()
    agent = Agent.of(config, context)
    prepare_tokenizer(tokenizer)
    rows = load_rows(config.training_file)
    reward = GraderReward(config.grader, context, group_size=config.num_generations)
    evaluator = build_evaluator(config, model, tokenizer, rows, reward, agent)
    callback = build_run_callback(config, out, reward, evaluator, resumed=False, progress=False)
    return build_grpo_trainer(config, model, tokenizer, rows, reward, callback, out, agent=agent)


@pytest.mark.parametrize("prefix_sharing", [False, True])
def test_tool_turns_are_masked_out_of_the_loss_and_their_gradient_is_zero(
    agent_model: Path,
    codes_file: Path,
    server: tuple[LookupServer, str],
    tmp_path: Path,
    prefix_sharing: bool,
) -> None:
    _, url = server
    spec = {"name": "lookup", "server_url": f"{url}/lookup"}
    config = agent_config(agent_model, codes_file, [spec], prefix_sharing=prefix_sharing)
    trainer = _trainer(config, tmp_path)
    batch = [trainer.train_dataset[i] for i in (0, 0, 1, 1)]
    torch.manual_seed(1)
    inputs = trainer._generate_and_score_completions(batch)
    tool_mask = inputs["tool_mask"]
    assert (tool_mask == 0).any(), "no rollout called the tool"
    # the tool's answer reached the model's context as token ids, in the tool turn
    tokenizer = trainer.processing_class
    for row in range(tool_mask.shape[0]):
        tool_ids = inputs["completion_ids"][row][tool_mask[row] == 0].tolist()
        if tool_ids:
            assert "<tool_response>" in tokenizer.decode(tool_ids)
    captured: dict[str, torch.Tensor] = {}
    score = trainer._get_per_token_logps_and_entropies

    def keep(*args: Any, **kwargs: Any) -> Any:
        logps, entropies, aux = score(*args, **kwargs)
        logps.retain_grad()
        captured["logps"] = logps
        return logps, entropies, aux

    trainer._get_per_token_logps_and_entropies = keep
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by `Trainer.train`'s loop
    loss = trainer.compute_loss(trainer.model, inputs)
    loss.backward()
    grad = captured["logps"].grad
    assert grad is not None
    assert torch.all(grad[tool_mask == 0] == 0)
    trained = (tool_mask == 1) & (inputs["completion_mask"] == 1)
    if inputs["advantages"].abs().sum() > 0:
        assert grad[trained].abs().sum() > 0


def test_a_rollout_whose_tool_server_stays_down_is_dropped_and_counted(
    agent_model: Path, codes_file: Path, server: tuple[LookupServer, str], tmp_path: Path
) -> None:
    tools, url = server
    tools.failing = True
    spec = {"name": "lookup", "server_url": f"{url}/lookup", "timeout": 5}
    config = agent_config(agent_model, codes_file, [spec])
    trainer = _trainer(config, tmp_path)
    trainer.tool_stats.__init__()
    batch = [trainer.train_dataset[i] for i in (0, 0, 1, 1)]
    torch.manual_seed(1)
    inputs = trainer._generate_and_score_completions(batch)
    dropped = [episode.dropped for episode in trainer.environments]
    assert any(dropped)
    # three retries on 5xx, then the call is given up: 4 attempts per dropped call
    assert len(tools.bodies) == 4 * sum(dropped)
    for row, gone in enumerate(dropped):
        if gone:
            assert inputs["completion_mask"][row].sum() == 0  # nothing of it is trained
            assert inputs["advantages"][row] == 0
    # the loss averages over the tokens it trains: the dropped rollouts' are not counted
    trained = inputs["completion_mask"] * inputs["tool_mask"]
    assert int(inputs["num_items_in_batch"]) == int(trained.sum())
    section = trainer.tool_stats.take()
    assert section["dropped_rollouts"] == sum(dropped)
    assert section["per_tool"]["lookup"]["dropped"] >= 1


def test_a_dropped_rollouts_reward_is_its_groups_mean_of_the_others() -> None:
    rewards = torch.tensor([[1.0, 0.5], [0.0, 0.0], [0.5, 1.0], [1.0, 1.0]])
    out = agent_rewards(rewards, [False, True, True, True], group_size=2)
    assert out.tolist() == [[1.0, 0.5], [1.0, 0.5], [0.0, 0.0], [0.0, 0.0]]
    assert agent_rewards(rewards, [False] * 4, 2) is rewards


def test_evaluation_rollouts_stop_at_max_episode_steps(
    agent_model: Path, codes_file: Path, server: tuple[LookupServer, str]
) -> None:
    tools, url = server
    spec = {"name": "lookup", "server_url": f"{url}/lookup"}
    config = agent_config(agent_model, codes_file, [spec], max_episode_steps=1)
    model = AutoModelForCausalLM.from_pretrained(agent_model)
    tokenizer = AutoTokenizer.from_pretrained(agent_model)
    agent = Agent.of(config, GradeContext())
    rows = load_rows(codes_file)
    done = rollout(model, tokenizer, agent, rows[:2], max_completion_length=64)
    for trajectory in done:
        roles = [m["role"] for m in trajectory.messages]
        assert roles[:2] == ["assistant", "tool"]  # it called, and saw the answer
        assert roles.count("tool") <= 1
        assert trajectory.episode is not None
        assert len(trajectory.episode.calls) <= 1
    assert {b["item"]["code"] for b in tools.bodies} <= {"7", "8"}


def test_openai_job_body_takes_tools_and_max_episode_steps(codes_file: Path) -> None:
    body = {
        "model": "smollm2-135m-instruct",
        "training_file": str(codes_file),
        "method": {
            "type": "reinforcement",
            "reinforcement": {
                "grader": GRADER,
                "tools": [
                    {
                        "name": "lookup",
                        "server_url": "https://tools.example.com/lookup",
                        "headers": {"Authorization": "Bearer ${secret:TOOL_KEY}"},
                    }
                ],
                "max_episode_steps": 5,
            },
        },
    }
    config = load(body, dialect="openai")
    assert config.max_episode_steps == 5
    [tool] = config.tools
    assert tool.name == "lookup"
    assert tool.headers["Authorization"].endswith("${secret:TOOL_KEY}")


def test_bad_tools_are_refused_at_their_json_path(codes_file: Path) -> None:
    from openrft.errors import ConfigError

    base = {"training_file": str(codes_file), "grader": GRADER}
    with pytest.raises(ConfigError) as caught:
        load(base | {"tools": [{"name": "reset", "server_url": "http://x"}]}, dialect="native")
    assert "reset" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load(
            base | {"tools": [PYTHON_LOOKUP | {"source": "def other():\n    pass\n"}]},
            dialect="native",
        )
    assert "$.tools[0]" in str(caught.value)
    assert "def lookup" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load(base | {"tools": [PYTHON_LOOKUP, PYTHON_LOOKUP]}, dialect="native")
    assert "unique" in str(caught.value)


def test_graders_see_the_trajectory_the_final_answer_and_each_calls_output() -> None:
    from openrft.graders import grade, load_grader
    from openrft.graders.sample import Sample

    messages = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "lookup", "arguments": {}}}],
        },
        {"role": "tool", "name": "lookup", "content": "7"},
        {"role": "assistant", "content": "The code is 7"},
    ]
    sample = Sample.from_trajectory(messages)
    assert sample.output_text == "The code is 7"
    assert sample.output_tools == [
        {"type": "function", "function": {"name": "lookup", "arguments": "{}"}, "output": "7"}
    ]
    assert sample.turns == 2
    namespace = sample.namespace()
    assert namespace["trajectory"][1] == {"role": "tool", "name": "lookup", "content": "7"}
    assert namespace["trajectory"][0]["tool_calls"][0]["function"]["arguments"] == "{}"
    copied = load_grader(
        {
            "type": "string_check",
            "name": "copied",
            "operation": "eq",
            "input": "{{ sample.output_tools[0].output }}",
            "reference": "{{ item.code }}",
        }
    )
    assert grade(copied, sample, {"code": "7"}).reward == 1.0
    source = (
        "def grade(sample, item):\n"
        "    tools = [m for m in sample['trajectory'] if m['role'] == 'tool']\n"
        "    return 1.0 if sample['turns'] == 2 and tools[0]['content'] == item['code'] else 0.0\n"
    )
    python = load_grader({"type": "python", "name": "p", "source": source})
    assert grade(python, sample, {"code": "7"}).reward == 1.0
    # a single completion's namespace is unchanged
    assert "trajectory" not in Sample.from_text("7").namespace()


def test_the_warm_up_prompts_show_the_agents_tools(codes_file: Path) -> None:
    from openrft.training.records import sft_records

    config = agent_config(
        Path("unused"), codes_file, [PYTHON_LOOKUP], sft_warmup={"completion": "{{ item.code }}"}
    )
    agent = Agent.of(config, GradeContext())
    rows = load_rows(codes_file)
    records = sft_records(rows, "{{ item.code }}", lambda r: agent.schemas[agent.environment(r)])
    assert json.loads(records[0]["tools"])[0]["function"]["name"] == "lookup"
    assert records[0]["completion"] == [{"role": "assistant", "content": "7"}]
    assert "tools" not in sft_records(rows, "{{ item.code }}")[0]  # rows without tools


def test_the_trained_agent_is_driven_from_the_openai_sdk_with_the_same_tools(
    agent_model: Path, codes_file: Path, tmp_path: Path
) -> None:
    """`openrft serve`'s model server renders the checkpoint's saved tool template: the agent
    calls `lookup` through chat completions, and answers once the SDK sends the result back."""
    import openai

    from openrft.inference.app import create_app
    from openrft.inference.backends import TransformersBackend

    config = agent_config(
        agent_model, codes_file, [PYTHON_LOOKUP], max_steps=1, eval_interval=None, lora=None
    )
    result = run(config, tmp_path / "run")
    checkpoint = result.checkpoints[-1]
    messages: list[Any] = [{"role": "user", "content": "Code of a?"}]
    with serve_in_thread(create_app(TransformersBackend(checkpoint, max_tokens=64))) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)
        first = client.chat.completions.create(
            model="agent",
            messages=messages,
            tools=[LOOKUP],
            temperature=0,  # type: ignore[list-item]
        )
        [call] = first.choices[0].message.tool_calls or []
        assert first.choices[0].finish_reason == "tool_calls"
        assert call.function.name == "lookup"  # type: ignore[union-attr]
        messages += [
            first.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "7"},
        ]
        second = client.chat.completions.create(
            model="agent",
            messages=messages,
            tools=[LOOKUP],
            temperature=0,  # type: ignore[list-item]
        )
        client.close()
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content in set(CODES.values())


ENVIRONMENT = {
    "source": (
        "class Environment:\n"
        "    def reset(self, item):\n"
        "        self.code, self.calls = item['code'], 0\n"
        "    def lookup(self):\n"
        "        self.calls += 1\n"
        "        return self.code\n"
        "    def reward(self):\n"
        "        return 1.0 / self.calls if self.calls else 0.0\n"
    ),
    "tools": [{"name": "lookup", "description": ""}],
}


def test_a_stateful_environment_with_a_reward_trains_without_a_grader(
    agent_model: Path, codes_file: Path, tmp_path: Path, read_lines: Any
) -> None:
    body = {
        "model": str(agent_model),
        "training_file": str(codes_file),
        "validation_file": str(codes_file),
        "environment": ENVIRONMENT,
        "max_episode_steps": 2,
        "max_steps": 1,
        "batch_size": 2,
        "num_generations": 2,
        "max_completion_length": 160,
        "eval_interval": None,
        "eval_samples": 2,
        "n_checkpoints": 1,
        "preflight": {"enabled": False},
    }
    config = load(body, dialect="native")
    assert config.grader is not None
    assert config.grader.name == "environment"
    run(config, tmp_path / "run")
    line = next(line for line in read_lines(tmp_path / "run") if line["step"] == 1)
    assert line["tools"]["per_tool"]["lookup"]["calls"] >= 1
    samples = read_eval_samples(eval_samples_path(tmp_path / "run", 0))
    for sample in samples:
        calls = len(sample["tool_calls"])
        assert sample["environment_reward"] == (1.0 / calls if calls else 0.0)
        assert sample["reward"] == sample["environment_reward"]  # the default grader


def test_the_preflight_samples_whole_rollouts(
    agent_model: Path, codes_file: Path, server: tuple[LookupServer, str]
) -> None:
    from openrft.training import preflight

    tools, url = server
    spec = {"name": "lookup", "server_url": f"{url}/lookup"}
    config = agent_config(
        agent_model, codes_file, [spec], preflight={"prompts": 2, "min_signal_share": 0.0}
    )
    model = AutoModelForCausalLM.from_pretrained(agent_model)
    tokenizer = AutoTokenizer.from_pretrained(agent_model)
    context = GradeContext()
    agent = Agent.of(config, context)
    report = preflight.preflight(config, model, tokenizer, load_rows(codes_file), context, agent)
    assert tools.bodies  # the rollouts called the tool
    assert report.prompts == 2
    assert report.samples == 4
    shown = [s["completion"] for s in report.examples]
    assert all("<tool_call>" not in text for text in shown)  # the final answers, not the calls


def test_rollouts_cut_off_at_max_completion_length_are_counted(
    agent_model: Path, codes_file: Path, server: tuple[LookupServer, str], tmp_path: Path
) -> None:
    """The budget spans every turn: a call that leaves no room for the tool's answer ends the
    rollout there, and the rollouts that hit the limit are counted."""
    _, url = server
    spec = {"name": "lookup", "server_url": f"{url}/lookup"}
    config = agent_config(agent_model, codes_file, [spec], max_completion_length=48)
    trainer = _trainer(config, tmp_path)
    trainer.tool_stats.__init__()
    batch = [trainer.train_dataset[i] for i in (0, 0, 1, 1)]
    torch.manual_seed(1)
    inputs = trainer._generate_and_score_completions(batch)
    assert inputs["completion_ids"].shape[1] <= 48
    section = trainer.tool_stats.take()
    assert section["truncated_rollouts"] >= 1
    assert section["tool_tokens_per_call"] == 0  # no answer fitted: none was appended


def test_what_is_trained_is_what_was_sampled_token_for_token(
    agent_model: Path, codes_file: Path, server: tuple[LookupServer, str], tmp_path: Path
) -> None:
    """No re-tokenization drift: the model's turns in the training batch are the very ids each
    turn sampled (TRL appends tool turns as ids; nothing is decoded and encoded again)."""
    _, url = server
    spec = {"name": "lookup", "server_url": f"{url}/lookup"}
    config = agent_config(agent_model, codes_file, [spec])
    trainer = _trainer(config, tmp_path)
    sampled: list[list[int]] = []
    generate = trainer._generate_single_turn

    def record(prompt_ids: Any, *args: Any, **kwargs: Any) -> Any:
        ids, logprobs = generate(prompt_ids, *args, **kwargs)
        sampled.extend(list(x) for x in ids)
        return ids, logprobs

    trainer._generate_single_turn = record
    batch = [trainer.train_dataset[i] for i in (0, 0, 1, 1)]
    torch.manual_seed(1)
    inputs = trainer._generate_and_score_completions(batch)
    pad = trainer.processing_class.pad_token_id
    trained: list[list[int]] = []
    for row in range(inputs["completion_ids"].shape[0]):
        ids = inputs["completion_ids"][row].tolist()
        mask = inputs["tool_mask"][row].tolist()
        length = int(inputs["completion_mask"][row].sum())
        segment: list[int] = []
        for token, own in zip(ids[:length], mask[:length], strict=True):
            if own:
                segment.append(token)
            elif segment:
                trained.append(segment)
                segment = []
        trained += [segment] if segment else []
    turns = [[t for t in s if t != pad] or s for s in sampled]
    assert len(trained) > len(batch)  # some rollouts had a second turn
    for segment in trained:
        assert any(segment == turn[: len(segment)] for turn in turns), segment


def test_the_preflight_of_an_environment_job_is_scored_by_its_reward(
    agent_model: Path, codes_file: Path
) -> None:
    from openrft.training import preflight

    body = {
        "model": str(agent_model),
        "training_file": str(codes_file),
        "environment": ENVIRONMENT,
        "max_episode_steps": 2,
        "num_generations": 2,
        "max_completion_length": 160,
        "preflight": {"prompts": 2, "min_signal_share": 0.0},
    }
    config = load(body, dialect="native")
    model = AutoModelForCausalLM.from_pretrained(agent_model)
    tokenizer = AutoTokenizer.from_pretrained(agent_model)
    agent = Agent.of(config, GradeContext())
    try:
        report = preflight.preflight(config, model, tokenizer, load_rows(codes_file), None, agent)
    finally:
        agent.toolbox.close()
    # the memorised model calls lookup once and answers: reward() is 1.0 for such a rollout
    assert report.reward["mean"] > 0
