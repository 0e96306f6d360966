"""Live diagnosis: the checks over scripted metrics lines (reward hacking with the samples that
changed most, onset-only firing, zero-signal streaks, collapse, grader errors, truncation), the
plain-language report, tokenizer-counted reasoning tokens, and real tiny GRPO runs whose
diagnoses pause, fail and resume them, with the validation carve-out and the events the service
makes of them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from openrft.errors import ConfigError
from openrft.service import progress
from openrft.training import report
from openrft.training.callbacks import list_checkpoints
from openrft.training.diagnosis import (
    SIGNALS,
    Diagnosis,
    DiagnosisError,
    DiagnosisSettings,
    Finding,
    strongest,
)
from openrft.training.evaluate import reasoning_token_counts
from openrft.training.grpo import run
from openrft.training.rundir import (
    EvalSample,
    MetricsLine,
    paused_info,
    read_error,
    read_metrics,
    write_eval_samples,
)

ALWAYS = {
    "type": "string_check",
    "name": "always",
    "input": "{{ sample.output_text }}",
    "reference": "never said",
    "operation": "ne",
}
"""Every completion scores 1: every group has zero reward variance."""


def line(
    step: int,
    train: float | None = None,
    valid: float | None = None,
    *,
    trl: dict[str, float] | None = None,
    length: float | None = None,
    errors: dict[str, float] | None = None,
) -> MetricsLine:
    return {
        "step": step,
        "total_steps": 100,
        "scores": {
            "train_reward_mean": train,
            "valid_reward_mean": valid,
            "train_graders": {},
            "valid_graders": {},
        },
        "usage": {
            "completion_tokens_mean": length,
            "train_reasoning_tokens_mean": None,
            "valid_reasoning_tokens_mean": None,
            "trained_tokens": None,
        },
        "errors": errors or {},
        "timing": {"step": 0.0, "eval": 0.0},
        "trl": trl or {},
        "tools": None,
        "warnings": [],
    }


def only(**checks: Any) -> DiagnosisSettings:
    """Settings with only the given checks on (the others `null`)."""
    return DiagnosisSettings(**{**dict.fromkeys(SIGNALS), **checks})


def feed(diagnosis: Diagnosis, lines: list[MetricsLine]) -> dict[int, list[Finding]]:
    """Each step's findings (steps without any left out)."""
    found = {x["step"]: diagnosis.observe(x) for x in lines}
    return {step: f for step, f in found.items() if f}


def samples(step: int, rewards: list[float]) -> list[EvalSample]:
    return [
        {
            "step": step,
            "prompt": f"What is {i} + {i}?",
            "reference": str(2 * i),
            "completion": f"answer {i} at step {step}",
            "reward": reward,
            "sub_rewards": {},
        }
        for i, reward in enumerate(rewards)
    ]


def hacking_run(run_dir: Path) -> list[MetricsLine]:
    """Steps 0–12, evaluated every 4: train reward rises 0 → 0.19 after step 4 while the
    validation reward holds at 0.50 until step 8, then falls to 0.25 at step 12."""
    train = {s: 0.0 if s <= 4 else round(0.19 * (s - 4) / 8, 4) for s in range(1, 13)}
    valid = {0: 0.5, 4: 0.5, 8: 0.5, 12: 0.25}
    write_eval_samples(run_dir, 4, samples(4, [0.5, 1.0, 0.0, 0.5]))
    write_eval_samples(run_dir, 12, samples(12, [0.5, 0.0, 1.0, 0.0]))
    return [line(0, None, valid[0])] + [line(s, train[s], valid.get(s)) for s in range(1, 13)]


# --- the checks over scripted lines -----------------------------------------------------------


def test_rising_train_and_falling_valid_reward_is_reported_as_likely_hacking(
    tmp_path: Path,
) -> None:
    hacking = {"window": 8, "smooth": 1}
    diagnosis = Diagnosis(only(reward_hacking=hacking), tmp_path)
    found = feed(diagnosis, hacking_run(tmp_path))
    assert list(found) == [12]
    [finding] = found[12]
    event = finding.event()
    assert event["level"] == "warn"
    assert event["message"].startswith(
        "Step 12: train reward rose 0.00 → 0.19 while valid reward fell 0.50 → 0.25 over "
        "steps 4–12: likely reward hacking"
    )
    data = event["data"]
    assert data["steps"] == [4, 12]
    # the samples whose reward fell (row 1, then row 3) and rose (row 2) most, both completions
    assert [pair["row"] for pair in data["fell"]] == [1, 3]
    assert [pair["row"] for pair in data["rose"]] == [2]
    assert data["rose"][0]["before"] == {"completion": "answer 2 at step 4", "reward": 0.0}
    assert data["rose"][0]["after"] == {"completion": "answer 2 at step 12", "reward": 1.0}
    quoted = "validation rows 1, 3, 2 (evals/step-4.jsonl vs evals/step-12.jsonl)"
    assert quoted in event["message"]


def test_a_signal_fires_at_its_onset_and_again_only_after_it_cleared(tmp_path: Path) -> None:
    diagnosis = Diagnosis(only(reward_hacking={"window": 8, "smooth": 1}), tmp_path)
    lines = hacking_run(tmp_path)
    lines += [line(s, 0.25) for s in range(13, 16)] + [line(16, 0.3, 0.1)]  # still hacking
    lines += [line(s, 0.3) for s in range(17, 20)] + [line(20, 0.3, 0.6)]  # valid recovered
    lines += [line(s, 0.35 + s / 100) for s in range(21, 24)] + [line(24, 0.6, 0.0)]  # again
    assert list(feed(diagnosis, lines)) == [12, 24]


def test_a_streak_of_zero_signal_steps(tmp_path: Path) -> None:
    diagnosis = Diagnosis(only(zero_signal={"steps": 5}), tmp_path)
    zero = {"frac_reward_zero_std": 1.0}
    lines = [line(0, None, 0.0)] + [line(s, 1.0, trl=zero) for s in range(1, 8)]
    lines += [line(8, 0.5, trl={"frac_reward_zero_std": 0.5})]  # one group differed: cleared
    lines += [line(s, 1.0, trl=zero) for s in range(9, 14)]
    found = feed(diagnosis, lines)
    assert list(found) == [5, 13]
    message = found[5][0].event()["message"]
    assert message.startswith("Step 5: 5 steps in a row (steps 1–5) gave all their groups")
    assert "no learning signal" in message


def test_a_resumed_run_repeating_steps_is_not_news(tmp_path: Path) -> None:
    zero = {"frac_reward_zero_std": 1.0}
    first = [line(s, 1.0, trl=zero) for s in range(1, 6)]
    diagnosis = Diagnosis(only(zero_signal={"steps": 3}), tmp_path)
    assert list(feed(diagnosis, first)) == [3]
    # the next session replays what the run dir holds, then repeats steps 4–5 (its checkpoint
    # was at step 3) and goes on: nothing is reported again, the streak is still on
    resumed = Diagnosis(only(zero_signal={"steps": 3}), tmp_path)
    resumed.replay(first)
    assert feed(resumed, [*first[3:], line(6, 1.0, trl=zero)]) == {}
    assert resumed.active == {"zero_signal"}
    assert [x["step"] for x in resumed._train()] == [1, 2, 3, 4, 5, 6]


def test_entropy_and_length_collapse() -> None:
    settings = only(
        entropy_collapse={"window": 2, "ratio": 0.1}, length_collapse={"window": 2, "ratio": 0.2}
    )
    diagnosis = Diagnosis(settings)
    entropy = [1.0, 1.0, 0.5, 0.1, 0.05, 0.04]
    length = [40.0, 40.0, 30.0, 20.0, 8.0, 6.0]
    lines = [
        line(s, 0.5, trl={"entropy": e}, length=n)
        for s, (e, n) in enumerate(zip(entropy, length, strict=True), start=1)
    ]
    found = feed(diagnosis, lines)
    assert {s: [f.signal for f in fs] for s, fs in found.items()} == {
        5: ["entropy_collapse"],
        6: ["length_collapse"],
    }
    assert "token entropy fell 1 → 0.075 (steps 1–2 vs 4–5)" in found[5][0].message
    assert "mean completion length fell 40.0 → 7.0 tokens" in found[6][0].message


def test_grader_errors_and_truncation_reach_their_thresholds() -> None:
    settings = only(
        grader_errors={"window": 2, "threshold": 0.05},
        length_limit={"window": 2, "threshold": 0.5},
    )
    diagnosis = Diagnosis(settings, max_completion_length=64)
    lines = [
        line(1, 0.5, errors={"python_grader_runtime_error": 0.0}, trl=clipped(0.2)),
        line(2, 0.5, errors={"python_grader_runtime_error": 0.02}, trl=clipped(0.4)),
        line(3, 0.5, errors={"python_grader_runtime_error": 0.1}, trl=clipped(0.7)),
    ]
    found = feed(diagnosis, lines)
    assert [f.signal for f in found[3]] == ["grader_errors", "length_limit"]
    errors, limit = found[3]
    assert "grader errors rose to 6% of samples (steps 2–3; python_grader_runtime_error)" in (
        errors.message
    )
    assert limit.message.startswith("55% of completions hit max_completion_length (64 tokens)")


def clipped(share: float) -> dict[str, float]:
    return {"completions/clipped_ratio": share}


def test_a_check_set_to_null_never_fires(tmp_path: Path) -> None:
    diagnosis = Diagnosis(only(), tmp_path)
    assert feed(diagnosis, hacking_run(tmp_path)) == {}


def test_the_strongest_action_wins() -> None:
    warn = Finding("length_limit", 3, "warn", "cut off")
    pause = Finding("zero_signal", 3, "pause", "no signal")
    fail = Finding("grader_errors", 3, "fail", "errors")
    assert strongest([warn]) is None
    assert strongest([warn, pause]) is pause
    assert strongest([pause, fail, warn]) is fail


def test_a_bad_action_is_refused_at_its_path(make_config: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config(diagnosis={"zero_signal": {"action": "stop"}})
    [problem] = caught.value.problems
    assert problem.where == "$.diagnosis.zero_signal.action"
    assert "warn" in problem.message
    assert "pause" in problem.message


# --- the report -----------------------------------------------------------------------------


def test_the_report_says_plainly_that_the_run_looks_like_reward_hacking(tmp_path: Path) -> None:
    lines = hacking_run(tmp_path)
    diagnosis = Diagnosis(only(reward_hacking={"window": 8, "smooth": 1}), tmp_path)
    for x in lines:
        x["events"] = [f.event() for f in diagnosis.observe(x)]
    said = report.outcome(lines, tmp_path)
    # the whole run's comparison: baseline against the last evaluation, smoothed train reward
    assert said is not None
    assert said.startswith("Train reward rose 0.00 → 0.17 while valid reward fell 0.50 → 0.25")
    assert "over steps 0–12: likely reward hacking" in said
    text = report.markdown(lines, tmp_path)
    assert said in text
    assert "## Diagnosis" in text
    assert "- **reward_hacking** (warn): Step 12: train reward rose 0.00 → 0.19" in text


def test_the_report_says_when_a_run_improved_or_did_not() -> None:
    better = [line(0, None, 0.2), line(1, 0.3), line(2, 0.4, 0.5)]
    assert report.outcome(better) == (
        "Valid reward 0.200 → 0.500 over steps 0–2 (+0.300); train reward 0.30 → 0.40: "
        "the model got better on the held-out prompts."
    )
    same = [line(0, None, 0.2), line(1, 0.3), line(2, 0.3, 0.2)]
    assert report.outcome(same) is not None
    assert report.outcome(same).endswith("no change on the held-out prompts.")  # type: ignore[union-attr]
    assert report.outcome([line(0, None, 0.2)]) is None


# --- reasoning tokens -------------------------------------------------------------------------


def test_reasoning_tokens_are_counted_with_the_tokenizer(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    thought = "What is 3 + 4? The answer is 7."  # the tiny tokenizer's own training corpus
    tokens = len(tokenizer(thought, add_special_tokens=False)["input_ids"])
    assert tokens < len(thought)  # merged tokens: a character count would differ
    texts = [
        f"<think>{thought}</think>7",
        "7",
        f"<think>{thought}</think> so <think>{thought}</think>7",
        f"<think>{thought}",  # cut off while reasoning: counted to the end
    ]
    assert reasoning_token_counts(tokenizer, texts) == [tokens, 0, 2 * tokens, tokens]
    assert reasoning_token_counts(tokenizer, ["no reasoning here"]) == [0]


# --- real runs ------------------------------------------------------------------------------


def test_a_pause_diagnosis_pauses_the_run_and_resume_does_not_repeat_it(
    make_config: Any, tmp_path: Path
) -> None:
    zero = {"steps": 2, "action": "pause"}
    config = make_config(max_steps=4, grader=ALWAYS, diagnosis={"zero_signal": zero})
    paused = run(config, tmp_path)
    assert paused.paused
    assert paused.steps == 2
    info = paused_info(tmp_path)
    assert info is not None
    assert info["reason"] == "diagnosis"
    assert info["step"] == 2
    assert info.get("message", "").startswith("Step 2: 2 steps in a row (steps 1–2)")
    assert "`diagnosis.zero_signal.action: pause`" in info.get("message", "")
    assert [checkpoint.name for checkpoint in list_checkpoints(tmp_path / "checkpoints")] == [
        "checkpoint-2"
    ]
    lines = {x["step"]: x for x in read_metrics(tmp_path)}
    setup, carved = lines[0].get("events", [])
    assert setup["code"] == "run_setup"  # bf16 and prefix sharing, said first
    assert "prefix sharing on" in setup["message"]
    assert carved["code"] == "validation_carved_out"
    assert carved["level"] == "info"
    assert carved["message"].startswith(
        "Step 0: no validation_file given, so 4 of the 36 rows in the training file were held out"
    )
    assert [e["code"] for e in lines[2].get("events", [])] == ["zero_signal"]
    assert lines[2]["usage"]["train_reasoning_tokens_mean"] == 0.0  # no <think> from this model
    assert lines[0]["usage"]["valid_reasoning_tokens_mean"] == 0.0
    assert lines[1]["usage"]["valid_reasoning_tokens_mean"] is None  # step 1 did not evaluate

    resumed = run(config, tmp_path, resume=tmp_path)
    assert not resumed.paused
    assert resumed.steps == 4
    later = [e["code"] for x in read_metrics(tmp_path) if x["step"] > 2 for e in x["events"]]
    assert "zero_signal" not in later  # still active since before the pause: not news

    # what the service's worker makes of the lines: one job event per run event, keyed
    rows = [row for x in read_metrics(tmp_path) for row in progress.run_events(x)]
    assert [(r["level"], r["data"]["code"], r["data"]["step"]) for r in rows][:3] == [
        ("info", "run_setup", 0),
        ("info", "validation_carved_out", 0),
        ("warn", "zero_signal", 2),
    ]
    assert rows[2]["data"]["action"] == "pause"
    assert rows[2]["source"] == "run-event"
    assert len({(r["source"], r["key"]) for r in rows}) == len(rows)


def test_a_fail_diagnosis_fails_the_run_with_its_own_code(make_config: Any, tmp_path: Path) -> None:
    limit = {"window": 1, "threshold": 0.5, "action": "fail"}
    config = make_config(
        max_steps=3,
        max_completion_length=2,  # a random model's completions all run past 2 tokens
        diagnosis={"length_limit": limit},
    )
    with pytest.raises(DiagnosisError, match="max_completion_length"):
        run(config, tmp_path)
    error = read_error(tmp_path)
    assert error is not None
    assert error["code"] == "diagnosis_failed"
    assert error["message"].startswith("Step 1: 100% of completions hit max_completion_length")
    assert "`diagnosis.length_limit.action: fail`" in error["message"]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 1
