"""A tool written in Python, run in the python graders' sandbox (`graders/sandbox/`).

    {"type": "python", "name": "add", "description": "Add two numbers",
     "parameters": {"type": "object", "properties": {"a": {"type": "number"}, ...}},
     "source": "def add(a, b):\\n    return a + b\\n"}

The source defines a function named after the tool; a call runs `name(**arguments)` in a
warm, locked-down worker of the job's project (the pool is keyed by project, tool name, source
and limits, as for python graders: `sandbox/pool.py`). A function that declares an `item`
parameter the schema does not name also gets the dataset row. It returns a string (passed on as
it is) or any JSON value (passed on as its JSON text), at most ~1 MB.

What the model sees is `ToolOutcome.content`, as for a tool server: the output, or
`error: ...` when the function raised (the trimmed traceback), returned something too large or
not JSON, or took longer than the sandbox's `timeout_seconds`. A call is `dropped` (the rollout
with it) only when the sandbox itself failed: the function's own failures are the model's to
see and learn from.
"""

from __future__ import annotations

import ast
import hashlib
import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from openrft.graders.context import GradeContext
from openrft.graders.python_grader import limits_from
from openrft.graders.sandbox import check_policy, detect_layers, run_batch
from openrft.graders.spec import PythonSource
from openrft.tools.remote import ToolOutcome, function_schema

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
"""A tool's name: a Python identifier (python tools), at most 64 characters."""

_DISPATCH = """

# --- added by OpenRFT: runs one tool call (your code above is unchanged) ---
def grade(sample, item):
    function = globals()[sample["tool"]]
    arguments = dict(sample["arguments"])
    if sample["pass_item"]:
        arguments["item"] = item
    return function(**arguments)
"""


class PythonTool(BaseModel):
    """A function the model calls, run in the sandbox (`tools[]` with `type: python`)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    type: Literal["python"] = "python"
    """Always `python`."""
    name: str = Field(pattern=NAME_PATTERN)
    """The function name the model calls; the source defines a function of that name."""
    description: str = Field(default="", max_length=4096)
    """What the tool does, shown to the model with its parameters."""
    parameters: dict[str, Any] = {"type": "object", "properties": {}}
    """The arguments' JSON schema (an `object` schema, as OpenAI function tools take)."""
    source: PythonSource
    """Python source defining `def <name>(**arguments)`; at most 256 KB."""

    @model_validator(mode="after")
    def _defines_function(self) -> PythonTool:
        if self.parameters.get("type", "object") != "object":
            raise ValueError("`parameters` must be an object schema: {type: object, properties}")
        if self.name == "grade":
            raise ValueError("`grade` is reserved (it runs the call); name the tool otherwise")
        if self.name not in defined_functions(self.source):
            raise ValueError(
                f"the source defines no function `{self.name}`; define `def {self.name}(...)`"
                " (the tool's name is the function the call runs)"
            )
        return self

    @property
    def passes_item(self) -> bool:
        """The function declares an `item` parameter that is not one of the tool's arguments."""
        properties = self.parameters.get("properties") or {}
        return "item" not in properties and "item" in defined_functions(self.source)[self.name]

    def tool_schema(self) -> dict[str, Any]:
        return function_schema(self.name, self.description, self.parameters)


def defined_functions(source: str) -> dict[str, list[str]]:
    """Top-level functions of `source` and the names of their parameters."""
    found: dict[str, list[str]] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            found[node.name] = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return found


def pool_key(tool: PythonTool, context: GradeContext, limits: Any) -> tuple[str, ...]:
    """Workers are shared only by calls with the same owner, tool, source and limits."""
    digest = hashlib.sha256(tool.source.encode()).hexdigest()
    return (context.owner, f"tool:{tool.name}", digest, limits.model_dump_json())


def call(
    tool: PythonTool,
    arguments: str,
    item: dict[str, Any],
    context: GradeContext,
    *,
    call_id: str | None = None,
    trace_id: str | None = None,
) -> ToolOutcome:
    """Run one call (`arguments`: the JSON text the model wrote); callable from any thread."""
    call_id = call_id or f"call_{uuid.uuid4().hex[:24]}"
    trace_id = trace_id or uuid.uuid4().hex
    request = {"type": "function_call", "name": tool.name, "arguments": arguments}
    outcome = ToolOutcome(call_id=call_id, trace_id=trace_id, request=request, attempts=1)
    try:
        parsed = json.loads(arguments) if arguments.strip() else {}
    except ValueError as exc:
        outcome.error = f"the arguments are not JSON ({exc}): {arguments[:200]!r}"
        return outcome
    if not isinstance(parsed, dict):
        outcome.error = f"the arguments must be a JSON object, got {arguments[:200]!r}"
        return outcome
    limits = limits_from(context)
    layers = detect_layers()
    check_policy(layers, limits)  # a machine that cannot sandbox refuses: SandboxError
    payload = {
        "sample": {"tool": tool.name, "arguments": parsed, "pass_item": tool.passes_item},
        "item": item,
        "returns": "text",
    }
    started = time.perf_counter()
    try:
        encoded = json.dumps(payload).encode()
    except (TypeError, ValueError) as exc:
        outcome.error = f"the call cannot be sent: {exc}"
        return outcome
    source = tool.source + _DISPATCH
    (result,) = run_batch(pool_key(tool, context, limits), source, limits, layers, [encoded])
    outcome.seconds = time.perf_counter() - started
    if result.kind == "ok" and result.output is not None:
        outcome.output = result.output
    elif result.kind == "server":
        outcome.error, outcome.dropped = f"the sandbox failed: {result.details}", True
    elif result.kind == "timeout":
        outcome.error = f"the tool ran past {limits.timeout_seconds:g} s"
    else:
        outcome.error = result.details or result.kind
    return outcome
