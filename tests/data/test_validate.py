import json
from pathlib import Path

import pytest

from openrft.data import (
    MAX_VALIDATION_ROWS,
    Row,
    grader_needs,
    load_dataset,
    split_validation,
    validate_dataset,
)
from openrft.errors import DatasetError
from openrft.graders import load_grader, load_grader_file

EXAMPLES = Path(__file__).parents[2] / "examples" / "data"
USER = {"role": "user", "content": "What is 1 + 1?"}


def write(path: Path, *rows: object) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def problems_by_line(report: object) -> dict[int, str]:
    out = {}
    for problem in report.problems:  # type: ignore[attr-defined]
        line = int(problem.where.rsplit(":", 1)[1])
        assert line not in out, f"two problems on line {line}"
        out[line] = problem.message
    return out


def test_clean_example_passes_with_statistics() -> None:
    grader = load_grader_file(EXAMPLES / "grader.yaml")
    report = validate_dataset(EXAMPLES / "arithmetic.jsonl", grader=grader)
    assert report.ok, report.problems
    assert report.rows == report.lines == 11
    assert report.prompt_length is not None
    assert report.prompt_length.unit == "characters"
    assert report.prompt_length.min <= report.prompt_length.median <= report.prompt_length.max
    assert report.item_fields == {"reference_answer": 11, "solution": 11}


def test_broken_example_reports_every_problem_with_its_line() -> None:
    grader = load_grader_file(EXAMPLES / "grader.yaml")
    path = EXAMPLES / "broken.jsonl"
    report = validate_dataset(path, grader=grader)
    assert all(p.where.startswith(f"{path}:") for p in report.problems)
    found = problems_by_line(report)
    expected = {
        2: "invalid JSON at column",
        3: "no `messages`",
        4: "`messages` is empty",
        5: "messages[0] has unknown role 'usr' (did you mean 'user'?)",
        6: "the last message is from 'assistant', not 'user'",
        7: "messages[0].content is a number; it must be a string or a list of content parts",
        8: "not valid UTF-8: byte 0xe9 at byte 65 of the line",
        9: "grader 'correct' reads `item.reference_answer` (in its `reference`)",
        11: "the line is a JSON list, not an object",
    }
    assert set(found) == set(expected)
    for line, start in expected.items():
        assert found[line].startswith(start), (line, found[line])
    assert report.rows == 3  # lines 1, 9 and 10 parse; 9 fails a cross-row check
    # line 10 repeats line 1: a warning (tests/data/test_duplicates.py), not a problem
    assert report.duplicates == [(10, 1)]


def test_non_utf8_reports_the_file_byte_offset(tmp_path: Path) -> None:
    good = json.dumps({"messages": [USER]}).encode() + b"\n"
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(good + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n')
    (problem,) = validate_dataset(path).problems
    assert problem.where == f"{path}:2"
    offset = len(good) + len(b'{"messages": [{"role": "user", "content": "caf')
    assert f"(byte {offset} of the file)" in problem.message


def test_utf8_bom_and_blank_lines_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"messages": [USER]}).encode() + b"\n\n  \n")
    report = validate_dataset(path)
    assert report.ok
    assert report.rows == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"messages": "hi"}, "`messages` is a string; it must be a list"),
        ({"messages": [{"content": "x"}]}, "messages[0] has no `role`"),
        ({"messages": [{"role": "user"}]}, "messages[0] has no `content`"),
        ({"messages": ["hello"]}, "messages[0] is a string"),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0] is a 'text' part without a string `text`",
        ),
        ({"messages": [USER], "tools": [{"name": "f"}]}, "tools[0] must look like"),
    ],
)
def test_message_shape_problems(tmp_path: Path, row: dict[str, object], message: str) -> None:
    report = validate_dataset(write(tmp_path / "d.jsonl", row))
    assert next(p.message for p in report.problems).startswith(message)
    assert report.problems[0].where.endswith(":1")


def test_supervised_rows_must_end_with_the_answer(tmp_path: Path) -> None:
    answer = {"role": "assistant", "content": "2"}
    path = write(tmp_path / "sft.jsonl", {"messages": [USER, answer]}, {"messages": [USER]})
    assert list(problems_by_line(validate_dataset(path))) == [1]  # as prompts: 1 has the answer
    found = problems_by_line(validate_dataset(path, last_role="assistant"))
    assert list(found) == [2]
    assert "not 'assistant'" in found[2]
    assert validate_dataset(path, last_role=None).ok  # a `completion` template answers line 2


def test_content_parts_tools_and_roles_are_accepted(tmp_path: Path) -> None:
    row = {
        "messages": [
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Add 2 and 3."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "1", "type": "function", "function": {"name": "add", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "1", "content": "5"},
            {"role": "user", "content": [{"type": "text", "text": "So?"}, {"type": "image_url"}]},
        ],
        "tools": [{"type": "function", "function": {"name": "add", "parameters": {}}}],
        "reference_answer": "5",
    }
    assert validate_dataset(write(tmp_path / "d.jsonl", row)).ok


def test_grader_fields_walk_multi_and_judge_messages(tmp_path: Path) -> None:
    grader = load_grader(
        {
            "type": "multi",
            "name": "m",
            "calculate_output": "a + b",
            "graders": {
                "a": {"type": "string_check", "name": "a", "operation": "eq",
                      "input": "{{ sample.output_text }}", "reference": "{{ item.answer.value }}"},
                "b": {"type": "score_model", "name": "judge", "model": "j",
                      "input": [{"role": "user", "content": [
                          {"type": "input_text", "text": "Rubric: {{ item.rubric[0] }}"}]}]},
            },
        }
    )  # fmt: skip
    needs = {(n.grader, n.shown, n.where) for n in grader_needs(grader)}
    assert needs == {
        ("a", "item.answer.value", "reference"),
        ("judge", "item.rubric[0]", "input[0].content[0].text"),
    }
    path = write(
        tmp_path / "d.jsonl",
        {"messages": [USER], "answer": {"value": "2"}, "rubric": ["be right"]},
        {"messages": [USER], "answer": {"valu": "2"}, "rubric": []},
    )
    found = problems_by_line_all(validate_dataset(path, grader=grader))
    assert set(found) == {2}
    assert any("`item.answer.value`" in m for m in found[2])
    assert any("grader 'judge' reads `item.rubric[0]`" in m for m in found[2])


def problems_by_line_all(report: object) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for problem in report.problems:  # type: ignore[attr-defined]
        out.setdefault(int(problem.where.rsplit(":", 1)[1]), []).append(problem.message)
    return out


def test_duplicates_name_the_first_line_and_differ_by_item(tmp_path: Path) -> None:
    row = {"messages": [USER], "reference_answer": "2"}
    path = write(tmp_path / "d.jsonl", row, {**row, "reference_answer": "3"}, row, row)
    report = validate_dataset(path)
    assert report.ok
    assert report.duplicates == [(3, 1), (4, 1)]


def test_missing_and_empty_files(tmp_path: Path) -> None:
    (missing,) = validate_dataset(tmp_path / "nope.jsonl").problems
    assert "cannot read the file" in missing.message
    (empty,) = validate_dataset(write(tmp_path / "e.jsonl", "")).problems
    assert "the file has no rows" in empty.message


def test_load_dataset_returns_rows_with_items_and_lines() -> None:
    rows = load_dataset(EXAMPLES / "arithmetic.jsonl")
    assert len(rows) == 11
    first = rows[0]
    assert first.line == 1
    assert first.tools is None
    assert first.messages[-1]["role"] == "user"
    assert first.item["reference_answer"] == "19"
    assert first.item["solution"]["steps"] == ["12 + 7 = 19"]
    assert rows[-1].tools is not None
    assert "tools" not in rows[-1].item


def test_load_dataset_raises_with_every_problem() -> None:
    with pytest.raises(DatasetError) as caught:
        load_dataset(EXAMPLES / "broken.jsonl")
    # all but the grader-field problem (no grader given) and the repeated row (a warning):
    # 8 problems, each with its line
    assert len(caught.value.problems) == 8
    assert "broken.jsonl: 8 problem(s)" in str(caught.value)


@pytest.mark.parametrize(
    ("n", "expected"), [(2, 1), (5, 1), (10, 1), (25, 2), (100, 10), (5000, MAX_VALIDATION_ROWS)]
)
def test_split_validation_sizes(n: int, expected: int) -> None:
    rows = list(range(n))
    train, valid = split_validation(rows, share=0.1, seed=3)
    assert len(valid) == expected
    assert len(train) == n - expected
    assert sorted(train + valid) == rows
    assert train == sorted(train)
    assert valid == sorted(valid)


def test_split_validation_is_reproducible_and_seeded() -> None:
    rows = [Row([USER], item={"i": i}) for i in range(50)]
    assert split_validation(rows, seed=1) == split_validation(rows, seed=1)
    assert split_validation(rows, seed=1)[1] != split_validation(rows, seed=2)[1]


def test_split_validation_needs_two_rows() -> None:
    with pytest.raises(DatasetError, match="cannot be split"):
        split_validation([Row([USER])])
    with pytest.raises(ValueError, match="share"):
        split_validation([1, 2, 3], share=1.0)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> object:
    from transformers import AutoTokenizer

    from openrft.training.models import build_tiny_model

    return AutoTokenizer.from_pretrained(build_tiny_model(tmp_path_factory.mktemp("tiny")))


def test_token_statistics_and_prompt_over_the_limit(tokenizer: object, tmp_path: Path) -> None:
    short = {"messages": [USER]}
    long = {"messages": [{"role": "user", "content": "What is 3 + 4? " * 40}]}
    path = write(tmp_path / "d.jsonl", short, long)
    lengths = [
        len(tokenizer.apply_chat_template(r["messages"], add_generation_prompt=True)["input_ids"])  # type: ignore[attr-defined]
        for r in (short, long)
    ]
    report = validate_dataset(path, tokenizer=tokenizer, max_prompt_tokens=lengths[0] + 5)
    assert report.prompt_length is not None
    assert report.prompt_length.unit == "tokens"
    assert (report.prompt_length.min, report.prompt_length.max) == (lengths[0], lengths[1])
    (problem,) = report.problems
    assert problem.where == f"{path}:2"
    assert problem.message.startswith(
        f"the prompt is {lengths[1]} tokens, over the model's limit of {lengths[0] + 5}"
    )
    assert validate_dataset(path, tokenizer=tokenizer).ok  # no declared limit: nothing flagged


def test_unreadable_lines_and_devices_are_problems_not_crashes(tmp_path: Path) -> None:
    data = tmp_path / "hostile.jsonl"
    data.write_text('{"n": ' + "9" * 5000 + "}\n" + "[" * 100_000 + "\n", encoding="utf-8")
    problems = [str(p) for p in validate_dataset(data).problems]
    assert any(":1: a number has more than" in p for p in problems)
    assert any(":2: nested too deeply" in p for p in problems)
    device = validate_dataset("/dev/zero").problems
    assert [p.message for p in device] == ["cannot read the file: not a regular file"]
