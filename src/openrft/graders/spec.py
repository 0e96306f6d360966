"""Grader specs: pydantic models with OpenAI's class and field names, discriminated on `type`.

OpenAI's grader types (`string_check`, `text_similarity`, `score_model`, `label_model`, `python`,
`endpoint`, `multi`) plus two from SeekrFlow that OpenRFT also accepts anywhere a grader goes
(`format_check`, `math_accuracy`). The documented forms are accepted alongside the SDK ones:
`multi.graders` as a dict keyed by name or as a single grader, `neq` for `ne`, `pass_threshold`.
What OpenAI accepted is accepted here too: a grader without `name` (named after its `type`, or
after its key in a `multi`'s `graders` dict), and `invalid_grade` / `pass_threshold` on `multi`.

Which grader types exist is `graders/registry.py`'s to say: `GRADER_TYPES` and the `Grader`
union are built from its rows, so a type is added there, not here (its model is written here).

`parse_grader(data)` validates a spec and raises `SpecError` listing every problem with its JSON
path and what to do. Running the graders lives in the sibling modules; nothing here grades.
"""

from __future__ import annotations

import ast
import functools
import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias
from urllib.parse import urlparse

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from openrft.errors import FormulaError, Problem, SpecError, did_you_mean, problems_from
from openrft.graders import template
from openrft.graders.registry import REGISTRY
from openrft.graders.result import MAX_ABS_REWARD

MAX_PYTHON_SOURCE_BYTES = 256 * 1024
"""OpenAI's limit on a python grader's source."""


class SpecModel(BaseModel):
    """Base of every spec: unknown keys are errors, every field documented."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)


class GraderModel(SpecModel):
    """Base of every grader spec: a grader is also a reward function for TRL users.

    `grader(prompts, completions, **columns)` returns one float per completion (TRL's
    `reward_funcs` signature; columns such as `reference_answer` become each completion's
    `item`), `grader.as_fn()` a picklable plain function doing the same, and `__name__` is the
    grader's `name` (TRL logs `rewards/<name>/mean`). The work is `graders/reward.py`'s."""

    @property
    def __name__(self) -> str:
        return str(getattr(self, "name", type(self).__name__))

    def __call__(self, prompts: Any = None, completions: Any = None, **columns: Any) -> list[float]:
        from openrft.graders.reward import rewards

        return rewards(self, prompts, completions, columns)  # type: ignore[arg-type]

    def as_fn(self, group_size: int | None = None) -> Callable[..., list[float]]:
        """This grader as a plain picklable function (`functools.partial` of a module-level
        function over the spec's JSON); `group_size` as in `reward.group_sizes`."""
        from openrft.graders.reward import as_fn

        return as_fn(self, group_size=group_size)  # type: ignore[arg-type]


def _check_templates(value: str) -> str:
    bad = template.malformed(value)
    if bad:
        raise ValueError(
            f"{bad[0]!r} is not a valid template: use {{{{ sample.output_text }}}}, "
            "{{ sample.output_json.key }} or {{ item.field }} (only `sample` and `item` exist)"
        )
    return value


class StringCheckGrader(GraderModel):
    """Compares two strings; reward 1 when the check passes, else 0."""

    type: Literal["string_check"] = "string_check"
    """Always `string_check`."""
    name: str = "string_check"
    """Metric key for this grader, e.g. `exact_answer`. Optional, as in OpenAI: it defaults to
    the `type`, and inside a `multi`'s `graders` dict to the grader's key there."""
    input: str
    """Text to check; may hold templates such as `{{ sample.output_text }}`."""
    reference: str
    """Text to compare against, e.g. `{{ item.reference_answer }}`."""
    operation: Literal["eq", "ne", "like", "ilike"]
    """`eq`/`ne`: exact (in)equality; `like`: input contains reference; `ilike`: the same, ignoring
    case. An empty input or reference never passes `like`/`ilike`. `neq` is accepted for `ne`."""

    @field_validator("operation", mode="before")
    @classmethod
    def _neq(cls, value: Any) -> Any:
        return "ne" if value == "neq" else value

    _templates = field_validator("input", "reference")(_check_templates)


TextMetric: TypeAlias = Literal[
    "fuzzy_match",
    "bleu",
    "gleu",
    "meteor",
    "rouge_1",
    "rouge_2",
    "rouge_3",
    "rouge_4",
    "rouge_5",
    "rouge_l",
    "cosine",
]


class TextSimilarityGrader(GraderModel):
    """Scores how similar two texts are, in [0, 1]."""

    type: Literal["text_similarity"] = "text_similarity"
    """Always `text_similarity`."""
    name: str = "text_similarity"
    """Metric key for this grader. Optional, as in OpenAI: it defaults to the `type`, and inside a
    `multi`'s `graders` dict to the grader's key there."""
    input: str
    """The text being graded; may hold templates."""
    reference: str
    """The text graded against; may hold templates."""
    evaluation_metric: TextMetric
    """`fuzzy_match` (rapidfuzz ratio), `bleu`/`gleu`/`meteor` (nltk), `rouge_1`…`rouge_5`/`rouge_l`
    (rouge-score F-measure), `cosine` (embedding cosine similarity)."""
    pass_threshold: float | None = None
    """Score at or above which a sample passes (reported in `metadata.scores.passed`)."""

    _templates = field_validator("input", "reference")(_check_templates)


class InputText(SpecModel):
    """A text content part."""

    type: Literal["input_text"] = "input_text"
    """Always `input_text`."""
    text: str
    """The text; may hold templates."""


class OutputText(SpecModel):
    """An assistant text content part."""

    type: Literal["output_text"] = "output_text"
    """Always `output_text`."""
    text: str
    """The text; may hold templates."""


class InputImage(SpecModel):
    """An image content part (passed through to judges that accept images)."""

    type: Literal["input_image"] = "input_image"
    """Always `input_image`."""
    image_url: str
    """URL or data URL of the image; may hold templates."""
    detail: str | None = None
    """`high`, `low` or `auto`."""


ContentPart: TypeAlias = Annotated[InputText | OutputText | InputImage, Field(discriminator="type")]


class ModelInput(SpecModel):
    """One chat message sent to a judge model."""

    role: Literal["user", "assistant", "system", "developer"]
    """Who says it."""
    content: str | ContentPart | list[ContentPart]
    """The message; text may hold templates."""
    type: Literal["message"] | None = None
    """Always `message` when given."""


class SamplingParams(SpecModel):
    """Sampling parameters passed through to the judge model."""

    model_config = ConfigDict(populate_by_name=True)

    max_completions_tokens: int | None = Field(
        default=None, validation_alias="max_completions_tokens", gt=0
    )
    """Most tokens the judge may generate (OpenAI's spelling; `max_completion_tokens` works too)."""
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    """Reasoning effort for reasoning judges."""
    seed: int | None = None
    """Sampling seed."""
    temperature: float | None = Field(default=None, ge=0)
    """Sampling temperature."""
    top_p: float | None = Field(default=None, gt=0, le=1)
    """Nucleus sampling mass."""

    @model_validator(mode="before")
    @classmethod
    def _alias(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "max_completion_tokens" in data:
            data = dict(data)
            data.setdefault("max_completions_tokens", data.pop("max_completion_tokens"))
        return data


class ScoreModelGrader(GraderModel):
    """Asks a judge model for a numeric score (`{result, steps}` structured output)."""

    type: Literal["score_model"] = "score_model"
    """Always `score_model`."""
    name: str = "score_model"
    """Metric key for this grader. Optional, as in OpenAI: it defaults to the `type`, and inside a
    `multi`'s `graders` dict to the grader's key there."""
    model: str
    """Judge model name; its endpoint is configured per name (see the outside-graders docs)."""
    input: list[ModelInput] = Field(min_length=1)
    """Messages sent to the judge; may hold templates."""
    range: list[float] | None = None
    """`[min, max]` of the score; the score is clamped to it. Defaults to `[0, 1]`."""
    sampling_params: SamplingParams | None = None
    """Passed through to the judge."""
    pass_threshold: float | None = None
    """Score at or above which the sample counts as passing."""
    group: Literal["score", "rank"] | None = None
    """OpenRFT extension: judge a prompt's whole group of completions in one call. The judge
    gets `input` (rendered with `item` only: it may not use `{{ sample.… }}`), then one user
    message listing the completions as `<completion i>…</completion i>`, and answers
    `{steps, result}` with `result` a list: `score`, one score per completion (clamped to
    `range`); `rank`, the completion numbers best first (best scores `range`'s max, worst its
    min, evenly between). A group of one is asked for a score in either mode. Absent: one call
    per sample, as in OpenAI."""

    @field_validator("range")
    @classmethod
    def _range(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) != 2 or not value[0] < value[1]):
            raise ValueError("range must be two numbers [min, max] with min < max, e.g. [0, 1]")
        return value

    @model_validator(mode="after")
    def _group_input(self) -> ScoreModelGrader:
        if self.group is None:
            return self
        for i, message in enumerate(self.input):
            for text in _texts(message.content):
                if any(namespace == "sample" for namespace, _ in template.variables(text)):
                    raise ValueError(
                        f"input[{i}] uses {{{{ sample.… }}}}, but a `group` judge sees every "
                        "completion at once (they are appended after `input`): use only "
                        "{{ item.… }} there, or drop `group` to judge each sample alone"
                    )
        return self


def _texts(content: str | ContentPart | list[ContentPart]) -> list[str]:
    """The template-bearing strings of a message's content."""
    parts = content if isinstance(content, list) else [content]
    return [
        part
        if isinstance(part, str)
        else part.image_url
        if isinstance(part, InputImage)
        else part.text
        for part in parts
    ]


class LabelModelGrader(GraderModel):
    """Asks a judge model to pick a label; reward 1 when the label is a passing one."""

    type: Literal["label_model"] = "label_model"
    """Always `label_model`."""
    name: str = "label_model"
    """Metric key for this grader. Optional, as in OpenAI: it defaults to the `type`, and inside a
    `multi`'s `graders` dict to the grader's key there."""
    model: str
    """Judge model name."""
    input: list[ModelInput] = Field(min_length=1)
    """Messages sent to the judge; may hold templates."""
    labels: list[str] = Field(min_length=1)
    """The labels the judge may assign."""
    passing_labels: list[str] = Field(min_length=1)
    """Labels that count as passing; a subset of `labels`."""

    @model_validator(mode="after")
    def _subset(self) -> LabelModelGrader:
        extra = [label for label in self.passing_labels if label not in self.labels]
        if extra:
            raise ValueError(
                f"passing_labels {extra} are not in labels {self.labels}: add them to labels"
            )
        return self


def parse_source(value: str) -> ast.Module:
    """A user's Python source (a python grader's, tool's or environment's), parsed; a
    `ValueError` saying what is wrong when it is over `MAX_PYTHON_SOURCE_BYTES` or does not
    parse."""
    size = len(value.encode())
    if size > MAX_PYTHON_SOURCE_BYTES:
        raise ValueError(f"source is {size} bytes; the limit is {MAX_PYTHON_SOURCE_BYTES}")
    try:
        return ast.parse(value)
    except SyntaxError as exc:
        raise ValueError(f"source does not parse: line {exc.lineno}: {exc.msg}") from None


def _checked_source(value: str) -> str:
    parse_source(value)
    return value


PythonSource = Annotated[str, AfterValidator(_checked_source)]
"""A user's Python source field (a tool's, an environment's): at most 256 KB, and it parses."""


class PythonGrader(GraderModel):
    """Runs the user's `def grade(sample, item) -> float` in the sandbox (or, OpenRFT extension,
    `def grade_group(samples, item) -> list[float]`, which scores a prompt's whole group)."""

    type: Literal["python"] = "python"
    """Always `python`."""
    name: str = "python"
    """Metric key for this grader. Optional, as in OpenAI: it defaults to the `type`, and inside a
    `multi`'s `graders` dict to the grader's key there."""
    source: str
    """Python source defining `grade(sample: dict, item: dict) -> float`, or
    `grade_group(samples: list[dict], item: dict) -> list[float]` (one score per sample, in
    order; the group's samples share one prompt and item), or both: then a group of one is
    scored by `grade` (validation samples one completion per row). At most 256 KB."""
    image_tag: str | None = None
    """Accepted for OpenAI compatibility; OpenRFT runs one runtime (`openrft[grader-runtime]`)."""
    pass_threshold: float | None = None
    """Score at or above which the sample counts as passing."""

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        tree = parse_source(value)
        found = {
            node.name: node
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name in ("grade", "grade_group")
        }
        if not found:
            raise ValueError(
                "source must define a top-level `def grade(sample, item) -> float` (or "
                "`def grade_group(samples, item) -> list[float]` to score a whole group)"
            )
        for name, node in found.items():
            n_args = len(node.args.posonlyargs) + len(node.args.args)
            if n_args < 2 and node.args.vararg is None:
                first = "samples" if name == "grade_group" else "sample"
                raise ValueError(
                    f"`{name}` must take two arguments: def {name}({first}, item) "
                    f"(line {node.lineno})"
                )
        return value

    @property
    def grades_groups(self) -> bool:
        """Whether the source defines `grade_group`: the grader then scores whole groups."""
        return "grade_group" in defined_functions(self.source)

    @property
    def grades_samples(self) -> bool:
        """Whether the source defines `grade`."""
        return "grade" in defined_functions(self.source)


@functools.lru_cache(maxsize=256)
def defined_functions(source: str) -> frozenset[str]:
    """The names of the top-level functions `source` defines (it parses: it was validated)."""
    return frozenset(
        node.name for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)
    )


class EndpointGrader(GraderModel):
    """POSTs `{sample, item, trace_id}` to your HTTP endpoint, which answers `{"score": float}`."""

    type: Literal["endpoint"] = "endpoint"
    """Always `endpoint`."""
    name: str = "endpoint"
    """Metric key for this grader. Optional, as in OpenAI: it defaults to the `type`, and inside a
    `multi`'s `graders` dict to the grader's key there."""
    url: str
    """http(s) URL of the grading endpoint."""
    headers: dict[str, str] | None = None
    """Extra request headers (e.g. `Authorization`), sent as written except that
    `${secret:NAME}` is replaced by the project's secret NAME (`openrft secrets set`; local
    commands read `$OPENRFT_SECRET_NAME`). Other variables are never read: `${VAR}` is an
    error."""
    rate_limit: float | None = Field(default=None, gt=0)
    """Most requests per second sent to the endpoint (unlimited when absent)."""
    pass_threshold: float | None = None
    """Score at or above which the sample counts as passing."""
    timeout: float = Field(default=30.0, gt=0, le=120)
    """Seconds one attempt may take in all (connect, send, the whole answer) before it is
    retried; at most 120 (OpenRFT extension)."""

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(
                f"url must be an http(s) URL such as https://host/grade, got {value!r}"
            )
        return value


class FormatCheckGrader(GraderModel):
    """SeekrFlow's format reward: 1 when the output is `<think>…</think><answer>…</answer>`."""

    type: Literal["format_check"] = "format_check"
    """Always `format_check`."""
    name: str = "format_check"
    """Metric key for this grader. Defaults to the `type`, and inside a `multi`'s `graders`
    dict to the grader's key there."""
    input: str = "{{ sample.output_text }}"
    """Text to check."""

    _templates = field_validator("input")(_check_templates)


class MathAccuracyGrader(GraderModel):
    """SeekrFlow's math grader: 1 when the answer is mathematically equal to the reference."""

    type: Literal["math_accuracy"] = "math_accuracy"
    """Always `math_accuracy`."""
    name: str = "math_accuracy"
    """Metric key for this grader. Defaults to the `type`, and inside a `multi`'s `graders`
    dict to the grader's key there."""
    input: str = "{{ sample.output_answer }}"
    """The model's answer: `\\boxed{}`, fractions, LaTeX or plain numbers."""
    reference: str = "{{ item.reference_answer }}"
    """The correct answer."""

    _templates = field_validator("input", "reference")(_check_templates)


class MultiGrader(GraderModel):
    """Runs several graders and combines their rewards with `calculate_output`."""

    type: Literal["multi"] = "multi"
    """Always `multi`."""
    name: str = "multi"
    """Metric key for this grader. Optional, as in OpenAI: it defaults to the `type`, and inside a
    `multi`'s `graders` dict to the grader's key there."""
    graders: dict[str, Grader]
    """Sub-graders keyed by the name the formula uses (a sub-grader's own `name` only labels its
    metric). A single grader (the SDK form) is keyed by its own `name`, or its `type`."""
    calculate_output: str
    """Formula over the sub-graders' names: `+ - * / ^`, numbers, parentheses and
    `min max abs floor ceil exp sqrt log`. E.g. `0.9 * correct + 0.1 * format`."""
    invalid_grade: float | None = Field(
        default=None, ge=-MAX_ABS_REWARD, le=MAX_ABS_REWARD, allow_inf_nan=False
    )
    """Reward for a sample whose grading failed: a sub-grader failed (its error flag is set) or
    `calculate_output` could not be evaluated for it (say `log(0)`). The error flags are kept.
    When absent, a failed sub-grader counts 0 in the formula and a failed formula scores 0."""
    pass_threshold: float | None = None
    """Reward at or above which a sample passes (reported in `metadata.scores.passed`)."""

    @field_validator("graders", mode="before")
    @classmethod
    def _keyed(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value
        if isinstance(value.get("type"), str):  # the SDK form: one grader, keyed by its name
            return {str(value.get("name", value["type"])): value}
        # OpenAI's examples often leave a sub-grader's `name` out; its key is the name the
        # formula already uses for it, so it is the natural metric key too.
        return {
            key: {**sub, "name": str(key)}
            if isinstance(sub, Mapping) and "name" not in sub
            else sub
            for key, sub in value.items()
        }

    @field_validator("graders")
    @classmethod
    def _non_empty(cls, value: dict[str, Grader]) -> dict[str, Grader]:
        if not value:
            raise ValueError("a multi grader needs at least one sub-grader")
        return value

    @field_validator("calculate_output")
    @classmethod
    def _formula(cls, value: str, info: ValidationInfo) -> str:
        from openrft.graders import expression

        graders = info.data.get("graders")
        if graders is None:  # the graders failed validation; that error is reported instead
            return value
        try:
            expression.parse(value, set(graders))
        except FormulaError as exc:
            raise ValueError(f"formula_parse_error: {exc}") from None
        return value

    @model_validator(mode="after")
    def _passed_is_free(self) -> MultiGrader:
        # `passed` sits beside the sub-graders' scores in `metadata.scores`; a sub-grader keyed
        # `passed` would be overwritten there.
        if self.pass_threshold is not None and "passed" in self.graders:
            raise ValueError(
                "a sub-grader keyed `passed` clashes with pass_threshold's `passed` score: "
                "rename it"
            )
        return self


GRADER_TYPES: dict[str, type[SpecModel]] = {row.name: globals()[row.spec] for row in REGISTRY}
"""Each grader type's spec model, in the registry's order."""

if TYPE_CHECKING:  # mypy needs the unions spelled out; tests/graders/test_registry.py checks them
    LeafGrader: TypeAlias = Annotated[
        StringCheckGrader
        | TextSimilarityGrader
        | ScoreModelGrader
        | LabelModelGrader
        | PythonGrader
        | EndpointGrader
        | FormatCheckGrader
        | MathAccuracyGrader,
        Field(discriminator="type"),
    ]
    Grader: TypeAlias = Annotated[LeafGrader | MultiGrader, Field(discriminator="type")]
else:
    # From the registry: every type but `multi`, then `multi` (the order pydantic lists tags in).
    LeafGrader = Annotated[
        functools.reduce(operator.or_, [m for m in GRADER_TYPES.values() if m is not MultiGrader]),
        Field(discriminator="type"),
    ]
    Grader = Annotated[LeafGrader | MultiGrader, Field(discriminator="type")]

_ADAPTER: TypeAdapter[Grader] = TypeAdapter(Grader)


def parse_grader(data: Any) -> Grader:
    """Validate an OpenAI-dialect grader spec; raise `SpecError` with every problem."""
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise SpecError(spec_problems(exc), "invalid grader spec") from None


def spec_problems(exc: ValidationError, root: str = "$") -> list[Problem]:
    """A grader spec's pydantic errors as `Problem`s at their JSON paths under `root`."""
    return problems_from(exc, Grader, root, advice=_advice)


def _advice(error: ErrorDetails) -> str | None:
    """Grader wording for a missing or unknown `type` (the rest is `problems_from`'s)."""
    if error["type"] == "union_tag_invalid":
        tag = str(error.get("ctx", {}).get("tag", "?"))
        did = did_you_mean(tag, list(GRADER_TYPES))
        return f"unknown grader type {tag!r}{did}; use one of {', '.join(GRADER_TYPES)}"
    if error["type"] == "union_tag_not_found":
        return 'every grader needs a `type`, e.g. "type": "string_check"'
    return None
