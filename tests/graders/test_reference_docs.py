from pathlib import Path

from openrft.docgen import graders as reference
from openrft.graders.spec import GRADER_TYPES

DOCS = Path(__file__).parents[2] / "docs" / "graders.md"


def test_graders_reference_is_up_to_date() -> None:
    assert DOCS.read_text(encoding="utf-8") == reference.render(), (
        "docs/graders.md is stale: run `make docs` and commit the result"
    )


def test_reference_documents_every_grader_and_field() -> None:
    page = reference.render()
    for type_name, model in GRADER_TYPES.items():
        assert f"## `{type_name}`" in page
        for field, info in model.model_fields.items():
            assert f"| `{field}` |" in page
            assert info.description, f"{model.__name__}.{field} has no docstring"
