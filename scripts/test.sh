#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, lints, the binary, every test.
# Installs what it needs (only the Rust toolchain's own components for now).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true

cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
# Process tests run the real binary from the same target dir.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi
