#!/usr/bin/env bash
# The long fault scenarios (minutes): the suite's short versions with more time.
#   scripts/chaos.sh [seconds]   (default 300)
# - kv linearizability: rounds of leader pause (SIGSTOP 3 s) and server SIGKILL + restart while
#   6 clients read (consistent and default), write and CAS through all three servers; the
#   history is checked per key (tests/src/linearizability.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
cargo build --workspace --bins --tests
LEGATE_CHAOS_SECONDS="$seconds" cargo nextest run -p legate-tests --no-capture \
    -E 'test(reliability::kv_is_linearizable_while_the_leader_pauses_and_a_server_is_killed)' 2>&1 \
    | grep -E "operations checked|default reads checked|PASS|FAIL|panicked|not linearizable"
