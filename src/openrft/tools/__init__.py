"""Tools a model calls during a rollout (Agent RFT): the specs and how a call is made.

- `remote.py`: a tool server, called in OpenAI Agent RFT's `function_call` /
  `function_call_output` bodies (`RemoteTool`, the default when a tool has no `type`).
- `python_tool.py`: a function run in the python graders' sandbox (`type: python`).
- `episode.py`: one rollout's tools and what each call came to (the trajectory graders see).

Torch-free, like `graders/`: the service's `tool/run` route and the trainer's rollouts both
call these. `Tool` is the union a job's `tools` list holds; `call` makes one call of either kind.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from openrft.graders.context import GradeContext
from openrft.tools import python_tool, remote
from openrft.tools.python_tool import PythonTool
from openrft.tools.remote import RemoteTool, ToolOutcome

__all__ = ["PythonTool", "RemoteTool", "Tool", "ToolOutcome", "call"]


def _tool(value: Any) -> RemoteTool | PythonTool:
    """A tool by its `type` (a dispatch, not a tagged union: errors keep the user's own paths,
    `tools[0].name`, with no tag in them)."""
    if isinstance(value, RemoteTool | PythonTool):
        return value
    if isinstance(value, dict) and value.get("type") == "python":
        return PythonTool.model_validate(value)
    return RemoteTool.model_validate(value)


Tool = Annotated[RemoteTool | PythonTool, BeforeValidator(_tool)]
"""A job's tool: a tool server (no `type`, or `server`) or a python function (`python`)."""


def call(
    tool: RemoteTool | PythonTool,
    arguments: str,
    item: dict[str, Any],
    context: GradeContext,
    *,
    call_id: str | None = None,
    trace_id: str | None = None,
) -> ToolOutcome:
    """Make one call of either kind; callable from any thread."""
    if isinstance(tool, PythonTool):
        return python_tool.call(tool, arguments, item, context, call_id=call_id, trace_id=trace_id)
    return remote.call(tool, arguments, item, context, call_id=call_id, trace_id=trace_id)
