import pytest

from openrft.errors import TemplateError
from openrft.graders.sample import Sample
from openrft.graders.template import compile_template, malformed, render, variables

SAMPLE = Sample.from_text('{"x": 3, "names": ["a", "b"]}', [{"function": {"name": "search"}}])
ITEM = {"a": {"b": [10, 20, 30]}, "answer": "42", "key with space": {"k": "v"}}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ sample.output_text }}", '{"x": 3, "names": ["a", "b"]}'),
        ("{{sample.output_text}}", '{"x": 3, "names": ["a", "b"]}'),
        ("x={{ sample.output_json.x }}", "x=3"),
        ("{{ sample.output_json.names[1] }}", "b"),
        ("{{ sample.output_tools[0].function.name }}", "search"),
        ("{{ item.a.b[2] }}", "30"),
        ("{{item.a.b[ 0 ]}}-{{ item.answer }}", "10-42"),
        ('{{ item["key with space"].k }}', "v"),
        ("{{ item.a.b }}", "[10, 20, 30]"),
        ("no templates", "no templates"),
    ],
)
def test_render_forms(template: str, expected: str) -> None:
    assert render(template, SAMPLE.namespace(), ITEM) == expected
    assert render(template, SAMPLE, ITEM) == expected  # fields read off the Sample directly
    assert compile_template(template).render_all([SAMPLE], [ITEM]) == [expected]


@pytest.mark.parametrize(
    ("template", "missing"),
    [
        ("{{ item.nope }}", "item.nope"),
        ("{{ item.a.b[7] }}", "item.a.b[7]"),
        ("{{ item.answer.deeper }}", "item.answer.deeper"),
        ("{{ sample.output_json.y }}", "sample.output_json.y"),
    ],
)
def test_missing_variable_names_the_path(template: str, missing: str) -> None:
    pattern = missing.replace("[", r"\[").replace("]", r"\]")
    for sample in (SAMPLE.namespace(), SAMPLE):
        with pytest.raises(TemplateError, match=pattern):
            render(template, sample, ITEM)
    (error,) = compile_template(template).render_all([SAMPLE], [ITEM])
    assert isinstance(error, TemplateError)
    assert missing in str(error)


def test_output_json_absent_when_output_is_not_json() -> None:
    with pytest.raises(TemplateError, match=r"sample\.output_json"):
        render("{{ sample.output_json.x }}", Sample.from_text("plain").namespace(), {})


def test_output_answer_is_answer_tag_or_whole_text() -> None:
    tagged = Sample.from_text("<think>hmm</think><answer> 7 </answer>")
    assert render("{{ sample.output_answer }}", tagged.namespace(), {}) == "7"
    assert render("{{ sample.output_answer }}", Sample.from_text(" 8 ").namespace(), {}) == "8"


def test_variables_and_malformed() -> None:
    assert list(variables("{{ item.a.b[2] }} {{sample.output_text}}")) == [
        ("item", ("a", "b", 2)),
        ("sample", ("output_text",)),
    ]
    assert malformed("{{ items.a }} {{ item.ok }} {{ 1 + 1 }}") == ["{{ items.a }}", "{{ 1 + 1 }}"]


def test_render_all_reports_each_sample_and_formats_non_text() -> None:
    """The whole-template fast paths must agree with `render` sample by sample: a missing key,
    a number (rendered as JSON) and a plain string in one batch."""
    template = compile_template("{{ item.answer }}")
    items = [{"answer": "42"}, {}, {"answer": 7}, {"answer": ["x"]}]
    got = template.render_all([SAMPLE] * 4, items)
    assert got[0] == "42"
    assert isinstance(got[1], TemplateError)
    assert "item.answer" in str(got[1])
    assert got[2:] == ["7", '["x"]']
    other = Sample.from_text("plain")
    texts = compile_template("{{ sample.output_text }}").render_all([SAMPLE, other], [{}, {}])
    assert texts == [SAMPLE.output_text, "plain"]


def test_whole_sample_namespace_renders_as_json() -> None:
    plain = Sample.from_text("hi")
    assert render("{{ sample }}", plain, {}) == render("{{ sample }}", plain.namespace(), {})
    assert '"output_text": "hi"' in render("{{ sample }}", plain, {})
