"""One rollout's tools: the environment TRL's `environment_factory` builds per rollout.

`Toolbox` holds a job's tools (`RemoteTool`s and `PythonTool`s) and the grading context (the
project's secrets and outbound rules). `episode_class(toolbox)` makes an `Episode` class with
one method per tool, named after it; TRL creates an instance per rollout, calls `reset(**row)`
with the rollout's dataset row, and calls the methods when the model writes tool calls. Each
call goes out through `tools.call` (a tool server or the sandbox) with the row's `item` and one
`trace_id` per rollout, and is recorded as a `CallRecord`: the trajectory graders see and the
metrics are counted from.

With an `environment` (`tools/environment.py`), `reset` also starts the rollout's instance in
the job's environment worker (returning its observation), the environment's methods are tools
too, and `_finish` reads its `reward()` once the rollout is over.

A call that is `dropped` (a tool server still failing after its retries, the sandbox down)
drops the rollout: the episode is marked, later calls are not made, and the trainer leaves the
rollout out of the loss (`training/agent.py`). Names TRL treats specially (`reset`,
`get_reward`, a leading `_`) cannot be tool names.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from openrft.graders.context import GradeContext
from openrft.tools import PythonTool, RemoteTool, ToolOutcome, call
from openrft.tools.environment import EnvironmentHost, EnvironmentSpec

RESERVED_NAMES = frozenset({"reset", "get_reward"})
"""Method names TRL's environments give a meaning of their own."""
ITEM_KEY = "openrft_item"
"""The row column holding the item as JSON (`graders.reward.ITEM_COLUMN`)."""


@dataclass
class CallRecord:
    """One tool call of a rollout and what it came to."""

    name: str
    arguments: str
    """The arguments as sent (JSON text)."""
    call_id: str
    output: str | None = None
    error: str | None = None
    dropped: bool = False
    seconds: float = 0.0
    attempts: int = 0

    @classmethod
    def of(cls, name: str, outcome: ToolOutcome) -> CallRecord:
        arguments = str(outcome.request.get("arguments", ""))
        return cls(
            name,
            arguments,
            outcome.call_id,
            outcome.output,
            outcome.error,
            outcome.dropped,
            outcome.seconds,
            outcome.attempts,
        )

    @property
    def content(self) -> str:
        """The tool turn the model saw."""
        return self.output if self.output is not None else f"error: {self.error}"


@dataclass
class Toolbox:
    """A job's tools (and stateful environment) and the context their calls run with."""

    tools: Sequence[RemoteTool | PythonTool]
    context: GradeContext = field(default_factory=GradeContext)
    environment: EnvironmentSpec | None = None

    def __post_init__(self) -> None:
        self.by_name: dict[str, Any] = {tool.name: tool for tool in self.tools}
        for method in self.environment.tools if self.environment else ():
            self.by_name[method.name] = method
        self._host: EnvironmentHost | None = None
        self._lock = threading.Lock()

    @property
    def host(self) -> EnvironmentHost | None:
        """The environment's worker, started on first use (None without an environment)."""
        if self.environment is None:
            return None
        with self._lock:
            if self._host is None:
                self._host = EnvironmentHost(self.environment, self.context)
            return self._host

    def is_environment_tool(self, name: str) -> bool:
        return self.environment is not None and any(
            method.name == name for method in self.environment.tools
        )

    def schemas(self, row_tools: Sequence[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """The tools as the model is shown them for one row: the row's own `tools` entry of
        the same name where it has one (rows may describe a tool in their own words), else
        the tool's `description` and `parameters`."""
        given = {_function_name(t): t for t in row_tools or ()}
        return [given.get(name) or tool.tool_schema() for name, tool in self.by_name.items()]

    def close(self) -> None:
        if self._host is not None:
            self._host.close()


def toolset_key(schemas: Sequence[dict[str, Any]]) -> str:
    """A short stable name for one set of tool schemas (TRL's environment name for the rows
    that are shown it)."""
    text = json.dumps(list(schemas), sort_keys=True, ensure_ascii=False)
    return "tools-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def _function_name(schema: dict[str, Any]) -> str:
    function = schema.get("function", schema)
    return str(function.get("name", "")) if isinstance(function, dict) else ""


class Episode:
    """One rollout's tool calls (subclassed per job by `episode_class`)."""

    toolbox: Toolbox

    def __init__(self) -> None:
        self.calls: list[CallRecord] = []
        self.item: dict[str, Any] = {}
        self.trace_id = ""
        self.dropped = False
        self.environment_reward: float | None = None
        """The environment's `reward()` once the rollout is over (`_finish`)."""
        self.environment_error: str | None = None
        self._environment: tuple[str, int] | None = None
        self._finished = False

    def reset(self, **row: Any) -> str | None:
        """Start a rollout of `row` (TRL passes the dataset row's columns); with an
        environment, its `reset(item)`'s observation (TRL appends it to the prompt)."""
        raw = row.get(ITEM_KEY)
        self.item = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
        self.calls = []
        self.trace_id = uuid.uuid4().hex
        self.dropped = False
        self.environment_reward = self.environment_error = None
        self._environment, self._finished = None, False
        host = self.toolbox.host
        if host is None:
            return None
        key, generation, observation, error = host.reset(self.item)
        self._environment = (key, generation)
        if error is not None:  # the rollout cannot run: it is dropped
            self.dropped, self.environment_error = True, f"reset failed: {error}"
        return observation

    def _finish(self) -> None:
        """End the rollout: read the environment's `reward()` (once)."""
        host = self.toolbox.host
        if self._finished or host is None or self._environment is None:
            return
        self._finished = True
        if self.environment_error is not None:
            return
        value, error = host.reward(*self._environment)
        self.environment_reward, self.environment_error = value, error

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        text = json.dumps(arguments, ensure_ascii=False)
        if self.dropped:  # a dropped rollout makes no further calls
            skipped = CallRecord(name, text, f"call_{uuid.uuid4().hex[:24]}", dropped=True)
            skipped.error = "not called: an earlier call of this rollout was dropped"
            self.calls.append(skipped)
            return skipped.content
        host = self.toolbox.host
        if host is not None and self._environment and self.toolbox.is_environment_tool(name):
            outcome = host.call(*self._environment, name, arguments)
        else:
            tool = self.toolbox.by_name[name]
            outcome = call(tool, text, self.item, self.toolbox.context, trace_id=self.trace_id)
        record = CallRecord.of(name, outcome)
        self.calls.append(record)
        self.dropped |= record.dropped
        return record.content


def episode_class(toolbox: Toolbox) -> type[Episode]:
    """An `Episode` subclass with one method per tool of `toolbox`, named after the tool."""
    namespace: dict[str, Any] = {"toolbox": toolbox}
    for name in toolbox.by_name:
        namespace[name] = _method(name)
    return type("Episode", (Episode,), namespace)


def _method(name: str) -> Callable[..., str]:
    def method(self: Episode, /, **arguments: Any) -> str:
        return self._call(name, arguments)

    method.__name__ = method.__qualname__ = name
    return method
