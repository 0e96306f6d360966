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
	$(BIN)/python -m openrft.docgen docs

# The main job: GRPO on the embedded SmolLM2-135M-Instruct, ~6-9 min on 2 CPU cores
# (examples/demo/README.md). Prints the run dir, baseline -> final held-out reward and the report.
demo: install
	$(BIN)/openrft train examples/demo/sums.yaml

serve: install
	$(BIN)/openrft serve
