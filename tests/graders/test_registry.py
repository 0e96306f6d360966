"""The grader registry is the one list of grader types: every spec model has a row, every row a
module that grades it, and the unions pydantic and mypy see are exactly the registry's."""

import ast
import importlib
import inspect
import subprocess
import sys
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest

from openrft.graders import load_grader, spec
from openrft.graders.registry import REGISTRY, grader_type, is_io_bound
from openrft.graders.spec import GRADER_TYPES, Grader, LeafGrader, MultiGrader, SpecModel

LEAVES = [GRADER_TYPES[row.name] for row in REGISTRY if GRADER_TYPES[row.name] is not MultiGrader]


def members(annotation: Any) -> list[Any]:
    """The classes of a union, through `Annotated` and nested unions, in order."""
    if get_origin(annotation) is Annotated:
        return members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in members(arg)]
    return [annotation]


def static_union(alias: str) -> list[str]:
    """The class names in `alias`'s union inside spec.py's `if TYPE_CHECKING:` block."""

    def names(node: ast.expr) -> list[str]:
        if isinstance(node, ast.BinOp):
            return names(node.left) + names(node.right)
        assert isinstance(node, ast.Name), ast.dump(node)
        return [node.id]

    tree = ast.parse(Path(spec.__file__).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and ast.unparse(stmt.target) == alias:
                    assert isinstance(stmt.value, ast.Subscript)
                    assert isinstance(stmt.value.slice, ast.Tuple)  # Annotated[union, Field]
                    return names(stmt.value.slice.elts[0])
    raise AssertionError(f"spec.py has no `{alias}` under `if TYPE_CHECKING:`")


def test_every_grader_spec_model_has_a_row() -> None:
    graders = {
        name
        for name, value in vars(spec).items()
        if inspect.isclass(value)
        and issubclass(value, SpecModel)
        and value.__module__ == spec.__name__
        and (name.endswith("Grader") or {"type", "name"} <= set(value.model_fields))
    }
    assert graders == {row.spec for row in REGISTRY}, "add a row to graders/registry.py"


@pytest.mark.parametrize("row", REGISTRY, ids=lambda row: row.name)
def test_every_row_names_a_model_of_its_type_and_a_module_that_grades_it(row: Any) -> None:
    model = GRADER_TYPES[row.name]
    assert model.__name__ == row.spec
    assert model.model_fields["type"].default == row.name
    module = importlib.import_module(row.module)
    assert callable(getattr(module, "grade_batch", None)), f"{row.module} has no grade_batch"
    assert grader_type(row.name) is row


def test_rows_are_unique_and_grader_types_follows_their_order() -> None:
    assert len({row.name for row in REGISTRY}) == len(REGISTRY)
    assert list(GRADER_TYPES) == [row.name for row in REGISTRY]


def test_the_union_pydantic_validates_is_the_registry() -> None:
    assert members(LeafGrader) == LEAVES
    assert members(Grader) == [*LEAVES, MultiGrader]
    assert set(members(Grader)) == set(GRADER_TYPES.values())


def test_the_union_mypy_checks_is_the_registry() -> None:
    assert static_union("LeafGrader") == [m.__name__ for m in LEAVES]
    assert static_union("Grader") == ["LeafGrader", "MultiGrader"]


ENDPOINT = {"type": "endpoint", "name": "e", "url": "https://example.com/grade"}
EXACT = {"type": "string_check", "name": "s", "input": "a", "reference": "a", "operation": "eq"}


def multi(**graders: Any) -> dict[str, Any]:
    return {"type": "multi", "graders": graders, "calculate_output": " + ".join(graders)}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (EXACT, False),
        (ENDPOINT, True),
        (multi(a=EXACT, b=EXACT), False),
        (multi(a=EXACT, b=ENDPOINT), True),
        (multi(a=EXACT, b=multi(c=EXACT, d=ENDPOINT)), True),
    ],
)
def test_a_tree_is_io_bound_when_any_grader_in_it_is(data: Any, expected: bool) -> None:
    assert is_io_bound(load_grader(data)) is expected


def test_loading_the_engine_imports_no_grader_module_until_one_grades() -> None:
    code = (
        "import sys\n"
        "from openrft.graders import grade, load_grader\n"
        "from openrft.graders.registry import REGISTRY\n"
        f"spec = load_grader({EXACT!r})\n"
        "print(sorted({r.module for r in REGISTRY} & set(sys.modules)))\n"
        "grade(spec, 'a', {})\n"
        "print(sorted({r.module for r in REGISTRY} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[]", "['openrft.graders.string_check']"]
