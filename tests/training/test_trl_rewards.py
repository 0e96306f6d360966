"""Graders as TRL reward functions, the way a TRL user passes them: `reward_funcs=[grader]` in
their own `GRPOTrainer` on a tiny local model, plus the call forms, pickling and spawn."""

from __future__ import annotations

import functools
import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from openrft.graders import GradeContext, load_grader
from openrft.graders.reward import group_sizes, spec_reward
from openrft.training.rewards import GraderReward, reward_functions

EXACT = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_answer }}",
    "reference": "{{ item.reference_answer }}",
    "operation": "eq",
}
HAS_ONE = {
    "type": "string_check",
    "name": "has_one",
    "input": "{{ sample.output_text }}",
    "reference": "1",
    "operation": "like",
}
# A group grader whose rewards reveal the group size n: k / n for the k-th completion, so a
# group of 4 averages exactly 0.375, groups of one 0, and two merged groups of 4 0.4375.
POSITION = """
def grade_group(samples, item):
    assert all(s["output_text"] is not None for s in samples)
    return [k / len(samples) for k in range(len(samples))]
"""
RANKED = {"type": "python", "name": "ranked", "source": POSITION}


def roundtrip(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value))  # noqa: S301  # bytes this test just made


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_a_grader_is_a_reward_function_positionally_and_by_keyword() -> None:
    grader = load_grader(EXACT)
    prompts = [[{"role": "user", "content": "1 + 5?"}]] * 2
    completions = [chat("<answer>6</answer>"), chat("1 + 5 = 6")]
    expected = [1.0, 0.0]
    assert grader(prompts, completions, reference_answer=["6", "6"]) == expected
    assert grader(prompts=prompts, completions=completions, reference_answer=["6", "6"]) == expected
    assert grader(completions=["<answer>6</answer>", "6 "], reference_answer=["6", "6"]) == [1, 1]
    assert grader.__name__ == "exact"
    # what TRL passes besides the columns is not part of the item
    trl_extras = {"completion_ids": [[1], [2]], "trainer_state": None, "log_metric": print}
    assert grader(prompts, completions, reference_answer=["6", "6"], **trl_extras) == expected


def test_bad_calls_say_what_to_pass() -> None:
    grader = load_grader(EXACT)
    with pytest.raises(TypeError, match="needs `completions`"):
        grader(["p"])
    with pytest.raises(ValueError, match="column `reference_answer` has 1 values for 2"):
        grader(["p", "p"], ["a", "b"], reference_answer=["6"])
    with pytest.raises(ValueError, match="column `reference_answer` must hold one value per"):
        grader(["p"], ["a"], reference_answer="6")
    with pytest.raises(ValueError, match="3 prompts but 2 completions"):
        grader(["p"] * 3, ["a", "b"], reference_answer=["6", "6"])


def test_groups_are_runs_of_one_prompt_and_item_cut_at_the_group_size() -> None:
    items = [{"a": 1}] * 5 + [{"a": 2}]
    prompts = ["p"] * 3 + ["q"] * 2 + ["q"]
    assert group_sizes(prompts, items) == [3, 2, 1]
    assert group_sizes(prompts, items, group_size=2) == [2, 1, 2, 1]
    assert group_sizes(None, items) == [5, 1]
    chats = [[{"role": "user", "content": "x"}]] * 2  # chat prompts compare by content
    assert group_sizes(chats, [{}, {}]) == [2]


def test_grader_reward_and_as_fn_survive_pickle() -> None:
    reward = GraderReward(RANKED, GradeContext(owner="someone"), group_size=2)
    prompts, completions = ["p"] * 4, ["a", "b", "c", "d"]
    before = reward(prompts, completions, reference_answer=["x"] * 4)  # fills lock-held caches
    assert before == [0.0, 0.5, 0.0, 0.5]
    copy = roundtrip(reward)
    assert copy(prompts, completions, reference_answer=["x"] * 4) == before
    assert (copy.__name__, copy.group_size, copy.context.owner) == ("ranked", 2, "someone")
    assert copy.grader == reward.grader
    assert copy.stats.samples == 4  # statistics start afresh in the new process

    fn = roundtrip(reward.as_fn())
    assert isinstance(fn, functools.partial)
    assert fn.func is spec_reward
    assert fn.__name__ == "ranked"
    assert fn(prompts, completions, reference_answer=["x"] * 4) == before
    spec = roundtrip(load_grader(EXACT))
    assert spec(["p"], ["6"], reference_answer=["6"]) == [1.0]


def _call(fn: Any, prompts: list[str], completions: list[str], answers: list[str]) -> Any:
    return fn(prompts, completions, reference_answer=answers)


def test_graders_run_in_spawned_processes() -> None:
    prompts, completions = ["p", "p", "q"], ["<answer>6</answer>", "7", "x"]
    answers = ["6", "6", "6"]
    forms = [load_grader(EXACT).as_fn(), GraderReward(EXACT), GraderReward(RANKED)]
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        got = [pool.submit(_call, f, prompts, completions, answers).result() for f in forms]
    assert got == [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.5, 0.0]]


def _weights(model: Any) -> list[Any]:
    return [p.detach().clone() for p in model.parameters()]


# trl 1.16 still reads transformers' deprecated `is_gradient_checkpointing`; not ours to fix.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_trl_grpo_trainer_trains_with_graders_as_reward_funcs(
    tiny_model: Path, tmp_path: Path
) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {a} + 1?"}],
            "reference_answer": str(a + 1),
        }
        for a in range(8)
    ]
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    before = _weights(model)
    args = GRPOConfig(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        activation_checkpointing=False,
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )
    ranked = GraderReward(RANKED, group_size=4)
    trainer = GRPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[load_grader(HAS_ONE), load_grader(EXACT).as_fn(), ranked],
        args=args,
        train_dataset=Dataset.from_list(rows),
    )
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "rewards/ranked/mean" in entry]
    assert len(logged) == 2
    for entry in logged:
        # each prompt's 4 completions reached grade_group together
        assert entry["rewards/ranked/mean"] == pytest.approx(0.375)
        assert "rewards/has_one/mean" in entry
        assert "rewards/spec_reward/mean" in entry  # TRL names a partial after its function
    assert ranked.stats.samples == 16
    assert ranked.stats.failed == 0
    assert any(not b.equal(a) for b, a in zip(before, _weights(trainer.model), strict=True)), (
        "training changed no parameter"
    )


def test_openrft_jobs_grade_whole_groups(make_config: Any, read_lines: Any, tmp_path: Path) -> None:
    from openrft.training.grpo import run

    run(make_config(grader=RANKED), tmp_path)
    steps = [
        line
        for line in read_lines(tmp_path)
        if line.get("scores", {}).get("train_reward_mean") is not None
    ]
    assert steps
    for line in steps:
        assert line["scores"]["train_reward_mean"] == pytest.approx(0.375)


def test_reward_functions_pass_prompts_through_to_group_graders() -> None:
    [func] = reward_functions(GraderReward(RANKED, group_size=2))
    got = func(
        prompts=["p"] * 3 + ["q"],
        completions=[chat(t) for t in "abcd"],
        reference_answer=list("1111"),
    )
    assert got == [0.0, 0.5, 0.0, 0.0]
