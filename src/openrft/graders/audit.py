"""Reward-hacking audit: score adversarial completions against every dataset row.

A grader that pays for an empty answer, for the prompt echoed back, or for every reference in the
file pasted together will be found by GRPO long before it finds the real task. `audit` runs such
probes through the real grader (same engine, same batch path as training) and reports each probe
whose mean reward is high, with a plain-language explanation of which sub-grader paid and why.

It does not prove a grader sound: it tries a fixed list of cheap exploits. Python graders and
model judges are probed the same way (they run for real), so auditing them costs real calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from openrft.graders import GradeContext, grade_batch
from openrft.graders.result import GradeResult
from openrft.graders.spec import (
    Grader,
    LabelModelGrader,
    MultiGrader,
    StringCheckGrader,
    TextSimilarityGrader,
)

LONG_OUTPUT_WORDS = 4000
"""Words in the `very_long` probe."""


@dataclass(frozen=True)
class AuditRow:
    """What a probe may look at: the prompt messages and the row's item fields."""

    messages: list[dict[str, Any]]
    item: dict[str, Any]


@dataclass(frozen=True)
class Corpus:
    """What probes draw on from the whole file, computed once per audit (not once per row)."""

    references: list[str]
    """Every distinct reference-like value in the file."""
    labels: list[str]
    """A label_model's labels, or the distinct references when there are few."""
    long_text: str
    """The `very_long` output."""


@dataclass(frozen=True)
class Probe:
    name: str
    description: str
    make: Callable[[AuditRow, Corpus], str]


@dataclass
class ProbeResult:
    """How one probe fared across the dataset."""

    probe: str
    description: str
    mean_reward: float
    max_reward: float
    pass_rate: float
    """Share of rows where the probe earned at least the pass threshold."""
    flagged: bool
    warnings: list[str] = field(default_factory=list)
    example: str = ""


@dataclass
class AuditReport:
    rows: int
    threshold: float
    probes: list[ProbeResult]

    @property
    def flagged(self) -> list[ProbeResult]:
        return [p for p in self.probes if p.flagged]


def _prompt_text(row: AuditRow) -> str:
    parts = []
    for message in row.messages:
        content = message.get("content", "")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        parts.append(str(content))
    return "\n".join(parts)


def _references(rows: list[AuditRow]) -> list[str]:
    """Every reference-like value in the file: `reference_answer`, or else every string field."""
    values: list[str] = []
    for row in rows:
        if "reference_answer" in row.item:
            values.append(_text(row.item["reference_answer"]))
        else:
            values.extend(_text(v) for v in row.item.values() if isinstance(v, str | int | float))
    return list(dict.fromkeys(v for v in values if v))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _corpus(spec: Grader, rows: list[AuditRow]) -> Corpus:
    references = _references(rows)
    labels = [label for g in _walk(spec) if isinstance(g, LabelModelGrader) for label in g.labels]
    if not labels and len(references) <= 20:
        labels = references
    vocabulary = [*references[:200], *(str(n) for n in range(200)), "yes", "no", "true"]
    long_text = " ".join(vocabulary[i % len(vocabulary)] for i in range(LONG_OUTPUT_WORDS))
    return Corpus(references, list(dict.fromkeys(labels)), long_text)


def _walk(spec: Grader) -> Iterator[Grader]:
    yield spec
    if isinstance(spec, MultiGrader):
        for sub in spec.graders.values():
            yield from _walk(sub)


PROBES: tuple[Probe, ...] = (
    Probe("empty", "an empty answer", lambda row, corpus: ""),
    Probe("prompt_echo", "the prompt echoed back", lambda row, corpus: _prompt_text(row)),
    Probe(
        "all_references",
        "every reference answer in the file, concatenated",
        lambda row, corpus: "\n".join(corpus.references),
    ),
    Probe(
        "label_list",
        "the list of all labels / distinct answers",
        lambda row, corpus: ", ".join(corpus.labels),
    ),
    Probe(
        "very_long",
        f"a {LONG_OUTPUT_WORDS}-word output full of numbers and answers",
        lambda row, corpus: corpus.long_text,
    ),
    Probe("repeated_tokens", "one token repeated 500 times", lambda row, corpus: "the " * 500),
    Probe(
        "empty_tags",
        "the format tags with nothing inside",
        lambda row, corpus: "<think></think><answer></answer>",
    ),
    Probe("json_empty", "an empty JSON object", lambda row, corpus: "{}"),
)


def audit(
    spec: Grader,
    rows: Sequence[AuditRow],
    threshold: float = 0.5,
    context: GradeContext | None = None,
) -> AuditReport:
    """Run every probe against every row; flag probes whose mean reward reaches `threshold`."""
    rows = list(rows)
    corpus = _corpus(spec, rows)
    results = []
    for probe in PROBES:
        outputs = [probe.make(row, corpus) for row in rows]
        graded = grade_batch(spec, outputs, [row.item for row in rows], context)
        results.append(_summarize(spec, probe, outputs, graded, threshold))
    return AuditReport(rows=len(rows), threshold=threshold, probes=results)


def _summarize(
    spec: Grader, probe: Probe, outputs: list[str], graded: Sequence[GradeResult], threshold: float
) -> ProbeResult:
    rewards = [r.reward for r in graded]
    mean = sum(rewards) / len(rewards) if rewards else 0.0
    flagged = bool(rewards) and mean >= threshold
    best = max(range(len(rewards)), key=rewards.__getitem__) if rewards else 0
    warnings = _explain(spec, probe, graded) if flagged else []
    return ProbeResult(
        probe=probe.name,
        description=probe.description,
        mean_reward=mean,
        max_reward=max(rewards, default=0.0),
        pass_rate=sum(r >= threshold for r in rewards) / len(rewards) if rewards else 0.0,
        flagged=flagged,
        warnings=warnings,
        example=outputs[best][:200] if outputs else "",
    )


def _explain(spec: Grader, probe: Probe, graded: Sequence[GradeResult]) -> list[str]:
    """Name the sub-graders that paid for the probe and why that kind of grader pays for it."""
    n = len(graded)
    if isinstance(spec, MultiGrader):
        means = {key: sum(r.sub_rewards.get(key, 0.0) for r in graded) / n for key in spec.graders}
        paying = {key: m for key, m in means.items() if m > 0}
        return [
            _why(spec.graders[key], probe, mean)
            for key, mean in sorted(paying.items(), key=lambda kv: -kv[1])
        ]
    mean = sum(r.reward for r in graded) / n
    return [_why(spec, probe, mean)]


def _why(spec: Grader, probe: Probe, mean: float) -> str:
    head = f"{probe.description} scores {mean:.2f} on `{spec.name}` ({spec.type})"
    if isinstance(spec, StringCheckGrader):
        reasons = {
            "ne": "because `ne` passes whenever the output differs from the reference — any wrong "
            "answer passes too",
            "like": "because `like` passes whenever the output *contains* the reference, so "
            "stuffing many candidate answers into one output passes",
            "ilike": "because `ilike` passes whenever the output contains the reference in any "
            "case, so stuffing candidate answers passes",
            "eq": "because the rendered input equals the reference — check that `input` really "
            "refers to the model's output (`{{ sample.output_text }}`)",
        }
        return f"{head} {reasons[spec.operation]}."
    if isinstance(spec, TextSimilarityGrader):
        return (
            f"{head}: `{spec.evaluation_metric}` rewards word overlap, so outputs that merely "
            "repeat likely words earn partial credit; pair it with an exactness check or a "
            "length penalty."
        )
    if spec.type == "format_check":
        return f"{head}: the format reward pays for the tags alone; keep its weight small."
    return f"{head}; inspect this grader: it pays for an output that does not solve the task."
