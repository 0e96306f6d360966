"""`ScriptedBackend`: answers chat completions from rules in a YAML/JSON file, deterministically.

It stands in for a judge model where a test needs exact numbers, or a benchmark needs a judge with
a known latency, yet everything still goes over real HTTP. A script:

```yaml
delay: 0.1                 # seconds every answer takes (simulated latency); default 0
default: '{"steps": [], "result": 0}'
rules:                     # first rule whose regex is found in the conversation wins
  - match: 'answer: (\\d+)'
    reply: '{"steps": [], "result": $1}'   # $1..$9: the regex's groups
  - match: flaky
    status: 429            # the first `times` matching requests get this status...
    times: 2
    reply: '{"steps": [], "result": 1}'    # ...later ones this reply
  - match: harmful
    refusal: I can't grade this.
```

The conversation text a rule sees is every message's text, joined by newlines. Token counts are
whitespace-separated words. It does not look at sampling parameters (they are recorded in
`requests` for tests to inspect).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openrft.errors import ConfigError, Problem
from openrft.inference.schemas import ChatRequest, Choice, Completion

_GROUP = re.compile(r"\$(\d)")


class Rule(BaseModel):
    """One scripted behaviour."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    match: str = ".*"
    """Regex searched for in the conversation text."""
    reply: str | None = None
    """Answer text; `$1`..`$9` insert the regex's groups. Absent: the script's `default`."""
    refusal: str | None = None
    """Refuse with this text instead of answering."""
    status: int | None = Field(default=None, ge=400, le=599)
    """Answer with this HTTP error status instead (for `times` requests, or always)."""
    times: int | None = Field(default=None, ge=0)
    """How many matching requests get `status` before the rule answers normally."""
    retry_after: float | None = Field(default=None, ge=0)
    """`Retry-After` seconds sent with `status`."""
    delay: float | None = Field(default=None, ge=0)
    """Latency for this rule, overriding the script's."""


class Script(BaseModel):
    """A whole script."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    delay: float = Field(default=0.0, ge=0)
    """Seconds every answer takes."""
    default: str = '{"steps": [], "result": 0}'
    """Answer when no rule matches (or a matching rule has no `reply`)."""
    rules: list[Rule] = Field(default_factory=list)
    """Tried in order; the first match wins."""


class ScriptedBackend:
    """A deterministic backend that also counts what it saw (for tests)."""

    def __init__(self, script: Script, name: str = "scripted") -> None:
        self.script = script
        self.name = name
        self.requests: list[dict[str, Any]] = []
        """Every request body received, in arrival order."""
        self.in_flight = 0
        self.max_in_flight = 0
        """Most requests being answered at the same time so far."""
        self._seen = [0] * len(script.rules)
        self._patterns = [re.compile(rule.match, re.DOTALL) for rule in script.rules]

    @classmethod
    def from_file(cls, path: str | Path, name: str = "scripted") -> ScriptedBackend:
        """Load a script from YAML or JSON; `ConfigError` lists what is wrong with it."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            return cls(Script.model_validate(data or {}), name)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError([Problem(str(path), f"cannot read the script: {exc}")]) from None
        except ValidationError as exc:
            problems = [
                Problem(f"{path}: {'.'.join(map(str, e['loc']))}", e["msg"]) for e in exc.errors()
            ]
            raise ConfigError(problems, "invalid script") from None
        except re.error as exc:
            raise ConfigError([Problem(str(path), f"a rule's regex is invalid: {exc}")]) from None

    async def complete(self, request: ChatRequest) -> Completion:
        """Answer one request by the first matching rule, after the scripted delay."""
        self.requests.append(request.model_dump(exclude_none=True))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            text = "\n".join(m.text() for m in request.messages)
            rule, found = self._match(text)
            delay = rule.delay if rule is not None and rule.delay is not None else self.script.delay
            if delay:
                await asyncio.sleep(delay)
            return self._answer(rule, found, text, request.n)
        finally:
            self.in_flight -= 1

    def _match(self, text: str) -> tuple[Rule | None, re.Match[str] | None]:
        for index, pattern in enumerate(self._patterns):
            found = pattern.search(text)
            if found:
                self._seen[index] += 1
                rule = self.script.rules[index]
                if rule.status is not None and (
                    rule.times is None or self._seen[index] <= rule.times
                ):
                    return rule, None  # `None` match: play the error status
                return rule, found
        return None, None

    def _answer(
        self, rule: Rule | None, found: re.Match[str] | None, text: str, n: int
    ) -> Completion:
        prompt_tokens = len(text.split())
        if rule is not None and found is None:
            message = f"scripted HTTP {rule.status} for rule {rule.match!r}"
            return Completion(
                status=rule.status or 500, error=message, retry_after=rule.retry_after
            )
        if rule is not None and rule.refusal is not None:
            return Completion([Choice(None, "stop", rule.refusal)] * n, prompt_tokens, 0)
        reply = self.script.default if rule is None or rule.reply is None else rule.reply
        if found is not None:
            reply = _GROUP.sub(lambda m: _group(found, int(m.group(1))), reply)
        return Completion([Choice(reply)] * n, prompt_tokens, n * len(reply.split()))


def _group(found: re.Match[str], index: int) -> str:
    return (found.group(index) or "") if index <= (found.re.groups or 0) else f"${index}"
