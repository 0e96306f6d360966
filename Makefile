# Thin targets; each one works on a fresh machine (install runs first where needed).
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lint typecheck test test-fast bench demo serve docs

$(STAMP): pyproject.toml scripts/bootstrap.sh
	bash scripts/bootstrap.sh
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: install
	$(BIN)/mypy

# The one test command: README and .ci/run both use `make test`.
test: lint typecheck
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

docs: install
	$(BIN)/python -m openrft.graders.reference > docs/graders.md

demo: install
	$(BIN)/openrft graders run examples/graders/multi_answer.yaml --sample @examples/graders/sample.txt --item @examples/graders/item.json

serve: install
	$(BIN)/openrft serve
