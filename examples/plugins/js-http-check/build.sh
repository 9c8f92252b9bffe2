#!/usr/bin/env bash
# Builds http_check.wasm from app.js with componentize-js (npm).
set -euo pipefail
cd "$(dirname "$0")"
[ -d node_modules/@bytecodealliance/componentize-js ] || npm install --no-audit --no-fund --silent
node build.mjs
