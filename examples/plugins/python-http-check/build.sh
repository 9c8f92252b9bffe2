#!/usr/bin/env bash
# Builds http_check.wasm from app.py with componentize-py (PyPI) in a local venv.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../../../sdk/wit"
cd "$here"
if [ ! -x venv/bin/componentize-py ]; then
    python3 -m venv venv
    venv/bin/pip install --quiet componentize-py==0.25.1
fi
venv/bin/componentize-py -d "$wit" -w check componentize app -o http_check.wasm
ls -l http_check.wasm
