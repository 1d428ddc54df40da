#!/usr/bin/env python3
"""nginx + peakcache vs nginx proxy_cache vs `return 200`, in one nginx, in the same run.

    benches/nginx/bench.py [--duration 4] [--rounds 3] [--workers auto] [--zone-options '']
                           [--only hot,zipf,...] [--module path.so]

One nginx, configured as the README tells users (`worker_processes auto`, `peakcache_zone NAME
size=N` with its defaults), serves three ports: peakcache, proxy_cache configured as an
operator would (lock, use_stale updating/error, background_update, revalidate) and
`return 200` (the ceiling). A Python origin behaves like an everyday one: every answer carries
an ETag and a Last-Modified, and a conditional request whose validator matches gets a 304. It
counts and timestamps every request per path (conditional ones too).

Scenarios (each comparison run `--rounds` times in this one process; best and spread reported):

  hot     hot hits: wrk -t1 -c64 on one warm key                                  (req/s)
  zipf    Zipf mix over 10k warm keys, s = 0.99: wrk with a Lua sampler            (req/s)
          Both also as requests per second of the nginx workers' CPU (user + system time of
          the workers over the run, from /proc): wrk shares the machine's two cores, so req/s
          is bounded by the client; this figure is what a request costs the server alone.
          The client's own CPU per request (wrk's user + system time) is reported beside it,
          and how wrk's 64 connections were spread over the workers: the three servers listen
          with `reuseport`, so the kernel spreads a run's connections by their addresses;
          without it whichever worker wakes first takes them (from 64/0 to 32/32 from run to
          run, moving req/s by up to a quarter).
  spike   cold spike: 200 clients at once on one new key, origin answers in 100 ms. The client
          records every request (connections opened first; latency from just before the
          request's write to the arrival of its last bytes, as the kernel stamps them with
          SO_TIMESTAMPNS, so the client reading 200 answers one by one is not counted), not
          wrk's statistics. Origin requests for the key are counted.
  expiry  expiry under load: 50 keys, max-age=2 + stale-while-revalidate=30, origin 100 ms,
          answering revalidations with 304; wrk over the keys once they are stale. Origin
          requests per key per expiry (the shortest gap between two origin requests of a key:
          >= 1 s means at most one per expiry), and the slowest request wrk saw (wrk 4 records
          every request's latency: a slowest request under 50 ms means no client took 50 ms).
  down    origin down inside stale-if-error: 50 keys, max-age=1 + stale-if-error=60, then the
          origin answers 503 at once; wrk over the keys once stale. Share of 200s, the slowest
          request, origin probes per key (counted at the origin) against the back-off (1 s,
          doubling).
  For expiry and down, the same wrk run against `return 200` gives the slowest request the
  machine alone costs a client (the floor of "0 clients >= 50 ms").

Prints one table (figures, ratios to proxy_cache and to the ceiling) and the goals met or not;
writes the same to target/nginx-bench/summary.md. Needs wrk, nginx and the built module.
"""

import argparse
import http.client
import http.server
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "bindings", "nginx", "t"))
import run as harness  # noqa: E402  (the e2e harness: nginx binary, module path, free ports)

SPIKE_CLIENTS = 200
ORIGIN_DELAY = 0.1
EXPIRY_KEYS = 50
DOWN_KEYS = 50
ZIPF_KEYS = 10000
ZIPF_S = 0.99
BACKOFF_MIN = 1.0  # peakcache_config.retry_backoff_min_ms, doubling
# every answer's validators: an ordinary origin (a CMS, a framework) sends both
LAST_MODIFIED = "Tue, 14 Nov 2023 22:13:20 GMT"

CONF = """
load_module {module};
{user}
worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    proxy_cache_path {prefix}/pc keys_zone=pc:32m levels=1:2 max_size=1g inactive=60m;
    peakcache_zone main size=256m{zone_options};

    upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}

    server {{
        listen 127.0.0.1:{p_peak} backlog=4096 reuseport;
        location / {{
            peakcache main;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Bench-Via peakcache;
            proxy_pass http://origin;
        }}
    }}
    server {{
        listen 127.0.0.1:{p_pc} backlog=4096 reuseport;
        location / {{
            proxy_cache pc;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 5s;
            proxy_cache_use_stale updating error timeout http_500 http_502 http_503 http_504;
            proxy_cache_background_update on;
            proxy_cache_revalidate on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Bench-Via proxy_cache;
            proxy_pass http://origin;
        }}
    }}
    server {{
        listen 127.0.0.1:{p_ret} backlog=4096 reuseport;
        location / {{ return 200 "hello\\n"; }}
    }}
}}
"""


class Origin:
    """Counts and timestamps every request per path; behaviour chosen by the path."""

    def __init__(self):
        self.log = {}
        self.lock = threading.Lock()
        self.down = False
        self.conditional = 0    # requests with If-None-Match / If-Modified-Since
        self.not_modified = 0   # of which answered 304
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # head and body are two writes: without this, Nagle and nginx's delayed ACK add
            # 40 ms to every answer on a kept-alive upstream connection
            disable_nagle_algorithm = True

            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                via = self.headers.get("X-Bench-Via", "")
                with origin.lock:
                    now = time.monotonic()
                    origin.log.setdefault(path, []).append(now)
                    origin.log.setdefault(via + " " + path, []).append(now)
                    if self.headers.get("If-None-Match") or self.headers.get("If-Modified-Since"):
                        origin.conditional += 1
                status, cc = 200, "max-age=3600"
                if path.startswith("/spike"):
                    time.sleep(ORIGIN_DELAY)
                elif path.startswith("/exp"):
                    time.sleep(ORIGIN_DELAY)
                    cc = "max-age=2, stale-while-revalidate=30"
                elif path.startswith("/down"):
                    cc = "max-age=1, stale-if-error=60"
                    if origin.down:
                        status, cc = 503, "no-store"
                etag = '"%08x"' % (hash(path) & 0xFFFFFFFF)
                body = b"hello from origin %s\n" % path.encode()
                if status == 200 and (self.headers.get("If-None-Match") == etag or (
                        self.headers.get("If-None-Match") is None
                        and self.headers.get("If-Modified-Since") == LAST_MODIFIED)):
                    with origin.lock:
                        origin.not_modified += 1
                    self.send_response(304)
                    self.send_header("Cache-Control", cc)
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", LAST_MODIFIED)
                    self.end_headers()
                    return
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Cache-Control", cc)
                if status == 200:
                    self.send_header("ETag", etag)
                    self.send_header("Last-Modified", LAST_MODIFIED)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_GET

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 1024

            def handle_error(self, request, client_address):
                # nginx closes idle upstream connections (keepalive) as it likes: not a failure
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)

        self.port = harness.free_port()
        self.server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def times(self, path, since=0.0, until=float("inf")):
        with self.lock:
            return [t for t in self.log.get(path, []) if since <= t < until]

    def count(self, path):
        return len(self.times(path))

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# wrk

LUA_DONE = """
done = function(summary, latency, requests)
  io.write(string.format("BENCH requests=%d non2xx=%d errors=%d max_us=%d p999_us=%d p99_us=%d\\n",
    summary.requests, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency.max, latency:percentile(99.9), latency:percentile(99)))
end
"""

LUA_PATHS = """
local paths = {%s}
local reqs = {}
init = function(args)
  -- here, not at load: wrk.headers has the Host only from now on
  for i, p in ipairs(paths) do reqs[i] = wrk.format("GET", p) end
end
local i = 0
request = function()
  i = i + 1
  if i > #reqs then i = 1 end
  return reqs[i]
end
"""

LUA_ZIPF = """
local n, s, m = %d, %f, 200000
math.randomseed(42)
local cdf, acc = {}, 0
for k = 1, n do acc = acc + 1 / k ^ s; cdf[k] = acc end
local reqs = {}
init = function(args)
  for k = 1, n do reqs[k] = wrk.format("GET", "/z/" .. k) end
end
local seq = {}
for j = 1, m do
  local u = math.random() * acc
  local lo, hi = 1, n
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if cdf[mid] < u then lo = mid + 1 else hi = mid end
  end
  seq[j] = lo
end
local i = 0
request = function()
  i = i + 1
  if i > m then i = 1 end
  return reqs[seq[i]]
end
"""


class Wrk:
    def __init__(self, tmp):
        self.tmp = tmp
        self.n = 0
        self.workers = None  # the nginx worker pids, once known: how connections spread

    def run(self, port, duration, lua="", path="/", conns=64):
        self.n += 1
        script = os.path.join(self.tmp, "s%d.lua" % self.n)
        with open(script, "w") as f:
            f.write(lua + LUA_DONE)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(["wrk", "-t1", "-c%d" % conns, "-d%ds" % duration, "-s", script,
                                 "http://127.0.0.1:%d%s" % (port, path)],
                                stdout=subprocess.PIPE, text=True)
        spread = None
        if self.workers and duration >= 2:
            time.sleep(1)
            spread = connection_spread(port, self.workers)
        out = proc.communicate(timeout=duration + 30)[0]
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        b = re.search(r"BENCH requests=(\d+) non2xx=(\d+) errors=(\d+) max_us=(\d+) "
                      r"p999_us=(\d+) p99_us=(\d+)", out)
        r = dict(rps=float(m.group(1)) if m else 0.0, client_cpu=client_cpu, spread=spread)
        if b:
            r.update(requests=int(b.group(1)), non2xx=int(b.group(2)), errors=int(b.group(3)),
                     max_ms=int(b.group(4)) / 1000.0, p999_ms=int(b.group(5)) / 1000.0,
                     p99_ms=int(b.group(6)) / 1000.0)
        return r


# the spike client: every request recorded

# SO_TIMESTAMPNS (asm-generic/socket.h; Python's socket module does not name it): the kernel
# stamps what a recvmsg reads with the time its last segment arrived
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("qq")


def arrival(ancillary):
    """The kernel's arrival time (CLOCK_REALTIME, seconds) from a recvmsg's ancillary data."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            sec, nsec = TIMESPEC.unpack(data[:TIMESPEC.size])
            return sec + nsec / 1e9
    return None


def spike(port, path, n):
    """Sends one request on each of `n` connections opened first; the latency of each is from
    just before its write to the arrival of its response's last bytes, as the kernel stamped
    them: the time this client takes to read 200 answers one after another is not counted."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
    req = ("GET %s HTTP/1.1\r\nHost: bench\r\n\r\n" % path).encode()
    sel = selectors.DefaultSelector()
    start, bufs, lat = {}, {}, []
    for s in socks:
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.setblocking(False)
        bufs[s] = b""
        sel.register(s, selectors.EVENT_READ)
    for s in socks:
        start[s] = time.time()
        s.send(req)
    deadline = time.time() + 15
    pending = set(socks)
    while pending and time.time() < deadline:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(TIMESPEC.size))
            now = arrival(anc) or time.time()
            bufs[s] += data
            done, ok = False, False
            head, sep, body = bufs[s].partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?i)content-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    done, ok = True, head.startswith(b"HTTP/1.1 200")
            if not data:
                done = True
            if done:
                lat.append((now - start[s], ok))
                sel.unregister(s)
                pending.discard(s)
    for s in socks:
        s.close()
    lat += [(15.0, False)] * len(pending)
    return lat


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def warm(port, paths):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for p in paths:
            c.request("GET", p)
            c.getresponse().read()
    finally:
        c.close()


def backoff_allowed(window):
    """Probes one key may cost in `window` seconds: one per back-off interval (1 s, doubling)."""
    n, t, b = 0, 0.0, BACKOFF_MIN
    while t < window:
        n += 1
        t += b
        b *= 2
    return n


def gaps(times):
    times = sorted(times)
    return [b - a for a, b in zip(times, times[1:])]


def connection_spread(port, pids):
    """How many of the connections established to `port` each worker in `pids` holds, most
    first (from `ss`); None when ss is missing."""
    try:
        out = subprocess.run(["ss", "-tnpH", "state", "established", "sport", "= :%d" % port],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    held = [len(re.findall(r"pid=%s," % pid, out)) for pid in pids]
    return sorted(held, reverse=True)


def worker_pids(master):
    """The worker processes nginx's master `master` runs (for `auto`; its cache manager and
    loader are not workers)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/stat" % pid) as f:
                # the field after the command (which may hold spaces) is the state, then ppid
                child = int(f.read().rsplit(")", 1)[1].split()[1]) == master
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if child and b"worker process" in f.read():
                    pids.append(pid)
        except (OSError, IndexError, ValueError):
            pass
    return pids


def cpu_seconds(pids):
    """User plus system time the processes `pids` have used so far."""
    ticks = 0
    for pid in pids:
        try:
            with open("/proc/%s/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


# the run

SYSTEMS = ("return 200", "peakcache", "proxy_cache")


def latency_floor(runs):
    """The `return 200` cell of a latency scenario: the same wrk run against the ceiling, whose
    slowest request is what the machine alone costs a client."""
    return ("max latency %.1f ms [%.1f-%.1f], p99.9 %.1f; %.0f req/s"
            % (min(r.get("max_ms", 1e9) for r in runs), min(r.get("max_ms", 1e9) for r in runs),
               max(r.get("max_ms", 1e9) for r in runs), min(r.get("p999_ms", 1e9) for r in runs),
               max(r["rps"] for r in runs)))


def best_spread(vals, higher=True):
    b = max(vals) if higher else min(vals)
    return b, min(vals), max(vals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=4, help="seconds per wrk run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="auto",
                    help="worker_processes (default auto, as the README configures nginx)")
    ap.add_argument("--zone-options", default="",
                    help="extra peakcache_zone parameters (default none: the README's zone)")
    ap.add_argument("--only", default="hot,zipf,spike,expiry,down")
    ap.add_argument("--module", default=harness.MODULE)
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "nginx-bench", "summary.md"))
    args = ap.parse_args()
    only = set(args.only.split(","))
    t_start = time.time()

    # The README's zone keeps its region at the default path: removed at the end if this run
    # made it (it is kept across nginx restarts by design).
    region = "/dev/shm/peakcache-main"
    region_existed = os.path.exists(region)
    origin = Origin()
    prefix = tempfile.mkdtemp(prefix="peakcache-bench-")
    ports = dict(p_peak=harness.free_port(), p_pc=harness.free_port(), p_ret=harness.free_port())
    port = {"peakcache": ports["p_peak"], "proxy_cache": ports["p_pc"],
            "return 200": ports["p_ret"]}
    user = "user root root;" if os.geteuid() == 0 else ""
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        zone_options = (" " + args.zone_options) if args.zone_options else ""
        f.write(CONF.format(module=args.module, user=user, prefix=prefix, origin=origin.port,
                            workers=args.workers, zone_options=zone_options, **ports))
    proc = subprocess.Popen([harness.NGINX, "-p", prefix, "-c", prefix + "/nginx.conf",
                             "-e", prefix + "/error.log"],
                            env={k: v for k, v in os.environ.items() if k != "NGINX"})
    wrk = Wrk(prefix)
    rows, goals, notes = [], [], []
    try:
        time.sleep(0.5)
        if proc.poll() is not None:
            raise SystemExit("nginx did not start: see " + prefix + "/error.log")
        pids = worker_pids(proc.pid)
        workers = len(pids)
        wrk.workers = pids

        def throughput(label, path, lua):
            res = {s: [] for s in SYSTEMS}
            per_cpu = {s: [] for s in SYSTEMS}
            client = {s: [] for s in SYSTEMS}
            spreads = {s: [] for s in SYSTEMS}
            for _ in range(args.rounds):
                for s in SYSTEMS:
                    c0 = cpu_seconds(pids)
                    w = wrk.run(port[s], args.duration, lua=lua, path=path)
                    used = cpu_seconds(pids) - c0
                    res[s].append(w["rps"])
                    per_cpu[s].append(w.get("requests", 0) / max(used, 1e-3))
                    client[s].append(1e6 * w["client_cpu"] / max(w.get("requests", 0), 1))
                    spreads[s].append("/".join(map(str, w["spread"] or ["?"])))
            b = {s: best_spread(v) for s, v in res.items()}
            c = {s: best_spread(v) for s, v in per_cpu.items()}
            rows.append((label + ", requests per second of the workers' CPU",
                         {s: "%.0f [%.0f-%.0f]" % c[s] for s in SYSTEMS},
                         c["peakcache"][0] / max(c["proxy_cache"][0], 1),
                         c["peakcache"][0] / max(c["return 200"][0], 1)))
            notes.append("%s: the workers' CPU (user + system, /proc) per request, best round: "
                         "%s; what the client and the rest of the machine take is not in it."
                         % (label, ", ".join("%s %.1f us" % (s, 1e6 / max(c[s][0], 1))
                                             for s in SYSTEMS)))
            notes.append("%s: the client's (wrk's) own CPU per request, round by round: %s; wrk's "
                         "connections per worker: %s." % (
                             label, "; ".join("%s %s us" % (s, " ".join("%.1f" % v for v in client[s]))
                                              for s in SYSTEMS),
                             "; ".join("%s %s" % (s, " ".join(spreads[s])) for s in SYSTEMS)))
            notes.append("%s, peakcache / return 200 round by round: %s; peakcache / proxy_cache: "
                         "%s" % (label, " ".join("%.3f" % (p / max(c, 1)) for p, c in
                                                 zip(res["peakcache"], res["return 200"])),
                                 " ".join("%.2f" % (p / max(c, 1)) for p, c in
                                          zip(res["peakcache"], res["proxy_cache"]))))
            rows.insert(len(rows) - 1, (label + " (req/s)",
                                        {s: "%.0f [%.0f-%.0f]" % b[s] for s in SYSTEMS},
                                        b["peakcache"][0] / max(b["proxy_cache"][0], 1),
                                        b["peakcache"][0] / max(b["return 200"][0], 1)))
            return b, c

        # hot hits: one key, warmed first
        if "hot" in only:
            for s in ("peakcache", "proxy_cache"):
                for _ in range(3):
                    get(port[s], "/hot")
            b, c = throughput("hot hits", "/hot", "")
            r = b["peakcache"][0] / b["return 200"][0]
            goals.append(("hot hits >= 1.0x return 200 (issue 15)", r >= 1.0,
                          "%.3f (proxy_cache %.3f); per CPU second %.3f"
                          % (r, b["proxy_cache"][0] / b["return 200"][0],
                             c["peakcache"][0] / c["return 200"][0])))

        # Zipf over 10k warm keys
        if "zipf" in only:
            paths = ["/z/%d" % k for k in range(1, ZIPF_KEYS + 1)]
            tw = time.time()
            for s in ("peakcache", "proxy_cache"):
                # each key once, in order, by wrk (then hits on the last keys)
                lua = LUA_PATHS.replace("if i > #reqs then i = 1 end",
                                        "if i > #reqs then i = #reqs end")
                for _ in range(3):
                    wrk.run(port[s], 3, lua=lua % ",".join('"%s"' % p for p in paths), conns=32)
                    if all(origin.count(s + " " + p) for p in paths):
                        break
            cold = sum(1 for p in paths for s in ("peakcache", "proxy_cache")
                       if not origin.count(s + " " + p))
            notes.append("Zipf warm-up took %.0f s." % (time.time() - tw))
            before = sum(origin.count(p) for p in paths)
            b, c = throughput("Zipf 10k keys s=0.99, warm", "/", LUA_ZIPF % (ZIPF_KEYS, ZIPF_S))
            misses = sum(origin.count(p) for p in paths) - before
            notes.append("Zipf: %d keys warmed in both caches (%d key-cache pairs not warm); "
                         "%d origin requests during the measured runs." % (ZIPF_KEYS, cold, misses))
            r = b["peakcache"][0] / max(b["proxy_cache"][0], 1)
            goals.append(("Zipf >= 2x proxy_cache warm req/s", r >= 2.0,
                          "%.2fx (per CPU second of the workers %.2fx)"
                          % (r, c["peakcache"][0] / max(c["proxy_cache"][0], 1))))

        # cold spike
        if "spike" in only:
            sp = {s: [] for s in ("peakcache", "proxy_cache")}
            for rnd in range(args.rounds):
                for s in sp:
                    path = "/spike-%s-%d-%d" % (s[:2], rnd, os.getpid())
                    lat = spike(port[s], path, SPIKE_CLIENTS)
                    time.sleep(0.2)
                    ms = [l * 1000 for l, _ in lat]
                    sp[s].append(dict(p50=pct(ms, 0.5), p99=pct(ms, 0.99), max=max(ms),
                                      ok=sum(1 for _, ok in lat if ok), origin=origin.count(path)))
            cell = {}
            for s, rs in sp.items():
                p99 = [r["p99"] for r in rs]
                cell[s] = ("p99 %.0f ms [%.0f-%.0f], p50 %.0f, max %.0f; origin req %s; %s/%d ok"
                           % (min(p99), min(p99), max(p99), min(r["p50"] for r in rs),
                              min(r["max"] for r in rs), "/".join(str(r["origin"]) for r in rs),
                              "/".join(str(r["ok"]) for r in rs), SPIKE_CLIENTS))
            cell["return 200"] = "-"
            bp, bc = min(r["p99"] for r in sp["peakcache"]), min(r["p99"] for r in sp["proxy_cache"])
            rows.append(("cold spike, %d clients, origin %d ms" % (SPIKE_CLIENTS, ORIGIN_DELAY * 1000),
                         cell, bc / max(bp, 1e-9), None))
            worst = max(r["p99"] for r in sp["peakcache"])
            one = all(r["origin"] == 1 for r in sp["peakcache"])
            allok = all(r["ok"] == SPIKE_CLIENTS for r in sp["peakcache"])
            goals.append(("cold spike p99 <= 105 ms, 1 origin request (%s workers)" % workers,
                          worst <= 105 and one and allok,
                          "worst p99 %.1f ms (best %.1f); origin requests %s; all 200: %s"
                          % (worst, bp, "/".join(str(r["origin"]) for r in sp["peakcache"]),
                             allok)))
            notes.append("cold spike: ratio column = proxy_cache p99 / peakcache p99 (best "
                         "rounds); latencies from a client that records each of the %d requests "
                         "(connections opened first; arrival as the kernel stamped it)."
                         % SPIKE_CLIENTS)

        # expiry under load
        if "expiry" in only:
            ex = {s: [] for s in ("peakcache", "proxy_cache")}
            floor = []
            for rnd in range(args.rounds):
                keys = {s: ["/exp-%s-%d-%d/%d" % (s[:2], rnd, os.getpid(), k)
                            for k in range(EXPIRY_KEYS)] for s in ex}
                for s in ex:
                    warm(port[s], keys[s])
                time.sleep(2.2)  # every key stale (max-age=2), inside stale-while-revalidate
                for s in ex:
                    t0 = time.monotonic()
                    lua = LUA_PATHS % ",".join('"%s"' % p for p in keys[s])
                    w = wrk.run(port[s], args.duration + 1, lua=lua)
                    t1 = time.monotonic()
                    per = [origin.times(p, t0, t1) for p in keys[s]]
                    g = [x for ts in per for x in gaps(ts)]
                    ex[s].append(dict(w, origin=sum(len(ts) for ts in per),
                                      maxkey=max(len(ts) for ts in per),
                                      mingap=min(g) if g else float("inf"), window=t1 - t0))
                floor.append(wrk.run(port["return 200"], args.duration + 1, lua=lua))
            cell = {"return 200": latency_floor(floor)}
            for s, rs in ex.items():
                cell[s] = ("max latency %.1f ms [%.1f-%.1f], p99.9 %.1f; %.0f req/s; origin req "
                           "%s (max %d/key), min gap %.2f s; non-2xx %d"
                           % (min(r.get("max_ms", 1e9) for r in rs),
                              min(r.get("max_ms", 1e9) for r in rs),
                              max(r.get("max_ms", 1e9) for r in rs),
                              min(r.get("p999_ms", 1e9) for r in rs),
                              max(r["rps"] for r in rs), "/".join(str(r["origin"]) for r in rs),
                              max(r["maxkey"] for r in rs), min(r["mingap"] for r in rs),
                              sum(r.get("non2xx", 0) for r in rs)))
            rp = max(r["rps"] for r in ex["peakcache"])
            rows.append(("expiry under load, %d keys max-age=2 swr=30, origin %d ms, %d s"
                         % (EXPIRY_KEYS, ORIGIN_DELAY * 1000, args.duration + 1), cell,
                         rp / max(max(r["rps"] for r in ex["proxy_cache"]), 1), None))
            rs = ex["peakcache"]
            worst = max(r.get("max_ms", 1e9) for r in rs)
            goals.append(("expiry: <= 1 origin request per key per expiry, 0 clients >= 50 ms",
                          min(r["mingap"] for r in rs) >= 1.0 and worst < 50,
                          "min gap between a key's origin requests %.2f s (>= 1 s: one per "
                          "expiry); slowest request %.1f ms (worst round), best round %.1f ms; "
                          "return 200 on the same keys: slowest %.1f ms (worst round)"
                          % (min(r["mingap"] for r in rs), worst,
                             min(r.get("max_ms", 1e9) for r in rs),
                             max(r.get("max_ms", 1e9) for r in floor))))

        # origin down inside stale-if-error
        if "down" in only:
            dn = {s: [] for s in ("peakcache", "proxy_cache")}
            floor = []
            for rnd in range(args.rounds):
                keys = {s: ["/down-%s-%d-%d/%d" % (s[:2], rnd, os.getpid(), k)
                            for k in range(DOWN_KEYS)] for s in dn}
                origin.down = False
                for s in dn:
                    warm(port[s], keys[s])
                origin.down = True
                time.sleep(1.2)  # stale (max-age=1), inside stale-if-error
                for s in dn:
                    t0 = time.monotonic()
                    lua = LUA_PATHS % ",".join('"%s"' % p for p in keys[s])
                    w = wrk.run(port[s], args.duration + 1, lua=lua)
                    t1 = time.monotonic()
                    per = [origin.times(p, t0, t1) for p in keys[s]]
                    g = [x for ts in per for x in gaps(ts)]
                    dn[s].append(dict(w, origin=sum(len(ts) for ts in per),
                                      maxkey=max(len(ts) for ts in per),
                                      mingap=min(g) if g else float("inf"), window=t1 - t0))
                floor.append(wrk.run(port["return 200"], args.duration + 1, lua=lua))
                origin.down = False
            cell = {"return 200": latency_floor(floor)}
            for s, rs in dn.items():
                share = [100.0 * (r.get("requests", 0) - r.get("non2xx", 0) - r.get("errors", 0))
                         / max(r.get("requests", 1), 1) for r in rs]
                cell[s] = ("%.3f%% 200 (worst); max latency %.1f ms [%.1f-%.1f]; %.0f req/s; "
                           "probes %s (max %d/key, allowed %d), min gap %.2f s"
                           % (min(share), min(r.get("max_ms", 1e9) for r in rs),
                              min(r.get("max_ms", 1e9) for r in rs),
                              max(r.get("max_ms", 1e9) for r in rs), max(r["rps"] for r in rs),
                              "/".join(str(r["origin"]) for r in rs), max(r["maxkey"] for r in rs),
                              backoff_allowed(min(r["window"] for r in rs)),
                              min(r["mingap"] for r in rs)))
            rows.append(("origin down (503), %d keys max-age=1 sie=60, %d s"
                         % (DOWN_KEYS, args.duration + 1), cell,
                         max(r["rps"] for r in dn["peakcache"])
                         / max(max(r["rps"] for r in dn["proxy_cache"]), 1), None))
            rs = dn["peakcache"]
            all200 = all(r.get("non2xx", 1) == 0 and r.get("errors", 1) == 0 for r in rs)
            allowed = backoff_allowed(max(r["window"] for r in rs))
            probes_ok = all(r["maxkey"] <= allowed for r in rs) and \
                min(r["mingap"] for r in rs) >= BACKOFF_MIN * 0.95
            worst = max(r.get("max_ms", 1e9) for r in rs)
            goals.append(("origin down: 100 % 200", all200,
                          "non-2xx %d, socket errors %d over %d requests"
                          % (sum(r.get("non2xx", 0) for r in rs),
                             sum(r.get("errors", 0) for r in rs),
                             sum(r.get("requests", 0) for r in rs))))
            goals.append(("origin down: <= 1 probe per key per back-off interval", probes_ok,
                          "max %d probes for a key in a %.1f s window (allowed %d: 1 s back-off, "
                          "doubling), min gap %.2f s"
                          % (max(r["maxkey"] for r in rs), max(r["window"] for r in rs), allowed,
                             min(r["mingap"] for r in rs))))
            goals.append(("origin down: 0 clients >= 50 ms", worst < 50,
                          "slowest request %.1f ms (worst round), best round %.1f ms; return "
                          "200 on the same keys: slowest %.1f ms (worst round)"
                          % (worst, min(r.get("max_ms", 1e9) for r in rs),
                             max(r.get("max_ms", 1e9) for r in floor))))

        # the table
        lines = ["nginx %s, worker_processes %s (%s workers), `peakcache_zone main size=256m%s`, "
                 "wrk -t1 -c64, %d s runs, %d rounds (best [min-max]); origin with ETag and "
                 "Last-Modified answering conditionals with 304 (%d conditional requests, %d "
                 "answered 304); machine: %d cores, shared" % (
                     subprocess.run([harness.NGINX, "-v"], capture_output=True,
                                    text=True).stderr.strip().split("/")[-1],
                     args.workers, workers, zone_options, args.duration, args.rounds,
                     origin.conditional, origin.not_modified, os.cpu_count()),
                 "",
                 "| scenario | return 200 | peakcache | proxy_cache | peakcache / proxy_cache "
                 "| peakcache / return 200 |",
                 "|---|---|---|---|---|---|"]
        for label, cell, r_pc, r_ceil in rows:
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                label, cell["return 200"], cell["peakcache"], cell["proxy_cache"],
                "%.2f" % r_pc if r_pc is not None else "-",
                "%.3f" % r_ceil if r_ceil is not None else "-"))
        lines += ["", "| goal | met | measured |", "|---|---|---|"]
        for g, ok, what in goals:
            lines.append("| %s | %s | %s |" % (g, "yes" if ok else "**no**", what))
        lines += [""] + ["- " + n for n in notes]
        lines.append("- bench took %.0f s; module %s" % (time.time() - t_start, args.module))
        text = "\n".join(lines) + "\n"
        print()
        print(text)
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write("# nginx bench\n\n" + text)
        log = open(os.path.join(prefix, "error.log")).read()
        if "signal" in log and "exited" in log:
            print("nginx worker crashed:\n" + log[-2000:])
            return 1
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        origin.stop()
        shutil.rmtree(prefix, ignore_errors=True)
        if not region_existed and "path=" not in args.zone_options:
            try:
                os.unlink(region)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
