#!/usr/bin/env bash
# The long fault scenarios (minutes): the suite's short versions with more time (CHAOS_SECONDS;
# not LEGATE_*, which the agents would read as config).
#   scripts/chaos.sh [seconds]   (default 300)
# - kv linearizability: rounds of leader pause (SIGSTOP 3 s) and server SIGKILL + restart while
#   6 clients read (consistent and default), write and CAS through all three servers; the
#   history is checked per key (tests/src/linearizability.rs);
# - locks: `legate lock` holders on all three servers while servers pause and die; their own
#   logs must never show two in the critical section.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
cargo build --workspace --bins --tests
CHAOS_SECONDS="$seconds" cargo nextest run -p legate-tests --no-capture \
    -E 'test(/reliability::/)' 2>&1 \
    | grep -E "operations checked|default reads checked|critical sections|PASS|FAIL|panicked|not linearizable|overlapped"
