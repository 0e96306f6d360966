"""Grader specs as OpenAI and Azure published them, copied into `published/`, load and grade.

Each file is `{"source": url, "note": ..., "grader": {...}, "cases": [...]}`: the grader is the
published spec; each case is `{sample, item, expected_reward}` (or `expected_min`/`expected_max`)
following what the source says the grader gives. A sample is output text, or
`{"output_text", "output_tools"}`. Judge-backed specs (score_model, label_model, endpoint) have
no cases: they are validated only. Python graders need the real sandbox and are skipped where it
refuses to run untrusted code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from openrft.graders import Grader, Sample, grade_batch, load_grader
from openrft.graders.sandbox import SandboxLimits, detect_layers
from openrft.graders.spec import MultiGrader

PUBLISHED = Path(__file__).parent / "published"
FILES = sorted(PUBLISHED.glob("*.json"))
JUDGED = {"score_model", "label_model", "endpoint"}


def read(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def types_in(spec: Grader) -> set[str]:
    if isinstance(spec, MultiGrader):
        return {spec.type}.union(*(types_in(sub) for sub in spec.graders.values()))
    return {spec.type}


def as_sample(sample: str | dict[str, Any]) -> Sample:
    if isinstance(sample, str):
        return Sample.from_text(sample)
    return Sample.from_text(sample["output_text"], output_tools=sample.get("output_tools"))


def sandbox_refusal() -> str | None:
    layers = detect_layers()
    missing = layers.missing_requirements(SandboxLimits())
    return (
        f"the sandbox refuses untrusted code here: {missing} ({layers.reasons})"
        if missing
        else None
    )


def test_the_corpus_is_there() -> None:
    assert len(FILES) >= 8
    for path in FILES:
        data = read(path)
        assert set(data) >= {"source", "grader", "cases"}, path.name
        assert data["source"].startswith("https://"), path.name


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_published_spec_validates(path: Path) -> None:
    data = read(path)
    spec = load_grader(data["grader"])
    assert spec.type == data["grader"]["type"]
    if not data["cases"]:
        assert types_in(spec) & JUDGED, f"{path.name}: only judge-backed specs may have no cases"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_published_spec_grades_as_documented(path: Path) -> None:
    data = read(path)
    if not data["cases"]:
        pytest.skip("judge-backed: validated only")
    spec = load_grader(data["grader"])
    if "python" in types_in(spec) and (reason := sandbox_refusal()):
        pytest.skip(reason)
    cases = data["cases"]
    results = grade_batch(spec, [as_sample(c["sample"]) for c in cases], [c["item"] for c in cases])
    for case, result in zip(cases, results, strict=True):
        assert not result.errors.any(), (case["why"], result.errors.flags())
        if "expected_reward" in case:
            assert result.reward == pytest.approx(case["expected_reward"]), case["why"]
        else:
            assert case["expected_min"] <= result.reward <= case["expected_max"], case["why"]


def test_names_default_as_openai_accepted_them() -> None:
    """The guide's multi graders have no top-level `name`; its python grader has none at all."""
    contact = load_grader(read(PUBLISHED / "openai-graders-guide-multi-contact.json")["grader"])
    python = load_grader(read(PUBLISHED / "openai-graders-guide-python-rapidfuzz.json")["grader"])
    assert (contact.name, python.name) == ("multi", "python")
    assert isinstance(contact, MultiGrader)
    assert {key: sub.name for key, sub in contact.graders.items()} == {
        "name": "name_grader",
        "email": "email_grader",
    }
