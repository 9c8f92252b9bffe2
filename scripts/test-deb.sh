#!/usr/bin/env bash
# Installs the Debian package on this machine and checks it as an operator meets it:
#
#   scripts/test-deb.sh [path/to/legate_*.deb]     (as root; default: build it with package-deb.sh)
#
# - `dpkg -i`: the files and their owners and modes, the `legate` system user, /var/lib/legate;
# - the unit: `systemd-analyze verify` when systemd is installed;
# - the agent started as systemd would (the unit's ExecStart, as the unit's User, with
#   NOTIFY_SOCKET set), stopped with the unit's KillSignal (SIGINT): it must report READY=1 and serve the API, with the packaged config
#   plus a one-line override making it a lone server;
# - `legate` from the PATH, its man page and bash completion;
# - `dpkg --purge` removes the files, the data dir and the user.
# Nothing here needs systemd to be running (containers and CI machines often have none).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ "$(id -u)" != 0 ]; then
    echo "test-deb.sh: run as root (it installs the package)" >&2
    exit 2
fi
deb="${1:-}"
if [ -z "$deb" ]; then
    deb="$(scripts/package-deb.sh --no-build | grep '\.deb$' | tail -n 1)"
fi
[ -f "$deb" ] || { echo "test-deb.sh: no package at '$deb'" >&2; exit 1; }

fail() { echo "FAIL: $*" >&2; exit 1; }
check_mode() { # path owner:group mode
    local got
    got="$(stat -c '%U:%G %a' "$1")"
    [ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
    echo "ok: $1 $2 $3"
}

echo "==> dpkg -i $deb"
DEBIAN_FRONTEND=noninteractive dpkg -i "$deb"
getent passwd legate >/dev/null || fail "no legate user"
check_mode /usr/bin/legate root:root 755
check_mode /lib/systemd/system/legate.service root:root 644
check_mode /etc/legate.d root:legate 750
check_mode /etc/legate.d/legate.hcl root:legate 640
check_mode /var/lib/legate legate:legate 750
[ -f /usr/share/man/man1/legate-agent.1.gz ] || fail "no legate-agent(1)"
[ -f /usr/share/bash-completion/completions/legate ] || fail "no bash completion"
bash -n /usr/share/bash-completion/completions/legate || fail "bash completion does not parse"
legate version | head -n 1
legate validate /etc/legate.d/ || fail "the packaged config does not validate"

if command -v systemd-analyze >/dev/null 2>&1; then
    echo "==> systemd-analyze verify"
    systemd-analyze verify /lib/systemd/system/legate.service
fi

echo "==> the unit's ExecStart, as the unit's user, with a NOTIFY_SOCKET"
exec_start="$(sed -n 's/^ExecStart=//p' /lib/systemd/system/legate.service)"
override=/etc/legate.d/zz-test-deb.hcl
printf 'server = true\nbootstrap_expect = 1\nbind_addr = "127.0.0.1"\nports { http = 18500 dns = -1 serf_lan = 18301 server = 18300 grpc = -1 }\n' >"$override"
chown root:legate "$override"
chmod 640 "$override"
sock="$(mktemp -u /tmp/legate-notify.XXXXXX)"
python3 - "$sock" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
import os; os.chmod(sys.argv[1], 0o777)
s.settimeout(60)
while True:
    msg = s.recv(4096).decode()
    print("notify:", msg.replace("\n", " "), flush=True)
    if "READY=1" in msg:
        break
PY
listener=$!
sleep 0.5
# setpriv execs the agent itself (no parent in between), so the signals below reach it.
# shellcheck disable=SC2086 # ExecStart's words
setpriv --reuid=legate --regid=legate --init-groups -- env NOTIFY_SOCKET="$sock" $exec_start \
    >/tmp/legate-deb-agent.log 2>&1 &
agent=$!
cleanup() {
    kill "$agent" 2>/dev/null || true
    kill "$listener" 2>/dev/null || true
    rm -f "$override" "$sock"
}
trap cleanup EXIT
wait "$listener" || fail "no READY=1 within 60 s; agent log: $(cat /tmp/legate-deb-agent.log)"
leader="$(curl -fsS http://127.0.0.1:18500/v1/status/leader)"
[ -n "$leader" ] && [ "$leader" != '""' ] || fail "no leader: $leader"
echo "ok: serving, leader $leader"
curl -fsS -X PUT --data hello http://127.0.0.1:18500/v1/kv/deb-test >/dev/null
[ "$(curl -fsS 'http://127.0.0.1:18500/v1/kv/deb-test?raw')" = hello ] || fail "KV round trip"
echo "ok: KV round trip"
[ -n "$(ls -A /var/lib/legate)" ] || fail "nothing written to /var/lib/legate"
# SIGINT, the unit's KillSignal: a graceful leave, then exit.
kill -INT "$agent"
for _ in $(seq 100); do
    kill -0 "$agent" 2>/dev/null || break
    sleep 0.1
done
! kill -0 "$agent" 2>/dev/null || fail "the agent did not stop on SIGINT within 10 s"
wait "$agent" || true
cleanup
trap - EXIT

echo "==> dpkg --purge legate"
dpkg --purge legate
[ ! -e /usr/bin/legate ] || fail "/usr/bin/legate left behind"
[ ! -e /var/lib/legate ] || fail "/var/lib/legate left behind"
! getent passwd legate >/dev/null || fail "legate user left behind"
echo "ok: purged"
echo "PASS: $deb"
