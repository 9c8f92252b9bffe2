#!/usr/bin/env bash
# Three Legate servers beside a three-member etcd cluster, in one run, on this machine:
# KV PUT and GET at each concurrency through the leader and through a follower (wrk, via
# shared/bench/kv-http.sh: req/s, p50/p90/p99/p99.9, errors, the server's RSS), then the
# Legate/etcd ratios, then Legate's failover under load (scripts/bench-failover.py: the gap
# from the last write acknowledged before a leader SIGKILL to the first acknowledged after).
#
#   scripts/bench-cluster.sh [-d seconds-per-point] [-c "1 16 64"] [--kills 10] [--bin target/release/legate]
#
# Legate: 127.0.20.1-3 (Consul's default ports on each), etcd 3.4: 127.0.21.1-3 (2379/2380);
# data dirs side by side in one temporary dir on the same disk. Needs shared/bench/install.sh
# (etcd-server, wrk) and a release build (cargo build --release --bin legate).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH="${BENCH_DIR:-$(cd .. && pwd)/shared/bench}"
DUR=10 CONC="1 16 64" KILLS=10 BIN=target/release/legate
while (($#)); do
  case "$1" in
    -d) DUR="$2"; shift 2;;
    -c) CONC="$2"; shift 2;;
    --kills) KILLS="$2"; shift 2;;
    --bin) BIN="$2"; shift 2;;
    -h|--help) sed -n '2,13p' "$0"; exit 0;;
    *) echo "unknown option $1" >&2; exit 2;;
  esac
done
[[ -x "$BIN" ]] || { echo "$BIN missing: cargo build --release --bin legate" >&2; exit 1; }
[[ -x "$BENCH/kv-http.sh" ]] || { echo "no $BENCH/kv-http.sh (set BENCH_DIR)" >&2; exit 1; }
command -v etcd >/dev/null && command -v wrk >/dev/null || { echo "run $BENCH/install.sh first" >&2; exit 1; }

TMP="$(mktemp -d /tmp/bench-cluster.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
ROWS="$TMP/rows.tsv"

LIPS=(127.0.20.1 127.0.20.2 127.0.20.3)
EIPS=(127.0.21.1 127.0.21.2 127.0.21.3)
declare -A PID_OF
for i in 0 1 2; do
  ip="${LIPS[$i]}"
  "$BIN" agent -server -bootstrap-expect 3 -node "bench$((i + 1))" -bind "$ip" -client "$ip" \
    -data-dir "$TMP/legate$i" -retry-join "${LIPS[0]}" -retry-interval 1s -dns-port -1 \
    -log-level warn >"$TMP/legate$i.log" 2>&1 &
  PIDS+=($!); PID_OF[$ip]=$!
done
cluster=""
for i in 0 1 2; do cluster+="${cluster:+,}e$i=http://${EIPS[$i]}:2380"; done
for i in 0 1 2; do
  ip="${EIPS[$i]}"
  etcd --name "e$i" --data-dir "$TMP/etcd$i" --listen-client-urls "http://$ip:2379" \
    --advertise-client-urls "http://$ip:2379" --listen-peer-urls "http://$ip:2380" \
    --initial-advertise-peer-urls "http://$ip:2380" --initial-cluster "$cluster" \
    --initial-cluster-state new --initial-cluster-token bench >"$TMP/etcd$i.log" 2>&1 &
  PIDS+=($!); PID_OF[$ip]=$!
done

# Leaders, as each system says.
legate_leader() {
  for _ in $(seq 300); do
    l="$(curl -sf "http://${LIPS[0]}:8500/v1/status/leader" 2>/dev/null | tr -d '"')" || true
    peers="$(curl -sf "http://${LIPS[0]}:8500/v1/status/peers" 2>/dev/null || echo '[]')"
    if [[ -n "$l" && "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])))' "$peers")" == 3 ]]; then
      echo "${l%:*}"; return
    fi
    sleep 0.1
  done
  echo "no Legate leader" >&2; exit 1
}
etcd_leader() {
  for _ in $(seq 300); do
    for ip in "${EIPS[@]}"; do
      s="$(curl -sf -X POST -d '{}' "http://$ip:2379/v3/maintenance/status" 2>/dev/null)" || continue
      if python3 -c 'import json,sys; s=json.loads(sys.argv[1]); sys.exit(0 if s.get("leader") and s["leader"]==s["header"]["member_id"] else 1)' "$s"; then
        echo "$ip"; return
      fi
    done
    sleep 0.1
  done
  echo "no etcd leader" >&2; exit 1
}
LL="$(legate_leader)"; EL="$(etcd_leader)"
LF=""; for ip in "${LIPS[@]}"; do [[ "$ip" != "$LL" ]] && { LF="$ip"; break; }; done
EF=""; for ip in "${EIPS[@]}"; do [[ "$ip" != "$EL" ]] && { EF="$ip"; break; }; done
echo "legate leader $LL, follower $LF; etcd leader $EL, follower $EF" >&2

for role in leader follower; do
  if [[ $role == leader ]]; then l="$LL" e="$EL"; else l="$LF" e="$EF"; fi
  "$BENCH/kv-http.sh" -f consul -c "$CONC" -d "$DUR" -p "${PID_OF[$l]}" -l "legate-$role" -o "$ROWS" \
    --prefix "bench-$role/" "http://$l:8500" >&2
  "$BENCH/kv-http.sh" -f etcd -c "$CONC" -d "$DUR" -p "${PID_OF[$e]}" -l "etcd-$role" -o "$ROWS" \
    --prefix "bench-$role/" "http://$e:2379" >&2
done
for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
PIDS=()

echo "# rows (label flavour op mode conc tool req_s p50 p90 p99 p99.9 max requests errors rss_mib)"
cat "$ROWS"
echo "# Legate / etcd, same role, op and concurrency (req/s: higher is better; p99: lower is better)"
python3 - "$ROWS" <<'EOF'
import sys, collections
rows = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) < 15 or f[0] == "label":
        continue
    system, role = f[0].split("-", 1)
    rows[(role, f[2], f[4])][system] = f
print("role\top\tconc\treq_s ratio\tp99 ratio\tp99.9 ratio\tlegate p99 ms\tetcd p99 ms\terrors")
for (role, op, conc), by in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1], int(kv[0][2]))):
    if "legate" not in by or "etcd" not in by:
        continue
    l, e = by["legate"], by["etcd"]
    r = lambda i: float(l[i]) / float(e[i]) if float(e[i]) else float("nan")
    print(f"{role}\t{op}\t{conc}\t{r(6):.2f}\t{r(9):.2f}\t{r(10):.2f}\t{l[9]}\t{e[9]}\t{l[13]}/{e[13]}")
EOF
echo "# failover under load ($KILLS leader kills)"
python3 scripts/bench-failover.py --bin "$BIN" --kills "$KILLS"
