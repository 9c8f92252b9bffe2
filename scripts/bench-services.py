#!/usr/bin/env python3
"""Benchmarks for the services issue (not tests): run against a release build.

1. checks:  N services with one HTTP check each at 10 s interval against a local HTTP server;
            after a warm-up, CPU of the agent (share of one core) and its RSS.
2. fanout:  W blocking queries waiting on one KV key (or spread over --keys, or on
            health/service of a --service N instances); RSS per waiter, then one write and the
            latency of every waiter's answer from the write (p50/p99/max), by
            tests/src/bin/fanout-load.rs.

Usage: scripts/bench-services.py [--bin target/release/legate] [--services 1000] [--waiters 10000]
       [--keys 1 | --service 100] [--loadgen target/release/fanout-load] [--only checks|fanout]
Build: cargo build --release --bin legate && cargo build --release -p legate-tests --bin fanout-load
"""
import argparse
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchproc import TICK, cpu_ticks, free_port, rss_kib


def req(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(base + path, data=data, method=method)
    with urllib.request.urlopen(r, timeout=30) as resp:
        return resp.status, resp.headers, resp.read()


class Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


def start_agent(binary, port, data_dir, extra=()):
    p = subprocess.Popen(
        [binary, "agent", "-server", "-bootstrap", "-node", "bench", "-bind", "127.0.0.1", "-client", "127.0.0.1",
         "-http-port", str(port), "-dns-port", "-1", "-server-port", str(free_port()), "-serf-lan-port", str(free_port()),
         "-data-dir", data_dir, "-log-level", "warn", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            _, _, body = req(base, "GET", "/v1/status/leader")
            if json.loads(body):
                return p, base
        except Exception:
            pass
        time.sleep(0.05)
    p.kill()
    sys.exit("agent did not start")


def bench_checks(binary, n):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{srv.server_address[1]}/"
    d = tempfile.mkdtemp()
    p, base = start_agent(binary, free_port(), d)
    try:
        for i in range(n):
            req(base, "PUT", "/v1/agent/service/register",
                {"ID": f"svc{i}", "Name": f"svc{i % 50}", "Port": 10000 + i,
                 "Check": {"HTTP": target, "Interval": "10s", "Timeout": "2s"}})
        # Every check has run at least once (first run is staggered within one interval).
        time.sleep(25)
        _, _, body = req(base, "GET", "/v1/health/state/passing")
        passing = len(json.loads(body))
        t0, c0 = time.time(), cpu_ticks(p.pid)
        time.sleep(30)
        t1, c1 = time.time(), cpu_ticks(p.pid)
        cpu = (c1 - c0) / TICK / (t1 - t0) * 100
        print(f"checks: {n} services x 1 HTTP check @10s: {passing} checks passing; "
              f"agent CPU {cpu:.2f}% of one core over {t1 - t0:.0f}s; RSS {rss_kib(p.pid) / 1024:.1f} MiB")
    finally:
        p.terminate()
        p.wait()
        srv.shutdown()
        shutil.rmtree(d, ignore_errors=True)


def bench_fanout(binary, loadgen, n, keys, service):
    """The load generator is tests/src/bin/fanout-load.rs (one thread, raw HTTP/1.1), so that
    the client is not what is measured; it waits for the agent's rpc.queries_blocking gauge."""
    if not os.access(loadgen, os.X_OK):
        sys.exit(f"{loadgen} missing: cargo build --release -p legate-tests --bin fanout-load")
    d = tempfile.mkdtemp()
    port = free_port()
    # Every waiter is a connection from 127.0.0.1: above Consul's 200 per client address.
    p, base = start_agent(binary, port, d, ["-hcl", f"limits {{ http_max_conns_per_client = {n + 100} }}"])
    try:
        what = ["--service", str(service)] if service else ["--keys", str(keys)]
        subprocess.run([loadgen, "--addr", f"127.0.0.1:{port}", "--waiters", str(n), *what, "--pid", str(p.pid)],
                       check=True)
    finally:
        p.terminate()
        p.wait()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/legate")
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--waiters", type=int, default=10000)
    ap.add_argument("--keys", type=int, default=1, help="spread the waiters over this many keys")
    ap.add_argument("--service", type=int, default=0,
                    help="watch /v1/health/service of a service with this many instances instead of KV")
    ap.add_argument("--loadgen", default="target/release/fanout-load")
    ap.add_argument("--only", choices=["checks", "fanout"])
    a = ap.parse_args()
    if a.only in (None, "checks"):
        bench_checks(a.bin, a.services)
    if a.only in (None, "fanout"):
        bench_fanout(a.bin, a.loadgen, a.waiters, a.keys, a.service)


if __name__ == "__main__":
    main()
