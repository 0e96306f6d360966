import json
from pathlib import Path

from openrft.graders import load_grader, load_grader_file
from openrft.graders.audit import AuditReport, AuditRow, ProbeResult, audit

EXAMPLES = Path(__file__).parents[2] / "examples" / "graders"


def rows() -> list[AuditRow]:
    lines = (EXAMPLES / "arithmetic.jsonl").read_text().splitlines()
    data = [json.loads(line) for line in lines]
    return [AuditRow(d.pop("messages"), d) for d in data]


def by_probe(report: AuditReport) -> dict[str, ProbeResult]:
    return {p.probe: p for p in report.probes}


def test_like_grader_is_hacked_by_stuffing_every_answer() -> None:
    report = audit(load_grader_file(EXAMPLES / "contains_answer.json"), rows())
    probes = by_probe(report)
    assert probes["all_references"].flagged
    assert probes["all_references"].mean_reward == 1.0
    assert "contains* the reference" in probes["all_references"].warnings[0]
    assert probes["very_long"].flagged
    # contains/like never pays for an empty answer
    assert probes["empty"].mean_reward == 0.0
    assert not probes["empty"].flagged


def test_exact_answer_grader_passes_the_audit() -> None:
    spec = load_grader(
        {"type": "string_check", "name": "exact", "input": "{{ sample.output_answer }}",
         "reference": "{{ item.reference_answer }}", "operation": "eq"}
    )  # fmt: skip
    assert audit(spec, rows()).flagged == []


def test_ne_grader_pays_for_an_empty_answer_and_says_why() -> None:
    spec = load_grader(
        {"type": "string_check", "name": "differs", "input": "{{ sample.output_text }}",
         "reference": "{{ item.reference_answer }}", "operation": "ne"}
    )  # fmt: skip
    empty = by_probe(audit(spec, rows()))["empty"]
    assert empty.flagged
    assert empty.warnings == [
        "an empty answer scores 1.00 on `differs` (string_check) because `ne` passes whenever "
        "the output differs from the reference — any wrong answer passes too."
    ]


def test_multi_names_the_sub_grader_that_pays() -> None:
    spec = load_grader(
        {"type": "multi", "name": "m", "calculate_output": "0.5 * exact + 0.5 * mentions",
         "graders": {"exact": {"type": "string_check", "name": "exact", "operation": "eq",
                               "input": "{{ sample.output_text }}",
                               "reference": "{{ item.reference_answer }}"},
                     "mentions": json.loads((EXAMPLES / "contains_answer.json").read_text())}}
    )  # fmt: skip
    stuffed = by_probe(audit(spec, rows(), threshold=0.4))["all_references"]
    assert stuffed.flagged
    assert stuffed.mean_reward == 0.5
    assert "on `mentions_answer` (string_check) because `like`" in stuffed.warnings[0]
