#!/usr/bin/env python3
"""Leader failover time of a 3-server cluster, with or without TLS on the RPC port.

Starts three `legate agent -server -bootstrap-expect 3` processes on 127.0.5.1-3 (Consul's
default ports on each address), writes KV through a follower in a loop, SIGKILLs the leader and
reports the gap between the last write acknowledged before the kill and the first write sent
after it that is acknowledged;
the killed server is restarted (same data dir) and the next round waits for three voters again.

    scripts/bench-failover.py [--bin target/release/legate] [--kills 10] [--tls]

With --tls every server gets a certificate from `legate tls` and runs with verify_incoming,
verify_outgoing and verify_server_hostname on the RPC port (plain HTTP stays on for the load).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

IPS = ["127.0.5.1", "127.0.5.2", "127.0.5.3"]


def http(ip, method, path, body=None, timeout=2.0):
    req = urllib.request.Request(f"http://{ip}:8500{path}", data=body, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.read()


def leader():
    """The leader, as it says of itself (a follower may still name the one just killed)."""
    for ip in IPS:
        try:
            l = json.loads(http(ip, "GET", "/v1/status/leader"))
            if l and l.split(":")[0] == ip:
                return ip
        except Exception:
            pass
    return None


def voters(ip):
    try:
        return len(json.loads(http(ip, "GET", "/v1/status/peers")))
    except Exception:
        return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/legate")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--tls", action="store_true")
    a = ap.parse_args()
    bin_ = os.path.abspath(a.bin)
    work = tempfile.mkdtemp(prefix="legate-failover-")
    if a.tls:
        subprocess.run([bin_, "tls", "ca", "create"], cwd=work, check=True, capture_output=True)
    procs = {}

    def start(i):
        ip = IPS[i]
        d = os.path.join(work, f"s{i}")
        os.makedirs(d, exist_ok=True)
        args = [bin_, "agent", "-server", "-bootstrap-expect", "3", "-node", f"s{i}", "-bind", ip,
                "-client", ip, "-data-dir", os.path.join(d, "data"), "-retry-join", IPS[0],
                "-retry-interval", "1s", "-dns-port", "-1", "-log-level", "warn"]
        if a.tls:
            cert = os.path.join(d, "cert.pem")
            if not os.path.exists(cert):
                out = subprocess.run([bin_, "tls", "cert", "create", "-server", "-additional-ipaddress", ip],
                                     cwd=work, check=True, capture_output=True, text=True).stdout
                saved = [l.split()[-1] for l in out.splitlines() if l.startswith("==> Saved")]
                os.rename(os.path.join(work, saved[0]), cert)
                os.rename(os.path.join(work, saved[1]), os.path.join(d, "key.pem"))
            cfg = os.path.join(d, "tls.json")
            with open(cfg, "w") as f:
                json.dump({"tls": {"defaults": {"ca_file": os.path.join(work, "consul-agent-ca.pem"),
                                                "cert_file": cert, "key_file": os.path.join(d, "key.pem"),
                                                "verify_incoming": True, "verify_outgoing": True},
                                   "internal_rpc": {"verify_server_hostname": True},
                                   "https": {"verify_incoming": False}}}, f)
            args += ["-config-file", cfg]
        procs[i] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    for i in range(3):
        start(i)
    gaps = []
    elections = []
    try:
        for k in range(a.kills):
            deadline = time.time() + 60
            while not (leader() and all(voters(ip) == 3 for ip in IPS)):
                if time.time() > deadline:
                    raise SystemExit("cluster did not form")
                time.sleep(0.1)
            lead = leader()
            li = IPS.index(lead)
            via = IPS[(li + 1) % 3]
            acks = []
            stop = threading.Event()

            def writer():
                n = 0
                while not stop.is_set():
                    n += 1
                    sent = time.monotonic()
                    try:
                        if http(via, "PUT", f"/v1/kv/failover/{n % 100}", b"x", timeout=5) == b"true":
                            acks.append((sent, time.monotonic()))
                    except Exception:
                        time.sleep(0.005)

            elected = []

            def watch_election():
                # When a survivor first says it leads: the election's share of the gap.
                others = [ip for ip in IPS if ip != lead]
                while not stop.is_set() and not elected:
                    for ip in others:
                        try:
                            l = json.loads(http(ip, "GET", "/v1/status/leader", timeout=0.5))
                        except Exception:
                            continue
                        if l and l.split(":")[0] == ip:
                            elected.append(time.monotonic())
                            break
                    time.sleep(0.005)

            t = threading.Thread(target=writer)
            t.start()
            time.sleep(1.0)
            killed_at = time.monotonic()
            procs[li].send_signal(signal.SIGKILL)
            w = threading.Thread(target=watch_election)
            w.start()
            procs[li].wait()
            # The first write sent after the kill that is acknowledged (one in flight at the kill
            # may still be answered by the old leader's commit).
            while not [e for s_, e in acks if s_ > killed_at] and time.monotonic() - killed_at < 30:
                time.sleep(0.01)
            stop.set()
            t.join()
            w.join()
            before = max([e for _, e in acks if e <= killed_at], default=killed_at)
            after = min([e for s_, e in acks if s_ > killed_at], default=None)
            gap = (after - before) if after else float("inf")
            gaps.append(gap)
            election = f"{(elected[0] - killed_at) * 1000:.0f} ms" if elected else "not seen"
            if elected:
                elections.append(elected[0] - killed_at)
            print(f"kill {k + 1}: leader {lead}, writes through {via}: gap {gap * 1000:.0f} ms "
                  f"(a survivor led {election} after the kill)", flush=True)
            start(li)
        finite = sorted(g for g in gaps if g != float("inf"))
        print(json.dumps({"tls": a.tls, "kills": len(gaps),
                          "gap_ms_p50": round(statistics.median(finite) * 1000) if finite else None,
                          "gap_ms_max": round(max(gaps) * 1000) if gaps else None,
                          "elected_ms_p50": round(statistics.median(elections) * 1000) if elections else None}))
    finally:
        for p in procs.values():
            p.kill()


if __name__ == "__main__":
    main()
