"""`python -m openrft.docgen`: rewrite every generated reference page under `docs/`."""

from __future__ import annotations

import sys
from pathlib import Path

from openrft.docgen import graders, splice, training


def main(docs: Path) -> None:
    (docs / "graders.md").write_text(graders.render(), encoding="utf-8")
    page = docs / "training-config.md"
    page.write_text(splice(page.read_text(encoding="utf-8"), training.render()), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs"))
