#!/usr/bin/env bash
# The whole test suite, from a fresh clone: formatting, lints, the binary, every test.
# Installs what it needs: rustfmt and clippy, and cargo-nextest from crates.io (every test in its
# own process: the tests share process-wide state such as the metrics registry).
set -euo pipefail
cd "$(dirname "$0")/.."

rustup component add rustfmt clippy >/dev/null 2>&1 || true
# Debian packages the tests use as real peers: curl (the TLS test calls the HTTPS API with it),
# prometheus (scrapes agents in the telemetry tests), chromium (the web UI's end-to-end tests),
# nginx (reloaded by `legate template` in its tests), iproute2, nftables and iptables (network
# namespaces and the faults between them), faketime (one server's clock steps), gcc (the failing-fsync shim of the disk-fault tests); Node.js and npm build the web UI (core/ui/build.rs runs
# `npm ci && npm run build` in ui/, which also installs playwright-core for the UI tests).
need=""
for pair in curl:curl prometheus:prometheus chromium:chromium nginx:nginx ip:iproute2 nft:nftables iptables:iptables faketime:faketime cc:gcc node:nodejs npm:npm; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || need="$need ${pair#*:}"
done
if [ -n "$need" ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $need
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    bin="${CARGO_HOME:-$HOME/.cargo}/bin"
    mkdir -p "$bin"
    echo "installing cargo-nextest into $bin" >&2
    cargo install --locked cargo-nextest
fi

# WASM plugins (plugins/, sdk/plugin) build for wasm32-wasip2; the plugin tests run them.
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
# plugins/ keeps its own target dir even when CARGO_TARGET_DIR points elsewhere (CI): the
# tests and examples look for plugins/target/wasm32-wasip2/release/*.wasm.
(cd plugins && CARGO_TARGET_DIR="$PWD/target" cargo build --release --target wasm32-wasip2)

cargo fmt --all -- --check
(cd plugins && cargo fmt --all -- --check)
(cd plugins && CARGO_TARGET_DIR="$PWD/target" cargo clippy --release --target wasm32-wasip2 -- -D warnings)
cargo clippy --workspace --all-targets -- -D warnings
# Process tests run the real binary from the same target dir.
cargo build --workspace --bins
cargo nextest run --workspace --no-fail-fast
