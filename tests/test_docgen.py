"""Generated reference pages are current, and every field they draw from is documented."""

from pathlib import Path

from openrft.docgen import END, START, splice, training, undocumented

DOCS = Path(__file__).parents[1] / "docs"


def test_training_config_reference_is_up_to_date() -> None:
    page = (DOCS / "training-config.md").read_text(encoding="utf-8")
    assert page == splice(page, training.render()), (
        "docs/training-config.md is stale: run `make docs`"
    )


def test_every_job_config_field_is_documented() -> None:
    # eight were not: the W&B integration's six and the service body's `seed` and `suffix`
    assert undocumented(training.MODELS) == []
    page = training.render()
    for model in training.MODELS:
        for name in model.model_fields:
            assert f"| `{name}` |" in page, f"{model.__name__}.{name} is not on the page"


def test_the_generated_part_is_spliced_between_its_markers() -> None:
    page = f"# Guide\n\nhand-written\n\n{START}\nold\n{END}\n\ntail\n"
    assert splice(page, "new\n") == f"# Guide\n\nhand-written\n\n{START}\nnew\n{END}\n\ntail\n"
