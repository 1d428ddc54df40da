#!/usr/bin/env python3
"""nginx + peakcache vs nginx proxy_cache vs `return 200`, in one nginx, in the same run.

Scenarios: hot hits (wrk), cold spike (200 clients, one key, 100 ms origin; a client that
records every request). Needs wrk, nginx, the built module. Usage: benches/nginx/bench.py
[--duration 5]. Prints a table with ratios to proxy_cache and to the `return 200` ceiling.
"""

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bindings", "nginx", "t"))
import run as harness  # noqa: E402  (the e2e harness: free ports, counting origin)

CONF = """
load_module {module};
{user}
worker_processes 2;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    proxy_cache_path {prefix}/pc keys_zone=pc:32m levels=1:2 max_size=256m inactive=10m;
    peakcache_zone main size=64m;

    upstream origin {{ server 127.0.0.1:{origin}; keepalive 64; }}

    server {{
        listen 127.0.0.1:{p_peak} backlog=4096;
        location / {{
            peakcache main;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://origin;
        }}
    }}
    server {{
        listen 127.0.0.1:{p_pc} backlog=4096;
        location / {{
            proxy_cache pc;
            proxy_cache_lock on;
            proxy_cache_lock_timeout 5s;
            proxy_cache_use_stale updating error timeout http_500 http_502 http_503;
            proxy_cache_background_update on;
            proxy_cache_revalidate on;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://origin;
        }}
    }}
    server {{
        listen 127.0.0.1:{p_ret} backlog=4096;
        location / {{ return 200 "hello\\n"; }}
    }}
}}
"""


def wrk(port, path, duration, conns=64):
    out = subprocess.run(["wrk", "-t2", "-c%d" % conns, "-d%ds" % duration,
                          "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True, timeout=duration + 30).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(m.group(1)) if m else 0.0


async def one(port, path, lat):
    t0 = time.perf_counter()
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(("GET %s HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n" % path).encode())
        await w.drain()
        data = await r.read()
        w.close()
        ok = data.startswith(b"HTTP/1.1 200")
    except OSError:
        ok = False
    lat.append((time.perf_counter() - t0, ok))


async def spike(port, path, n):
    lat = []
    await asyncio.gather(*(one(port, path, lat) for _ in range(n)))
    return lat


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    args = ap.parse_args()

    origin = harness.Origin()
    prefix = tempfile.mkdtemp(prefix="peakcache-bench-")
    ports = dict(p_peak=harness.free_port(), p_pc=harness.free_port(), p_ret=harness.free_port())
    user = "user root root;" if os.geteuid() == 0 else ""
    with open(os.path.join(prefix, "nginx.conf"), "w") as f:
        f.write(CONF.format(module=harness.MODULE, user=user, prefix=prefix, origin=origin.port,
                            **ports))
    proc = subprocess.Popen([harness.NGINX, "-p", prefix, "-c", prefix + "/nginx.conf",
                             "-e", prefix + "/error.log"])
    try:
        time.sleep(0.5)
        rows = []
        # hot hits: one key, warmed first
        for name, port in (("peakcache", ports["p_peak"]), ("proxy_cache", ports["p_pc"])):
            for _ in range(3):
                harness.request(port, "/hot")
        res = {}
        for name, port in (("return 200", ports["p_ret"]), ("peakcache", ports["p_peak"]),
                           ("proxy_cache", ports["p_pc"])):
            res[name] = wrk(port, "/hot", args.duration)
        rows.append(("hot hits req/s", res))

        # cold spike: 200 clients, one fresh key, 100 ms origin
        spikes = {}
        for name, port in (("peakcache", ports["p_peak"]), ("proxy_cache", ports["p_pc"])):
            path = "/slow-spike-%s" % name.replace(" ", "")
            before = origin.count(path)
            lat = asyncio.run(spike(port, path, 200))
            spikes[name] = (origin.count(path) - before, pct([l for l, _ in lat], 0.99),
                            sum(1 for _, ok in lat if ok))
        print()
        print("| scenario | return 200 | peakcache | proxy_cache | peakcache / proxy_cache "
              "| peakcache / ceiling |")
        print("|---|---|---|---|---|---|")
        for label, r in rows:
            print("| %s | %.0f | %.0f | %.0f | %.2f | %.2f |" % (
                label, r["return 200"], r["peakcache"], r["proxy_cache"],
                r["peakcache"] / max(r["proxy_cache"], 1), r["peakcache"] / max(r["return 200"], 1)))
        for name, (n, p99, ok) in spikes.items():
            print("| cold spike 200 clients (origin 300 ms here), %s | origin requests %d | "
                  "p99 %.0f ms | %d/200 ok | | |" % (name, n, p99 * 1000, ok))
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        origin.stop()
        shutil.rmtree(prefix, ignore_errors=True)


if __name__ == "__main__":
    main()
