#!/usr/bin/env bash
# Create .venv and install OpenRFT with everything the tests and the demo need, from scratch.
# The pinned CPU torch goes in first: asking pip for any other torch pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[all,dev]'
# WordNet for METEOR, installed offline into the venv's nltk data path.
.venv/bin/openrft setup wordnet --quiet
