#!/usr/bin/env python3
"""Benchmarks of the plugin registry (not tests) on a real 3-server + 2-client cluster.

Agents run on loopback 127.0.18.1-5 (servers s1-s3, clients c1 and c2), each with its own data
dir in a temp dir and the fixed serf LAN port 8301 on its own address, as
tests/tests/fleet_plugins.rs starts them. Both clients have a check on `registry:http_json`
(1 s interval) against a local HTTP server answering {"status":"ok"}.

1. push -> run: N times (default 10), a new version of http_json (the component with a "version"
   custom section appended) is pushed with `legate plugin push` through a server (s1, s2, s3 in
   turn) at a random phase of the checks' schedule (a random 0-1 s pause first: pushing right
   after the previous round was seen would always land just after a run); measured from just
   before the push starts to the end of the first run of the new version on each client (the
   check's `LastRun` + `LastDurationMs` in /v1/agent/plugins), and to the moment a poll of
   /v1/agent/plugins (every 50 ms) shows it: p50 and max per client, and that first run's own
   duration (resolve, fetch, verify, compile, call).
2. Raft log: <data dir>/raft/log (segment files, and state.db) of each server before and after pushing a
   20 MiB component (http_json padded with a random, incompressible 20 MiB "padding" custom
   section, version "big-1"), the log indexes and the log store's counters
   (/v1/agent/self Stats.raft), and the entry bytes derived from the chunking (256 KiB per entry).
3. Snapshots: `legate snapshot save` size before and after the 20 MiB push, and each server's
   raft/snapshot.bin once it has snapshotted past the push (servers run with a low
   `raft_snapshot_threshold`; KV writes move the log on until every server has snapshotted).

Usage: scripts/bench-registry.py [--binary target/release/legate] [--pushes 10]
           [--wasm plugins/target/wasm32-wasip2/release/http_json.wasm] [--big-mib 20]
           [--snapshot-threshold 64] [--seed 1] [--keep]
Build first: cargo build --release --bins; (cd plugins && cargo build --release --target wasm32-wasip2).
Exits 1 with the reason (and the end of the agents' logs) on failure; every agent is stopped on exit.
"""
import argparse
import datetime
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from benchproc import Fail, json_server, table, wait_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IPS = ["127.0.18.1", "127.0.18.2", "127.0.18.3", "127.0.18.4", "127.0.18.5"]
SERVERS = ["s1", "s2", "s3"]
CLIENTS = ["c1", "c2"]
CHECK_ID = "registry-http-json"
CHUNK = 255 * 1024  # core/state/src/plugin.rs CHUNK_SIZE
# bincode 1 framing of one chunk entry: log id (term, node, index) 24, three enum tags 12,
# sha256 string 8+64, index/total 8, size/at_unix 16, data length 8.
CHUNK_ENTRY_OVERHEAD = 140
MIB = 1024 * 1024


# --------------------------------------------------------------------------------------------
# Components


def leb128(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def custom_section(name, payload):
    """A top-level custom section (id 0): size, name (length-prefixed), payload."""
    body = leb128(len(name)) + name.encode() + payload
    return b"\x00" + leb128(len(body)) + body


def with_version_section(component, version):
    """`component` with a "version" custom section appended (a new digest; the registry reads
    the last one as the version), as with_version_section in tests/tests/fleet_plugins.rs."""
    return component + custom_section("version", version.encode())


# --------------------------------------------------------------------------------------------
# The JSON server the checks call


# --------------------------------------------------------------------------------------------
# Agents


class Agent:
    def __init__(self, binary, name, ip, base_dir, server, join, config):
        self.name, self.ip, self.server = name, ip, server
        self.data_dir = os.path.join(base_dir, name)
        os.makedirs(self.data_dir)
        self.config_file = os.path.join(base_dir, f"{name}.json")
        with open(self.config_file, "w") as f:
            json.dump(config, f)
        self.log_path = os.path.join(base_dir, f"{name}.log")
        args = [binary, "agent", "-node", name, "-bind", ip, "-client", ip, "-data-dir", self.data_dir,
                "-dns-port", "-1", "-serf-lan-port", "8301", "-http-port", "0",
                "-retry-join", join, "-retry-interval", "1s"]
        if server:
            args += ["-server", "-bootstrap-expect", "3"]
        args += ["-config-file", self.config_file]
        env = dict(os.environ, LEGATE_PORTS__SERF_WAN="0", LEGATE_PORTS__DNS="0")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)
        self.http = None

    def wait_http(self, deadline_s=30):
        def probe():
            if self.proc.poll() is not None:
                raise Fail(f"agent {self.name} exited early with code {self.proc.returncode}")
            with open(self.log_path, "rb") as f:
                for line in f.read().decode(errors="replace").splitlines():
                    m = re.match(r"\s*HTTP listeners: \[([^,\]]+)", line)
                    if m:
                        return m.group(1).strip()
            return None

        self.http = wait_for(f"{self.name}'s HTTP listener", deadline_s, probe)
        return self.http

    def url(self, path):
        return f"http://{self.http}{path}"

    def get(self, path, timeout=10):
        with urllib.request.urlopen(self.url(path), timeout=timeout) as r:
            return json.loads(r.read() or b"null")

    def put(self, path, body, timeout=30):
        req = urllib.request.Request(self.url(path), data=body, method="PUT")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()

    def raft_stats(self):
        return self.get("/v1/agent/self")["Stats"]["raft"]

    def file_size(self, rel):
        p = os.path.join(self.data_dir, rel)
        return os.path.getsize(p) if os.path.exists(p) else None

    def dir_size(self, rel):
        """Bytes of the files in a directory (the Raft log's segments, zero-filled ahead)."""
        p = os.path.join(self.data_dir, rel)
        if not os.path.isdir(p):
            return None
        return sum(os.path.getsize(os.path.join(p, f)) for f in os.listdir(p))

    def tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(f"  {self.name}| {l}" for l in lines[-n:])
        except OSError as e:
            return f"  {self.name}| (no log: {e})"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def legate(binary, args, show=None, timeout=300):
    """Runs the CLI; Fail with its output unless it exits 0. Returns (stdout, seconds)."""
    cmd = [binary] + args
    t0 = time.time()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail(f"`{' '.join(cmd)}` did not finish within {timeout}s")
    took = time.time() - t0
    if out.returncode != 0:
        raise Fail(f"`{' '.join(cmd)}` exited {out.returncode}: {out.stdout.strip()} {out.stderr.strip()}")
    if show is not None:
        show.append("$ " + " ".join(cmd))
    return out.stdout, took


# --------------------------------------------------------------------------------------------
# Reading a check's runs (check_run in tests/tests/fleet_plugins.rs)


def parse_rfc3339(s):
    """RFC 3339 (nanosecond fractions, Z or offset) -> Unix seconds."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", s)
    if not m:
        raise ValueError(f"not RFC 3339: {s!r}")
    base, frac, tz = m.groups()
    tz = "+00:00" if tz == "Z" else tz
    t = datetime.datetime.fromisoformat(base + tz).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def check_run(agent):
    """The registry check's last run on `agent`: (status, version, check JSON), or None."""
    v = agent.get("/v1/agent/plugins")
    for ch in v.get("Checks") or []:
        if ch.get("CheckID") == CHECK_ID:
            version = ((ch.get("Resolved") or {}).get("Version")) or ""
            return ch.get("Status"), version, ch
    return None


def wait_check(agent, status, version, deadline_s=60):
    def probe():
        r = check_run(agent)
        if r and r[0] == status and r[1] == version:
            return r[2]
        return None

    try:
        return wait_for(f"check {CHECK_ID} on {agent.name} {status} on version {version!r}", deadline_s, probe, 0.1)
    except Fail as e:
        r = None
        try:
            r = check_run(agent)
        except Exception:
            pass
        raise Fail(f"{e}; last seen: {r[2] if r else None}")


# --------------------------------------------------------------------------------------------
# The measurements


def fmt_s(x):
    return f"{x:.2f} s"


def fmt_b(n):
    if n is None:
        return "-"
    sign = "-" if n < 0 else ""
    n = abs(n)
    if n >= MIB:
        return f"{sign}{n / MIB:.2f} MiB"
    if n >= 1024:
        return f"{sign}{n / 1024:.1f} KiB"
    return f"{sign}{n} B"


def delta(a, b):
    return None if a is None or b is None else b - a


def bench_push_to_run(binary, servers, clients, base, component, pushes, rng, out):
    """Part 1: push -> first run of the new version on each client."""
    took_push = []
    first_ms = {c.name: [] for c in clients}
    ran = {c.name: [] for c in clients}
    seen = {c.name: [] for c in clients}
    not_passing = 0
    commands = []
    for i in range(1, pushes + 1):
        version = f"1.0.{i}"
        path = os.path.join(base, f"http_json-{version}.wasm")
        with open(path, "wb") as f:
            f.write(with_version_section(component, version))
        server = servers[(i - 1) % len(servers)]
        # The state before: the runs so far (to check the new version's run is one we measure).
        before = {c.name: check_run(c) for c in clients}
        time.sleep(rng.uniform(0, 1.0))  # a random phase of the 1 s schedule (not for correctness)
        t0 = time.time()
        stdout, took = legate(binary, ["plugin", "push", path, "-name", "http_json", f"-http-addr={server.http}"], commands)
        if f"Pushed http_json@{version}" not in stdout:
            raise Fail(f"push of {version}: unexpected output {stdout.strip()!r}")
        took_push.append(took)
        pending = {c.name: c for c in clients}
        deadline = time.monotonic() + 60
        while pending:
            for name, c in list(pending.items()):
                r = check_run(c)
                if r and r[1] == version:
                    t_seen = time.time()
                    ch = r[2]
                    end = parse_rfc3339(ch["LastRun"]) + (ch.get("LastDurationMs") or 0) / 1000
                    ran[name].append(end - t0)
                    first_ms[name].append(ch.get("LastDurationMs") or 0)
                    seen[name].append(t_seen - t0)
                    if r[0] != "passing":
                        not_passing += 1
                    prev = before[name]
                    if prev and prev[1] == version:
                        raise Fail(f"{name} ran {version} before it was pushed")
                    del pending[name]
            if pending and time.monotonic() > deadline:
                raise Fail(f"push {version} via {server.name}: not run within 60 s on "
                           f"{', '.join(pending)} (last: {[check_run(c) for c in pending.values()]})")
            time.sleep(0.05)
    out.append("")
    out.append(f"1. push -> first run of the new version on each client ({pushes} pushes of http_json, "
               f"{fmt_b(len(component))}, through s1/s2/s3 in turn at a random phase; check interval 1 s)")
    out.append("   command: " + commands[0].replace("http_json-1.0.1", "http_json-<version>")
               + "   (-http-addr of s1, s2, s3 in turn)")
    rows = [["`legate plugin push` (CLI exit)", fmt_s(statistics.median(took_push)), fmt_s(max(took_push))]]
    for c in clients:
        rows.append([f"{c.name}: first run of new version done", fmt_s(statistics.median(ran[c.name])),
                     fmt_s(max(ran[c.name]))])
        rows.append([f"{c.name}: seen in /v1/agent/plugins", fmt_s(statistics.median(seen[c.name])),
                     fmt_s(max(seen[c.name]))])
        rows.append([f"{c.name}: (that first run's own duration)", f"{statistics.median(first_ms[c.name]):.0f} ms",
                     f"{max(first_ms[c.name]):.0f} ms"])
    both = [max(a, b) for a, b in zip(*[ran[c.name] for c in clients])]
    rows.append(["both clients ran it", fmt_s(statistics.median(both)), fmt_s(max(both))])
    out.append(table(rows, ["from just before the push to ...", "p50", "max"]))
    if not_passing:
        out.append(f"   note: {not_passing} first run(s) of a new version were not passing")


def leader_of(servers):
    for s in servers:
        try:
            if s.raft_stats().get("state") == "Leader":
                return s
        except Exception:
            pass
    return None


def wait_all_applied(servers, index, deadline_s=120):
    wait_for(f"every server to apply index {index}", deadline_s,
             lambda: all(int(s.raft_stats()["applied_index"]) >= index for s in servers), 0.1)


def force_snapshots(servers, threshold, tag, deadline_s=180):
    """KV writes until every server's last snapshot covers the log as it is now; returns the
    number of writes."""
    leader = wait_for("a leader", 30, lambda: leader_of(servers))
    target = int(leader.raft_stats()["last_log_index"])
    writes = 0
    deadline = time.monotonic() + deadline_s
    while True:
        if all(int(s.raft_stats()["last_snapshot_index"]) >= target for s in servers):
            break
        if time.monotonic() > deadline:
            got = {s.name: s.raft_stats()["last_snapshot_index"] for s in servers}
            raise Fail(f"servers did not snapshot past index {target} within {deadline_s}s "
                       f"({writes} KV writes, threshold {threshold}): last_snapshot_index {got}")
        if writes < 4 * threshold:
            servers[writes % len(servers)].put(f"/v1/kv/bench-registry/{tag}/{writes}", b"x")
            writes += 1
        else:
            time.sleep(0.1)  # enough written: the snapshot is being built
    for s in servers:
        wait_for(f"{s.name}'s raft/snapshot.bin", 30, lambda: s.file_size("raft/snapshot.bin"))
    return writes


def server_state(servers):
    state = {}
    for s in servers:
        st = s.raft_stats()
        state[s.name] = {
            "raft log": s.dir_size("raft/log"),
            "state.db": s.file_size("raft/state.db"),
            "snapshot.bin": s.file_size("raft/snapshot.bin"),
            "last_log_index": int(st["last_log_index"]),
            "log_entries": int(st.get("log_entries", 0)),
            "log_appends": int(st.get("log_appends", 0)),
            "log_fsyncs": int(st.get("log_fsyncs", 0)),
            "last_snapshot_index": int(st["last_snapshot_index"]),
            "state": st.get("state"),
        }
    return state


def bench_big(binary, servers, clients, base, component, big_mib, threshold, out):
    """Parts 2 and 3: the Raft log, the state store and snapshots around a big push."""
    commands = []
    # Snapshots before: a CLI snapshot, and every server snapshotted past the log as it is.
    snap_before = os.path.join(base, "before.snap")
    legate(binary, ["snapshot", "save", f"-http-addr={servers[0].http}", snap_before], commands)
    writes_before = force_snapshots(servers, threshold, "before")
    before = server_state(servers)

    padding = os.urandom(big_mib * MIB)
    big = with_version_section(component + custom_section("padding", padding), "big-1")
    path = os.path.join(base, "http_json-big-1.wasm")
    with open(path, "wb") as f:
        f.write(big)
    del padding
    t0 = time.time()
    stdout, took = legate(binary, ["plugin", "push", path, "-name", "http_json", f"-http-addr={servers[0].http}"], commands)
    if "Pushed http_json@big-1" not in stdout:
        raise Fail(f"push of big-1: unexpected output {stdout.strip()!r}")
    leader = wait_for("a leader", 30, lambda: leader_of(servers))
    commit = int(leader.raft_stats()["last_log_index"])
    wait_all_applied(servers, commit)
    after = server_state(servers)

    snap_after = os.path.join(base, "after.snap")
    legate(binary, ["snapshot", "save", f"-http-addr={servers[0].http}", snap_after], commands)
    writes_after = force_snapshots(servers, threshold, "after")
    snapped = server_state(servers)

    # The clients follow the latest version: they fetch the 20 MiB component (not fatal).
    ran_big = {}
    for c in clients:
        try:
            r = wait_for(f"{c.name} to run big-1", 120, lambda: (lambda r: r if r and r[1] == "big-1" else None)(
                check_run(c)), 0.1)
            ch = r[2]
            took_c = parse_rfc3339(ch["LastRun"]) + (ch.get("LastDurationMs") or 0) / 1000 - t0
            ran_big[c.name] = f"{fmt_s(took_c)} ({r[0]})"
        except Fail as e:
            ran_big[c.name] = f"not seen: {e}"

    chunks = -(-len(big) // CHUNK)
    derived = len(big) + chunks * CHUNK_ENTRY_OVERHEAD
    out.append("")
    out.append(f"2. Raft log growth for a {big_mib} MiB plugin (http_json + {big_mib} MiB random 'padding' section, "
               f"version big-1: {len(big)} bytes = {fmt_b(len(big))}, {chunks} chunks of 255 KiB)")
    for c in commands:
        out.append("   command: " + c)
    out.append(f"   push took {took:.2f} s (CLI exit); the leader was {leader.name}; log index "
               f"{before[leader.name]['last_log_index']} -> {commit}")
    rows = []
    for s in servers:
        b, a = before[s.name], after[s.name]
        rows.append([f"{s.name} ({a['state']})", fmt_b(b["raft log"]), fmt_b(a["raft log"]),
                     fmt_b(delta(b["raft log"], a["raft log"])), fmt_b(delta(b["state.db"], a["state.db"])),
                     str(a["last_log_index"] - b["last_log_index"]), str(a["log_entries"] - b["log_entries"]),
                     str(a["log_fsyncs"] - b["log_fsyncs"])])
    out.append(table(rows, ["server", "raft/log before", "after", "delta", "state.db delta", "log index +",
                            "log_entries +", "fsyncs +"]))
    out.append(f"   entry bytes (derived, not measured: no byte counter is exposed): {len(big)} bytes of chunk data + "
               f"{chunks} x ~{CHUNK_ENTRY_OVERHEAD} B bincode framing + one commit entry ~= {fmt_b(derived)} "
               f"(x{derived / len(big):.4f} of the component)")
    out.append("   log_entries/fsyncs: /v1/agent/self Stats.raft (the log store's counters; they include the other "
               "entries written meanwhile). redb grows its file in steps: the file delta is not the entry bytes.")

    out.append("")
    out.append(f"3. Snapshot size around the {big_mib} MiB push (servers: raft_snapshot_threshold {threshold}; "
               f"{writes_before} + {writes_after} KV writes to get every server to snapshot past the log)")
    b_snap, a_snap = os.path.getsize(snap_before), os.path.getsize(snap_after)
    rows = [["`legate snapshot save`", fmt_b(b_snap), fmt_b(a_snap), fmt_b(a_snap - b_snap)]]
    for s in servers:
        b, a = before[s.name], snapped[s.name]
        rows.append([f"{s.name} raft/snapshot.bin (index {b['last_snapshot_index']} -> {a['last_snapshot_index']})",
                     fmt_b(b["snapshot.bin"]), fmt_b(a["snapshot.bin"]), fmt_b(delta(b["snapshot.bin"], a["snapshot.bin"]))])
    out.append(table(rows, ["", "before", "after", "delta"]))
    out.append("")
    out.append("   clients following registry:http_json, push of big-1 -> first run of it done: "
               + ", ".join(f"{k} {v}" for k, v in ran_big.items()))
    return ran_big


# --------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", "--bin", default=os.path.join(ROOT, "target/release/legate"))
    ap.add_argument("--wasm", default=os.path.join(ROOT, "plugins/target/wasm32-wasip2/release/http_json.wasm"))
    ap.add_argument("--pushes", type=int, default=10)
    ap.add_argument("--big-mib", type=int, default=20)
    ap.add_argument("--snapshot-threshold", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1, help="seed of the random push phases")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (data dirs, agent logs)")
    a = ap.parse_args()
    for f, what in ((a.binary, "the legate binary"), (a.wasm, "the http_json plugin")):
        if not os.path.isfile(f):
            sys.exit(f"bench-registry: {what} {f} does not exist (build it first)")
    if a.pushes < 1:
        sys.exit("bench-registry: --pushes must be at least 1")
    with open(a.wasm, "rb") as f:
        component = f.read()

    # SIGTERM/SIGHUP: stop the agents too.
    def on_signal(sig, _):
        raise SystemExit(f"bench-registry: stopped by signal {sig}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    base = tempfile.mkdtemp(prefix="bench-registry-")
    agents = []
    srv = None
    out = ["$ python3 " + " ".join(sys.argv)]
    failed = None
    try:
        srv, url = json_server("/health")
        server_config = {"raft_snapshot_threshold": a.snapshot_threshold}
        if a.big_mib >= 31:  # plugins.max_size: 32 MiB by default, 64 MiB at most
            server_config["plugins"] = {"max_size": 64 * MIB}
        servers = []
        for i in range(3):
            servers.append(Agent(a.binary, SERVERS[i], IPS[i], base, True, IPS[0], server_config))
            agents.append(servers[-1])
        for s in servers:
            s.wait_http()
        wait_for("a leader with three peers", 60,
                 lambda: len(servers[0].get("/v1/status/peers") or []) == 3 and servers[0].get("/v1/status/leader"))

        # The first version is pushed before the clients start: their checks resolve it at their
        # first run (a check failing before the push would back off).
        first, _ = legate(a.binary, ["plugin", "push", a.wasm, f"-http-addr={servers[0].http}"])
        m = re.search(r"Pushed http_json@(\S+)", first)
        if not m:
            raise Fail(f"first push: unexpected output {first.strip()!r}")
        v0 = m.group(1)

        check = {"id": CHECK_ID, "name": CHECK_ID, "interval": "1s", "timeout": "5s",
                 "wasm": {"plugin": "registry:http_json",
                          "args": {"url": url, "json_path": "status", "json_equals": "ok"},
                          "allow_hosts": ["127.0.0.1"]}}
        clients = []
        for i, name in enumerate(CLIENTS):
            clients.append(Agent(a.binary, name, IPS[3 + i], base, False, IPS[i], {"checks": [check]}))
            agents.append(clients[-1])
        for c in clients:
            c.wait_http()
        for c in clients:
            wait_for(f"{c.name} to know the leader", 60, lambda: c.get("/v1/status/leader"))
        for c in clients:
            wait_check(c, "passing", v0, deadline_s=60)

        bench_push_to_run(a.binary, servers, clients, base, component, a.pushes, random.Random(a.seed), out)
        bench_big(a.binary, servers, clients, base, component, a.big_mib, a.snapshot_threshold, out)
    except Fail as e:
        failed = str(e)
    except KeyboardInterrupt:
        failed = "interrupted"
    finally:
        for ag in agents:
            try:
                ag.stop()
            except Exception as e:
                print(f"bench-registry: stopping {ag.name}: {e}", file=sys.stderr)
        if srv:
            srv.shutdown()
    if failed:
        print("\n".join(out))
        print(f"\nbench-registry: FAILED: {failed}", file=sys.stderr)
        for ag in agents:
            print(ag.tail(), file=sys.stderr)
        print(f"(agent logs and data dirs kept in {base})", file=sys.stderr)
        sys.exit(1)
    print("\n".join(out))
    if a.keep:
        print(f"(agent logs and data dirs kept in {base})")
    else:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
