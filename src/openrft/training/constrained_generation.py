"""`response_format` while training: completions constrained to the job's JSON schema on every
backend.

`schema_problems(schema)` checks a job's `response_format` before anything runs (the config
validator calls it): a JSON schema by its meta-schema (`jsonschema`), that outlines-core can
compile to a regular expression. Each problem is at the JSON path of the smallest part that
fails (`$.properties.x`: the config reports it under `$.response_format`) and says what to do.
`schema_regex(schema)` is that expression; vLLM gets it as TRL's
`vllm_structured_outputs_regex`. On the transformers backend, `constraint_for(config,
tokenizer)` builds the outlines-core index over the tokenizer's vocabulary
(`inference.constrained`, shared with the chat server), and `constrained_generate(model, ...)`
makes every `model.generate` call inside it sample through `ConstrainedLogits`, one
constraint state per generated row: eos only where the text is a whole match, eos alone once
nothing can follow. TRL's `GRPOTrainer` is hooked there (`grpo.py`); validation passes
`schema_processors` to its own `generate`.

What it does not do: close a completion early. A row still inside the schema at
`max_completion_length` is cut there, as vLLM cuts it, and its truncated JSON is graded
`sample_parse_error`; a schema whose every match is short (`enum`, `maxLength`, bounded
arrays) always finishes in time. Keywords the compiler ignores (`minimum`, `multipleOf`,
`uniqueItems`, ...) are not enforced while sampling; the grader's schema check still flags
outputs that break them. `{"type": "object"}` alone (OpenAI's `json_object`) is sampled as
objects nested two levels deep: outlines-core's three-level form took 29 s to index over
SmolLM2's vocabulary. The sampling distribution is the masked one while TRL's log-probabilities are
the model's own, as with vLLM's guided decoding. Importing this module imports neither torch
nor outlines_core.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from openrft.errors import ConfigError, MissingResourceError, Problem, json_key

if TYPE_CHECKING:
    from openrft.inference.constrained import Constraint
    from openrft.training.config import TrainingConfig

ANY_OBJECT: dict[str, Any] = {"type": "object"}
"""The schema OpenAI's `json_object` maps to: any JSON object."""
WRAPPER_TYPES = ("json_schema", "json_object", "text")
"""`type`s of OpenAI's `response_format` wrapper, which is not itself a JSON schema."""
SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "patternProperties", "dependentSchemas")
SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems", "items")
SUBSCHEMAS = ("items", "additionalProperties", "not", "contains", "if", "then", "else")
ADVICE = (
    "rewrite it with keywords outlines-core compiles (`type`, `properties`, `required`, `enum`, "
    "`const`, `anyOf`, `items`, `minLength`/`maxLength`, `pattern`, `$ref` into `$defs`), or "
    "remove `response_format` and check the format in the grader"
)
REF_ADVICE = "point `$ref` at a definition under the schema's `$defs` (`#/$defs/NAME`)"


def schema_problems(schema: Any) -> list[Problem]:
    """What keeps `schema` from constraining generation, each at its JSON path (`$` is the
    schema); empty when it can. Without jsonschema or outlines-core installed (an API process
    without the `train` extra) those checks are left to the training run."""
    if not isinstance(schema, dict):
        return [Problem("$", 'must be a JSON schema object, e.g. {"type": "object", ...}')]
    if schema.get("type") in WRAPPER_TYPES:
        message = (
            "is OpenAI's `response_format` wrapper; the native `response_format` is the JSON "
            "schema itself: put the `json_schema.schema` object here (`json_object`: "
            '{"type": "object"}), or use the OpenAI job body'
        )
        return [Problem("$", message)]
    try:
        import jsonschema  # type: ignore[import-untyped]
        from jsonschema.validators import validator_for  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        try:
            validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            where = "$" + "".join(json_key(part) for part in exc.absolute_path)
            return [Problem(where, f"is not valid JSON schema: {exc.message}")]
    try:
        _compile(schema)
    except ImportError:
        return []
    except (ValueError, TypeError):
        return [_failing_part(schema, schema, "$")]
    return []


def schema_regex(schema: dict[str, Any]) -> str:
    """The regular expression generation is constrained to for `schema`; `ConfigError` at the
    failing part's path (under `$.response_format`) when there is none."""
    problems = schema_problems(schema)
    if problems:
        raise ConfigError([Problem("$.response_format" + p.where[1:], p.message) for p in problems])
    try:
        return _compile(schema)
    except ImportError:
        raise MissingResourceError(
            "constraining generation to `response_format` needs outlines-core: "
            "pip install 'openrft[train]'"
        ) from None


def _compile(schema: dict[str, Any]) -> str:
    if schema == ANY_OBJECT:
        from openrft.inference.structured import any_object_regex

        return any_object_regex()
    from outlines_core.json_schema import build_regex_from_schema

    return str(build_regex_from_schema(json.dumps(schema)))


def _failing_part(schema: dict[str, Any], root: dict[str, Any], where: str) -> Problem:
    """The deepest subschema of `schema` that fails to compile on its own (with the root's
    `$defs` for its references), or `schema` itself."""
    definitions: dict[str, Any] = {k: root[k] for k in ("$defs", "definitions") if k in root}
    for path, child in _children(schema):
        try:
            _compile({**definitions, **child})
        except (ValueError, TypeError):
            return _failing_part(child, root, where + path)
    try:
        _compile({**definitions, **schema})
        detail = "it compiles alone, but not where it is used"
    except (ValueError, TypeError) as exc:
        detail = str(exc).split("\n")[0].strip()
    advice = REF_ADVICE if "reference" in detail.lower() else ADVICE
    message = f"outlines-core cannot constrain generation to this schema ({detail}); {advice}"
    return Problem(where, message)


def _children(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each object-valued subschema of `schema`, with its relative JSON path."""
    for key, value in schema.items():
        if key in SUBSCHEMA_MAPS and isinstance(value, dict):
            for name, child in value.items():
                if isinstance(child, dict):
                    yield json_key(key) + json_key(name), child
        elif key in SUBSCHEMA_LISTS and isinstance(value, list):
            for i, child in enumerate(value):
                if isinstance(child, dict):
                    yield json_key(key) + json_key(i), child
        elif key in SUBSCHEMAS and isinstance(value, dict):
            yield json_key(key), value


# --- sampling ----------------------------------------------------------------------------------


def constraint_for(config: TrainingConfig, tokenizer: Any) -> Constraint | None:
    """The constraint transformers' `generate` samples `config`'s completions through (`None`:
    no `response_format`); with vLLM only validation uses it, vLLM constrains its own samples.
    Building the index can take seconds for a large vocabulary; it is cached per tokenizer and
    schema."""
    if config.response_format is None:
        return None
    regex = schema_regex(config.response_format)
    from openrft.inference import constrained

    try:
        return constrained.constraint(tokenizer, regex)
    except ValueError as exc:  # the vocabulary cannot spell every string of the schema
        detail = str(exc).split("\n")[0][:300]
        message = f"cannot constrain generation with this model's vocabulary: {detail}"
        raise ConfigError([Problem("$.response_format", message)]) from exc


def schema_processors(constraint: Constraint, rows: int, eos: int | list[int]) -> Any:
    """A `LogitsProcessorList` constraining one `generate` call over `rows` rows (a fresh
    state per row: prompts × generations each have their own)."""
    from transformers import LogitsProcessorList

    from openrft.inference.constrained import ConstrainedLogits

    return LogitsProcessorList([ConstrainedLogits([constraint.start() for _ in range(rows)], eos)])


@contextmanager
def constrained_generate(
    model: Any, constraint: Constraint, eos: int | list[int]
) -> Iterator[None]:
    """Inside, every `model.generate(input_ids=...)` call samples through `constraint`.

    TRL's `GRPOTrainer` calls `generate` with its own `GenerationConfig` and no processors; this
    wraps the (unwrapped, possibly peft) model's `generate` for the duration, so TRL's padding,
    eos masking and distributed unwrapping stay as they are."""
    original = model.generate

    def generate(*args: Any, **kwargs: Any) -> Any:
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        config = kwargs.get("generation_config")
        returned = kwargs.get("num_return_sequences", getattr(config, "num_return_sequences", 1))
        per_prompt = int(returned or 1)
        processors = schema_processors(constraint, int(ids.shape[0]) * per_prompt, eos)
        processors[:0] = list(kwargs.pop("logits_processor", None) or [])
        return original(*args, logits_processor=processors, **kwargs)

    with generate_replaced(model, generate):
        yield


@contextmanager
def generate_replaced(model: Any, generate: Any) -> Iterator[None]:
    """`model.generate` is `generate` inside; the model's own is back after (an instance-level
    one, such as a `custom_generate`, restored as it was)."""
    original = model.__dict__.get("generate")
    model.generate = generate
    try:
        yield
    finally:
        if original is not None:
            model.generate = original
        else:
            del model.generate
