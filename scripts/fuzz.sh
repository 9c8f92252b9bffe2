#!/usr/bin/env bash
# Fuzzing Legate's parsers and decoders with cargo-fuzz (libFuzzer; needs the nightly toolchain
# and `cargo install cargo-fuzz`). The targets are in core/fuzz (legate-fuzz-targets); the
# committed corpora in fuzz/corpus/<target>/ and crash regressions in fuzz/regressions/<target>/
# are replayed by the normal test suite (core/fuzz/tests/replay.rs), on stable, in seconds.
#
#   scripts/fuzz.sh                 every target for $FUZZ_SECONDS (default 600) each
#   scripts/fuzz.sh config gossip   only these
#   scripts/fuzz.sh --replay        replay the corpora without fuzzing (what the test suite does)
#
# New inputs libFuzzer finds go to fuzz/corpus-new/<target>/ (not committed: merge the few
# that add coverage with `cargo fuzz cmin` before committing); crashes to fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--replay" ]; then
    exec cargo test -p legate-fuzz-targets --test replay
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(go_duration query filter acl_rules config dns_query gossip rpc_frame snapshot)
fi
seconds="${FUZZ_SECONDS:-600}"
cd fuzz
# Build every target once, then run the binaries (cargo fuzz run would rebuild per target).
cargo +nightly fuzz build -O
bin="target/x86_64-unknown-linux-gnu/release"
for t in "${targets[@]}"; do
    mkdir -p "corpus-new/$t" "artifacts/$t"
    echo "== $t: ${seconds}s" >&2
    "$bin/$t" "corpus-new/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 \
        | grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|SUMMARY|artifact_prefix|Test unit written)" || true
done
