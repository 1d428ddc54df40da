#!/usr/bin/env python3
"""Two hosts of one cluster end to end (Python 3 stdlib only), each as an operator sets it up:

- nginx: two nginx instances (2 workers each, a shared zone each: its region file), each with
  its host agent as shield (`peakcache-proxy --region ZONE_FILE --cluster ... --origin ...
  --listen ...`, nginx's `proxy_pass` pointing at it), one counting origin, one redis-server.
  A cold page asked on both hosts at once costs one origin request; a purge through one
  nginx's purge location (tag, then URL) is seen by the other nginx.
- PHP: two PHP "pools" (the PHP CLI with peakcache.shared=1 and a region file each), each with
  its agent: a purgeTag() in one host's region reaches the other host's region.

Everything runs on free loopback ports, in temporary directories, and is stopped at the end.
Usage: tests/cluster/run.py [-k name-substring]
Env: NGINX, PEAKCACHE_MODULE, PEAKCACHE_PROXY, PHP, PEAKCACHE_PHP_EXT, REDIS_SERVER.
"""

import argparse
import http.client
import http.server
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
# The module and the extension are built into the repository's target/ (bindings/*/build.sh);
# the proxy into Cargo's target directory (the Makefile passes PEAKCACHE_PROXY).
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
MODULE = os.environ.get("PEAKCACHE_MODULE",
                        os.path.join(ROOT, "target/nginx/ngx_http_peakcache_module.so"))
PROXY = os.environ.get("PEAKCACHE_PROXY", os.path.join(TARGET, "debug/peakcache-proxy"))
PHP = os.environ.get("PHP", "php")
PHP_EXT = os.environ.get("PEAKCACHE_PHP_EXT",
                         os.path.join(ROOT, "target/php-ext/modules/peakcache.so"))
REDIS = os.environ.get("REDIS_SERVER", "redis-server")
HOST = "shop.test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, cond, within=10.0, step=0.02):
    deadline = time.time() + within
    while time.time() < deadline:
        if cond():
            return
        time.sleep(step)
    raise AssertionError("not within %ss: %s" % (within, what))


def request(port, path, headers=None, timeout=10, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Host": HOST}
        h.update(headers or {})
        c.request(method, path, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    finally:
        c.close()


class Redis:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="peakcache-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False
        wait_for("redis-server answers", up)
        self.url = "redis://127.0.0.1:%d/" % self.port

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Origin:
    """Counts requests per path; `/tag<N>` pages carry `Surrogate-Key: t-<N>`."""

    def __init__(self):
        self.counts = {}
        self.lock = threading.Lock()
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                path = self.path.split("?")[0]
                with origin.lock:
                    origin.counts[path] = origin.counts.get(path, 0) + 1
                    n = origin.counts[path]
                # slow enough that concurrent visitors of both hosts overlap
                time.sleep(0.2)
                body = ("%s n%d\n" % (path, n)).encode()
                self.send_response(200)
                self.send_header("Cache-Control", "max-age=60, stale-while-revalidate=30")
                self.send_header("Surrogate-Key", "t-" + path.strip("/").replace("tag", ""))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 512

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def stop(self):
        self.server.shutdown()


class Agent:
    """peakcache-proxy --region: the host agent (and, with an origin, the shield)."""

    def __init__(self, region, redis, name, origin=None, shield=None):
        self.admin = free_port()
        self.redis, self.port = redis, shield
        args = [PROXY, "--region", region, "--cluster", redis.url, "--cluster-name", name,
                "--admin", "127.0.0.1:%d" % self.admin]
        if origin:
            args += ["--origin", "http://127.0.0.1:%d" % origin.port,
                     "--listen", "127.0.0.1:%d" % shield, "--size", "64MiB"]
        self.log_path = region + ".agent.log"
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log_file)
        wait_for("the agent reads the bus (%s)" % self.log_path,
                 lambda: self.metric("peakcache_cluster_caught_up") == 1.0)

    def metric(self, name):
        if self.proc.poll() is not None:
            raise AssertionError("agent exited: " + self.log())
        try:
            _, _, text = request(self.admin, "/metrics", timeout=2)
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


# One host's nginx, as the README configures it: the shared zone is the region its agent
# follows; misses go to the agent as shield.
NGINX_CONF = """
load_module {module};
{user}
worker_processes 2;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    peakcache_zone main size=16m shared path={prefix}/main.shm;

    upstream peakcache_shield {{
        server 127.0.0.1:{shield} max_fails=1 fail_timeout=2s;
        # the agent stopped (restarting, upgraded): straight to the origin
        server 127.0.0.1:{origin} backup;
        keepalive 16;
    }}

    server {{
        listen 127.0.0.1:{port} reuseport;

        location / {{
            peakcache main;
            add_header X-Cache $peakcache_status always;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_pass http://peakcache_shield;
        }}
        location = /_purge {{
            allow 127.0.0.1;
            deny all;
            peakcache_purge main;
        }}
        location = /_peakcache {{
            peakcache_status_page main;
        }}
    }}
}}
"""


class Nginx:
    def __init__(self, shield_port, origin_port):
        self.prefix = tempfile.mkdtemp(prefix="peakcache-cluster-nginx-")
        self.port = free_port()
        self.region = os.path.join(self.prefix, "main.shm")
        user = "user root root;" if os.geteuid() == 0 else ""
        conf = NGINX_CONF.format(module=MODULE, user=user, prefix=self.prefix, port=self.port,
                                 shield=shield_port, origin=origin_port)
        path = os.path.join(self.prefix, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        env = {k: v for k, v in os.environ.items() if k != "NGINX"}
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix, "-c", path,
                                      "-e", os.path.join(self.prefix, "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)

        def up():
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited: " + self.proc.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False
        wait_for("nginx listens", up)

    def log(self):
        with open(os.path.join(self.prefix, "error.log")) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.prefix, ignore_errors=True)


def nginx_hosts(redis, origin):
    """Two nginx hosts, each with its agent as shield on the port its config names."""
    hosts = []
    for _ in range(2):
        shield = free_port()
        ngx = Nginx(shield, origin.port)
        hosts.append((ngx, Agent(ngx.region, redis, "nginx", origin=origin, shield=shield)))
    return hosts


def burst(hosts, path, per_host):
    results = []
    lock = threading.Lock()
    start = threading.Barrier(per_host * len(hosts))

    def one(port):
        start.wait()
        r = request(port, path)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=one, args=(ngx.port,))
               for ngx, _ in hosts for _ in range(per_host)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_nginx_cold_page_costs_one_origin_request_for_both_hosts(hosts, origin):
    results = burst(hosts, "/tag-cold", 10)
    assert len(results) == 20 and all(r[0] == 200 for r in results), results
    assert all(r[2] == "/tag-cold n1\n" for r in results), {r[2] for r in results}
    assert origin.count("/tag-cold") == 1, origin.count("/tag-cold")


def test_nginx_purge_location_on_one_host_is_seen_by_the_other(hosts, origin):
    (a, _), (b, agent_b) = hosts
    for ngx in (a, b):
        request(ngx.port, "/tag1")
        status, headers, body = request(ngx.port, "/tag1")
        assert headers.get("x-cache") == "HIT", headers
    assert origin.count("/tag1") == 1
    # nginx a's purge location: the tag.
    status, _, body = request(a.port, "/_purge?tag=t-1", method="POST")
    assert status == 200, body
    wait_for("nginx b no longer has /tag1",
             lambda: request(b.port, "/tag1")[1].get("x-cache") != "HIT", within=5)
    assert origin.count("/tag1") == 2, "b fetched it again, through its purged shield"
    status, headers, body = request(a.port, "/tag1")
    assert headers.get("x-cache") == "MISS" and body == "/tag1 n2\n", (headers, body)
    assert origin.count("/tag1") == 2, "a read b's new copy from the cluster"
    # nginx b's purge location: the URL (its key and variants).
    status, _, body = request(b.port, "/_purge?url=/tag1", method="POST")
    assert status == 200, body
    wait_for("nginx a no longer has /tag1",
             lambda: request(a.port, "/tag1")[1].get("x-cache") != "HIT", within=5)
    assert origin.count("/tag1") == 3
    published = agent_b.metric("peakcache_agent_published_total")
    assert published == 2.0, "the URL purge: its key and its tag (%s)" % published


def test_nginx_serves_while_its_agent_is_stopped_and_catches_up_after(hosts, origin):
    (a, agent_a), (b, _) = hosts
    agent_a.stop()
    status, headers, body = request(a.port, "/tag-alone")
    assert status == 200 and body == "/tag-alone n1\n", (status, headers, body)
    # b purges meanwhile: a's agent, started again, applies it from where it stopped.
    assert request(a.port, "/tag-alone")[1].get("x-cache") == "HIT"
    assert request(b.port, "/_purge?tag=t--alone", method="POST")[0] == 200
    hosts[0] = (a, Agent(a.region, agent_a.redis, "nginx", origin=origin, shield=agent_a.port))
    wait_for("a's page purged by b while a's agent was stopped",
             lambda: request(a.port, "/tag-alone")[1].get("x-cache") != "HIT", within=5)
    assert "resuming" in hosts[0][1].log(), hosts[0][1].log()


def test_nginx_workers_did_not_crash(hosts, origin):
    for ngx, agent in hosts:
        bad = [l for l in ngx.log().splitlines()
               if "[alert]" in l or "exited on signal" in l or "[emerg]" in l]
        assert not bad, bad
        assert agent.proc.poll() is None, agent.log()


def php(region, code):
    out = subprocess.run(
        [PHP, "-n", "-d", "extension=" + PHP_EXT, "-d", "peakcache.enable_cli=1",
         "-d", "peakcache.shared=1", "-d", "peakcache.size=8M",
         "-d", "peakcache.shm_path=" + region, "-r", code],
        capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_php_purge_tag_reaches_the_other_hosts_pool(redis):
    d = tempfile.mkdtemp(prefix="peakcache-cluster-php-", dir="/dev/shm")
    agents = []
    try:
        pools = [os.path.join(d, "pool-a.shm"), os.path.join(d, "pool-b.shm")]
        for p in pools:
            php(p, '(new PeakCache\\Cache)->set("warm", "1", 600);')
            agents.append(Agent(p, redis, "php"))
        a, b = pools
        php(b, '$c = new PeakCache\\Cache; $c->set("post-1", "page", 600, ["post:1"]);'
               ' $c->set("home", "page", 600);')
        has = 'echo json_encode([(new PeakCache\\Cache)->has("post-1"),' \
              ' (new PeakCache\\Cache)->has("home")]);'
        assert php(b, has) == "[true,true]"
        php(a, '(new PeakCache\\Cache)->purgeTag("post:1");')
        wait_for("host b's pool loses post-1", lambda: php(b, has) == "[false,true]", within=5)
        assert agents[0].metric("peakcache_agent_published_total") == 1.0
    finally:
        for agent in agents:
            agent.stop()
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="")
    args = ap.parse_args()
    for need in (NGINX, MODULE, PROXY, PHP_EXT):
        if os.path.isabs(need) and not os.path.exists(need):
            print("cluster e2e: %s missing (make nginx-module php-ext; cargo build -p "
                  "peakcache-proxy)" % need)
            return 1
    passed = failed = 0
    redis = Redis()
    origin = Origin()
    hosts = []
    try:
        nginx_tests = [t for n, t in sorted(globals().items())
                       if n.startswith("test_nginx") and args.k in n]
        if nginx_tests:
            hosts = nginx_hosts(redis, origin)
        for t in nginx_tests:
            try:
                t(hosts, origin)
                passed += 1
                print("ok   " + t.__name__)
            except Exception as e:  # noqa: BLE001 - report every failure and go on
                failed += 1
                print("FAIL %s: %r" % (t.__name__, e))
                for _, agent in hosts:
                    print(agent.log()[-2000:])
        for n, t in sorted(globals().items()):
            if n.startswith("test_php") and args.k in n:
                try:
                    t(redis)
                    passed += 1
                    print("ok   " + n)
                except Exception as e:  # noqa: BLE001
                    failed += 1
                    print("FAIL %s: %r" % (n, e))
    finally:
        for ngx, agent in hosts:
            ngx.stop()
            agent.stop()
        origin.stop()
        redis.stop()
    print("cluster e2e: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
