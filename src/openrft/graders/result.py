"""`GradeResult`: one sample's grade, shaped like OpenAI's grader run response.

```json
{"reward": 1.0, "sub_rewards": {}, "model_grader_token_usage_per_model": {},
 "metadata": {"name": "...", "type": "string_check", "execution_time": 0.0001,
              "scores": {}, "token_usage": null, "sampled_model_name": null,
              "errors": {"formula_parse_error": false, ...}}}
```

A failure on one sample is recorded here (reward 0, the matching OpenAI flag set), not raised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, Field

MAX_ABS_REWARD = 1e6
"""Largest reward magnitude a grader may return. Rewards from user code (python graders,
endpoints, formulas) beyond it are flagged as invalid output instead of used: a step's statistics
sum rewards, and values near 1e308 overflow there (a crash, not a grade)."""


def bounded_reward(value: Any) -> float | None:
    """`value` as a reward: a real number (not a bool) within ±`MAX_ABS_REWARD`, else None.
    Huge JSON integers (`1e400` written out) are None too, not an `OverflowError`."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and abs(number) <= MAX_ABS_REWARD else None


ERROR_FLAGS = (
    "formula_parse_error",
    "invalid_variable_error",
    "model_grader_parse_error",
    "model_grader_refusal_error",
    "model_grader_server_error",
    "other_error",
    "python_grader_runtime_error",
    "python_grader_server_error",
    "sample_parse_error",
    "truncated_observation_error",
    "unresponsive_reward_error",
)
"""OpenAI's boolean error flags, in the order of its API reference."""

DETAIL_FIELDS = {
    "model_grader_server_error": "model_grader_server_error_details",
    "python_grader_runtime_error": "python_grader_runtime_error_details",
    "python_grader_server_error": "python_grader_server_error_type",
}
"""Flags that carry a text field with the details (a trimmed traceback, a server message)."""


class GraderErrors(BaseModel):
    """OpenAI's `metadata.errors`: which kinds of failure happened while grading this sample."""

    model_config = ConfigDict(extra="forbid")

    formula_parse_error: bool = False
    invalid_variable_error: bool = False
    model_grader_parse_error: bool = False
    model_grader_refusal_error: bool = False
    model_grader_server_error: bool = False
    model_grader_server_error_details: str | None = None
    other_error: bool = False
    other_error_details: str | None = None
    """OpenRFT extension: what the `other_error` was."""
    python_grader_runtime_error: bool = False
    python_grader_runtime_error_details: str | None = None
    python_grader_server_error: bool = False
    python_grader_server_error_type: str | None = None
    sample_parse_error: bool = False
    sample_parse_error_details: str | None = None
    """OpenRFT extension: why the sample could not be parsed (e.g. not `response_format` JSON)."""
    truncated_observation_error: bool = False
    unresponsive_reward_error: bool = False
    unresponsive_reward_error_details: str | None = None
    """OpenRFT extension: why the endpoint grader got no usable answer (after its retries)."""
    invalid_variable_error_details: str | None = None
    """OpenRFT extension: which template variable was missing."""
    python_grader_timeout_error: bool = False
    """OpenRFT extension: the python grader ran past its time limit."""
    python_grader_memory_error: bool = False
    """OpenRFT extension: the python grader ran out of memory."""
    python_grader_invalid_output_error: bool = False
    """OpenRFT extension: `grade()` returned something that is not a finite number."""

    def any(self) -> bool:
        """True if any flag is set."""
        return any(v is True for v in self.__dict__.values())

    def flags(self) -> list[str]:
        """The names of the flags that are set."""
        return [k for k, v in self.__dict__.items() if v is True]

    def merge(self, other: GraderErrors) -> None:
        """Set every flag and detail `other` has set; keep our own details if both have one."""
        for key, value in other.__dict__.items():
            if value is True or (
                value is not None and value is not False and not getattr(self, key)
            ):
                setattr(self, key, value)


class GradeMetadata(BaseModel):
    """OpenAI's `metadata`: who graded, how long it took, and what went wrong."""

    name: str
    type: str
    execution_time: float = 0.0
    """Seconds spent grading this sample (a batch's time shared evenly across its samples)."""
    scores: dict[str, Any] = Field(default_factory=dict)
    """Grader-specific details: a multi grader's sub-scores, a model grader's `steps`, …"""
    token_usage: int | None = None
    sampled_model_name: str | None = None
    errors: GraderErrors = Field(default_factory=GraderErrors)


class GradeResult(BaseModel):
    """One sample's grade."""

    reward: float
    metadata: GradeMetadata
    sub_rewards: dict[str, float] = Field(default_factory=dict)
    model_grader_token_usage_per_model: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, name: str, type: str, reward: float, **scores: Any) -> GradeResult:
        """A successful grade."""
        return cls(reward=reward, metadata=GradeMetadata(name=name, type=type, scores=scores))

    @classmethod
    def failed(cls, name: str, type: str, flag: str, details: str | None = None) -> GradeResult:
        """A failed grade: reward 0 with `flag` (one of `ERROR_FLAGS` or an extension) set."""
        errors = GraderErrors()
        setattr(errors, flag, True)
        detail_field = DETAIL_FIELDS.get(flag, f"{flag}_details")
        if details is not None and detail_field in GraderErrors.model_fields:
            setattr(errors, detail_field, details)
        return cls(reward=0.0, metadata=GradeMetadata(name=name, type=type, errors=errors))

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def errors(self) -> GraderErrors:
        return self.metadata.errors


class GradeResults(Sequence[GradeResult]):
    """One batch's grades: a sequence of `GradeResult`, one per sample, in order.

    `rewards` is a plain list of floats, which is all a trainer needs per sample. Graders that
    score a batch by column (text_similarity, …) hand in the rewards and a `make(i)` that builds
    sample i's `GradeResult`; it is built on first access and kept, so the per-sample objects cost
    nothing when only the rewards are read. Results handed in built (`given`) are used as they are.
    Contract: a result left to `make` is a success (no error flag); a grader passes its failures
    in `given`, so `failures()` never has to build anything.
    """

    __slots__ = ("_built", "_make", "_rewards", "execution_time")

    def __init__(
        self,
        rewards: list[float],
        make: Callable[[int], GradeResult],
        given: Mapping[int, GradeResult] | None = None,
    ) -> None:
        self._rewards = rewards
        self._make = make
        self._built: list[GradeResult | None] | None = None
        self.execution_time = 0.0
        """Seconds per sample for results built later (`grade_batch` shares the batch's time)."""
        for i, result in (given or {}).items():
            self[i] = result

    @classmethod
    def of(cls, results: Sequence[GradeResult]) -> GradeResults:
        """Wrap results that are already built."""
        if isinstance(results, GradeResults):
            return results
        listed = list(results)
        batch = cls([r.reward for r in listed], listed.__getitem__)
        batch._built = list(listed)
        return batch

    @property
    def rewards(self) -> list[float]:
        """Each sample's reward, without building any result."""
        if self._built is None:
            return list(self._rewards)
        return [
            r if built is None else built.reward
            for r, built in zip(self._rewards, self._built, strict=True)
        ]

    def failures(self) -> list[tuple[int, GradeResult]]:
        """`(index, result)` of every sample with an error flag set."""
        if self._built is None:
            return []
        return [(i, r) for i, r in enumerate(self._built) if r is not None and r.errors.any()]

    def set_execution_time(self, seconds: float) -> None:
        """Give every result without its own timing `seconds` (a share of the batch's time)."""
        self.execution_time = seconds
        for result in self._built or ():
            if result is not None and not result.metadata.execution_time:
                result.metadata.execution_time = seconds

    def __len__(self) -> int:
        return len(self._rewards)

    @overload
    def __getitem__(self, index: int) -> GradeResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[GradeResult]: ...

    def __getitem__(self, index: int | slice) -> GradeResult | list[GradeResult]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if self._built is None:
            self._built = [None] * len(self._rewards)
        result = self._built[index]
        if result is None:
            result = self._built[index] = self._make(index % len(self))
            if not result.metadata.execution_time:
                result.metadata.execution_time = self.execution_time
        return result

    def __setitem__(self, index: int, result: GradeResult) -> None:
        if self._built is None:
            self._built = [None] * len(self._rewards)
        self._built[index] = result
        self._rewards[index] = result.reward

    def __iter__(self) -> Iterator[GradeResult]:
        return (self[i] for i in range(len(self)))

    def __add__(self, other: Sequence[GradeResult]) -> list[GradeResult]:
        return [*self, *other]

    def __radd__(self, other: Sequence[GradeResult]) -> list[GradeResult]:
        return [*other, *self]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]  # mutable, like a list

    def __repr__(self) -> str:
        return f"GradeResults({list(self)!r})"
