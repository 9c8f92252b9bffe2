#!/usr/bin/env python3
"""Benchmarks of the WASM plugin host (not tests): run against a release build.

1. warm:    `legate plugin bench` on a no-op Rust check (plugins/sandbox-probe with no args):
            instantiate + call + drop per run; and on the Rust HTTP JSON probe against a
            local server.
2. cold:    `legate plugin bench --cold` on the Python and JavaScript examples (if built):
            new engine + deserialize the cached .cwasm + link + first call.
3. memory:  RSS of an agent with N checks each using a distinct copy of the Rust plugin,
            against one with none: memory per loaded plugin.
4. load:    N (500) WASM checks (the Rust HTTP JSON probe) at 1 s interval on one agent
            against a local HTTP server: agent CPU (share of one core) and RSS.

Usage: scripts/bench-plugins.py [--bin target/release/legate] [--checks 500] [--distinct 50]
Build first: cargo build --release --bins; (cd plugins && cargo build --release --target wasm32-wasip2);
examples/plugins/{python,js}-http-check/build.sh for the cold-start numbers.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchproc import TICK, cpu_ticks, free_port, json_server, rss_kib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUST = os.path.join(ROOT, "plugins/target/wasm32-wasip2/release")


def req(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(base + path, data=data, method=method)
    with urllib.request.urlopen(r, timeout=60) as resp:
        return resp.status, resp.headers, resp.read()


def run(cmd):
    print("$ " + " ".join(cmd), flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(out.stdout)
    if out.returncode != 0:
        sys.stdout.write(out.stderr)


def bench_warm(binary):
    d = tempfile.mkdtemp()
    try:
        run([binary, "plugin", "bench", f"{RUST}/sandbox_probe.wasm", "-data-dir", d, "--calls", "5000", "--cold", "20"])
        srv, url = json_server()
        run([binary, "plugin", "bench", f"{RUST}/http_json.wasm", "-data-dir", d, "--args", f"url={url}",
             "--args", "json_path=status", "--allow-host", "127.0.0.1", "--calls", "2000", "--cold", "5"])
        srv.shutdown()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def bench_cold(binary):
    srv, url = json_server()
    for lang in ("python", "js"):
        wasm = os.path.join(ROOT, f"examples/plugins/{lang}-http-check/http_check.wasm")
        if not os.path.exists(wasm):
            print(f"{lang}: {wasm} not built (run its build.sh)")
            continue
        d = tempfile.mkdtemp()
        try:
            run([binary, "plugin", "bench", wasm, "-data-dir", d, "--args", f"url={url}", "--allow-host", "127.0.0.1",
                 "--calls", "200", "--cold", "20"])
        finally:
            shutil.rmtree(d, ignore_errors=True)
    srv.shutdown()


def start_agent(binary, data_dir, config):
    port = free_port()
    cfg = os.path.join(data_dir, "bench.json")
    with open(cfg, "w") as f:
        json.dump(config, f)
    p = subprocess.Popen(
        [binary, "agent", "-server", "-bootstrap", "-node", "bench", "-bind", "127.0.0.1", "-client", "127.0.0.1",
         "-http-port", str(port), "-dns-port", "-1", "-server-port", str(free_port()), "-serf-lan-port",
         str(free_port()), "-data-dir", data_dir, "-config-file", cfg, "-log-level", "warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            _, _, body = req(base, "GET", "/v1/status/leader")
            if json.loads(body):
                return p, base
        except Exception:
            pass
        time.sleep(0.05)
    p.kill()
    sys.exit("agent did not start")


def check(i, plugin, url, interval):
    return {"id": f"wasm{i}", "name": f"wasm{i}", "interval": interval, "timeout": "2s",
            "wasm": {"plugin": plugin, "args": {"url": url, "json_path": "status"}, "allow_hosts": ["127.0.0.1"]}}


def wait_passing(base, n, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        _, _, body = req(base, "GET", "/v1/agent/checks")
        checks = json.loads(body)
        passing = sum(1 for c in checks.values() if c["Status"] == "passing")
        if passing >= n:
            return passing
        time.sleep(1)
    return passing


def bench_memory(binary, distinct):
    srv, url = json_server()
    results = {}
    for n in (0, distinct):
        d = tempfile.mkdtemp()
        try:
            os.makedirs(os.path.join(d, "plugins"))
            checks = []
            for i in range(n):
                # Distinct files with distinct content: each is its own loaded plugin.
                path = os.path.join(d, "plugins", f"p{i}.wasm")
                with open(f"{RUST}/http_json.wasm", "rb") as src, open(path, "wb") as dst:
                    dst.write(src.read() + b"")
                # A custom section makes each copy distinct (a different hash, its own compile).
                with open(path, "ab") as dst:
                    name = f"copy{i}".encode()
                    payload = bytes([len(name)]) + name
                    dst.write(b"\x00" + bytes([len(payload)]) + payload)
                checks.append(check(i, path, url, "10s"))
            # Precompile into the cache, as `legate plugin compile` would, so the agent only loads.
            if n:
                subprocess.run([binary, "plugin", "compile", "-data-dir", d] + [c["wasm"]["plugin"] for c in checks],
                               capture_output=True)
            p, base = start_agent(binary, d, {"checks": checks})
            try:
                passing = wait_passing(base, n) if n else 0
                time.sleep(3)
                results[n] = (rss_kib(p.pid), passing)
            finally:
                p.terminate()
                p.wait()
        finally:
            shutil.rmtree(d, ignore_errors=True)
    srv.shutdown()
    (base_rss, _), (rss, passing) = results[0], results[distinct]
    print(f"memory: agent RSS {base_rss / 1024:.1f} MiB with no plugin, {rss / 1024:.1f} MiB with {distinct} distinct "
          f"Rust plugins loaded ({passing} checks passing): {(rss - base_rss) / distinct:.0f} KiB per loaded plugin")


def bench_load(binary, n):
    srv, url = json_server()
    d = tempfile.mkdtemp()
    try:
        plugin = f"{RUST}/http_json.wasm"
        p, base = start_agent(binary, d, {"checks": [check(i, plugin, url, "1s") for i in range(n)]})
        try:
            passing = wait_passing(base, n)
            time.sleep(5)
            t0, c0 = time.time(), cpu_ticks(p.pid)
            time.sleep(30)
            t1, c1 = time.time(), cpu_ticks(p.pid)
            cpu = (c1 - c0) / TICK / (t1 - t0) * 100
            print(f"load: {n} WASM checks (Rust HTTP JSON probe) @1s: {passing} passing; agent CPU {cpu:.1f}% of one "
                  f"core over {t1 - t0:.0f}s ({n / 1:.0f} plugin calls/s); RSS {rss_kib(p.pid) / 1024:.1f} MiB")
        finally:
            p.terminate()
            p.wait()
    finally:
        srv.shutdown()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/legate"))
    ap.add_argument("--checks", type=int, default=500)
    ap.add_argument("--distinct", type=int, default=50)
    ap.add_argument("--only", choices=["warm", "cold", "memory", "load"])
    a = ap.parse_args()
    if a.only in (None, "warm"):
        bench_warm(a.bin)
    if a.only in (None, "cold"):
        bench_cold(a.bin)
    if a.only in (None, "memory"):
        bench_memory(a.bin, a.distinct)
    if a.only in (None, "load"):
        bench_load(a.bin, a.checks)


if __name__ == "__main__":
    main()
