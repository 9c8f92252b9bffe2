#!/usr/bin/env bash
# One bootstrapped Legate server measured by shared/bench/run-all.sh beside etcd, nginx, nsd
# and knot in the same run (the performance issue's table): starts the server on 127.0.0.1
# (Consul's default ports; data dir in a temporary dir), registers the DNS query mix's catalog
# (100 services svc-NNNN, 3 instances each on node1..node10, as shared/bench/dns.sh's zone),
# runs run-all.sh against it, prints its ratios and goal verdicts, and stops the server.
#
#   scripts/bench-single.sh [--bin target/release/legate] [--runs 1] [any run-all.sh option]
#
# --runs N repeats the whole run N times (each its own reference measurements: only ratios
# taken in one run compare); every run's directory is printed. Needs shared/bench/install.sh
# and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH_DIR:-$(cd .. && pwd)/shared/bench}"
BIN=target/release/legate RUNS=1 PASS=()
while (($#)); do
  case "$1" in
    --bin) BIN="$2"; shift 2;;
    --runs) RUNS="$2"; shift 2;;
    -h|--help) sed -n '2,13p' "$0"; exit 0;;
    *) PASS+=("$1"); shift;;
  esac
done
[[ -x "$BIN" ]] || { echo "$BIN missing: cargo build --release --bin legate" >&2; exit 1; }
[[ -x "$BENCH/run-all.sh" ]] || { echo "no $BENCH/run-all.sh (set BENCH_DIR)" >&2; exit 1; }
if curl -s -o /dev/null --max-time 1 http://127.0.0.1:8500/; then
  echo "something already listens on 127.0.0.1:8500: stop it first" >&2; exit 1
fi

TMP="$(mktemp -d /tmp/bench-single.XXXXXX)"
PID=""
cleanup() { [[ -n "$PID" ]] && { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; }; rm -rf "$TMP"; }
trap cleanup EXIT

register_catalog() {
  python3 - <<'PY'
import json, urllib.request
def put(path, body):
    req = urllib.request.Request("http://127.0.0.1:8500" + path, data=json.dumps(body).encode(), method="PUT")
    urllib.request.urlopen(req).read()
for k in range(1, 11):
    put("/v1/catalog/register", {"Node": f"node{k}", "Address": f"127.0.1.{k}"})
for i in range(100):
    for j in range(3):
        node = (i + j) % 10 + 1
        put("/v1/catalog/register", {"Node": f"node{node}", "Address": f"127.0.1.{node}",
            "Service": {"ID": f"svc-{i:04d}-{j}", "Service": f"svc-{i:04d}", "Port": 20000 + i}})
PY
}

for run in $(seq "$RUNS"); do
  rm -rf "$TMP/data"; mkdir -p "$TMP/data"
  "$BIN" agent -server -bootstrap-expect 1 -data-dir "$TMP/data" -bind 127.0.0.1 -client 127.0.0.1 \
    -node bench -log-level warn >"$TMP/agent.log" 2>&1 &
  PID=$!
  for _ in $(seq 150); do
    curl -sf http://127.0.0.1:8500/v1/status/leader | grep -q 8300 && break
    sleep 0.2
  done
  curl -sf http://127.0.0.1:8500/v1/status/leader | grep -q 8300 || { cat "$TMP/agent.log"; exit 1; }
  register_catalog
  OUT="$(mktemp -d /tmp/bench-single-run.XXXXXX)"
  echo "=== run $run of $RUNS: $OUT"
  "$BENCH/run-all.sh" --out-dir "$OUT" --agent-url http://127.0.0.1:8500 --agent-dns 127.0.0.1:8600 \
    --agent-pid "$PID" "${PASS[@]}"
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
done
