"""Agent RFT on TRL: multi-turn rollouts whose tool calls reach the job's tools.

The trainer is TRL's own tool loop (`GRPOTrainer(environment_factory=...)`): TRL samples, parses
each turn's tool calls with the tokenizer's response parser, calls the rollout's environment
methods, appends each result as a `tool` turn by concatenating its token ids (no
re-tokenization of what was sampled), samples again, and stops at an answer without tool calls,
at `max_tool_calling_iterations` (our `max_episode_steps`) or when the next turn would pass
`max_completion_length`. Its `tool_mask` keeps the tool turns' tokens out of the loss. This
module supplies what TRL needs for that:

- `prepare_tokenizer`: a chat template that renders tool calls and tool results, and a response
  parser for it. A model whose template cannot (SmolLM2, the tiny test models), or whose
  template TRL has no parser for, gets `HERMES_TEMPLATE` (ChatML with Hermes-style
  `<tool_call>` blocks and `<tool_response>` turns, as Qwen2.5 writes them; no default system
  prompt). It is saved with every checkpoint, so the model servers render tools the same way.
- `Agent`: the job's `Toolbox`, the per-row tool schemas, and TRL's `environment_factory`
  (one `tools.episode.Episode` class per distinct set of schemas, so each row is shown its own
  tools) plus the `environment` column that routes a row to its set.
- `rollout`: the same loop for evaluation (greedy by default) on held-out rows, returning each
  row's trajectory.
- `ToolStats`: per step, the calls per rollout, tool-output tokens per call, latency, errors
  and dropped rollouts, overall and per tool (`metrics.jsonl`'s `tools` section).

Dropped rollouts (a tool server failing after its retries) are left out of the loss: their
tokens are masked, and their reward is set to their group's mean over the rollouts that were
not dropped, so the others' advantages do not move (`grpo.py`).
"""

from __future__ import annotations

import copy
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from statistics import fmean
from typing import Any

from openrft.data import Row
from openrft.errors import ConfigError, Problem
from openrft.graders.context import GradeContext
from openrft.tools.episode import CallRecord, Episode, Toolbox, episode_class, toolset_key
from openrft.training.config import TrainingConfig
from openrft.training.sampling import decode

HERMES_TEMPLATE = (
    "{%- if tools %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    '{{- "# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n'
    'You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}'
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    '{{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and '
    'arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": '
    '<function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}'
    "{%- elif messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'user' or (message.role == 'system' and not loop.first) "
    "or (message.role == 'assistant' and not message.tool_calls) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant' }}"
    "{%- if message.content %}{{- '\\n' + message.content }}{%- endif %}"
    "{%- for tool_call in message.tool_calls %}"
    "{%- if tool_call.function is defined %}{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'\\n<tool_call>\\n{"name": "\' + tool_call.name + \'", "arguments": \' }}'
    "{%- if tool_call.arguments is string %}{{- tool_call.arguments }}"
    "{%- else %}{{- tool_call.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- elif message.role == 'tool' %}"
    "{%- if loop.index0 == 0 or messages[loop.index0 - 1].role != 'tool' %}"
    "{{- '<|im_start|>user' }}{%- endif %}"
    "{{- '\\n<tool_response>\\n' + message.content + '\\n</tool_response>' }}"
    "{%- if loop.last or messages[loop.index0 + 1].role != 'tool' %}"
    "{{- '<|im_end|>\\n' }}{%- endif %}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
"""ChatML with Hermes tool calls (Qwen2.5's layout, without its default system prompt)."""
END_OF_TURN = "<|im_end|>"


def hermes_response_template() -> dict[str, Any]:
    """The response parser for `HERMES_TEMPLATE`: TRL's Qwen3 parser without its `<think>`
    field (a `<think>` span stays in the answer's text, where SeekrFlow's format grader looks)."""
    from trl.chat_template_utils import qwen3_template

    template: dict[str, Any] = copy.deepcopy(qwen3_template)
    template["fields"].pop("reasoning_content", None)
    return template


def prepare_tokenizer(tokenizer: Any) -> str:
    """Make `tokenizer` render and parse tool calls; says what it did (the run's setup line)."""
    from trl.chat_template_utils import add_response_schema, supports_tool_calling

    has_parser = any(
        getattr(tokenizer, name, None) is not None
        for name in ("response_template", "response_schema")
    )
    if supports_tool_calling(tokenizer):
        if has_parser:
            return "the model's chat template and response parser"
        try:
            add_response_schema(tokenizer)
            return "the model's chat template, with TRL's response parser for it"
        except ValueError:
            pass  # a template TRL cannot parse: ours replaces it
    if tokenizer.convert_tokens_to_ids(END_OF_TURN) in (None, tokenizer.unk_token_id):
        raise ConfigError(
            [
                Problem(
                    "$.tools",
                    "the model's chat template cannot render tool calls, and its tokenizer has "
                    f"no {END_OF_TURN} token for OpenRFT's ChatML tool template: use a model "
                    "whose template takes `tools` (Qwen, Llama 3.1, SmolLM3)",
                )
            ]
        )
    tokenizer.chat_template = HERMES_TEMPLATE
    tokenizer.response_template = hermes_response_template()
    return "OpenRFT's ChatML tool template (the model's own does not render tool calls)"


@dataclass
class Agent:
    """A job's tools as TRL takes them, for a given set of rows."""

    toolbox: Toolbox
    max_steps: int
    schemas: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Each environment name's tool schemas (what its rows are shown)."""
    episode_class: type[Episode] | None = None

    @classmethod
    def of(cls, config: TrainingConfig, context: GradeContext) -> Agent:
        toolbox = Toolbox(list(config.tools), context, config.environment)
        return cls(toolbox, config.max_episode_steps)

    def environment(self, row: Row) -> str:
        """The environment name for `row` (registering its tool set on first sight)."""
        schemas = self.toolbox.schemas(row.tools)
        key = toolset_key(schemas)
        self.schemas.setdefault(key, schemas)
        return key

    def factories(self) -> dict[str, type[Episode]]:
        """TRL's `environment_factory`: one entry per tool set (the same class for all)."""
        return {key: self.episode_type() for key in self.schemas}

    def episode_type(self) -> type[Episode]:
        if self.episode_class is None:
            self.episode_class = episode_class(self.toolbox)
        return self.episode_class

    def episode(self, row: Row) -> tuple[Episode, list[dict[str, Any]], str | None]:
        """A reset episode for `row`, the schemas it is shown and the environment's
        observation (appended to the prompt)."""
        key = self.environment(row)
        episode = self.episode_type()()
        observation = episode.reset(openrft_item=json.dumps(row.item))
        return episode, self.schemas[key], observation


@dataclass
class Trajectory:
    """One evaluation rollout."""

    messages: list[dict[str, Any]]
    """What the model wrote and the tools answered, after the prompt."""
    completion_tokens: int
    """Tokens the model generated (tool turns not counted)."""
    prompt_tokens: int
    truncated: bool = False
    """The rollout ran out of `max_completion_length` before its answer."""
    episode: Episode | None = None


def rollout(
    model: Any,
    tokenizer: Any,
    agent: Agent,
    rows: Sequence[Row],
    *,
    max_completion_length: int,
    temperature: float = 0.0,
) -> list[Trajectory]:
    """Run each row's episode to its end, batch-wise: generate every unfinished row's next turn,
    call the tools it asked for, and go on (at most `agent.max_steps` rounds of calls, at most
    `max_completion_length` tokens over all turns, tool turns included, as in training)."""
    import torch
    from trl.chat_template_utils import parse_response

    episodes = [agent.episode(row) for row in rows]
    conversations = [
        _observed(list(row.messages), observation)
        for row, (_, _, observation) in zip(rows, episodes, strict=True)
    ]
    out = [Trajectory([], 0, 0, episode=episode) for episode, _, _ in episodes]
    used = [0] * len(rows)
    active = list(range(len(rows)))
    for round_number in range(agent.max_steps + 1):
        if not active:
            break
        prompts = [
            tokenizer.apply_chat_template(
                conversations[i], tools=episodes[i][1], add_generation_prompt=True, tokenize=False
            )
            for i in active
        ]
        side, tokenizer.padding_side = tokenizer.padding_side, "left"
        encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        tokenizer.padding_side = side
        encoded = encoded.to(model.device)
        lengths = encoded["attention_mask"].sum(dim=1).tolist()
        if round_number == 0:
            for i, n in zip(active, lengths, strict=True):
                out[i].prompt_tokens = int(n)
        budget = max(1, max_completion_length - min(used[i] for i in active))
        sampling = temperature > 0
        with torch.no_grad():
            output = model.generate(
                **encoded,
                max_new_tokens=budget,
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=None,
                top_k=None,
                pad_token_id=tokenizer.pad_token_id,
                custom_generate=decode,
            )
        new = output[:, encoded["input_ids"].shape[1] :].tolist()
        still: list[int] = []
        for row_index, (i, ids) in enumerate(zip(active, new, strict=True)):
            left = max_completion_length - used[i]
            ids = _until_end(ids, tokenizer)[:left]
            prefix = encoded["input_ids"][row_index][-lengths[row_index] :].tolist()
            shown: list[Any] = list(episodes[i][1])
            message = parse_response(tokenizer, ids, prefix=prefix, tools=shown)
            used[i] += len(ids)
            out[i].completion_tokens += len(ids)
            conversations[i].append(message)
            out[i].messages.append(message)
            if ids and ids[-1] != tokenizer.eos_token_id and used[i] >= max_completion_length:
                out[i].truncated = True
                continue
            calls = message.get("tool_calls") or []
            if not calls or round_number == agent.max_steps:
                continue
            for reply in _run_calls(episodes[i][0], calls):
                conversations[i].append(reply)
                out[i].messages.append(reply)
                used[i] += len(tokenizer(reply["content"], add_special_tokens=False)["input_ids"])
            if used[i] < max_completion_length:
                still.append(i)
            else:
                out[i].truncated = True
        active = still
    for episode, _, _ in episodes:
        episode._finish()
    return out


def _observed(messages: list[dict[str, Any]], observation: str | None) -> list[dict[str, Any]]:
    """The prompt with the environment's observation appended to its last message (as TRL
    does)."""
    if observation is None:
        return messages
    last = messages[-1]
    return [*messages[:-1], {**last, "content": str(last.get("content") or "") + observation}]


def _until_end(ids: list[int], tokenizer: Any) -> list[int]:
    """Generated ids up to and including the first end-of-sequence token (no padding)."""
    for n, token in enumerate(ids):
        if token == tokenizer.eos_token_id:
            return ids[: n + 1]
        if token == tokenizer.pad_token_id:
            return ids[:n]
    return ids


def _run_calls(episode: Episode, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The tool turns for one assistant turn's calls, as TRL makes them."""
    replies = []
    for tool_call in calls:
        function = tool_call.get("function", {})
        name = str(function.get("name", ""))
        arguments = function.get("arguments") or {}
        method = getattr(type(episode), name, None)
        if name.startswith("_") or name not in episode.toolbox.by_name or method is None:
            content = str({"error": f"Tool {name} not found."})
        elif not isinstance(arguments, dict):
            content = str({"error": f"the arguments of {name} are not an object"})
        else:
            content = method(episode, **arguments)
        replies.append({"role": "tool", "name": name, "content": content})
    return replies


@dataclass
class ToolStats:
    """One step's tool calls, read by the metrics callback after each step."""

    rollouts: int = 0
    dropped: int = 0
    turns: list[int] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    tool_tokens: int = 0
    """Tokens of tool turns (masked out of the loss)."""
    truncated: int = 0
    """Rollouts that hit `max_completion_length` (`ending`)."""
    step_limited: int = 0
    """Rollouts that ended with a call unanswered after `max_episode_steps` rounds."""

    def add(
        self,
        episodes: Sequence[Episode],
        completions: Sequence[Any],
        tool_tokens: int,
        endings: Sequence[str],
    ) -> None:
        self.rollouts += len(episodes)
        self.dropped += sum(e.dropped for e in episodes)
        for episode in episodes:
            self.calls += episode.calls
        for completion in completions:
            if isinstance(completion, list):
                self.turns.append(sum(m.get("role") == "assistant" for m in completion))
        self.tool_tokens += tool_tokens
        self.truncated += sum(e == "truncated" for e in endings)
        self.step_limited += sum(e == "step_limit" for e in endings)

    def take(self) -> dict[str, Any] | None:
        """The step's `tools` metrics section (None when no rollout ran), counting afresh."""
        if not self.rollouts:
            return None
        calls, n = self.calls, self.rollouts
        per_tool: dict[str, list[CallRecord]] = defaultdict(list)
        for record in calls:
            per_tool[record.name].append(record)
        section = {
            "rollouts": n,
            "calls_per_rollout": len(calls) / n,
            "turns_mean": fmean(self.turns) if self.turns else 0.0,
            "tool_tokens_per_call": self.tool_tokens / len(calls) if calls else 0.0,
            "latency_mean_seconds": fmean(r.seconds for r in calls) if calls else 0.0,
            "error_rate": _share(calls, lambda r: r.error is not None),
            "dropped_rollouts": self.dropped,
            "truncated_rollouts": self.truncated,
            "step_limited_rollouts": self.step_limited,
            "per_tool": {
                name: {
                    "calls": len(records),
                    "calls_per_rollout": len(records) / n,
                    "latency_mean_seconds": fmean(r.seconds for r in records),
                    "error_rate": _share(records, lambda r: r.error is not None),
                    "dropped": sum(r.dropped for r in records),
                }
                for name, records in sorted(per_tool.items())
            },
        }
        self.__init__()  # type: ignore[misc]
        return section


def ending(completion: Any, ids: Sequence[int], ends: set[int], max_steps: int) -> str:
    """How a training rollout ended: `answered` (a turn without calls), `truncated` (it ran out
    of `max_completion_length`: cut mid-turn, or a call whose answer no longer fitted) or
    `step_limit` (a call left unanswered after `max_steps` rounds)."""
    if ids and ids[-1] not in ends:
        return "truncated"
    messages = completion if isinstance(completion, list) else []
    last = messages[-1] if messages else {}
    if not (last.get("role") == "assistant" and last.get("tool_calls")):
        return "answered"
    rounds = sum(
        1
        for before, after in pairwise(messages)
        if before.get("tool_calls") and after.get("role") == "tool"
    )
    return "step_limit" if rounds >= max_steps else "truncated"


def _share(records: Sequence[CallRecord], test: Any) -> float:
    return sum(1 for r in records if test(r)) / len(records) if records else 0.0


def agent_rewards(rewards: Any, dropped: Sequence[bool], group_size: int) -> Any:
    """`rewards` (rollouts × reward functions) with each dropped rollout's row set to the mean
    of its group's rollouts that were not dropped (0 when all were): its advantage is then 0
    and the group's mean is what it would be without it."""
    if not any(dropped):
        return rewards
    import torch

    rewards = rewards.clone()
    flags = torch.tensor(list(dropped), device=rewards.device)
    for start in range(0, len(dropped), group_size):
        group = slice(start, start + group_size)
        gone, kept = flags[group], ~flags[group]
        values = rewards[group]
        fill = values[kept].nanmean(dim=0) if kept.any() else torch.zeros_like(values[0])
        values[gone] = fill
        rewards[group] = values
    return rewards
