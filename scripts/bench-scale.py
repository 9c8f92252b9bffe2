#!/usr/bin/env python3
"""Scale benchmark (item 5 of the performance issue; not a test): run against a release build.

A 3-server cluster on 127.0.30.1-3 (Consul's default ports on each address: HTTP 8500, DNS 8600,
server RPC 8300, serf LAN 8301; fixed node IDs; data dirs and logs in one temp dir) is measured
twice, on the same servers:

  baseline  a small catalog like scripts/bench-single.sh's: --baseline-services services
            svc-NNNN, 3 instances each on node1..node10, each instance with a passing check;
  at scale  the baseline plus --nodes nodes (scale-NNNNN, 10.x.y.z) x --instances service
            instances, each instance one `PUT /v1/catalog/register` (node + service + its passing
            check; the endpoint takes one service per call) from --reg-conc threads with
            keep-alive connections, spread over services big-NNNN of --per-service instances
            (500 services of 100 at the defaults); then --watches KV keys and one blocking query
            on each (`GET /v1/kv/bench-watch/<i>?index=<idx>&wait=5m`, one connection each, on
            the leader), re-armed whenever they return and held open for the rest of the run.

Each phase, on the leader: VmRSS of every server and the leader's CPU while idle (--idle s);
`GET /v1/health/service/<svc>` with wrk (--conc connections, --duration s after a 2 s warm-up;
req/s, p50, p99) cycling over the baseline services (3 instances) and, at scale, also over the
big services; DNS `<svc>.service.consul A` with dnsperf (qps from a --duration s pass, p50/p99
from a 3 s `dnsperf -v` pass), same two sets; `legate snapshot save` (archive size, time);
`legate snapshot restore` of that archive (time; at scale every KV watch is woken by it: time
until all are woken and re-armed); then a follower's catch-up from the leader's snapshot:

  1. padding: sequential KV writes to one key (one Raft entry each) until the leader's
     last_snapshot_index exceeds raft_trailing_logs, i.e. it has compacted away the log a
     new server needs (catalog writes are batched, up to 32 per Raft entry, so the catalog
     alone may not reach raft_snapshot_threshold); --no-pad-log skips this;
  2. the follower gets SIGTERM; with --catch-up remove-peer (default) the leader is then asked
     to remove it from Raft (`DELETE /v1/operator/raft/peer`) once gossip sees it failed, as
     an operator replaces a failed server; with --catch-up wipe it stays a voter;
  3. its data dir is wiped and it is restarted with the same flags and node ID; times from
     the restart: HTTP up, applied index >= the leader's last index before the stop,
     `/v1/catalog/nodes?stale` on it lists every node, 3 voters again; "via snapshot" when its
     last_snapshot_index is the leader's.

It also reports catalog registrations/s (and the leader's CPU meanwhile) and any KV watch that
returns while no watched key is written (the padding writes go to another key). The table gives
each metric at baseline, at scale, the ratio, and the verdict on per-query latency of the same
queries (baseline services' health/service and DNS p50/p99): the goal is within 2x of the
baseline. Rows for the big services compare a 100-instance answer with a 3-instance one (info).

Usage: scripts/bench-scale.py [--bin target/release/legate] [--nodes 5000] [--instances 10]
           [--watches 1000] [--duration 10] [--baseline-services 100] [--per-service 100]
           [--conc 16] [--reg-conc 32] [--idle 10] [--catch-up remove-peer|wipe]
           [--catch-up-timeout 600] [--no-pad-log] [--snapshot-threshold N] [--trailing-logs N]
           [--json FILE] [--keep]
--snapshot-threshold/--trailing-logs set the servers' raft_snapshot_threshold/raft_trailing_logs
(defaults: the agent's, 16384/10240). A small check of the script (a few minutes, debug build):
  scripts/bench-scale.py --bin target/debug/legate --nodes 200 --instances 3 --watches 50
      --duration 3 --idle 3 --snapshot-threshold 32 --trailing-logs 8
Needs wrk and dnsperf (shared/bench/install.sh). Results (and problems seen: non-2xx answers,
lost DNS queries, spurious watch wake-ups, a leader change) are printed, and with --json written
as JSON. Every process it starts is stopped by PID on exit and the temp dir removed (kept with
--keep). Exits 1 if the run could not complete (the table then shows what was measured).
"""
import argparse
import asyncio
import collections
import concurrent.futures
import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

from benchproc import TICK, Fail, cpu_ticks, hwm_kib, rss_kib, table, wait_for

IPS = ["127.0.30.1", "127.0.30.2", "127.0.30.3"]
# Fixed node IDs (a wiped server keeps its Raft identity); they differ in their first 8 bytes,
# which are the Raft ID (legate_raft::raft::raft_id).
NODE_IDS = [f"3030{i + 1:04x}-0000-4000-8000-000000000000" for i in range(3)]
HTTP_PORT, DNS_PORT = 8500, 8600
WATCH_PREFIX = "bench-watch/"
MIB = 1024 * 1024

WRK_LUA = r"""
-- Cycles GET over the paths in $BENCH_PATHS (one a line); prints one RESULT line at the end.
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
local reqs, n, idx = {}, 0, 0
function init(args)
  for line in io.lines(os.getenv("BENCH_PATHS")) do
    if line ~= "" then
      n = n + 1
      reqs[n] = wrk.format("GET", line)
    end
  end
  idx = ((tid or 0) * 7919) % n
end
function request()
  idx = idx % n + 1
  return reqs[idx]
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.2f requests=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d err_status=%d err_connect=%d err_read=%d err_write=%d err_timeout=%d\n",
    summary.requests / (summary.duration / 1e6), summary.requests,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def call(ip, method, path, body=None, timeout=30):
    """One HTTP request to an agent: (status, headers, body bytes)."""
    c = http.client.HTTPConnection(ip, HTTP_PORT, timeout=timeout)
    try:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        c.request(method, path, body=data)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def get_json(ip, path, timeout=30):
    st, _, body = call(ip, "GET", path, timeout=timeout)
    if st != 200:
        raise Fail(f"GET {path} on {ip}: HTTP {st}: {body[:300]!r}")
    return json.loads(body or b"null")


# --------------------------------------------------------------------------------------------
# Servers


class Server:
    def __init__(self, binary, i, base, extra):
        self.binary, self.i, self.ip, self.name = binary, i, IPS[i], f"s{i + 1}"
        self.data_dir = os.path.join(base, self.name)
        self.log_path = os.path.join(base, f"{self.name}.log")
        self.extra = extra
        self.proc = None

    def start(self):
        os.makedirs(self.data_dir, exist_ok=True)
        args = [self.binary, "agent", "-server", "-bootstrap-expect", "3", "-node", self.name,
                "-node-id", NODE_IDS[self.i], "-bind", self.ip, "-client", self.ip, "-data-dir", self.data_dir,
                "-retry-interval", "1s", "-log-level", "warn",
                # The KV watches are one connection each from 127.0.0.1: above Consul's default of
                # 200 per client address.
                "-hcl", "limits { http_max_conns_per_client = 8192 }"]
        for other in IPS:
            if other != self.ip:
                args += ["-retry-join", other]
        args += self.extra
        with open(self.log_path, "ab") as logf:
            logf.write(f"==== {time.strftime('%H:%M:%S')} {' '.join(args)}\n".encode())
            logf.flush()
            self.proc = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def raft(self):
        return get_json(self.ip, "/v1/agent/self", timeout=10)["Stats"]["raft"]

    def tail(self, n=20):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode(errors="replace").splitlines()
        except OSError as e:
            return f"  {self.name}| (no log: {e})"
        return "\n".join(f"  {self.name}| {l}" for l in lines[-n:])


def self_leader(servers):
    """The server that says it leads (a follower may still name a stopped one)."""
    for s in servers:
        if not s.alive():
            continue
        try:
            l = get_json(s.ip, "/v1/status/leader", timeout=2)
            if l and l.split(":")[0] == s.ip:
                return s
        except Exception:
            pass
    return None


def wait_cluster(servers, deadline_s=120):
    def probe():
        for s in servers:
            if s.proc is not None and not s.alive():
                raise Fail(f"{s.name} exited with code {s.proc.returncode}")
        lead = self_leader(servers)
        if not lead:
            return None
        if not all(len(get_json(s.ip, "/v1/status/peers", timeout=2)) == 3 for s in servers):
            return None
        st, _, _ = call(lead.ip, "GET", "/v1/catalog/nodes", timeout=5)
        return lead if st == 200 else None

    return wait_for("a leader and 3 voters", deadline_s, probe, 0.2)


# --------------------------------------------------------------------------------------------
# Writes


class Writer:
    """Many writes through a pool of threads, each with its own keep-alive connection."""

    def __init__(self, ip, conc):
        self.ip, self.conc = ip, conc
        self.local = threading.local()
        self.lock = threading.Lock()
        self.errors = collections.Counter()
        self.retries = 0
        self.done = 0

    def _put(self, path, body):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        last = None
        for _ in range(3):
            c = getattr(self.local, "conn", None)
            if c is None:
                c = self.local.conn = http.client.HTTPConnection(self.ip, HTTP_PORT, timeout=120)
            try:
                c.request("PUT", path, body=data, headers={"Content-Type": "application/json"})
                r = c.getresponse()
                out = r.read()
                if r.status != 200:
                    with self.lock:
                        self.errors[f"HTTP {r.status} on PUT {path.split('?')[0]}: {out[:200].decode(errors='replace')}"] += 1
                return
            except (http.client.HTTPException, OSError) as e:
                last = e
                c.close()
                self.local.conn = None
                with self.lock:
                    self.retries += 1
        with self.lock:
            self.errors[f"PUT {path.split('?')[0]}: {type(last).__name__}: {last}"] += 1

    def _batch(self, items):
        for path, body in items:
            self._put(path, body)
        with self.lock:
            self.done += len(items)

    def run(self, batches, total, label):
        """batches: an iterable of lists of (path, body). Returns (writes, seconds)."""
        t0 = time.monotonic()
        last = t0
        with concurrent.futures.ThreadPoolExecutor(self.conc) as ex:
            pending = set()
            for b in batches:
                pending.add(ex.submit(self._batch, b))
                if len(pending) >= self.conc * 4:
                    finished, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                    for f in finished:
                        f.result()
                now = time.monotonic()
                if now - last > 10:
                    last = now
                    log(f"  {label}: {self.done}/{total} ({self.done / (now - t0):.0f}/s)")
            for f in concurrent.futures.as_completed(pending):
                f.result()
        return self.done, time.monotonic() - t0


def check_body(sid):
    return {"CheckID": f"service:{sid}", "Name": "bench", "Status": "passing", "ServiceID": sid}


def baseline_batches(nsvc):
    yield [("/v1/catalog/register", {"Node": f"node{k}", "Address": f"127.0.1.{k}"}) for k in range(1, 11)]
    for i in range(nsvc):
        items = []
        for j in range(3):
            node = (i + j) % 10 + 1
            sid = f"svc-{i:04d}-{j}"
            items.append(("/v1/catalog/register",
                          {"Node": f"node{node}", "Address": f"127.0.1.{node}",
                           "Service": {"ID": sid, "Service": f"svc-{i:04d}", "Port": 20000 + i},
                           "Check": check_body(sid)}))
        yield items


def scale_batches(nodes, instances, nbig):
    """One batch per node: its instances, each its own catalog register call."""
    for n in range(nodes):
        node, addr = f"scale-{n:05d}", f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        items = []
        for j in range(instances):
            s = (n * instances + j) % nbig
            sid = f"big-{s:04d}-{j}"
            items.append(("/v1/catalog/register",
                          {"Node": node, "Address": addr,
                           "Service": {"ID": sid, "Service": f"big-{s:04d}", "Port": 30000 + j},
                           "Check": check_body(sid)}))
        yield items


# --------------------------------------------------------------------------------------------
# KV watches


class Watches:
    """N blocking KV reads, one key and one connection each, re-armed whenever they return."""

    def __init__(self, ip, n, wait="5m"):
        self.ip, self.n, self.wait = ip, n, wait
        self.parked = 0      # requests with ?index= sent and not answered yet
        self.changed = 0     # returned with a new index
        self.same = 0        # returned with the same index (wait timeout, or spurious)
        self.errors = collections.Counter()
        self.thread = None
        self.loop = None
        self.stop_ev = None
        self.started = threading.Event()

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.started.wait(10)

    def _run(self):
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._main())
        finally:
            self.loop.close()

    async def _main(self):
        self.stop_ev = asyncio.Event()
        self.started.set()
        tasks = []
        for i in range(self.n):
            tasks.append(asyncio.create_task(self._one(i)))
            if i % 100 == 99:
                await asyncio.sleep(0.02)
        await self.stop_ev.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _one(self, i):
        path = f"/v1/kv/{WATCH_PREFIX}{i}"
        idx = None
        while True:
            w = None
            parked = False
            try:
                r, w = await asyncio.open_connection(self.ip, HTTP_PORT)
                while True:
                    q = path if idx is None else f"{path}?index={idx}&wait={self.wait}"
                    w.write(f"GET {q} HTTP/1.1\r\nHost: {self.ip}\r\n\r\n".encode())
                    await w.drain()
                    if idx is not None:
                        parked = True
                        self.parked += 1
                    head = (await r.readuntil(b"\r\n\r\n")).decode(errors="replace").split("\r\n")
                    status = int(head[0].split()[1])
                    hdrs = {}
                    for line in head[1:]:
                        if ":" in line:
                            k, v = line.split(":", 1)
                            hdrs[k.strip().lower()] = v.strip()
                    if hdrs.get("transfer-encoding", "").lower() == "chunked":
                        while True:
                            size = int((await r.readline()).split(b";")[0], 16)
                            await r.readexactly(size + 2)
                            if size == 0:
                                break
                    else:
                        await r.readexactly(int(hdrs.get("content-length", "0")))
                    if parked:
                        parked = False
                        self.parked -= 1
                    new = int(hdrs.get("x-consul-index", "0") or 0)
                    if status != 200:
                        self.errors[f"HTTP {status}"] += 1
                        await asyncio.sleep(1)
                    elif idx is not None:
                        if new != idx:
                            self.changed += 1
                        else:
                            self.same += 1
                    idx = new or idx
                    if hdrs.get("connection", "").lower() == "close":
                        break
            except asyncio.CancelledError:
                if parked:
                    self.parked -= 1
                raise
            except Exception as e:
                if parked:
                    self.parked -= 1
                self.errors[f"{type(e).__name__}"] += 1
                await asyncio.sleep(1)
            finally:
                if w is not None:
                    w.close()

    def wakes(self):
        return self.changed + self.same

    def stop(self):
        if self.loop and self.stop_ev and self.thread and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_ev.set)
            self.thread.join(15)


# --------------------------------------------------------------------------------------------
# Load generators


def run_wrk(ip, paths, conc, duration, tmp, label):
    pf = os.path.join(tmp, "paths.txt")
    with open(pf, "w") as f:
        f.write("\n".join(paths) + "\n")
    lua = os.path.join(tmp, "cycle.lua")
    with open(lua, "w") as f:
        f.write(WRK_LUA)
    threads = max(1, min(conc, os.cpu_count() or 1))
    env = dict(os.environ, BENCH_PATHS=pf)
    res = None
    for d in (min(2, duration), duration):  # warm-up, then the measurement
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{d}s", "--timeout", "10s",
                              "-s", lua, f"http://{ip}:{HTTP_PORT}"],
                             capture_output=True, text=True, env=env, timeout=d + 60)
        line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
        if out.returncode != 0 or line is None:
            raise Fail(f"wrk ({label}) failed: {out.stdout.strip()} {out.stderr.strip()}")
        v = dict(kv.split("=") for kv in line.split()[1:])
        res = {"rps": float(v["rps"]), "requests": int(v["requests"]),
               "p50_ms": int(v["p50_us"]) / 1000, "p90_ms": int(v["p90_us"]) / 1000,
               "p99_ms": int(v["p99_us"]) / 1000, "max_ms": int(v["max_us"]) / 1000,
               "errors": sum(int(v[k]) for k in ("err_status", "err_connect", "err_read", "err_write", "err_timeout")),
               "conc": conc, "seconds": duration}
    log(f"  {label}: {res['rps']:.0f} req/s, p50 {res['p50_ms']:.2f} ms, p99 {res['p99_ms']:.2f} ms, errors {res['errors']}")
    return res


def dns_query(ip, name, qtype=1):
    """One UDP query: (rcode, answers, truncated)."""
    tid = random.randrange(65536)
    q = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\x00"
    q += struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(3)
        s.sendto(q, (ip, DNS_PORT))
        data = s.recv(65535)
    finally:
        s.close()
    flags, _, an = struct.unpack(">HHH", data[2:8])
    return flags & 0xF, an, bool(flags & 0x200)


def run_dns(ip, names, conc, duration, tmp, label):
    qf = os.path.join(tmp, "queries.txt")
    rnd = random.Random(42)
    with open(qf, "w") as f:
        f.write("\n".join(f"{rnd.choice(names)}.service.consul A" for _ in range(20000)) + "\n")
    threads = str(max(1, min(conc, os.cpu_count() or 1)))
    base = ["dnsperf", "-s", ip, "-p", str(DNS_PORT), "-d", qf, "-q", str(conc), "-c", str(conc), "-T", threads, "-t", "2"]
    subprocess.run(base + ["-l", str(min(2, duration))], capture_output=True, timeout=duration + 60)  # warm-up
    out = subprocess.run(base + ["-l", str(duration)], capture_output=True, text=True, timeout=duration + 60)
    t = out.stdout

    def grab(pat, conv=float):
        m = re.search(pat, t)
        if not m:
            raise Fail(f"dnsperf ({label}): no '{pat}' in its output: {t.strip()} {out.stderr.strip()}")
        return conv(m.group(1))

    res = {"qps": grab(r"Queries per second:\s+([\d.]+)"), "completed": grab(r"Queries completed:\s+(\d+)", int),
           "lost": grab(r"Queries lost:\s+(\d+)", int), "conc": conc, "seconds": duration}
    bad = 0
    rc = re.search(r"Response codes:\s+(.*)", t)
    if rc:
        for name, n in re.findall(r"(\w+) (\d+) \(", rc.group(1)):
            if name != "NOERROR":
                bad += int(n)
    res["bad_rcode"] = bad
    outv = subprocess.run(base + ["-v", "-l", "3"], capture_output=True, text=True, timeout=70)
    lat = []
    for line in outv.stdout.splitlines():
        if line.startswith("> "):
            try:
                lat.append(float(line.split()[-1]))
            except ValueError:
                pass
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else None
    res["p50_ms"], res["p99_ms"] = pct(0.50), pct(0.99)
    p50 = f"{res['p50_ms']:.2f}" if lat else "?"
    p99 = f"{res['p99_ms']:.2f}" if lat else "?"
    log(f"  {label}: {res['qps']:.0f} qps, p50 {p50} ms, p99 {p99} ms, lost {res['lost']}, non-NOERROR {bad}")
    return res


# --------------------------------------------------------------------------------------------
# Phases


class Bench:
    def __init__(self, a):
        self.a = a
        self.binary = os.path.abspath(a.bin)
        self.tmp = tempfile.mkdtemp(prefix="legate-scale-")
        self.work = os.path.join(self.tmp, "work")
        os.makedirs(self.work)
        extra = []
        if a.snapshot_threshold:
            extra += ["-hcl", f"raft_snapshot_threshold = {a.snapshot_threshold}"]
        if a.trailing_logs is not None:
            extra += ["-hcl", f"raft_trailing_logs = {a.trailing_logs}"]
        self.servers = [Server(self.binary, i, self.tmp, extra) for i in range(3)]
        self.watches = None
        self.problems = []
        self.res = {"baseline": {}, "scale": {}}
        self.nbig = max(1, a.nodes * a.instances // a.per_service)

    def problem(self, msg):
        log("PROBLEM: " + msg)
        self.problems.append(msg)

    def leader(self):
        return wait_cluster(self.servers, 60)

    def all_alive(self):
        for s in self.servers:
            if s.proc is not None and not s.alive():
                raise Fail(f"{s.name} exited with code {s.proc.returncode} (its log's end is below)")
        return True

    def writes(self, label, batches, total):
        lead = self.leader()
        w = Writer(lead.ip, self.a.reg_conc)
        c0, t0 = cpu_ticks(lead.pid), time.monotonic()
        n, secs = w.run(batches, total, label)
        cpu = (cpu_ticks(lead.pid) - c0) / TICK / (time.monotonic() - t0) * 100
        for e, k in w.errors.most_common(5):
            self.problem(f"{label}: {k} x {e}")
        if w.retries:
            self.problem(f"{label}: {w.retries} request(s) retried after a connection error")
        raft = lead.raft()
        log(f"  {label}: {n} writes in {secs:.1f} s ({n / secs:.0f}/s), leader CPU {cpu:.0f}% of a core; "
            f"leader's Raft log at {raft['last_log_index']}, {raft['log_entries_per_fsync']} entries per fsync")
        return {"writes": n, "seconds": secs, "per_s": n / secs, "leader_cpu_pct": cpu,
                "errors": sum(w.errors.values()), "conc": self.a.reg_conc,
                "leader_raft_after": {k: raft.get(k) for k in ("last_log_index", "last_snapshot_index",
                                                                "log_entries", "log_fsyncs", "log_entries_per_fsync")}}

    def idle(self, out):
        lead = self.leader()
        time.sleep(2)
        c0, t0 = cpu_ticks(lead.pid), time.monotonic()
        time.sleep(self.a.idle)
        out["leader_idle_cpu_pct"] = (cpu_ticks(lead.pid) - c0) / TICK / (time.monotonic() - t0) * 100
        out["rss_mib"] = {s.name: rss_kib(s.pid) / 1024 for s in self.servers}
        out["leader"] = lead.name
        log(f"  idle: leader {lead.name} CPU {out['leader_idle_cpu_pct']:.1f}% of a core over {self.a.idle:.0f} s; RSS "
            + ", ".join(f"{k} {v:.1f} MiB" for k, v in out["rss_mib"].items()))

    def queries(self, out, label, services, key):
        lead = self.leader()
        for name in services[:1]:
            body = get_json(lead.ip, f"/v1/health/service/{name}")
            rcode, an, tc = dns_query(lead.ip, f"{name}.service.consul")
            out[f"{key}_instances"] = len(body)
            out[f"{key}_dns_answers"] = an
            log(f"  {label}: health/service/{name} -> {len(body)} instances; DNS A -> rcode {rcode}, "
                f"{an} answers{', truncated' if tc else ''}")
            if rcode != 0 or an == 0:
                self.problem(f"{label}: DNS {name}.service.consul A answered rcode {rcode} with {an} answers")
        paths = [f"/v1/health/service/{s}" for s in services]
        h = run_wrk(lead.ip, paths, self.a.conc, self.a.duration, self.work, f"{label} health/service")
        if h["errors"]:
            self.problem(f"{label} health/service: {h['errors']} errors (non-2xx or socket) of {h['requests']}")
        out[f"{key}_health"] = h
        d = run_dns(lead.ip, services, self.a.conc, self.a.duration, self.work, f"{label} DNS")
        if d["lost"] or d["bad_rcode"]:
            self.problem(f"{label} DNS: {d['lost']} lost, {d['bad_rcode']} non-NOERROR of {d['completed']}")
        out[f"{key}_dns"] = d

    def snapshot_cli(self, verb, server, path):
        """`legate snapshot <verb>` against `server`: its duration in seconds."""
        t0 = time.monotonic()
        r = subprocess.run([self.binary, "snapshot", verb, f"-http-addr={server.ip}:{HTTP_PORT}", path],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise Fail(f"snapshot {verb} exited {r.returncode}: {r.stdout.strip()} {r.stderr.strip()}")
        return time.monotonic() - t0

    def snapshot_save(self, out, label):
        lead = self.leader()
        path = os.path.join(self.tmp, f"{label}.snap")
        secs = self.snapshot_cli("save", lead, path)
        out["snapshot_bytes"] = os.path.getsize(path)
        out["snapshot_save_s"] = secs
        log(f"  {label}: snapshot save {out['snapshot_bytes'] / MIB:.2f} MiB in {secs:.2f} s")
        return path

    def snapshot_restore(self, out, label, path, nodes_expected):
        lead = self.leader()
        w = self.watches
        before = w.wakes() if w else 0
        if w:
            armed_for = time.monotonic() - self.watches_armed_at
            changed, same = w.changed - self.watches_base[0], w.same - self.watches_base[1]
            out["watches_before_restore"] = {"seconds": armed_for, "changed": changed, "same_index": same}
            log(f"  {label}: KV watches open {armed_for:.0f} s before the restore: {changed} returned with a new "
                f"index, {same} with the same one")
            if changed:
                self.problem(f"{changed} KV watch(es) returned with a new index although no key was written")
            if same and armed_for < 300:
                self.problem(f"{same} KV watch(es) returned with the same index before their 5m wait ran out")
        t0 = time.monotonic()
        secs = self.snapshot_cli("restore", lead, path)
        out["snapshot_restore_s"] = secs
        log(f"  {label}: snapshot restore in {secs:.2f} s")
        n = len(wait_for("the catalog after the restore", 120,
                         lambda: (lambda v: v if len(v) == nodes_expected else None)(
                             get_json(lead.ip, "/v1/catalog/nodes", timeout=60)), 0.5))
        if w:
            try:
                wait_for("every KV watch to be woken by the restore", 60,
                         lambda: w.wakes() - before >= w.n, 0.05)
                woken = time.monotonic() - t0
                wait_for("every KV watch to be re-armed", 60, lambda: w.parked == w.n, 0.05)
                out["restore_watches_woken_s"] = woken
                out["restore_watches_rearmed_s"] = time.monotonic() - t0
                log(f"  {label}: all {w.n} KV watches woken {woken:.2f} s after the restore started, "
                    f"re-armed after {out['restore_watches_rearmed_s']:.2f} s")
            except Fail as e:
                self.problem(f"{label}: {e} ({w.wakes() - before} of {w.n} woken, {w.parked} parked)")
        log(f"  {label}: {n} nodes after the restore")

    def ensure_snapshot(self, out, label):
        """Sequential KV writes (one Raft entry each) to one padding key until the leader has a
        snapshot of everything written so far (its snapshot index is at least its last index
        now) and has dropped the log a new server would need (that index is above
        raft_trailing_logs): the follower's catch-up then starts with the whole catalog in the
        leader's snapshot and replays only padding writes after it."""
        lead = self.leader()
        cfg = get_json(lead.ip, "/v1/agent/self")["DebugConfig"]
        thr, trailing = int(cfg.get("RaftSnapshotThreshold", 16384)), int(cfg.get("RaftTrailingLogs", 10240))
        w = self.watches
        w0 = w.wakes() if w else 0
        raft = lead.raft()
        want = max(int(raft["last_log_index"]), trailing + 1)
        snap = int(raft["last_snapshot_index"])
        writes, t0 = 0, time.monotonic()
        limit = 2 * (thr + trailing) + 1000
        c = http.client.HTTPConnection(lead.ip, HTTP_PORT, timeout=60)
        try:
            while snap < want and writes < limit:
                for _ in range(100):
                    c.request("PUT", "/v1/kv/bench-pad", body=str(writes).encode())
                    r = c.getresponse()
                    body = r.read()
                    if r.status != 200:
                        raise Fail(f"padding write: HTTP {r.status}: {body[:300]!r}")
                    writes += 1
                snap = int(lead.raft()["last_snapshot_index"])
        finally:
            c.close()
        secs = time.monotonic() - t0
        out["log_padding"] = {"writes": writes, "seconds": secs, "leader_snapshot_index": snap, "wanted_index": want,
                              "raft_snapshot_threshold": thr, "raft_trailing_logs": trailing}
        if writes:
            log(f"  {label}: {writes} padding writes in {secs:.1f} s until the leader's snapshot ({snap}) "
                f"covered index {want} (its last index before; > raft_trailing_logs {trailing})")
        if snap < want:
            self.problem(f"{label}: the leader's snapshot had not reached index {want} after {writes} padding "
                         f"writes (last_snapshot_index {snap}, raft_snapshot_threshold {thr}, "
                         f"raft_trailing_logs {trailing})")
        if w and writes:
            time.sleep(1)
            n = w.wakes() - w0
            out["watches_during_padding"] = n
            if n:
                self.problem(f"{label}: {n} KV watch(es) returned during {writes} writes to another key")

    def catch_up(self, out, label, nodes_expected):
        if self.a.pad_log:
            self.ensure_snapshot(out, label)
        lead = self.leader()
        f = next(s for s in self.servers if s is not lead)
        time.sleep(1)
        target = int(lead.raft()["last_log_index"])
        leader_snap = int(lead.raft()["last_snapshot_index"])
        f.stop()
        if self.a.catch_up == "remove-peer":
            # As an operator replaces a failed server: once the leader sees it failed, take it out
            # of the Raft configuration; the leader adds it back as a voter when it rejoins.
            def failed():
                for m in get_json(lead.ip, "/v1/agent/members", timeout=5):
                    if m["Name"] == f.name:
                        return m["Status"] != 1
                return True

            wait_for(f"the leader to see {f.name} failed", 60, failed, 0.2)
            st, _, body = call(lead.ip, "DELETE", f"/v1/operator/raft/peer?id={NODE_IDS[f.i]}")
            if st != 200:
                raise Fail(f"removing {f.name} from Raft: HTTP {st}: {body[:300]!r}")
            wait_for(f"{f.name} out of the Raft configuration", 30,
                     lambda: len(get_json(lead.ip, "/v1/status/peers", timeout=5)) == 2, 0.1)
        shutil.rmtree(f.data_dir)
        t0 = time.monotonic()
        f.start()

        def raft_of_f():
            self.all_alive()
            return f.raft()

        wait_for(f"{f.name}'s HTTP API", 120, raft_of_f, 0.05)
        t_http = time.monotonic() - t0
        st = wait_for(f"{f.name}'s applied index to reach {target}", self.a.catch_up_timeout,
                      lambda: (lambda r: r if int(r["applied_index"]) >= target else None)(raft_of_f()), 0.1)
        t_applied = time.monotonic() - t0
        f_snap = int(st["last_snapshot_index"])

        def catalog_complete():
            self.all_alive()
            st_, _, body = call(f.ip, "GET", "/v1/catalog/nodes?stale", timeout=60)
            return st_ == 200 and len(json.loads(body)) == nodes_expected

        wait_for(f"{f.name}'s catalog to list {nodes_expected} nodes", 600, catalog_complete, 0.25)
        t_catalog = time.monotonic() - t0
        wait_for("3 voters again", 120,
                 lambda: self.all_alive() and all(len(get_json(s.ip, "/v1/status/peers", timeout=5)) == 3
                                                  for s in self.servers), 0.2)
        t_voter = time.monotonic() - t0
        now_lead = self.leader()
        leader_snap = (leader_snap, int(now_lead.raft()["last_snapshot_index"]))
        via = f_snap > 0 and f_snap in leader_snap
        leader_snap = max(leader_snap)
        out["catch_up"] = {"follower": f.name, "target_index": target, "leader_snapshot_index": leader_snap,
                           "follower_snapshot_index": f_snap, "via_snapshot": via, "http_s": t_http,
                           "applied_s": t_applied, "catalog_s": t_catalog, "voter_s": t_voter, "mode": self.a.catch_up,
                           "leader_before": lead.name, "leader_after": now_lead.name,
                           "follower_rss_mib": rss_kib(f.pid) / 1024}
        log(f"  {label}: {f.name} wiped and restarted: HTTP up {t_http:.2f} s, applied index {target} after "
            f"{t_applied:.2f} s, catalog complete after {t_catalog:.2f} s, a voter again after {t_voter:.2f} s "
            f"({'snapshot at ' + str(f_snap) + ' installed from the leader' if via else 'no snapshot from the leader'}; "
            f"leader's snapshot index {leader_snap})")
        if now_lead is not lead:
            self.problem(f"{label}: the leader changed from {lead.name} to {now_lead.name} while {f.name} caught up")

    def phase(self, key, label, services, nodes_expected, big=None):
        out = self.res[key]
        self.idle(out)
        self.queries(out, f"{label} (baseline services)", services, "small")
        if big:
            self.queries(out, f"{label} (big services)", big, "big")
        snap = self.snapshot_save(out, label)
        self.snapshot_restore(out, label, snap, nodes_expected)
        lead = self.leader()
        out["leader_hwm_mib"] = hwm_kib(lead.pid) / 1024
        out["leader_hwm_of"] = lead.name
        self.catch_up(out, label, nodes_expected)

    def run(self):
        a = self.a
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, a.watches + 4096)), hard))
        for s in self.servers:
            s.start()
        lead = wait_cluster(self.servers)
        log(f"cluster up: leader {lead.name} ({lead.ip}); temp dir {self.tmp}")

        base_svcs = [f"svc-{i:04d}" for i in range(a.baseline_services)]
        log(f"baseline: registering {a.baseline_services} services x 3 instances on 10 nodes")
        self.res["baseline"]["register"] = self.writes("baseline register", baseline_batches(a.baseline_services),
                                                       10 + 3 * a.baseline_services)
        nodes_base = len(get_json(lead.ip, "/v1/catalog/nodes"))
        self.res["baseline"]["nodes"] = nodes_base
        self.phase("baseline", "baseline", base_svcs, nodes_base)

        total = a.nodes * a.instances
        log(f"scale: registering {a.nodes} nodes x {a.instances} instances ({total} catalog register calls, "
            f"{self.nbig} services big-NNNN of ~{-(-total // self.nbig)} instances) with {a.reg_conc} threads")
        self.res["scale"]["register"] = self.writes("scale register", scale_batches(a.nodes, a.instances, self.nbig), total)
        lead = self.leader()
        nodes_scale = len(get_json(lead.ip, "/v1/catalog/nodes", timeout=120))
        self.res["scale"]["nodes"] = nodes_scale
        if nodes_scale != nodes_base + a.nodes:
            self.problem(f"catalog lists {nodes_scale} nodes, expected {nodes_base} + {a.nodes}")
        svcs = get_json(lead.ip, "/v1/catalog/services", timeout=120)
        missing = [f"big-{s:04d}" for s in range(self.nbig) if f"big-{s:04d}" not in svcs]
        if missing:
            self.problem(f"{len(missing)} big services missing from /v1/catalog/services (first {missing[0]})")
        want0 = len(range(0, total, self.nbig))
        got0 = len(get_json(lead.ip, "/v1/catalog/service/big-0000", timeout=60))
        if got0 != want0:
            self.problem(f"catalog/service/big-0000 lists {got0} instances, expected {want0}")

        if a.watches:
            log(f"scale: {a.watches} KV keys and a blocking watch on each (on the leader)")
            kv = [[(f"/v1/kv/{WATCH_PREFIX}{i}", b"0") for i in range(k, min(k + 50, a.watches))]
                  for k in range(0, a.watches, 50)]
            self.res["scale"]["kv_writes"] = self.writes("kv keys", kv, a.watches)
            self.watches = Watches(lead.ip, a.watches)
            self.watches.start()
            wait_for(f"{a.watches} KV watches parked", 120, lambda: self.watches.parked == a.watches, 0.1)
            time.sleep(1)
            self.watches_armed_at = time.monotonic()
            self.watches_base = (self.watches.changed, self.watches.same)
            log(f"  {self.watches.parked} watches open")
        big_svcs = [f"big-{s:04d}" for s in range(self.nbig)]
        self.phase("scale", "scale", base_svcs, nodes_scale, big_svcs)
        if self.watches:
            w = self.watches
            self.res["scale"]["watches"] = {"n": w.n, "parked_at_end": w.parked, "returned_total": w.wakes(),
                                            "errors": dict(w.errors)}
            if w.errors:
                self.problem(f"KV watches: {dict(w.errors)}")
            if w.parked != w.n:
                self.problem(f"KV watches: {w.parked} of {w.n} parked at the end")

    def stop(self):
        if self.watches:
            self.watches.stop()
        for s in self.servers:
            try:
                s.stop()
            except Exception as e:
                log(f"stopping {s.name}: {e}")
        if self.a.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Report


def machine():
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu": cpu, "loadavg": load, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def dig(d, *keys):
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def report(bench, a):
    b, s = bench.res["baseline"], bench.res["scale"]
    per = -(-a.nodes * a.instances // bench.nbig)
    rows = []  # (metric, baseline, scale, fmt, verdict kind: "2x" | "info" | None)

    def add(metric, bv, sv, fmt, kind=None):
        rows.append((metric, bv, sv, fmt, kind))

    ms, f0, f1, f2 = "{:.2f} ms", "{:.0f}", "{:.1f}", "{:.2f}"
    add("catalog nodes", b.get("nodes"), s.get("nodes"), "{}")
    add("register: catalog calls/s", dig(b, "register", "per_s"), dig(s, "register", "per_s"), f0)
    add("register: leader CPU, % of a core", dig(b, "register", "leader_cpu_pct"), dig(s, "register", "leader_cpu_pct"), f0)
    for key, what in (("small", "baseline svc (3 inst.)"), ("big", f"big svc ({per} inst.) vs baseline svc")):
        kind = "2x" if key == "small" else "info"
        add(f"health/service {what}: p50", dig(b, "small_health", "p50_ms"), dig(s, f"{key}_health", "p50_ms"), ms, kind)
        add(f"health/service {what}: p99", dig(b, "small_health", "p99_ms"), dig(s, f"{key}_health", "p99_ms"), ms, kind)
        add(f"health/service {what}: req/s", dig(b, "small_health", "rps"), dig(s, f"{key}_health", "rps"), f0)
    for key, what in (("small", "baseline svc"), ("big", "big svc vs baseline svc")):
        kind = "2x" if key == "small" else "info"
        add(f"DNS A {what}: qps", dig(b, "small_dns", "qps"), dig(s, f"{key}_dns", "qps"), f0)
        add(f"DNS A {what}: p50", dig(b, "small_dns", "p50_ms"), dig(s, f"{key}_dns", "p50_ms"), ms, kind)
        add(f"DNS A {what}: p99", dig(b, "small_dns", "p99_ms"), dig(s, f"{key}_dns", "p99_ms"), ms, kind)
    lb, ls = b.get("leader"), s.get("leader")
    add("RSS leader, MiB", dig(b, "rss_mib", lb), dig(s, "rss_mib", ls), f1)
    fb = [v for k, v in (b.get("rss_mib") or {}).items() if k != lb]
    fs = [v for k, v in (s.get("rss_mib") or {}).items() if k != ls]
    add("RSS followers (max), MiB", max(fb) if fb else None, max(fs) if fs else None, f1)
    add("peak RSS leader (VmHWM, after restore), MiB", b.get("leader_hwm_mib"), s.get("leader_hwm_mib"), f1)
    add("leader CPU idle, % of a core", b.get("leader_idle_cpu_pct"), s.get("leader_idle_cpu_pct"), f2)
    add("snapshot size, MiB", (b.get("snapshot_bytes") or 0) / MIB, (s.get("snapshot_bytes") or 0) / MIB, "{:.3f}")
    add("snapshot save, s", b.get("snapshot_save_s"), s.get("snapshot_save_s"), f2)
    add("snapshot restore, s", b.get("snapshot_restore_s"), s.get("snapshot_restore_s"), f2)
    add("follower catch-up: applied index, s", dig(b, "catch_up", "applied_s"), dig(s, "catch_up", "applied_s"), f2)
    add("follower catch-up: full catalog, s", dig(b, "catch_up", "catalog_s"), dig(s, "catch_up", "catalog_s"), f2)
    add("follower catch-up: padding writes first", dig(b, "log_padding", "writes"), dig(s, "log_padding", "writes"), "{}", "-")
    add("follower catch-up: a voter again, s", dig(b, "catch_up", "voter_s"), dig(s, "catch_up", "voter_s"), f2)
    add("follower catch-up: via leader snapshot", dig(b, "catch_up", "via_snapshot"), dig(s, "catch_up", "via_snapshot"), "{}")
    add("follower RSS after catch-up, MiB", dig(b, "catch_up", "follower_rss_mib"), dig(s, "catch_up", "follower_rss_mib"), f1)
    if a.watches:
        add("KV watches open (at the end)", None, dig(s, "watches", "parked_at_end"), "{}")
        add("KV watches returned before restore", None,
            (dig(s, "watches_before_restore", "changed") or 0) + (dig(s, "watches_before_restore", "same_index") or 0), "{}")
        add("restore: all KV watches re-armed, s", None, s.get("restore_watches_rearmed_s"), f2)
        add("KV watches returned during padding writes", None, s.get("watches_during_padding"), "{}")

    out_rows, json_rows = [], []
    for metric, bv, sv, fmt, kind in rows:
        num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
        ratio = sv / bv if num(bv) and num(sv) and bv and kind != "-" else None
        verdict = ""
        if kind == "2x" and ratio is not None:
            verdict = "ok (<= 2x)" if ratio <= 2 else "OVER 2x"
        elif kind == "info" and ratio is not None:
            verdict = "(bigger answer)"
        show = lambda v: "-" if v is None else fmt.format(v)
        out_rows.append([metric, show(bv), show(sv), f"{ratio:.2f}x" if ratio is not None else "", verdict])
        json_rows.append({"metric": metric, "baseline": bv, "scale": sv, "ratio": ratio, "verdict": verdict or None})
    head = (f"Scale: {a.nodes} nodes x {a.instances} instances ({bench.nbig} services of ~{per}) + "
            f"{a.baseline_services} baseline services, {a.watches} KV watches; 3 servers; "
            f"wrk/dnsperf at {a.conc} connections, {a.duration:g} s per point")
    return head, table(out_rows, ["metric", f"at {a.baseline_services} services", "at scale", "ratio", "verdict"]), json_rows


def main():
    ap = argparse.ArgumentParser(description="Scale benchmark: see the module docstring.")
    ap.add_argument("--bin", default="target/release/legate")
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--instances", type=int, default=10, help="service instances per node")
    ap.add_argument("--watches", type=int, default=1000, help="KV blocking queries held open at scale")
    ap.add_argument("--duration", type=float, default=10, help="seconds per load point (wrk, dnsperf)")
    ap.add_argument("--baseline-services", type=int, default=100)
    ap.add_argument("--per-service", type=int, default=100, help="instances per big service")
    ap.add_argument("--conc", type=int, default=16, help="wrk connections / dnsperf outstanding queries")
    ap.add_argument("--reg-conc", type=int, default=32, help="threads registering the catalog")
    ap.add_argument("--idle", type=float, default=10, help="seconds of idle CPU measurement")
    ap.add_argument("--snapshot-threshold", type=int, help="raft_snapshot_threshold of the servers")
    ap.add_argument("--trailing-logs", type=int, help="raft_trailing_logs of the servers")
    ap.add_argument("--catch-up", choices=["remove-peer", "wipe"], default="remove-peer",
                    help="how the follower is replaced (see the docstring)")
    ap.add_argument("--catch-up-timeout", type=float, default=600, help="seconds the follower may take")
    ap.add_argument("--no-pad-log", dest="pad_log", action="store_false",
                    help="no padding writes before the catch-up (the leader may then have no snapshot to send)")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (data dirs, logs, snapshots)")
    a = ap.parse_args()
    a.duration = int(a.duration) if float(a.duration).is_integer() else a.duration
    if not os.access(a.bin, os.X_OK):
        sys.exit(f"{a.bin} missing: cargo build --release --bin legate")
    for tool in ("wrk", "dnsperf"):
        if not shutil.which(tool):
            sys.exit(f"{tool} missing: shared/bench/install.sh")
    for ip in IPS:
        s = socket.socket()
        s.settimeout(0.5)
        try:
            if s.connect_ex((ip, HTTP_PORT)) == 0:
                sys.exit(f"something already listens on {ip}:{HTTP_PORT}: stop it first")
        finally:
            s.close()

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    m0 = machine()
    bench = Bench(a)
    failed = None
    try:
        bench.run()
    except Fail as e:
        failed = str(e)
    except KeyboardInterrupt:
        failed = "interrupted"
    finally:
        if failed:
            log(f"FAILED: {failed}")
            for s in bench.servers:
                print(s.tail(), file=sys.stderr)
        bench.stop()
    m1 = machine()
    head, text, rows = report(bench, a)
    print()
    print(head)
    print(f"# {m0['cpus']} cpus ({m0['cpu']}), loadavg at start {m0['loadavg']}, at end {m1['loadavg']}, {m0['date']}")
    print(text)
    problems = bench.problems + ([f"run failed: {failed}"] if failed else [])
    if problems:
        print("\nproblems:")
        for p in problems:
            print(f"  - {p}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"config": vars(a), "machine": {"start": m0, "end": m1}, "baseline": bench.res["baseline"],
                       "scale": bench.res["scale"], "rows": rows, "problems": problems, "completed": not failed},
                      f, indent=2)
        print(f"\nwrote {a.json}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
