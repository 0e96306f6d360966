"""SeekrFlow's `reward_components` → the same `multi` grader tree the OpenAI dialect builds.

Mirrors `seekrai` 0.35.1 (`seekrai/types/finetune.py`: `RewardComponents`, the grader variants
`FormatCheckGrader`, `MathAccuracyGrader`, `StringCheckGrader`, `TextSimilarityGrader`,
`LLMGrader`, and `RewardComponents.validate_weights`):

- `format_reward_weight`: 0 < w ≤ 1, default 0.1 (so 0 is rejected, as seekrai does). It weights
  the format reward (`format_check` on the whole output), which is always part of the reward.
- `graders`: at least one; `type` and `operation` are matched ignoring case. Every grader has an
  optional `weight` (0 < w ≤ 1). `string_check` needs `operation` (`equals`, `not_equals`,
  `contains`, `case_insensitive_contains`); `text_similarity` needs `operation` (`bleu`, `rouge`);
  `llm` takes `seed` (≥ 0), `top_p` (0–1), `temperature` (0–1.5, default 0) and
  `max_completion_tokens` (≥ 1, default 512).
- Weight rules, in seekrai's order: some graders weighted but not all → error. All weighted and
  `format_reward_weight` given → the sum must be 1.0 (±1e-10) or error. All weighted, format
  weight not given → grader weights are rescaled to fill 1 − 0.1 (unless they already do).
  None weighted → each grader gets (1 − format weight) / n.

The compiled tree: `format` (format_check) plus one sub-grader per entry, named after its type
and operation (`string_check_contains`; `_2`, `_3` for repeats), combined by
`calculate_output = "0.1 * format + 0.9 * math_accuracy"`. Each grader compares the `<answer>`
content (`{{ sample.output_answer }}`, the whole output when there is no tag) with
`{{ item.reference_answer }}`; string_check ops map to OpenAI's eq / ne / like / ilike,
text_similarity `bleu` to `bleu` and `rouge` to `rouge_l` (seekrai does not say which ROUGE; we
chose the LCS F-measure), `llm` to a `score_model` judging the answer against the reference in
[0, 1] with the grader's sampling settings (seekrai has no prompt or judge-model field: the
prompt is ours, `LLM_JUDGE_PROMPT`; the judge is `model`, an OpenRFT extension defaulting to
`seekr-llm-judge`, configured like any judge model).

Where OpenRFT is stricter than seekrai: seekrai silently drops unknown keys on a grader; OpenRFT
drops only `operation` and `config` (keys legacy seekrai payloads carry) and reports any other
unknown key with a "did you mean", so a misspelt `wieght` cannot silently change the weights.
`top_p: 0` is rejected (OpenRFT judges need top_p > 0; use temperature 0 for greedy judging).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from openrft.errors import Problem, SpecError, problems_from
from openrft.graders.spec import (
    FormatCheckGrader,
    Grader,
    MathAccuracyGrader,
    ModelInput,
    MultiGrader,
    SamplingParams,
    ScoreModelGrader,
    SpecModel,
    StringCheckGrader,
    TextSimilarityGrader,
)

DEFAULT_FORMAT_REWARD_WEIGHT = 0.1
"""seekrai's default reward share for the `<think>…</think><answer>…</answer>` form."""
DEFAULT_REWARD_COMPONENTS: dict[str, Any] = {
    "format_reward_weight": DEFAULT_FORMAT_REWARD_WEIGHT,
    "graders": [{"type": "math_accuracy", "weight": 0.9}],
}
"""What SeekrFlow trains a `REINFORCEMENT` job on when it has no `reward_components`."""
WEIGHT_TOLERANCE = 1e-10
"""seekrai's tolerance when explicit weights must sum to 1.0."""
ANSWER = "{{ sample.output_answer }}"
REFERENCE = "{{ item.reference_answer }}"
LLM_JUDGE_MODEL = "seekr-llm-judge"
"""Judge model name an `llm` grader uses unless it sets `model`."""
LLM_JUDGE_PROMPT = (
    "You grade an answer against a reference answer. Give 1 when the answer means the same as "
    "the reference (wording, formatting and equivalent forms do not matter), 0 when it is wrong, "
    "missing or contradicts the reference, and a value in between when it is partly right."
)
"""System prompt of the compiled `score_model` judge (SeekrFlow's own prompt is not published)."""
STRING_OPERATIONS = {
    "equals": "eq",
    "not_equals": "ne",
    "contains": "like",
    "case_insensitive_contains": "ilike",
}
TEXT_METRICS = {"bleu": "bleu", "rouge": "rouge_l"}
_FLOAT: TypeAdapter[float] = TypeAdapter(float)
LEGACY_KEYS = frozenset({"operation", "config"})
"""Keys seekrai ignores on graders that do not use them; dropped here too."""


def _in_range(value: float | None, what: str) -> float | None:
    if value is not None and not 0.0 < value <= 1.0:
        raise ValueError(f"{what} must be > 0 and ≤ 1 (seekrai's rule), got {value}")
    return value


def _casefold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


class SeekrGrader(SpecModel):
    """Fields every SeekrFlow grader has."""

    weight: float | None = None
    """Share of the total reward, 0 < weight ≤ 1; give it on every grader or on none."""

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: float | None) -> float | None:
        return _in_range(value, "weight")


class SeekrFormatCheck(SeekrGrader):
    """`format_check`: the `<think>…</think><answer>…</answer>` format, as a weighted grader."""

    type: Literal["format_check"]


class SeekrMathAccuracy(SeekrGrader):
    """`math_accuracy`: the answer is mathematically equal to `reference_answer` (math-verify)."""

    type: Literal["math_accuracy"]


class SeekrStringCheck(SeekrGrader):
    """`string_check`: compares the answer with `reference_answer`."""

    type: Literal["string_check"]
    operation: Literal["equals", "not_equals", "contains", "case_insensitive_contains"]
    """`equals`, `not_equals`, `contains` (answer holds the reference) or its case-blind twin."""

    _fold = field_validator("operation", mode="before")(_casefold)


class SeekrTextSimilarity(SeekrGrader):
    """`text_similarity`: BLEU or ROUGE-L between the answer and `reference_answer`."""

    type: Literal["text_similarity"]
    operation: Literal["bleu", "rouge"]
    """`bleu` (nltk sentence BLEU) or `rouge` (ROUGE-L F-measure)."""

    _fold = field_validator("operation", mode="before")(_casefold)


class SeekrLLM(SeekrGrader):
    """`llm`: a judge model scores the answer against `reference_answer` in [0, 1]."""

    type: Literal["llm"]
    seed: int | None = Field(default=None, ge=0)
    """Judge sampling seed."""
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    """Judge nucleus sampling mass (OpenRFT needs > 0; seekrai allows 0)."""
    temperature: float = Field(default=0.0, ge=0.0, le=1.5)
    """Judge sampling temperature."""
    max_completion_tokens: int = Field(default=512, ge=1)
    """Most tokens the judge may write."""
    model: str = LLM_JUDGE_MODEL
    """OpenRFT extension (seekrai ignores it): which configured judge model grades."""


SEEKR_GRADERS: dict[str, type[SeekrGrader]] = {
    "format_check": SeekrFormatCheck,
    "math_accuracy": SeekrMathAccuracy,
    "string_check": SeekrStringCheck,
    "text_similarity": SeekrTextSimilarity,
    "llm": SeekrLLM,
}


def compile_reward_components(data: Mapping[str, Any]) -> MultiGrader:
    """Validate SeekrFlow `reward_components` (or an object holding them, such as a seekrai
    `TrainingConfig`) and compile them; raise `SpecError` listing every problem at once."""
    components, root = _unwrap(data)
    if not isinstance(components, Mapping):
        raise SpecError([Problem(root, "reward_components must be an object with `graders`")])
    problems = _unknown_keys(components, {"format_reward_weight", "graders"}, root)
    format_weight = _format_weight(components, root, problems)
    explicit = "format_reward_weight" in components
    raw = components.get("graders")
    graders = _graders(raw, f"{root}.graders", problems)
    mixed = _mixed_weights(raw, f"{root}.graders")
    problems += mixed
    if graders is not None and format_weight is not None and not mixed:
        problems += _sum_problems(format_weight, explicit, graders, root)
    if problems or graders is None or format_weight is None:
        raise SpecError(problems, "invalid SeekrFlow reward_components")
    weights = resolve_weights(format_weight, explicit, [g.weight for g in graders])
    return build_tree(format_weight, list(zip(graders, weights, strict=True)))


def _unwrap(data: Mapping[str, Any]) -> tuple[Any, str]:
    if "reward_components" not in data:
        return data, "$"
    components = data["reward_components"]
    if components is None:  # seekrai's TrainingConfig default for REINFORCEMENT jobs
        components = DEFAULT_REWARD_COMPONENTS
    return components, "$.reward_components"


def _unknown_keys(data: Mapping[str, Any], known: set[str], where: str) -> list[Problem]:
    problems = []
    for key in data:
        if key not in known:
            hint = difflib.get_close_matches(str(key), known, n=1)
            did = f" (did you mean {hint[0]!r}?)" if hint else ""
            problems.append(
                Problem(
                    f"{where}.{key}",
                    f"unknown key {key!r}{did}; remove it or "
                    f"fix its name (allowed: {', '.join(sorted(known))})",
                )
            )
    return problems


def _format_weight(
    components: Mapping[str, Any], root: str, problems: list[Problem]
) -> float | None:
    raw = components.get("format_reward_weight", DEFAULT_FORMAT_REWARD_WEIGHT)
    where = f"{root}.format_reward_weight"
    try:  # a number in a string passes, as under seekrai's pydantic model; a boolean does not
        value = _FLOAT.validate_python(raw) if not isinstance(raw, bool) else None
    except ValidationError:
        value = None
    if value is None:
        problems.append(Problem(where, f"must be a number > 0 and ≤ 1, got {raw!r}"))
        return None
    if not 0.0 < value <= 1.0:
        problems.append(
            Problem(
                where,
                f"must be > 0 and ≤ 1, got {raw!r} (seekrai rejects 0: "
                "to grade without a format reward, write an OpenAI `multi` grader)",
            )
        )
        return None
    return value


def _graders(raw: Any, where: str, problems: list[Problem]) -> list[SeekrGrader] | None:
    if not isinstance(raw, list) or not raw:
        problems.append(
            Problem(where, "needs a list of at least one grader, e.g. [{type: math_accuracy}]")
        )
        return None
    parsed = [_grader(entry, f"{where}[{i}]", problems) for i, entry in enumerate(raw)]
    valid = [g for g in parsed if g is not None]
    return valid if len(valid) == len(parsed) else None


def _grader(entry: Any, where: str, problems: list[Problem]) -> SeekrGrader | None:
    if not isinstance(entry, Mapping):
        problems.append(Problem(where, "each grader must be an object with a `type`"))
        return None
    kind = _casefold(entry.get("type"))
    model = SEEKR_GRADERS.get(kind) if isinstance(kind, str) else None
    if model is None:
        hint = difflib.get_close_matches(str(kind), SEEKR_GRADERS, n=1)
        did = f" (did you mean {hint[0]!r}?)" if hint else ""
        problems.append(
            Problem(
                f"{where}.type",
                f"unknown grader type {entry.get('type')!r}{did}; "
                f"use one of {', '.join(SEEKR_GRADERS)}",
            )
        )
        return None
    fields = set(model.model_fields)
    data = {k: v for k, v in entry.items() if k in fields or k not in LEGACY_KEYS}
    unknown = _unknown_keys(data, fields, where)
    problems += unknown
    try:
        return None if unknown else model.model_validate({**data, "type": kind})
    except ValidationError as exc:
        problems += problems_from(exc, model, where)
        return None


def _mixed_weights(raw: Any, where: str) -> list[Problem]:
    """seekrai's first rule: every grader has a weight, or none has."""
    if not isinstance(raw, list):
        return []
    missing = [
        i for i, g in enumerate(raw) if not (isinstance(g, Mapping) and g.get("weight") is not None)
    ]
    if not missing or len(missing) == len(raw):
        return []
    which = ", ".join(f"graders[{i}]" for i in missing)
    return [
        Problem(
            where,
            f"only some graders have a weight ({which} have none); give every "
            "grader a weight, or none to split the reward equally",
        )
    ]


def _sum_problems(
    format_weight: float, format_explicit: bool, graders: list[SeekrGrader], root: str
) -> list[Problem]:
    """seekrai's second rule: with every weight given, they sum to 1.0."""
    if not format_explicit or any(g.weight is None for g in graders):
        return []
    total = format_weight + sum(g.weight or 0.0 for g in graders)
    if abs(total - 1.0) <= WEIGHT_TOLERANCE:
        return []
    parts = " + ".join(f"{g.weight:g}" for g in graders)
    return [
        Problem(
            root,
            f"format_reward_weight {format_weight:g} + grader weights {parts} = "
            f"{total:g}, but with every weight given they must sum to 1.0; fix the "
            "weights, or drop format_reward_weight to have the grader weights rescaled "
            f"to fill {1 - DEFAULT_FORMAT_REWARD_WEIGHT:g}",
        )
    ]


def resolve_weights(
    format_weight: float, format_explicit: bool, weights: list[float | None]
) -> list[float]:
    """The grader weights seekrai ends up with (the rules must already hold)."""
    given = [1.0 if w is None else w for w in weights]
    if all(w is not None for w in weights) and format_explicit:
        return given
    target, total = 1.0 - format_weight, sum(given)
    if abs(total - target) <= WEIGHT_TOLERANCE:
        return given
    scale = target / total  # computed as seekrai does, so the floats match to the last bit
    return [w * scale for w in given]


def build_tree(format_weight: float, graders: list[tuple[SeekrGrader, float]]) -> MultiGrader:
    """The `multi` grader: `format` plus one compiled sub-grader per SeekrFlow grader."""
    tree: dict[str, Grader] = {"format": FormatCheckGrader(name="format")}
    terms = [f"{format_weight!r} * format"]
    for grader, weight in graders:
        key = _unique(_base_name(grader), tree)
        tree[key] = seekr_grader_spec(grader, key)
        terms.append(f"{weight!r} * {key}")
    return MultiGrader(name="reward_components", graders=tree, calculate_output=" + ".join(terms))


def _base_name(grader: SeekrGrader) -> str:
    operation = getattr(grader, "operation", None)
    kind = str(getattr(grader, "type", "grader"))
    return f"{kind}_{operation}" if operation else kind


def _unique(name: str, taken: Mapping[str, Any]) -> str:
    n, candidate = 1, name
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def seekr_grader_spec(grader: SeekrGrader, name: str) -> Grader:
    """One SeekrFlow grader as an OpenRFT grader spec."""
    if isinstance(grader, SeekrFormatCheck):
        return FormatCheckGrader(name=name)
    if isinstance(grader, SeekrMathAccuracy):
        return MathAccuracyGrader(name=name, input=ANSWER, reference=REFERENCE)
    if isinstance(grader, SeekrStringCheck):
        return StringCheckGrader(
            name=name,
            input=ANSWER,
            reference=REFERENCE,
            operation=STRING_OPERATIONS[grader.operation],
        )
    if isinstance(grader, SeekrTextSimilarity):
        return TextSimilarityGrader(
            name=name,
            input=ANSWER,
            reference=REFERENCE,
            evaluation_metric=TEXT_METRICS[grader.operation],
        )
    if isinstance(grader, SeekrLLM):
        return _judge(grader, name)
    raise TypeError(f"no compiler for {type(grader).__name__}")


def _judge(grader: SeekrLLM, name: str) -> ScoreModelGrader:
    user = f"Reference answer:\n{REFERENCE}\n\nAnswer to grade:\n{ANSWER}"
    params = SamplingParams(
        seed=grader.seed,
        top_p=grader.top_p,
        temperature=grader.temperature,
        max_completions_tokens=grader.max_completion_tokens,
    )
    return ScoreModelGrader(
        name=name,
        model=grader.model,
        input=[
            ModelInput(role="system", content=LLM_JUDGE_PROMPT),
            ModelInput(role="user", content=user),
        ],
        range=[0.0, 1.0],
        sampling_params=params,
    )
