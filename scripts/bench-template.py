#!/usr/bin/env python3
"""Benchmark for the template issue (not a test): 100 templates over 50 services rendered by one
agent (its config's template blocks), against the same agent without them.

- re-render latency: a TTL check flips (pass <-> fail) and the time until the template reading
  that service has the new output on disk (p50/p99 over --changes flips);
- the agent's added CPU (share of one core, idle and during the flips) and RSS.

Usage: scripts/bench-template.py [--bin target/release/legate] [--changes 100]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request

from benchproc import TICK, cpu_ticks, free_port, rss_kib

SERVICES = 50
TEMPLATES = 100


def req(base, method, path, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    r = urllib.request.Request(base + path, data=data, method=method)
    with urllib.request.urlopen(r, timeout=30) as resp:
        return resp.read()


def start(binary, conf_dir, data_dir):
    http = free_port()
    args = [binary, "agent", "-dev", "-log-level", "warn", "-node", "bench", "-http-port", str(http),
            "-server-port", str(free_port()), "-serf-lan-port", str(free_port()), "-serf-wan-port", str(free_port()),
            "-dns-port", "-1", "-config-dir", conf_dir, "-data-dir", data_dir]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{http}"
    for _ in range(200):
        try:
            if b":" in req(base, "GET", "/v1/status/leader"):
                return p, base
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("agent did not start")


def register(base):
    for i in range(SERVICES):
        for j in range(2):
            req(base, "PUT", "/v1/agent/service/register", {
                "Name": f"svc-{i}", "ID": f"svc-{i}-{j}", "Port": 10000 + i * 2 + j, "Tags": ["v1"],
                "Check": {"CheckID": f"svc-{i}-{j}-ttl", "TTL": "1h", "Status": "passing"}})
    req(base, "PUT", "/v1/kv/bench/setting", b"1")


def measure_idle(pid, seconds=10):
    c0, t0 = cpu_ticks(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_ticks(pid) - c0) / TICK / (time.monotonic() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/legate")
    ap.add_argument("--changes", type=int, default=100)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-template-")
    try:
        # Baseline: the same catalog, no templates.
        base_conf = os.path.join(work, "conf0")
        os.makedirs(base_conf)
        p, base = start(a.bin, base_conf, os.path.join(work, "data0"))
        register(base)
        time.sleep(2)
        idle0, rss0 = measure_idle(p.pid), rss_kib(p.pid)
        p.terminate()
        p.wait()

        conf = os.path.join(work, "conf")
        out = os.path.join(work, "out")
        os.makedirs(conf)
        blocks = []
        for t in range(TEMPLATES):
            svc = t % SERVICES
            contents = ("{{ range service \"svc-%d|any\" }}{{ .ID }} {{ .Address }}:{{ .Port }} {{ .Status }}\n{{ end }}"
                        "setting={{ key \"bench/setting\" }}\n" % svc)
            blocks.append('template {\n  contents = %s\n  destination = "%s/t%d.conf"\n}\n'
                          % (json.dumps(contents), out, t))
        with open(os.path.join(conf, "templates.hcl"), "w") as f:
            f.write("".join(blocks))
        p, base = start(a.bin, conf, os.path.join(work, "data1"))
        register(base)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            files = [os.path.join(out, f"t{t}.conf") for t in range(TEMPLATES)]
            if all(os.path.exists(f) and "svc-" in open(f).read() for f in files):
                break
            time.sleep(0.05)
        else:
            raise SystemExit("templates did not render")
        time.sleep(2)
        idle1, rss1 = measure_idle(p.pid), rss_kib(p.pid)

        lat = []
        c0, t0 = cpu_ticks(p.pid), time.monotonic()
        for k in range(a.changes):
            svc = k % SERVICES
            status = "fail" if (k // SERVICES) % 2 == 0 else "pass"
            want = "critical" if status == "fail" else "passing"
            path = os.path.join(out, f"t{svc}.conf")
            start_t = time.monotonic()
            req(base, "PUT", f"/v1/agent/check/{status}/svc-{svc}-0-ttl")
            while True:
                with open(path) as f:
                    if f"svc-{svc}-0 127.0.0.1:{10000 + svc * 2} {want}" in f.read():
                        break
                if time.monotonic() - start_t > 30:
                    raise SystemExit(f"no re-render of t{svc}")
                time.sleep(0.0005)
            lat.append((time.monotonic() - start_t) * 1000)
        busy = (cpu_ticks(p.pid) - c0) / TICK / (time.monotonic() - t0)
        rss2 = rss_kib(p.pid)
        p.terminate()
        p.wait()
        lat.sort()
        q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))]
        print(f"templates={TEMPLATES} services={SERVICES} (2 instances each) changes={a.changes} bin={a.bin}")
        print(f"re-render latency ms: p50={q(0.5):.1f} p99={q(0.99):.1f} max={lat[-1]:.1f} mean={statistics.mean(lat):.1f}")
        print(f"agent CPU idle: {idle0 * 100:.2f}% without templates, {idle1 * 100:.2f}% with (share of one core)")
        print(f"agent CPU during {a.changes} flips: {busy * 100:.1f}%")
        print(f"agent RSS: {rss0 / 1024:.1f} MiB without, {rss1 / 1024:.1f} MiB with (+{(rss1 - rss0) / 1024:.1f}), "
              f"{rss2 / 1024:.1f} MiB after the flips")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
