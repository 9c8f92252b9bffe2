"""What the benchmark scripts share: processes and ports (Linux /proc), waiting for a
condition, and the JSON server that HTTP checks and plugins call."""

import http.server
import os
import socket
import threading
import time

TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    """A TCP port free on 127.0.0.1 right now."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def status_kib(pid, field):
    """A KiB field of /proc/<pid>/status (VmRSS, VmHWM, ...); 0 if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    """Resident set size of a process, KiB."""
    return status_kib(pid, "VmRSS")


def hwm_kib(pid):
    """Peak resident set size of a process (VmHWM), KiB."""
    return status_kib(pid, "VmHWM")


def cpu_ticks(pid):
    """CPU time of a process (utime + stime), in clock ticks (TICK per second)."""
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return int(parts[11]) + int(parts[12])


class Fail(Exception):
    """A benchmark that cannot go on: the message says why."""


def wait_for(what, deadline_s, probe, interval=0.05):
    """Calls probe() until it returns something true, and returns that; Fail after the deadline
    (probe's other errors, such as connection refused while starting, are retried)."""
    deadline = time.monotonic() + deadline_s
    last = None
    while True:
        try:
            v = probe()
            if v:
                return v
        except Fail:
            raise
        except Exception as e:
            last = e
        if time.monotonic() > deadline:
            raise Fail(f"timed out after {deadline_s:.0f}s waiting for {what}" + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


class _Json(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0 (one connection per request): http.server writes headers and body separately,
    # which on a kept-alive connection meets delayed ACKs (40 ms per request).
    def do_GET(self):
        body = b'{"status":"ok"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def json_server(path="/"):
    """A threaded HTTP server answering every GET with {"status":"ok"}: (server, URL of path)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Json)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}{path}"


def table(rows, header):
    """Rows as a text table under `header`: the first column left-aligned, the others right."""
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
