"""Stateful environments: a user's Python class, one instance per rollout, run in the sandbox.

    environment:
      source: |
        class Environment:
            def reset(self, item):            # a new rollout of dataset row `item`
                self.secret = item["word"]
                return "Guess the word."      # optional: appended to the prompt
            def guess(self, word):            # a tool the model may call
                return "yes" if word == self.secret else "no"
            def reward(self):                 # optional: read by graders as
                return 1.0                    #   sample.environment_reward
      tools:
        - {name: guess, description: "Guess the word", parameters: {...}}

The protocol is TRL's `environment_factory` one, with OpenRFT's names: `reset(item)` starts a
rollout (its return value, if a string, is appended to the last user message), each method named
in `tools` is a tool (`method(**arguments)`, returning a string or any JSON value), and
`reward()`, when defined, is called once when the rollout ends; graders see it as
`sample.environment_reward`, and a job with an environment and no grader is scored by it.

Every rollout's instance lives in one sandboxed worker per job (`EnvironmentHost`: the python
graders' sandbox and limits, a worker of its own rather than the shared pool, since the state
must outlive each call). Requests are made one at a time. When the worker dies (a timeout, out
of memory, a crash) the instances it held are gone: their rollouts' later calls are `dropped`
(the rollouts with them) and a fresh worker serves new rollouts.
"""

from __future__ import annotations

import ast
import json
import threading
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openrft.graders.context import GradeContext
from openrft.graders.python_grader import limits_from
from openrft.graders.sandbox import SandboxWorker, check_policy, detect_layers
from openrft.graders.sandbox.process import Outcome, WorkerLost
from openrft.graders.spec import PythonSource
from openrft.tools.python_tool import NAME_PATTERN
from openrft.tools.remote import ToolOutcome, function_schema

ENVIRONMENT_REWARD = """
def grade(sample, item):
    value = sample.get("environment_reward")
    return float(value) if value is not None else 0.0
"""
"""The grader of a job with an environment and no grader of its own."""

_DISPATCH = """

# --- added by OpenRFT: one instance per rollout, kept between calls (your code is unchanged) ---
_OPENRFT_EPISODES = {}


def grade(sample, item):
    import json as _json

    key = sample["episode"]
    if sample["op"] == "reset":
        instance = %(cls)s()
        _OPENRFT_EPISODES[key] = instance
        observation = instance.reset(item)
        return _json.dumps({"observation": observation if isinstance(observation, str) else None})
    instance = _OPENRFT_EPISODES.get(key)
    if instance is None:
        raise LookupError("no such rollout in this worker (it was restarted)")
    if sample["op"] == "call":
        return getattr(instance, sample["tool"])(**sample["arguments"])
    _OPENRFT_EPISODES.pop(key, None)
    reward = getattr(instance, "reward", None)
    value = reward() if callable(reward) else None
    return _json.dumps({"reward": None if value is None else float(value)})
"""


class EnvironmentTool(BaseModel):
    """One method of the environment the model may call."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    """The method's name (and the function name the model calls)."""
    description: str = Field(default="", max_length=4096)
    """What it does, shown to the model."""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    """Its arguments' JSON schema (an `object` schema)."""

    def tool_schema(self) -> dict[str, Any]:
        return function_schema(self.name, self.description, self.parameters)


class EnvironmentSpec(BaseModel):
    """A stateful environment (`environment` in a job): see the module docstring."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    source: PythonSource
    """Python source defining the class; at most 256 KB."""
    class_name: str = Field(default="Environment", pattern=NAME_PATTERN)
    """The class to instantiate (one instance per rollout)."""
    tools: list[EnvironmentTool] = Field(min_length=1, max_length=128)
    """The methods the model may call, with what it is shown of each."""

    @model_validator(mode="after")
    def _methods(self) -> EnvironmentSpec:
        methods = class_methods(self.source, self.class_name)
        if methods is None:
            raise ValueError(f"the source defines no class `{self.class_name}`")
        if "reset" not in methods:
            raise ValueError(f"`{self.class_name}` has no `reset(self, item)` method")
        missing = [tool.name for tool in self.tools if tool.name not in methods]
        if missing:
            raise ValueError(
                f"`{self.class_name}` has no method {', '.join(missing)}: each of `tools` names "
                "a method the model may call"
            )
        return self

    @property
    def has_reward(self) -> bool:
        return "reward" in (class_methods(self.source, self.class_name) or ())


def class_methods(source: str, name: str) -> set[str] | None:
    """The methods a top-level class of `source` defines (None: no such class)."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return {
                item.name
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return None


class EnvironmentHost:
    """The sandboxed worker holding a job's environment instances; thread-safe, one request
    at a time."""

    def __init__(self, spec: EnvironmentSpec, context: GradeContext) -> None:
        self.spec, self.context = spec, context
        self.limits = limits_from(context)
        self.layers = detect_layers()
        check_policy(self.layers, self.limits)
        self.source = spec.source + _DISPATCH % {"cls": spec.class_name}
        self._worker: SandboxWorker | None = None
        self._generation = 0
        """Bumped whenever a worker is lost: rollouts started on an older one are gone."""
        self._lock = threading.Lock()

    def reset(self, item: dict[str, Any]) -> tuple[str, int, str | None, str | None]:
        """Start a rollout: `(episode key, worker generation, observation, error)`."""
        key = uuid.uuid4().hex
        outcome, generation = self._request({"op": "reset", "episode": key}, item, None)
        if outcome.kind != "ok" or outcome.output is None:
            return key, generation, None, _why(outcome, self.limits.timeout_seconds)
        observation = json.loads(outcome.output).get("observation")
        return key, generation, observation, None

    def call(self, key: str, generation: int, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """One tool call of rollout `key`."""
        request = {"type": "function_call", "name": name, "arguments": json.dumps(arguments)}
        result = ToolOutcome(call_id=f"call_{uuid.uuid4().hex[:24]}", trace_id=key, request=request)
        result.attempts = 1
        started = time.perf_counter()
        payload = {"op": "call", "episode": key, "tool": name, "arguments": arguments}
        outcome, now = self._request(payload, {}, generation)
        result.seconds = time.perf_counter() - started
        if outcome.kind == "ok" and outcome.output is not None:
            result.output = outcome.output
        elif outcome.kind == "server" or now != generation:
            result.error, result.dropped = f"the environment was lost: {outcome.details}", True
        else:
            result.error = _why(outcome, self.limits.timeout_seconds)
        return result

    def reward(self, key: str, generation: int) -> tuple[float | None, str | None]:
        """End rollout `key`: its `reward()` (None when the class has none) or why not."""
        outcome, _ = self._request({"op": "reward", "episode": key}, {}, generation)
        if outcome.kind != "ok" or outcome.output is None:
            return None, _why(outcome, self.limits.timeout_seconds)
        return json.loads(outcome.output).get("reward"), None

    def _request(
        self, sample: dict[str, Any], item: dict[str, Any], generation: int | None
    ) -> tuple[Outcome, int]:
        payload = json.dumps({"sample": sample, "item": item, "returns": "text"}).encode()
        with self._lock:
            if generation is not None and generation != self._generation:
                lost = "its worker was restarted; the rollout's state is gone"
                return Outcome("server", details=lost), self._generation
            if self._worker is None:
                worker = SandboxWorker(self.source, self.limits, self.layers)
                failure = worker.start()
                if failure is not None:
                    worker.stop()
                    return failure, self._generation
                self._worker = worker
            try:
                (outcome,) = list(self._worker.stream([payload]))
            except WorkerLost as lost:
                self._worker = None
                self._generation += 1
                return lost.outcome, self._generation
            return outcome, self._generation

    def close(self) -> None:
        with self._lock:
            if self._worker is not None:
                self._worker.stop()
                self._worker = None


def _why(outcome: Outcome, timeout: float) -> str:
    if outcome.kind == "timeout":
        return f"the environment ran past {timeout:g} s"
    return outcome.details or outcome.kind
