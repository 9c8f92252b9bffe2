#!/usr/bin/env python3
"""Failure detection and convergence with N client agents on loopback (a benchmark, not a test).

Starts N agents on 127.0.4.1..N (serf LAN 8301 each, gossip only: no servers), joined through
the first; measures (1) time until every agent lists all N alive after the joins, (2) after a
SIGKILL of one agent, time until every other agent lists it as failed.

Usage: scripts/bench-gossip.py [--bin target/release/legate] [-n 20]
"""
import argparse
import json
import shutil
import subprocess
import tempfile
import time
import urllib.request


def members(ip, port):
    try:
        with urllib.request.urlopen(f"http://{ip}:{port}/v1/agent/members", timeout=2) as r:
            return json.loads(r.read())
    except Exception:
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/legate")
    ap.add_argument("-n", type=int, default=20)
    a = ap.parse_args()
    dirs, procs = [], []
    ips = [f"127.0.4.{i + 1}" for i in range(a.n)]
    http = 18500
    try:
        t0 = time.time()
        for i, ip in enumerate(ips):
            d = tempfile.mkdtemp()
            dirs.append(d)
            args = [a.bin, "agent", "-node", f"g{i + 1}", "-bind", ip, "-client", ip, "-data-dir", d,
                    "-http-port", str(http), "-dns-port", "-1", "-log-level", "warn"]
            if i > 0:
                args += ["-retry-join", ips[0], "-retry-interval", "1s"]
            procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        while True:
            views = [members(ip, http) for ip in ips]
            if all(v is not None and sum(1 for m in v if m["Status"] == 1) == a.n for v in views):
                break
            if time.time() - t0 > 120:
                raise SystemExit("did not converge in 120 s")
            time.sleep(0.05)
        print(f"{a.n} agents: every agent lists all {a.n} alive {time.time() - t0:.2f} s after the first start")
        victim = a.n // 2
        procs[victim].kill()
        t1 = time.time()
        name = f"g{victim + 1}"
        seen = {}
        while len(seen) < a.n - 1:
            for i, ip in enumerate(ips):
                if i == victim or i in seen:
                    continue
                v = members(ip, http) or []
                if any(m["Name"] == name and m["Status"] == 4 for m in v):
                    seen[i] = time.time() - t1
            if time.time() - t1 > 120:
                raise SystemExit(f"only {len(seen)} of {a.n - 1} saw the failure in 120 s")
            time.sleep(0.02)
        ts = sorted(seen.values())
        print(f"SIGKILL of {name}: first agent saw it failed after {ts[0]:.2f} s, median {ts[len(ts) // 2]:.2f} s, "
              f"all {a.n - 1} after {ts[-1]:.2f} s (LAN defaults: probe 1 s, timeout 500 ms, suspicion x4)")
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()
        for d in dirs:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
