#!/usr/bin/env python3
"""Cross-datacenter read latency against local reads, and how long the other datacenter takes
to see a server fail on the WAN.

    scripts/bench-dc.py [path/to/legate] [requests]

Starts dc1 (one server, 127.0.20.1) and dc2 (one server, 127.0.20.2, -retry-join-wan dc1),
writes a key in dc2, then times sequential GETs from dc1's HTTP API: local (`/v1/kv/k` in dc1)
and `?dc=dc2` (forwarded over the RPC port to dc2's server). Prints p50/p99 of each and their
ratio, then SIGKILLs dc1's server and reports when dc2's WAN view marks it failed.
"""
import json, os, signal, statistics, subprocess, sys, tempfile, time, urllib.request

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "target", "release", "legate")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 2000


def agent(ip, name, dc, extra):
    d = tempfile.mkdtemp()
    args = [BIN, "agent", "-server", "-bootstrap", "-node", name, "-datacenter", dc, "-bind", ip, "-client", ip,
            "-data-dir", d, "-dns-port", "-1", "-http-port", "8500", "-log-level", "warn"] + extra
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read()


def wait(what, f, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if f():
                return
        except Exception:
            pass
        time.sleep(0.1)
    sys.exit(f"timed out waiting for {what}")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    a = agent("127.0.20.1", "b1", "dc1", [])
    b = agent("127.0.20.2", "b2", "dc2", ["-retry-join-wan", "127.0.20.1", "-retry-interval-wan", "1s"])
    try:
        d1, d2 = "http://127.0.20.1:8500", "http://127.0.20.2:8500"
        wait("leaders", lambda: json.loads(get(d1 + "/v1/status/leader")) and json.loads(get(d2 + "/v1/status/leader")))
        wait("WAN pool", lambda: "dc2" in json.loads(get(d1 + "/v1/catalog/datacenters")))
        req = urllib.request.Request(d2 + "/v1/kv/k", data=b"v", method="PUT")
        urllib.request.urlopen(req).read()
        req = urllib.request.Request(d1 + "/v1/kv/k", data=b"v", method="PUT")
        urllib.request.urlopen(req).read()
        results = {}
        for label, url in [("local", d1 + "/v1/kv/k"), ("?dc=dc2", d1 + "/v1/kv/k?dc=dc2")]:
            for _ in range(50):
                get(url)
            times = []
            for _ in range(N):
                t = time.perf_counter()
                get(url)
                times.append((time.perf_counter() - t) * 1000)
            results[label] = (statistics.median(times), pct(times, 0.99))
            print(f"{label:8} p50 {results[label][0]:.3f} ms  p99 {results[label][1]:.3f} ms  ({N} GETs)")
        print(f"ratio ?dc=dc2 / local: p50 {results['?dc=dc2'][0] / results['local'][0]:.2f}x, "
              f"p99 {results['?dc=dc2'][1] / results['local'][1]:.2f}x")
        a.send_signal(signal.SIGKILL)
        killed = time.time()

        def failed():
            m = json.loads(get(d2 + "/v1/agent/members?wan=1"))
            return any(x["Name"] == "b1.dc1" and x["Status"] == 4 for x in m)
        wait("dc2 to see b1.dc1 failed", failed, timeout=120)
        print(f"dc2 saw dc1's server fail on the WAN {time.time() - killed:.1f} s after SIGKILL")
    finally:
        for p in (a, b):
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
