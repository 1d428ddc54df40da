#!/usr/bin/env python3
"""End-to-end tests of ngx_http_peakcache_module with a real nginx (Python 3 stdlib only).

Starts a counting test origin and nginx (from a generated config, prefix in a temp dir, free
loopback ports, `daemon off`), runs every test, stops everything it started. Usage:

    bindings/nginx/t/run.py [-k name-substring] [--keep]

NGINX (default /usr/sbin/nginx) and PEAKCACHE_MODULE (default target/nginx/...so) override.
"""

import argparse
import grp
import gzip
import http.client
import http.server
import json
import os
import pwd
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
MODULE = os.environ.get("PEAKCACHE_MODULE",
                        os.path.join(ROOT, "target/nginx/ngx_http_peakcache_module.so"))
PHP_FPM = os.environ.get("PHP_FPM", "php-fpm8.2")
LIBPEAKCACHE = os.environ.get("PEAKCACHE_LIB", os.path.join(
    ROOT, os.environ.get("CARGO_TARGET_DIR", "target"), "release", "libpeakcache.a"))
FASTCGI_PARAMS = "/etc/nginx/fastcgi_params"


def nginx_env():
    """The environment nginx runs in: ours without $NGINX (nginx reads it itself: inherited
    listening sockets), with the ASan runtime preloaded for a module built under it
    (run-tests.sh --asan sets PEAKCACHE_NGINX_PRELOAD)."""
    env = {k: v for k, v in os.environ.items() if k != "NGINX"}
    if os.environ.get("PEAKCACHE_NGINX_PRELOAD"):
        env["LD_PRELOAD"] = os.environ["PEAKCACHE_NGINX_PRELOAD"]
    return env


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Origin:
    """A test origin that counts requests per path; behaviour chosen by the path."""

    def __init__(self):
        self.counts = {}
        self.methods = {}
        self.workers = {}  # path -> the X-Worker (nginx worker pid) of each request
        self.seen = {}  # path -> every request as received: method, header lines, body, time
        self.lock = threading.Lock()
        self.down = False
        self.version = 1
        self.vary_on = "Accept-Encoding"
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_HEAD(self):
                self.do_GET()

            # unsafe methods: the status and Location the test asks for (X-Answer, X-Location)
            def do_POST(self):
                path = self.path.split("?")[0]
                self.read_body()
                with origin.lock:
                    origin.counts[path] = origin.counts.get(path, 0) + 1
                    origin.seen.setdefault(path, []).append({
                        "method": self.command, "headers": list(self.headers.items()),
                        "body": b"", "waited": 0, "t": time.time()})
                self.send_response(int(self.headers.get("X-Answer", "200")))
                for name in ("Location", "Content-Location"):
                    if self.headers.get("X-" + name):
                        self.send_header(name, self.headers["X-" + name])
                self.send_header("Content-Length", "3")
                self.end_headers()
                self.wfile.write(b"ok\n")

            do_PUT = do_DELETE = do_PATCH = do_POST

            def read_body(self):
                # what a real server does: wait for the bytes Content-Length announces
                n = int(self.headers.get("Content-Length") or 0)
                if n <= 0:
                    return b""
                self.connection.settimeout(3)
                try:
                    return self.rfile.read(n)
                except OSError:
                    return b"<timed out>"

            def do_GET(self):
                path = self.path.split("?")[0]
                t0 = time.time()
                body_in = self.read_body()
                with origin.lock:
                    origin.counts[path] = origin.counts.get(path, 0) + 1
                    origin.methods[path] = self.command
                    n = origin.counts[path]
                    origin.workers.setdefault(path, []).append(self.headers.get("X-Worker"))
                    origin.seen.setdefault(path, []).append({
                        "method": self.command, "headers": list(self.headers.items()),
                        "body": body_in, "waited": time.time() - t0, "t": t0})
                # the behaviour is chosen by the last path segment (/nc/swr is /swr)
                name = "/" + path.rsplit("/", 1)[-1]
                headers = {"Content-Type": "text/plain"}
                status = 200
                body = ("%s v%d n%d\n" % (path, origin.version, n)).encode()
                path = name
                if path.startswith("/slow"):
                    time.sleep(0.3)
                    headers["Cache-Control"] = "max-age=60"
                elif path.startswith("/killslow"):
                    # the first fetch hangs (its worker is killed meanwhile), the next is quick
                    if n == 1:
                        time.sleep(3)
                    headers["Cache-Control"] = "max-age=60"
                elif path.startswith("/swr"):
                    headers["Cache-Control"] = "max-age=1, stale-while-revalidate=30"
                    if n > 1:
                        time.sleep(0.3)
                elif path.startswith("/sw2"):
                    headers["Cache-Control"] = "max-age=2, stale-while-revalidate=30"
                elif path.startswith("/sie") or path.startswith("/swsie"):
                    headers["Cache-Control"] = "max-age=1, stale-if-error=60"
                    if path.startswith("/swsie"):
                        headers["Cache-Control"] += ", stale-while-revalidate=30"
                    if origin.down and "-slowly" in path:
                        time.sleep(0.3)  # failing takes a while: visitors gather meanwhile
                    if origin.down == "close":
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    if origin.down:
                        # "fresh": an error page the origin says may be reused
                        status, body = 503, b"origin down\n"
                        headers["Cache-Control"] = ("max-age=60" if origin.down == "fresh"
                                                    else "no-store")
                elif path.startswith("/fresh5xx-"):
                    status = int(path[-3:])
                    headers["Cache-Control"] = "max-age=60"
                elif path.startswith("/cut"):
                    # the answers the path's number lists ("/cut-13": the 1st and 3rd) end
                    # halfway: half the body its Content-Length announces, then the connection
                    # closes
                    headers["Cache-Control"] = ("max-age=1, stale-if-error=60" if "-sie-" in path
                                                else "max-age=1, stale-while-revalidate=30")
                    if "-slowly" in path:
                        time.sleep(0.3)  # visitors gather meanwhile
                    if str(n) in path.rsplit("-", 1)[-1]:
                        self.send_response(200)
                        for k, v in headers.items():
                            self.send_header(k, v)
                        self.send_header("Content-Length", str(2 * len(body)))
                        self.end_headers()
                        self.wfile.write(body)
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                elif path.startswith("/ssipage"):
                    # a page that includes a fragment (nginx's SSI assembles it)
                    headers["Cache-Control"] = "max-age=60"
                    body = b'page <!--# include virtual="/nc/fragment" -->end\n'
                elif path.startswith("/conn-named"):
                    # fields the origin's Connection names are for the hop to nginx alone
                    headers["Connection"] = "X-Hop, X-Hop-Too"
                    headers["X-Hop"] = "1"
                    headers["X-Hop-Too"] = "2"
                    headers["X-Kept"] = "3"
                    headers["Cache-Control"] = "max-age=60"
                elif path.startswith("/delayed"):
                    # the answer takes a while: it is that old when it arrives (RFC 9111 4.2.3)
                    time.sleep(1.2)
                    headers["Cache-Control"] = "max-age=60"
                elif path.startswith("/revary"):
                    # varies, has a validator, expires at once: revalidated per variant
                    headers["Cache-Control"] = "max-age=1"
                    headers["Vary"] = "X-Abc"
                    headers["ETag"] = '"%s-%s"' % (name, self.headers.get("X-Abc", "-"))
                    body = ("%s abc=%s\n" % (path, self.headers.get("X-Abc", "-"))).encode()
                    if self.headers.get("If-None-Match") == headers["ETag"]:
                        status, body = 304, b""
                elif path.startswith("/nostore"):
                    headers["Cache-Control"] = "no-store"
                elif path.startswith("/cookie"):
                    headers["Cache-Control"] = "max-age=60"
                    headers["Set-Cookie"] = "sid=%d" % n
                elif path.startswith("/private"):
                    time.sleep(0.3)
                    headers["Cache-Control"] = "private"
                elif path.startswith("/val") or path.startswith("/vexp"):
                    # an everyday origin: validators, and a 304 to a conditional request
                    headers["Cache-Control"] = ("max-age=1" if path.startswith("/vexp") else
                                                "max-age=2, stale-while-revalidate=30")
                    headers["ETag"] = '"%s-v%d"' % (name, origin.version)
                    headers["Last-Modified"] = "Sat, 05 Dec 2026 10:00:00 GMT"
                    body = ("%s v%d\n" % (path, origin.version)).encode()
                    if self.headers.get("If-None-Match") == headers["ETag"]:
                        status, body = 304, b""
                elif path.startswith("/missing"):
                    status, body = 404, b"origin 404\n"
                    headers["Cache-Control"] = "max-age=60"
                elif path.startswith("/xaccel"):
                    headers["Cache-Control"] = "max-age=60"
                    headers["X-Accel-Redirect"] = "/accel-files/secret.txt"
                elif path.startswith("/etag"):
                    headers["Cache-Control"] = "max-age=60"
                    headers["ETag"] = '"v1"'
                elif path.startswith("/mid"):
                    headers["Cache-Control"] = "max-age=60"
                    headers["ETag"] = '"mid"'
                    body = b"m" * (200 * 1024)
                elif path.startswith("/big"):
                    headers["Cache-Control"] = "max-age=60"
                    body = b"x" * (2 * 1024 * 1024)
                elif path.startswith("/tag"):
                    headers["Cache-Control"] = "max-age=60, stale-while-revalidate=30"
                    headers["Surrogate-Key"] = "t-" + path[4:] + " all-tags"
                elif path.startswith("/vchange"):
                    # varies on Accept-Encoding, then (origin.vary_on) on another field
                    headers["Cache-Control"] = "max-age=1, stale-while-revalidate=30"
                    headers["Vary"] = origin.vary_on
                    body = ("%s %s=%s n%d\n" % (path, origin.vary_on, self.headers.get(
                        origin.vary_on, "-"), n)).encode()
                elif path.startswith("/vary"):
                    headers["Cache-Control"] = "max-age=60"
                    headers["Vary"] = "Accept-Encoding"
                    body = ("%s enc=%s n%d\n" % (
                        path, self.headers.get("Accept-Encoding", "-"), n)).encode()
                elif path.startswith("/silent"):
                    pass  # nothing about its freshness: no Cache-Control, Expires, validators
                else:
                    headers["Cache-Control"] = "max-age=60, stale-while-revalidate=30"
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 512

            def handle_error(self, request, client_address):
                # nginx may close an upstream connection early (a client gone, a test
                # dropping the origin's answer): not an origin failure
                if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
                    super().handle_error(request, client_address)

        self.port = free_port()
        self.server = Server(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, path):
        with self.lock:
            return self.counts.get(path, 0)

    def requests(self, path):
        with self.lock:
            return list(self.seen.get(path, []))

    def wait_count(self, path, n, timeout=3.0):
        deadline = time.time() + timeout
        while self.count(path) < n and time.time() < deadline:
            time.sleep(0.01)
        return self.count(path)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


# The PHP location both servers of CONF have (HTTP/1 and HTTP/2).
PHP_LOCATION = """        location /php/ {{
            peakcache {zone};
            add_header X-Cache $peakcache_status always;
            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME {php_app};
            fastcgi_pass unix:{fpm_sock};
        }}
"""

CONF = """
load_module {module};
{user}
worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/access.log combined;
    log_format methods '$request_method $request_uri $peakcache_status';
    access_log {prefix}/methods.log methods;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    peakcache_zone {zone} size=32m;

    map $http_cookie $wp_logged_in {{
        default              "";
        ~wordpress_logged_in "1";
    }}
    peakcache_zone other size=1m shared path={prefix}/other.shm;
    peakcache_zone tiny size=128k path={prefix}/tiny.shm;

    server {{
        listen 127.0.0.1:{port} backlog=1024 reuseport;

        location / {{
            peakcache {zone};
            peakcache_bypass $cookie_session;
            peakcache_no_store $arg_nostore;
            peakcache_lock_timeout 5s;
            peakcache_max_object_size 1m;
            add_header X-Cache $peakcache_status always;
            add_header X-Pid $pid always;
            add_header X-Key $peakcache_key always;
            proxy_pass http://127.0.0.1:{origin};
        }}
        location /nc/ {{
            peakcache {zone};
            proxy_set_header Cookie "";
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};
        }}
""" + PHP_LOCATION + """        location /ep/ {{
            peakcache {zone};
            peakcache_default_ttl 60s;
            proxy_intercept_errors on;
            error_page 404 /errors/404.html;
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};
        }}
        location /ttl/ {{
            peakcache {zone};
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};

            location /ttl/own/ {{
                peakcache_default_ttl 60s;
                add_header X-Cache $peakcache_status always;
                proxy_pass http://127.0.0.1:{origin};
            }}
        }}
        location /errors/ {{
            internal;
            root {prefix}/static;
        }}
        location /accel-files/ {{
            internal;
            root {prefix}/static;
        }}
        location /small/ {{
            peakcache tiny;
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};
        }}
        location /honour/ {{
            peakcache {zone};
            peakcache_honour_request_directives on;
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};
        }}
        location /purge {{
            allow 127.0.0.1;
            deny all;
            peakcache_purge {zone};
        }}
        location /purge-denied {{
            deny all;
            peakcache_purge {zone};
        }}
        location /status {{
            peakcache_status_page {zone};
        }}
        # the README's WordPress site, pretty permalinks included: try_files hands every page
        # to index.php
        location /wp/ {{
            root {fpm_dir};
            try_files $uri $uri/ /wp/index.php?$args;
        }}
        location ~ ^/wp/.+\.php$ {{
            root {fpm_dir};
            peakcache {zone};
            peakcache_bypass $wp_logged_in $arg_preview;
            peakcache_no_store $wp_logged_in;
            add_header X-Cache $peakcache_status always;
            add_header X-Key $peakcache_key always;
            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:{fpm_sock};
        }}
        # output filters an operator turns on around a cached location
        location /gz/ {{
            peakcache {zone};
            gzip on;
            gzip_min_length 1;
            gzip_types text/plain;
            gzip_vary on;
            gzip_proxied any;
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};
        }}
        location /ssi/ {{
            peakcache {zone};
            ssi on;
            ssi_types text/plain;
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};
        }}
        location /unbuffered/ {{
            peakcache {zone};
            proxy_buffering off;
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};
        }}
        location /subst/ {{
            peakcache {zone};
            sub_filter ' v1 ' ' version-one ';
            sub_filter_types text/plain;
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};
        }}
    }}

    # HTTP/2 without TLS (prior knowledge): many streams of one connection at once
    server {{
        listen 127.0.0.1:{h2port} http2;

        location / {{
            peakcache {zone};
            peakcache_lock_timeout 5s;
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};
        }}
""" + PHP_LOCATION + """    }}
}}
"""


# Several workers on one shared zone (a region file in the prefix); reuseport spreads the
# connections over the workers; X-Pid tells the client, X-Worker the origin, which one answered.
SHARED_CONF = """
load_module {module};
{user}
worker_processes {workers};
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{
    worker_connections 1024;
    debug_connection 127.0.0.2;  # Shared.test_shared_waiters_hear_the_fill_end
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    peakcache_zone sz size=8m shared path={prefix}/sz.shm;

    server {{
        listen 127.0.0.1:{port} backlog=1024 reuseport;

        location / {{
            peakcache sz;
            peakcache_lock_timeout 5s;
            add_header X-Cache $peakcache_status always;
            add_header X-Pid $pid always;
            proxy_set_header X-Worker $pid;
            proxy_pass http://127.0.0.1:{origin};
        }}
        location /purge {{
            peakcache_purge sz;
        }}
        location /status {{
            peakcache_status_page sz;
        }}
    }}
}}
"""


# The README's WordPress location: fastcgi_params as Debian ships it, PHP-FPM on a socket.
PHP_APP = r"""<?php
file_put_contents(__DIR__ . '/requests.log',
    $_SERVER['REQUEST_METHOD'] . ' ' . $_SERVER['REQUEST_URI'] . "\n", FILE_APPEND | LOCK_EX);
header('Cache-Control: max-age=2, stale-while-revalidate=30');
header('Content-Type: text/plain');
if (strpos($_SERVER['REQUEST_URI'], '/php/val') === 0) {
    // validators, a 304 to a matching conditional request, and no Date (PHP sends none)
    header('ETag: "v1"');
    header('Last-Modified: Sat, 05 Dec 2026 10:00:00 GMT');
    if (($_SERVER['HTTP_IF_NONE_MATCH'] ?? '') === '"v1"') {
        http_response_code(304);
        exit;
    }
}
echo 'page ', $_SERVER['REQUEST_URI'], ' for ', $_SERVER['REQUEST_METHOD'], "\n";
"""


class Fpm:
    """A PHP-FPM pool on a unix socket in its own temp dir, serving PHP_APP."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="peakcache-fpm-")
        self.sock = os.path.join(self.dir, "fpm.sock")
        self.app = os.path.join(self.dir, "app.php")
        with open(self.app, "w") as f:
            f.write(PHP_APP)
        # a WordPress-like site: index.php answers every page, robots.txt is a file
        os.makedirs(os.path.join(self.dir, "wp"))
        shutil.copy(self.app, os.path.join(self.dir, "wp", "index.php"))
        with open(os.path.join(self.dir, "wp", "robots.txt"), "w") as f:
            f.write("User-agent: *\n")
        os.chmod(self.dir, 0o755)  # nginx's workers read the site
        root = os.geteuid() == 0
        with open(os.path.join(self.dir, "fpm.conf"), "w") as f:
            f.write("[global]\npid = %s/fpm.pid\nerror_log = %s/fpm.log\ndaemonize = no\n"
                    "[app]\n%slisten = %s\npm = static\npm.max_children = 2\n"
                    % (self.dir, self.dir, "user = root\ngroup = root\n" if root else "",
                       self.sock))
        self.proc = subprocess.Popen([PHP_FPM, "-n", "-F", "-y", os.path.join(self.dir, "fpm.conf")]
                                     + (["-R"] if root else []),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("php-fpm did not start (%s)" % PHP_FPM)
            time.sleep(0.05)

    def requests(self, uri, site=""):
        """The methods PHP saw for `uri`, in order (`site`: "wp" for the WordPress-like one)."""
        try:
            with open(os.path.join(self.dir, site, "requests.log")) as f:
                lines = f.read().split()
        except FileNotFoundError:
            return []
        return [m for m, u in zip(lines[0::2], lines[1::2]) if u == uri]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Nginx:
    def __init__(self, origin, workers=4, template=CONF, fpm=None, zone=None, user="root"):
        self.prefix = tempfile.mkdtemp(prefix="peakcache-nginx-")
        os.chmod(self.prefix, 0o755)  # workers of another user read their paths in it
        self.port = free_port()
        self.h2port = free_port()  # CONF's HTTP/2 server
        # the zone as an operator writes it (its region in the default place), named for this
        # run so that runs side by side never share one
        self.zone = zone or "t%d" % self.port
        self.region = "/dev/shm/peakcache-" + self.zone
        user = "user %s %s;" % (user, grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name) \
            if os.geteuid() == 0 else ""
        conf = template.format(module=MODULE, user=user, workers=workers, prefix=self.prefix,
                               port=self.port, h2port=self.h2port, origin=origin.port,
                               zone=self.zone,
                               fpm_sock=fpm.sock if fpm else "", php_app=fpm.app if fpm else "",
                               fpm_dir=fpm.dir if fpm else "")
        shutil.copy(FASTCGI_PARAMS, self.prefix)
        # files nginx serves itself, a year old: storable by heuristic freshness
        for name, text in (("errors/404.html", "error page\n"),
                           ("accel-files/secret.txt", "internal file\n")):
            path = os.path.join(self.prefix, "static", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            os.utime(path, (time.time() - 365 * 86400,) * 2)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix, "-c", self.conf,
                                      "-e", os.path.join(self.prefix, "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=nginx_env())
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: " + self.proc.stderr.read().decode())
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def log(self):
        with open(os.path.join(self.prefix, "error.log")) as f:
            return f.read()

    def stop(self, keep=False, keep_region=False):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not keep:
            shutil.rmtree(self.prefix, ignore_errors=True)
        if os.path.exists(self.region) and not keep_region:
            os.unlink(self.region)


def request(port, path, method="GET", headers=None, timeout=10):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, headers=headers or {})
        r = c.getresponse()
        body = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, body
    finally:
        c.close()


_freeze_tool = []


def freeze(ngx, on):
    """Freezes (or thaws) a running nginx's default zone from outside, as any process attached
    to its region may: bindings/nginx/t/freeze.c, built once per run."""
    if not _freeze_tool:
        exe = os.path.join(tempfile.mkdtemp(prefix="peakcache-freeze-"), "freeze")
        subprocess.run(["cc", "-I", os.path.join(ROOT, "include"), "-o", exe,
                        os.path.join(ROOT, "bindings/nginx/t/freeze.c"), LIBPEAKCACHE,
                        "-lpthread", "-ldl", "-lm"], check=True)
        _freeze_tool.append(exe)
    # the zone's settings: size=32m, peakcache_max_object_size 1m (+64 KiB), lock 5 s
    subprocess.run([_freeze_tool[0], ngx.region, str(32 << 20), str((1 << 20) + (64 << 10)),
                    "5000", "on" if on else "off"], check=True)


def fields(req, name):
    """The values of every `name` line of a request the origin received."""
    return [v for k, v in req["headers"] if k.lower() == name.lower()]


def raw_exchange(port, data, responses=2, timeout=5):
    """Sends raw bytes, reads up to `responses` answers (status, headers, body) until the
    connection closes; returns them and the seconds the first one took."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.time()
    out, first = [], None
    try:
        s.sendall(data)
        f = s.makefile("rb")
        while len(out) < responses:
            line = f.readline()
            if not line:
                break
            status = int(line.split()[1])
            headers = {}
            while True:
                h = f.readline()
                if h in (b"\r\n", b"\n", b""):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            body = f.read(int(headers.get("content-length", 0)))
            out.append((status, headers, body))
            if first is None:
                first = time.time() - t0
    except OSError:
        pass
    finally:
        s.close()
    return out, first


def load(port, paths, seconds, threads=8):
    """Clients in `threads` threads asking for `paths` in turn for `seconds`: every answer
    (status, headers) or exception."""
    out = []
    stop = time.time() + seconds

    def one(i):
        k = i
        while time.time() < stop:
            try:
                out.append(request(port, paths[k % len(paths)])[:2])
            except Exception as e:
                out.append(e)
            k += 1

    ts = [threading.Thread(target=one, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(seconds + 15)
    return out


def murmur2(data):
    """nginx's ngx_murmur_hash2 (MurmurHash2, seeded with the length)."""
    m, h = 0x5BD1E995, len(data)
    i = 0
    while len(data) - i >= 4:
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
        i += 4
    rest = data[i:]
    if len(rest) == 3:
        h ^= rest[2] << 16
    if len(rest) >= 2:
        h ^= rest[1] << 8
    if rest:
        h = ((h ^ rest[0]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)


def key_slot_pair(host, uri):
    """The pair of slots of a worker's table of keys a plain http target's key goes in (as
    ngx_http_peakcache_key hashes it: its URI and its host)."""
    hh = (murmur2(host.encode()) * 0x9E3779B1) & 0xFFFFFFFF
    return (murmur2(uri.encode()) ^ hh) & (65536 - 2)


def memo_slot_pair(host, uri):
    """The pair of slots of a worker's table of memos its answer goes in (by its key)."""
    return murmur2(("GET http://%s%s" % (host, uri)).encode()) & (65536 - 2)


def targets_in_one_slot_pair(host, n, pair_of, prefix):
    """`n` request targets `pair_of` puts in the same pair of slots."""
    seen = {}
    for i in range(10 ** 6):
        uri = "%s%d" % (prefix, i)
        same = seen.setdefault(pair_of(host, uri), [])
        same.append(uri)
        if len(same) == n:
            return same
    raise AssertionError("no %d targets share a pair of slots" % n)


def burst(port, path, n, headers=None):
    results = [None] * n
    start = threading.Barrier(n)

    def one(i):
        start.wait()
        t0 = time.time()
        try:
            results[i] = request(port, path, headers=headers) + (time.time() - t0,)
        except (OSError, http.client.HTTPException) as e:  # no status: what went wrong
            results[i] = (None, repr(e), b"", time.time() - t0)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def h2_request(port, path, method="GET", headers=None):
    """One request over HTTP/2 without TLS (curl, prior knowledge): status, fields (lower-case
    names), body."""
    args = ["curl", "-sS", "--http2-prior-knowledge", "-i", "--max-time", "10"]
    args += ["-I"] if method == "HEAD" else ["-X", method]
    for k, v in (headers or {}).items():
        args += ["-H", "%s: %s" % (k, v)]
    out = subprocess.run(args + ["http://127.0.0.1:%d%s" % (port, path)], capture_output=True,
                         check=True, timeout=15).stdout
    head, _, body = out.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/2 "), lines[0]
    fields = dict((k.strip().lower(), v.strip()) for k, _, v in
                  (line.partition(":") for line in lines[1:]))
    return int(lines[0].split()[1]), fields, body


def h2_streams(port, path, n, connections=1):
    """`n` GETs of `path` over HTTP/2, all at once as streams of `connections` connections
    (h2load): (succeeded, answered 2xx, seconds until the last answer)."""
    out = subprocess.run(["h2load", "-n%d" % n, "-c%d" % connections,
                          "-m%d" % -(-n // connections), "http://127.0.0.1:%d%s" % (port, path)],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    took = re.search(r"finished in ([\d.]+)(ms|s),", out)
    assert done and codes and took, out
    return (int(done.group(1)), int(codes.group(1)),
            float(took.group(1)) / (1000 if took.group(2) == "ms" else 1))


class T:
    def __init__(self, ngx, origin, fpm):
        self.ngx, self.o, self.p, self.fpm = ngx, origin, ngx.port, fpm

    def get(self, path, **kw):
        return request(self.p, path, **kw)

    # each test: a method named test_*

    def test_hit_without_upstream(self):
        s1, h1, b1 = self.get("/hit")
        s2, h2, b2 = self.get("/hit")
        assert s1 == s2 == 200, (s1, s2)
        assert h1["x-cache"] == "MISS" and h2["x-cache"] == "HIT", (h1, h2)
        assert b1 == b2
        assert self.o.count("/hit") == 1
        assert "hit" in h2.get("cache-status", ""), h2
        assert "age" in h2, h2

    def test_cold_burst_one_origin_request(self):
        res = burst(self.p, "/slow-burst", 50)
        assert all(r and r[0] == 200 for r in res), [r[:1] for r in res if r]
        assert len({r[2] for r in res}) == 1
        assert len({r[1]["x-pid"] for r in res}) > 1  # the burst reached several workers
        assert self.o.count("/slow-burst") == 1, self.o.count("/slow-burst")
        assert max(r[3] for r in res) < 2.0

    def test_stale_served_one_background_refresh(self):
        self.get("/swr")
        time.sleep(1.2)
        res = burst(self.p, "/swr", 10)
        assert all(r[0] == 200 for r in res)
        assert all(r[1]["x-cache"] == "UPDATING" for r in res), [r[1]["x-cache"] for r in res]
        assert max(r[3] for r in res) < 0.25, max(r[3] for r in res)  # nobody waits
        time.sleep(0.6)
        assert self.o.count("/swr") == 2, self.o.count("/swr")
        s, h, b = self.get("/swr")
        assert h["x-cache"] == "HIT" and b"n2" in b, (h, b)

    def test_stale_if_error_origin_down(self):
        s, h, b = self.get("/sie")
        assert s == 200
        self.o.down = True
        try:
            time.sleep(1.2)
            pids = set()
            for _ in range(16):
                s2, h2, b2 = self.get("/sie")
                assert s2 == 200 and b2 == b, (s2, b2)
                assert h2["x-cache"] == "STALE", h2
                pids.add(h2["x-pid"])
            assert len(pids) > 1, pids  # every worker has the stale copy
            assert self.o.count("/sie") <= 2, self.o.count("/sie")  # one probe per back-off
        finally:
            self.o.down = False

    def test_failed_fill_answers_its_waiters_without_the_origin(self):
        for down, filler in ((True, 503), ("close", 502)):
            path = "/sie-cold-%s-slowly" % ("503" if down is True else "close")
            self.o.down = down
            try:
                res = burst(self.p, path, 10)
            finally:
                self.o.down = False
            # the fill's visitor gets the origin's failure, each waiter a 502 saying when to
            # come back; the failing origin got one request, not one per visitor
            assert self.o.count(path) == 1, (down, self.o.count(path))
            assert sorted(r[0] for r in res) == [502] * 9 + [filler], (down, [r[:2] for r in res])
            waiters = [r for r in res if r[0] == 502 and r[1].get("retry-after") == "1"]
            assert len(waiters) == 9, (down, [r[:2] for r in res])
            s, h, b = self.get(path)  # the origin is back: the next visitor fills
            assert s == 200 and h["x-cache"] == "MISS", (s, h)

    def test_stale_if_error_connection_refused(self):
        s, h, b = self.get("/sie-close")
        assert s == 200
        self.o.down = "close"
        try:
            time.sleep(1.2)
            s2, h2, b2 = self.get("/sie-close")
            assert s2 == 200 and b2 == b and h2["x-cache"] == "STALE", (s2, h2, b2)
        finally:
            self.o.down = False
        s, h, b = self.get("/never-cached-x")
        assert s == 200

    def test_bypass_and_no_store(self):
        for _ in range(2):
            s, h, _ = self.get("/byp", headers={"Cookie": "session=1"})
            assert h["x-cache"] == "BYPASS", h
        assert self.o.count("/byp") == 2
        self.get("/nost?nostore=1")
        self.get("/nost?nostore=1")
        assert self.o.count("/nost") == 2
        s, h, _ = self.get("/nost")
        assert h["x-cache"] == "MISS" and self.o.count("/nost") == 3, h

    def test_uncacheable_releases_waiters(self):
        t0 = time.time()
        res = burst(self.p, "/private", 8)
        took = time.time() - t0
        assert all(r[0] == 200 for r in res)
        # not serialized behind one another: 8 x 0.3 s would be 2.4 s
        assert took < 1.2, took

    def test_head_from_get(self):
        s, h, b = self.get("/head")
        s2, h2, b2 = self.get("/head", method="HEAD")
        assert s2 == 200 and h2["x-cache"] == "HIT" and b2 == b"", (h2, b2)
        assert h2["content-length"] == str(len(b))
        assert self.o.count("/head") == 1

    def test_head_miss_fills_with_get(self):
        c = http.client.HTTPConnection("127.0.0.1", self.p, timeout=10)
        try:
            # a private answer: forwarded by GET, not stored, the client gets the head only
            c.request("HEAD", "/private-head")
            r = c.getresponse()
            assert r.status == 200 and r.read() == b"", r.status
            assert self.o.methods.get("/private-head") == "GET", self.o.methods
            # a HEAD miss fills the key with a GET (one origin request) ...
            c.request("HEAD", "/headmiss")
            r = c.getresponse()
            h = {k.lower(): v for k, v in r.getheaders()}
            assert r.status == 200 and r.read() == b"" and h["x-cache"] == "MISS", (r.status, h)
            assert self.o.methods.get("/headmiss") == "GET", self.o.methods
            # ... and no body byte followed the head: the same connection goes on
            c.request("GET", "/headmiss")
            r = c.getresponse()
            h2 = {k.lower(): v for k, v in r.getheaders()}
            b2 = r.read()
            assert r.status == 200 and h2["x-cache"] == "HIT", (r.status, h2)
            assert b2 == b"/headmiss v1 n1\n" and h["content-length"] == str(len(b2)), (h, b2)
        finally:
            c.close()
        assert self.o.count("/headmiss") == 1, self.o.count("/headmiss")

    # what a fill or refresh sends: the operator's rules, none of the visitor's quirks

    QUIRKS = {"Cookie": "uid=alice", "Connection": "X-Private", "X-Private": "secret",
              "TE": "trailers", "Keep-Alive": "300", "Range": "bytes=0-3", "Upgrade": "h2c"}

    def assert_fill_request(self, req):
        h = req["headers"]
        assert req["method"] == "GET", req
        assert fields(req, "Cookie") == [], h  # proxy_set_header Cookie ""
        assert len(fields(req, "Connection")) == 1, h  # proxy's own, the visitor's dropped
        for name in ("TE", "Keep-Alive", "Upgrade", "X-Private", "Range", "Content-Length",
                     "Transfer-Encoding", "Expect"):
            assert fields(req, name) == [], (name, h)
        assert len(fields(req, "Host")) == 1, h

    def test_fill_sends_only_what_the_operator_allows(self):
        s, h, b = self.get("/nc/fill", headers=self.QUIRKS)
        assert s == 200 and h["x-cache"] == "MISS" and b == b"/nc/fill v1 n1\n", (s, h, b)
        reqs = self.o.requests("/nc/fill")
        assert len(reqs) == 1, reqs
        self.assert_fill_request(reqs[0])

    def test_refresh_sends_only_what_the_operator_allows(self):
        self.get("/nc/swr-quirks")
        time.sleep(1.2)
        s, h, b = self.get("/nc/swr-quirks", headers=self.QUIRKS)
        # the visitor's Range is served from the stored page; the refresh fetches it whole
        assert s == 206 and h["x-cache"] == "UPDATING" and b == b"/nc/", (s, h, b)
        assert self.o.wait_count("/nc/swr-quirks", 2) == 2
        reqs = self.o.requests("/nc/swr-quirks")
        self.assert_fill_request(reqs[1])

    def test_fill_with_a_body_is_bodiless(self):
        # a GET whose body looks like a request: never forwarded, never read as one
        smuggled = b"GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
        out, took = raw_exchange(self.p, b"GET /body-cl HTTP/1.1\r\nHost: localhost\r\n"
                                 b"Content-Length: %d\r\n\r\n" % len(smuggled) + smuggled
                                 + b"GET /body-next HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert out and out[0][0] == 200 and out[0][2] == b"/body-cl v1 n1\n", out
        assert took < 1.0, took
        assert self.o.count("/smuggled") == 0
        req = self.o.requests("/body-cl")[0]
        self.assert_fill_request(req)
        assert req["body"] == b"" and req["waited"] < 0.5, req
        if len(out) > 1:  # the connection went on: the next request was the real one
            assert out[1][0] == 200 and out[1][2].startswith(b"/body-next"), out

    def test_fill_with_an_unfinished_body_answers_at_once(self):
        for path, head, body in (
                ("/body-part", b"Content-Length: 100000\r\n", b"x" * 10),
                ("/body-chunked", b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n"),
                ("/body-expect", b"Content-Length: 5\r\nExpect: 100-continue\r\n", b"")):
            out, took = raw_exchange(self.p, b"GET " + path.encode() + b" HTTP/1.1\r\n"
                                     b"Host: localhost\r\n" + head + b"\r\n" + body, 1)
            assert out and out[0][0] == 200 and out[0][2].startswith(path.encode()), (path, out)
            assert took < 1.0, (path, took)
            req = self.o.requests(path)[0]
            self.assert_fill_request(req)
            assert req["body"] == b"", (path, req)

    def test_refresh_with_a_body_is_bodiless(self):
        self.get("/swr-body")
        time.sleep(1.2)
        out, took = raw_exchange(self.p, b"GET /swr-body HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                                 b"Content-Length: 4\r\n\r\nbody" % self.p, 1)
        assert out and out[0][1]["x-cache"] == "UPDATING", out
        assert self.o.wait_count("/swr-body", 2) == 2
        req = self.o.requests("/swr-body")[1]
        assert fields(req, "Content-Length") == [] and req["body"] == b"", req

    # a HEAD (an uptime monitor) never blanks a page: the origin is asked with GET

    def test_head_at_miss_fresh_and_stale_through_fastcgi(self):
        uri = "/php/monitored"
        s, h, b = self.get(uri, method="HEAD")
        assert s == 200 and h["x-cache"] == "MISS" and b == b"", (s, h)
        s, h, b = self.get(uri, method="HEAD")
        assert s == 200 and h["x-cache"] == "HIT", (s, h)
        time.sleep(2.2)  # max-age=2: stale, and fresh again for a second once refreshed
        s, h, b = self.get(uri, method="HEAD")
        assert s == 200 and h["x-cache"] == "UPDATING" and b == b"", (s, h)
        deadline = time.time() + 3
        while len(self.fpm.requests(uri)) < 2 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # the refresh's commit
        assert self.fpm.requests(uri) == ["GET", "GET"], self.fpm.requests(uri)
        s, h, b = self.get(uri)
        assert s == 200 and h["x-cache"] == "HIT", (s, h)
        assert b == b"page /php/monitored for GET\n", b
        assert h["content-type"] == "text/plain;charset=UTF-8", h  # as PHP sent it
        # the visitors' own method is what nginx logs
        deadline = time.time() + 2
        while True:
            with open(os.path.join(self.ngx.prefix, "methods.log")) as f:
                log = [l for l in f.read().splitlines() if " %s " % uri in l]
            if len(log) >= 4 or time.time() > deadline:
                break
            time.sleep(0.02)
        assert log == ["HEAD %s MISS" % uri, "HEAD %s HIT" % uri, "HEAD %s UPDATING" % uri,
                       "GET %s HIT" % uri], log

    def test_head_at_stale_through_proxy(self):
        self.get("/sw2-head")
        time.sleep(2.2)
        s, h, b = self.get("/sw2-head", method="HEAD")
        assert s == 200 and h["x-cache"] == "UPDATING" and b == b"", (s, h)
        assert self.o.wait_count("/sw2-head", 2) == 2
        assert [r["method"] for r in self.o.requests("/sw2-head")] == ["GET", "GET"]
        time.sleep(0.1)  # the refresh's commit
        s, h, b = self.get("/sw2-head")
        assert h["x-cache"] == "HIT" and b == b"/sw2-head v1 n2\n", (h, b)

    # an everyday origin: validators, and a 304 to a conditional refresh

    # an origin that breaks off an answer halfway: never stored, never served to anyone else

    def test_answer_cut_short_at_miss_is_never_stored(self):
        path = "/cut-at-miss-1"
        try:
            self.get(path)
            raise AssertionError("the cut answer reached the client whole")
        except http.client.IncompleteRead:
            pass  # the visitor sees the origin's answer end early, as without a cache
        s, h, b = self.get(path)
        assert s == 200 and h["x-cache"] == "MISS" and b == b"%s v1 n2\n" % path.encode(), (h, b)
        s, h, b = self.get(path)
        assert h["x-cache"] == "HIT" and b == b"%s v1 n2\n" % path.encode(), (h, b)
        assert self.o.count(path) == 2

    def test_waiters_of_a_cut_fill_never_get_the_cut_answer(self):
        # 300 ms: the burst's visitors all wait for the first fill (buffered and not)
        for path in ("/cut-slowly-1", "/unbuffered/cut-slowly-1"):
            res = burst(self.p, path, 10)
            # the fill's visitor sees its answer end early; the fill failed, as for any origin
            # failure: its waiters get a 502 at once (nothing stale to serve), and the origin
            # is asked once
            cut = [r for r in res if r[0] is None]
            told = [r for r in res if r[0] == 502 and r[1].get("retry-after") == "1"
                    and "fwd-status=502" in r[1].get("cache-status", "")]
            assert len(cut) == 1 and len(told) == 9, (path, [r[:2] for r in res])
            assert self.o.count(path) == 1, (path, self.o.count(path))
            s, h, b = self.get(path)  # the next visitor fills again, and the answer is whole
            assert h["x-cache"] == "MISS" and b == b"%s v1 n2\n" % path.encode(), (h, b)

    def test_probe_cut_short_serves_its_waiters_the_stale_page(self):
        path = "/cut-slowly-sie-2"  # max-age=1, stale-if-error=60; the second answer is cut
        old = b"%s v1 n1\n" % path.encode()
        assert self.get(path)[2] == old
        time.sleep(1.2)  # stale, no stale-while-revalidate: the next visitor fetches (a probe)
        res = burst(self.p, path, 10)
        stale = [r for r in res if r[0] == 200 and r[2] == old and r[1]["x-cache"] == "STALE"]
        assert len(stale) >= 9, [r[:2] for r in res]  # the waiters; the prober's was cut
        assert self.o.count(path) == 2, self.o.count(path)

    def test_refresh_cut_short_keeps_the_stale_page(self):
        path = "/cut-refresh-2"  # max-age=1, stale-while-revalidate=30; the refresh is cut
        old, new = b"%s v1 n1\n" % path.encode(), b"%s v1 n3\n" % path.encode()
        assert self.get(path)[2] == old
        time.sleep(1.2)
        # every visitor gets the stale page until a whole answer replaces it: the cut refresh
        # counts as an origin failure, so the next one waits for the back-off (1 s)
        answers, deadline = [], time.time() + 4
        while time.time() < deadline and (not answers or answers[-1] != new):
            s, h, b = self.get(path)
            assert s == 200 and b in (old, new), (s, h, b)
            answers.append(b)
            time.sleep(0.05)
        assert answers[-1] == new and answers[0] == old, answers
        assert self.o.count(path) == 3, self.o.count(path)
        cut, whole = [r["t"] for r in self.o.requests(path)[1:]]
        assert whole - cut >= 0.9, whole - cut

    # a visitor who leaves during a fill: the page is still fetched once, and stored

    def leave(self, path, after, read=0):
        """Sends a GET of `path` and closes the connection `after` seconds later (having read
        `read` bytes of the answer first, when asked)."""
        s = socket.create_connection(("127.0.0.1", self.p))
        s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (path, self.p)).encode())
        got = b""
        while len(got) < read:
            got += s.recv(read - len(got))
        time.sleep(after)
        s.close()

    def test_fill_outlives_its_client_leaving_before_the_head(self):
        path = "/slow-left-alone"  # the origin answers in 300 ms
        for _ in range(3):  # the first fills, the other two wait; each leaves after 100 ms
            self.leave(path, 0.1)
        time.sleep(0.4)
        assert self.o.count(path) == 1, self.o.count(path)
        s, h, b = self.get(path)
        assert h["x-cache"] == "HIT" and b == b"%s v1 n1\n" % path.encode(), (h, b)

    def test_waiters_get_the_page_when_the_filler_leaves(self):
        path = "/slow-filler-leaves"
        leaver = threading.Thread(target=self.leave, args=(path, 0.1))
        leaver.start()
        time.sleep(0.05)
        res = burst(self.p, path, 5)
        leaver.join()
        assert all(r[0] == 200 and r[2] == b"%s v1 n1\n" % path.encode() for r in res), res
        assert self.o.count(path) == 1, self.o.count(path)

    def test_fill_outlives_its_client_leaving_mid_body(self):
        path = "/mid-left-mid-body"  # 200 KiB
        self.leave(path, 0, read=100)
        time.sleep(0.3)
        s, h, b = self.get(path)
        assert h["x-cache"] == "HIT" and b == b"m" * (200 * 1024), (h, len(b))
        assert self.o.count(path) == 1, self.o.count(path)

    def test_http2_fill_outlives_its_cancelled_streams(self):
        path = "/h2/slow-cancelled"
        for _ in range(3):  # curl gives up after 100 ms, closing the connection
            subprocess.run(["curl", "-s", "-o", "/dev/null", "--http2-prior-knowledge",
                            "--max-time", "0.1", "http://127.0.0.1:%d%s" % (self.ngx.h2port, path)])
        time.sleep(0.4)
        assert self.o.count(path) == 1, self.o.count(path)
        s, h, b = h2_request(self.ngx.h2port, path)
        assert h["x-cache"] == "HIT" and b == b"%s v1 n1\n" % path.encode(), (h, b)

    # HTTP/2: the streams of one connection are requests of their own

    def test_http2_streams_of_one_connection_share_one_fill(self):
        ok, ok2xx, _ = h2_streams(self.ngx.h2port, "/h2/slow-streams", 50)
        assert ok == ok2xx == 50, (ok, ok2xx)
        assert self.o.count("/h2/slow-streams") == 1, self.o.count("/h2/slow-streams")
        s, h, b = h2_request(self.ngx.h2port, "/h2/slow-streams")
        assert s == 200 and h["x-cache"] == "HIT" and b == b"/h2/slow-streams v1 n1\n", (s, h, b)

    def test_http2_stale_streams_never_wait_for_the_refresh(self):
        path = "/h2/swr-streams"  # max-age=1, stale-while-revalidate=30; a refresh takes 300 ms
        assert h2_request(self.ngx.h2port, path)[0] == 200
        time.sleep(1.2)
        ok, ok2xx, took = h2_streams(self.ngx.h2port, path, 100, connections=2)
        assert ok == ok2xx == 100, (ok, ok2xx)
        assert took < 0.25, took
        self.o.wait_count(path, 2)
        time.sleep(0.4)
        assert self.o.count(path) == 2, self.o.count(path)
        s, h, b = h2_request(self.ngx.h2port, path)
        assert h["x-cache"] == "HIT" and b == b"/h2/swr-streams v1 n2\n", (h, b)

    def test_http2_head_at_stale_through_fastcgi_never_blanks_the_page(self):
        uri = "/php/h2-monitored"  # max-age=2, stale-while-revalidate=30
        s, h, b = h2_request(self.ngx.h2port, uri)
        assert s == 200 and b == b"page %s for GET\n" % uri.encode(), (s, b)
        time.sleep(2.2)
        s, h, b = h2_request(self.ngx.h2port, uri, method="HEAD")
        assert s == 200 and h["x-cache"] == "UPDATING" and b == b"", (s, h, b)
        deadline = time.time() + 3
        while len(self.fpm.requests(uri)) < 2 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)  # the refresh's commit
        assert self.fpm.requests(uri) == ["GET", "GET"], self.fpm.requests(uri)
        s, h, b = h2_request(self.ngx.h2port, uri)
        assert s == 200 and h["x-cache"] == "HIT", (s, h)
        assert b == b"page %s for GET\n" % uri.encode(), b

    def test_wordpress_permalinks_are_keyed_by_the_visitors_url(self):
        def page(uri, **kw):
            s, h, b = self.get(uri, **kw)
            assert s == 200, (uri, s, h)
            return h.get("x-cache"), h.get("x-key"), b
        host = "http://127.0.0.1:%d" % self.p
        assert page("/wp/hello-world/") == (
            "MISS", "GET %s/wp/hello-world/" % host, b"page /wp/hello-world/ for GET\n")
        assert page("/wp/hello-world/")[0] == "HIT"
        assert page("/wp/about/") == ("MISS", "GET %s/wp/about/" % host,
                                      b"page /wp/about/ for GET\n")
        assert page("/wp/hello-world/?preview=true") == (
            "BYPASS", None, b"page /wp/hello-world/?preview=true for GET\n")
        logged_in = {"Cookie": "wordpress_logged_in_0123=admin"}
        assert page("/wp/hello-world/", headers=logged_in)[0] == "BYPASS"
        assert page("/wp/hello-world/", method="HEAD") == (
            "HIT", "GET %s/wp/hello-world/" % host, b"")
        assert page("/wp/hello-world/")[0] == "HIT"
        # the anonymous page once, the logged-in visitor's own
        assert self.fpm.requests("/wp/hello-world/", site="wp") == ["GET", "GET"]
        assert page("/wp/robots.txt") == (None, None, b"User-agent: *\n")

    # output filters: they run on every answer, hits included, and never on the stored copy

    def test_gzip_compresses_hits_from_the_stored_identity_copy(self):
        path = "/gz/page"
        seen = []
        for enc in ("gzip", None, "gzip", None):
            s, h, b = self.get(path, headers={"Accept-Encoding": enc} if enc else {})
            assert s == 200 and h.get("content-encoding") == enc, (enc, h)
            assert (gzip.decompress(b) if enc else b) == b"/gz/page v1 n1\n", (enc, b)
            assert h.get("vary") == "Accept-Encoding", h
            seen.append(h["x-cache"])
        assert seen == ["MISS", "HIT", "HIT", "HIT"], seen
        assert self.o.count(path) == 1

    def test_ssi_runs_on_every_answer_of_a_stored_page(self):
        # the page is stored as the origin sent it, before SSI; every answer, hits included,
        # is assembled again (subrequests are not looked up: the fragment is fetched each time)
        seen = []
        for n in (1, 2, 3):
            s, h, b = self.get("/ssi/ssipage")
            assert s == 200 and b == b"page /nc/fragment v1 n%d\nend\n" % n, (n, b)
            seen.append(h["x-cache"])
        assert seen == ["MISS", "HIT", "HIT"], seen
        assert self.o.count("/ssi/ssipage") == 1
        assert self.o.count("/nc/fragment") == 3

    def test_unbuffered_proxy_stores_whole_bodies(self):
        res = burst(self.p, "/unbuffered/slow-whole", 10)
        assert all(r and r[0] == 200 and r[2] == b"/unbuffered/slow-whole v1 n1\n"
                   for r in res), [r[:1] for r in res if r]
        assert self.o.count("/unbuffered/slow-whole") == 1
        bodies = []
        for expect in ("MISS", "HIT"):
            s, h, b = self.get("/unbuffered/mid-whole")
            assert s == 200 and h["x-cache"] == expect, (expect, h)
            bodies.append(b)
        assert bodies[0] == bodies[1] == b"m" * (200 * 1024), [len(b) for b in bodies]
        assert self.o.count("/unbuffered/mid-whole") == 1

    def test_sub_filter_rewrites_hits_once(self):
        answers = [self.get("/subst/page") for _ in range(3)]
        assert [h["x-cache"] for _, h, _ in answers] == ["MISS", "HIT", "HIT"], answers
        assert all(b == b"/subst/page version-one n1\n" for _, _, b in answers), answers
        assert self.o.count("/subst/page") == 1

    def test_revalidation_once_per_key_per_expiry_under_load(self):
        keys = ["/val-load%d" % i for i in range(4)]
        for k in keys:
            self.get(k)
        t0 = time.time()
        res = load(self.p, keys, 4.5)
        rate = len(res) / (time.time() - t0)
        bad = [r for r in res if not isinstance(r, tuple) or r[0] != 200]
        assert not bad and rate > 100, (bad[:3], rate)
        for k in keys:
            reqs = self.o.requests(k)
            times = [r["t"] for r in reqs]
            gaps = [b - a for a, b in zip(times, times[1:])]
            # max-age=2 over 4.5 s: the fill, then one conditional request per expiry
            assert 2 <= len(reqs) <= 4 and min(gaps) >= 1.0, (k, len(reqs), gaps, rate)
            assert all(fields(r, "If-None-Match") == ['"/%s-v1"' % k[1:]] for r in reqs[1:])
        # after a 304 the entry is fresh again: its Age restarts
        k, n = keys[0], self.o.count(keys[0])
        deadline = time.time() + 4
        while self.o.count(k) == n and time.time() < deadline:
            self.get(k)
            time.sleep(0.05)
        time.sleep(0.2)
        s, h, b = self.get(k)
        assert h["x-cache"] == "HIT" and int(h["age"]) <= 1 and b == b"/val-load0 v1\n", (h, b)

    # no visitor switches a key off: request-side reasons serve that visitor alone

    VISITOR_QUIRKS = [("no-store", {"Cache-Control": "no-store"}),
                      ("no-cache", {"Cache-Control": "no-cache"}),
                      ("pragma", {"Pragma": "no-cache"}),
                      ("max-age0", {"Cache-Control": "max-age=0"}),
                      ("auth", {"Authorization": "Basic dXNlcjpwYXNz"}),
                      ("range", {"Range": "bytes=0-3"})]

    def assert_served_from_cache(self, path, body):
        for _ in range(3):
            s, h, b = self.get(path)
            assert s == 200 and h["x-cache"] == "HIT" and b == body, (path, s, h, b)

    def assert_quirk_answer(self, name, path, res, cached):
        s, h, b = res
        if name == "auth":
            # passed to the origin untouched, as the visitor sent it
            assert h["x-cache"] == "BYPASS", (path, h)
            req = self.o.requests(path)[-1]
            assert fields(req, "Authorization") == ["Basic dXNlcjpwYXNz"], req
        elif name == "range" and cached:
            assert s == 206 and b == cached[:4], (path, s, h, b)
        else:
            assert s == 200 and b.startswith(path.encode()), (path, s, h, b)

    def test_request_quirks_at_miss_never_switch_a_key_off(self):
        for name, quirk in self.VISITOR_QUIRKS:
            path = "/rq-miss-" + name
            self.assert_quirk_answer(name, path, self.get(path, headers=quirk), None)
            self.get(path)  # the fill (a visitor with a quirk may have filled already)
            n = self.o.count(path)
            assert n <= 2, (path, n)
            self.assert_served_from_cache(path, ("%s v1 n%d\n" % (path, n)).encode())
            assert self.o.count(path) == n

    def test_request_quirks_when_fresh_never_switch_a_key_off(self):
        for name, quirk in self.VISITOR_QUIRKS:
            path = "/rq-fresh-" + name
            _, _, body = self.get(path)
            self.assert_quirk_answer(name, path, self.get(path, headers=quirk), body)
            self.assert_served_from_cache(path, body)
            assert self.o.count(path) == (2 if name == "auth" else 1), (path, self.o.count(path))

    def test_request_quirks_when_stale_never_switch_a_key_off(self):
        # max-age=2: a renewed entry stays fresh while the test reads it (Date has seconds)
        paths = ["/sw2-rq-" + name for name, _ in self.VISITOR_QUIRKS]
        bodies = [self.get(p)[2] for p in paths]
        time.sleep(2.2)
        for (name, quirk), path, body in zip(self.VISITOR_QUIRKS, paths, bodies):
            self.assert_quirk_answer(name, path, self.get(path, headers=quirk), body)
        # the one refresh of each (started by the quirky visitor, or by the next one)
        for path in paths:
            s, h, b = self.get(path)
            assert s == 200 and h["x-cache"] in ("HIT", "UPDATING"), (path, h)
        time.sleep(0.3)
        for (name, _), path in zip(self.VISITOR_QUIRKS, paths):
            n = self.o.count(path)
            assert n == (3 if name == "auth" else 2), (path, n)
            self.assert_served_from_cache(path, ("%s v1 n%d\n" % (path, n)).encode())

    def test_request_quirks_never_hold_waiters(self):
        # a slow fill in flight: visitors with quirks never take it over nor pass the key
        res = [None] * 13
        quirks = [{}] * 7 + [q for _, q in self.VISITOR_QUIRKS]

        def one(i):
            res[i] = request(self.p, "/slow-rq", headers=quirks[i])

        ts = [threading.Thread(target=one, args=(i,)) for i in range(len(quirks))]
        ts[0].start()
        time.sleep(0.1)
        for t in ts[1:]:
            t.start()
        for t in ts:
            t.join(10)
        assert all(r and r[0] in (200, 206) for r in res), [r and r[:2] for r in res]
        assert self.o.count("/slow-rq") == 2, self.o.count("/slow-rq")  # the fill, Authorization
        self.assert_served_from_cache("/slow-rq", b"/slow-rq v1 n1\n")

    def test_response_directives_still_pass(self):
        for path in ("/private-x", "/nostore-x", "/cookie-x"):
            for _ in range(2):
                s, h, _ = self.get(path)
                assert h["x-cache"] == "MISS", (path, h)
            assert self.o.count(path) == 2, (path, self.o.count(path))

    def test_honour_request_directives_on(self):
        _, _, body = self.get("/honour/p")
        s, h, b = self.get("/honour/p", headers={"Cache-Control": "no-cache"})
        assert s == 200 and b == b"/honour/p v1 n2\n", (s, h, b)  # this visitor: the origin
        s, h, b = self.get("/honour/p", headers={"Cache-Control": "no-store"})
        assert h["x-cache"] == "BYPASS" and b == b"/honour/p v1 n3\n", (h, b)
        s, h, b = self.get("/honour/p", headers={"Pragma": "no-cache"})
        assert b == b"/honour/p v1 n4\n", (h, b)
        self.assert_served_from_cache("/honour/p", body)  # the entry was left alone
        assert self.o.count("/honour/p") == 4

    def test_request_directives_ignored_while_frozen(self):
        _, _, body = self.get("/honour/frozen")
        freeze(self.ngx, True)
        try:
            for quirk in ({"Cache-Control": "no-cache"}, {"Cache-Control": "no-store"},
                          {"Pragma": "no-cache"}, {"Cache-Control": "max-age=0"}):
                s, h, b = self.get("/honour/frozen", headers=quirk)
                assert s == 200 and h["x-cache"] == "HIT" and b == body, (quirk, h, b)
        finally:
            freeze(self.ngx, False)
        s, h, b = self.get("/honour/frozen", headers={"Cache-Control": "no-cache"})
        assert b == b"/honour/frozen v1 n2\n", (h, b)  # thawed: honoured again
        assert self.o.count("/honour/frozen") == 2

    def test_default_ttl_of_a_location_whose_stale_windows_are_its_parents(self):
        # /ttl/own/ sets its own peakcache_default_ttl inside /ttl/ and inherits its (zero)
        # stale windows: its own lifetime applies all the same, the parent's does not change
        for path, second in (("/ttl/own/silent", "HIT"), ("/ttl/silent", None)):
            s1, h1, _ = self.get(path)
            s2, h2, _ = self.get(path)
            assert s1 == s2 == 200 and h1["x-cache"] == "MISS", (path, s1, s2, h1)
            if second:
                assert h2["x-cache"] == second, (path, h2)
                assert self.o.count(path) == 1, (path, self.o.count(path))
            else:
                # stored stale (default_ttl 0): the second visitor's request goes to the origin
                assert h2["x-cache"] != "HIT", (path, h2)
                assert self.o.count(path) == 2, (path, self.o.count(path))

    def test_config_test_touches_no_region(self):
        # nginx -t with a zone the live region could not take, and a new one: nothing opened
        before = os.stat(self.ngx.region)
        fresh = os.path.join(self.ngx.prefix, "new.shm")
        with open(self.ngx.conf) as f:
            conf = f.read().replace("%s size=32m" % self.ngx.zone, "%s size=64m" % self.ngx.zone)
        conf = conf.replace("other.shm", "new.shm")
        path = os.path.join(self.ngx.prefix, "test.conf")
        with open(path, "w") as f:
            f.write(conf)
        r = subprocess.run([NGINX, "-t", "-p", self.ngx.prefix, "-c", path, "-e",
                            os.path.join(self.ngx.prefix, "test.log")], capture_output=True,
                           env=nginx_env())
        assert r.returncode == 0, r.stderr
        after = os.stat(self.ngx.region)
        assert (before.st_ino, before.st_size) == (after.st_ino, after.st_size)
        assert not os.path.exists(fresh)
        assert self.get("/status")[0] == 200

    def test_expired_entry_revalidated_by_its_fill(self):
        # past its stale windows: the fill asks with the stored validators, a 304 renews it
        for method in ("GET", "HEAD"):
            path = "/vexp-" + method.lower()
            _, _, body = self.get(path)
            time.sleep(2.2)
            s, h, b = self.get(path, method=method)
            assert s == 200 and h["x-cache"] == "REVALIDATED", (path, s, h)
            assert b == (body if method == "GET" else b""), (path, b)
            assert h["content-length"] == str(len(body)), h
            reqs = self.o.requests(path)
            assert len(reqs) == 2, (path, len(reqs))
            assert fields(reqs[1], "If-None-Match") == ['"%s-v1"' % path], reqs[1]
            s, h, b = self.get(path)
            assert h["x-cache"] == "HIT" and int(h["age"]) <= 1 and b == body, (path, h, b)

    def test_expired_variant_revalidated_by_its_fill(self):
        # the page's Vary is remembered past the variant's windows: the fill of the expired
        # variant asks with its validator and the visitor's value of the Vary'd field
        path = "/revary"
        _, _, body = self.get(path, headers={"X-Abc": "1"})
        time.sleep(1.2)
        s, h, b = self.get(path, headers={"X-Abc": "1"})
        assert s == 200 and h["x-cache"] == "REVALIDATED" and b == body, (s, h, b)
        reqs = self.o.requests(path)
        assert len(reqs) == 2, len(reqs)
        assert fields(reqs[1], "If-None-Match") == ['"/revary-1"'], reqs[1]
        assert fields(reqs[1], "X-Abc") == ["1"], reqs[1]
        # another variant is its own page, fetched unconditionally
        s, h, b = self.get(path, headers={"X-Abc": "2"})
        assert s == 200 and b == b"/revary abc=2\n", (s, h, b)
        assert fields(self.o.requests(path)[2], "If-None-Match") == [], self.o.requests(path)

    def test_5xx_with_freshness_stored_like_any_response(self):
        # RFC 9111 3: an error the origin gives a lifetime is reused for that lifetime
        for status in (500, 502, 503, 504):
            path = "/fresh5xx-%d" % status
            s1, h1, b1 = self.get(path)
            s2, h2, b2 = self.get(path)
            assert s1 == s2 == status and h1["x-cache"] == "MISS", (path, s1, s2, h1)
            assert h2["x-cache"] == "HIT" and b2 == b1, (path, h2, b2)
            assert self.o.count(path) == 1, (path, self.o.count(path))

    def test_5xx_with_freshness_never_replaces_a_stale_if_error_copy(self):
        # the fill of a page inside stale-if-error, and the refresh of one inside
        # stale-while-revalidate, keep the good page when the origin's error has a lifetime
        _, _, fill_body = self.get("/sie-fresh5xx")
        _, _, refresh_body = self.get("/swsie-fresh5xx")
        self.o.down = "fresh"
        try:
            time.sleep(1.2)
            s, h, b = self.get("/sie-fresh5xx")
            assert s == 200 and h["x-cache"] == "STALE" and b == fill_body, (s, h, b)
            s, h, b = self.get("/swsie-fresh5xx")
            assert s == 200 and h["x-cache"] == "UPDATING" and b == refresh_body, (s, h, b)
            assert self.o.wait_count("/swsie-fresh5xx", 2) == 2
            time.sleep(0.1)
            for path, body in (("/sie-fresh5xx", fill_body), ("/swsie-fresh5xx", refresh_body)):
                s, h, b = self.get(path)
                assert s == 200 and b == body, (path, s, h, b)
        finally:
            self.o.down = False

    def test_fields_named_by_the_origins_connection_never_stored(self):
        # RFC 9111 3.1: what the origin's Connection names was for the hop to nginx alone
        s1, h1, _ = self.get("/conn-named")
        s2, h2, _ = self.get("/conn-named")
        assert s1 == s2 == 200 and h2["x-cache"] == "HIT", (h1, h2)
        for h in (h1, h2):
            assert "x-hop" not in h and "x-hop-too" not in h and h["x-kept"] == "3", h

    def test_stored_miss_says_its_age(self):
        # an answer that took 1.2 s is that old when it arrives (RFC 9111 4.2.3): its
        # visitor is told so, as the next ones are
        s, h, _ = self.get("/delayed")
        assert s == 200 and h["x-cache"] == "MISS" and "stored" in h["cache-status"], h
        assert h.get("age") == "1", h
        s, h, _ = self.get("/delayed")
        assert h["x-cache"] == "HIT" and int(h["age"]) in (1, 2), h

    def test_hit_age_advances(self):
        # hits are answered from a per-worker memo: Age and Cache-Status must still move
        self.get("/agetick")
        s, h, _ = self.get("/agetick")
        time.sleep(1.1)
        s2, h2, _ = self.get("/agetick")
        assert h2["x-cache"] == "HIT" and int(h2["age"]) >= int(h["age"]) + 1, (h, h2)
        assert h2["cache-status"] == "peakcache; hit; ttl=%d" % (60 - int(h2["age"])), h2
        assert self.o.count("/agetick") == 1

    def test_304_to_if_none_match(self):
        self.get("/etag")
        s, h, b = self.get("/etag", headers={"If-None-Match": '"v1"'})
        assert s == 304 and b == b"", (s, h)
        s, h, b = self.get("/etag", headers={"If-None-Match": '"v0"'})
        assert s == 200 and b, s
        assert self.o.count("/etag") == 1

    def test_purge_url_hard_and_soft(self):
        self.get("/pu")
        s, h, b = self.get("/purge?url=/pu", method="PURGE")
        assert s == 200 and json.loads(b)["found"] is True, b
        s, h, _ = self.get("/pu")
        assert h["x-cache"] == "MISS" and self.o.count("/pu") == 2, h
        s, h, b = self.get("/purge?url=/pu&soft=1", method="POST")
        assert s == 200, b
        s, h, _ = self.get("/pu")
        assert h["x-cache"] == "UPDATING", h  # served stale, refreshed in the background
        time.sleep(0.3)
        assert self.o.count("/pu") == 3

    def test_purge_tag_hard_and_soft(self):
        self.get("/tag1")
        self.get("/tag2")
        s, _, b = self.get("/purge?tag=t-1", method="PURGE")
        assert s == 200, b
        assert self.get("/tag1")[1]["x-cache"] == "MISS"
        assert self.get("/tag2")[1]["x-cache"] == "HIT"
        s, _, b = self.get("/purge", headers={"Surrogate-Key": "all-tags"}, method="POST")
        assert s == 200, b
        assert self.get("/tag2")[1]["x-cache"] == "MISS"
        s, _, b = self.get("/purge?tag=all-tags&soft=1", method="PURGE")
        assert self.get("/tag2")[1]["x-cache"] == "UPDATING"

    def test_purge_denied(self):
        s, _, _ = self.get("/purge-denied?url=/pu", method="PURGE")
        assert s == 403, s

    def test_purge_takes_purge_and_post_only(self):
        # a page in an intranet browser (GET, HEAD, a form's PUT...) never purges
        self.get("/pm")
        for method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS"):
            s, h, _ = self.get("/purge?url=/pm", method=method)
            assert s == 405 and h.get("allow") == "PURGE, POST", (method, s, h)
        assert self.get("/pm")[1]["x-cache"] == "HIT"

    def test_purge_url_with_scheme_and_encoding(self):
        host = "127.0.0.1:%d" % self.p
        for path in ("/pe-a%2Bb", "/pe-a+b", "/pe-c?q=1+2"):
            self.get(path)
        cases = [("http%3A%2F%2F" + host + "%2Fpe-a%252Bb", "/pe-a%2Bb"),  # %2B stays in the key
                 ("%2Fpe-a%2Bb", "/pe-a+b"),                               # decoded once: +
                 ("/pe-c?q=1+2", "/pe-c?q=1+2")]                           # + is not a space
        for url, path in cases:
            s, _, b = self.get("/purge?url=" + url, method="PURGE")
            assert s == 200 and json.loads(b)["found"] is True, (url, b)
            assert json.loads(b)["target"] == "GET http://%s%s" % (host, path), (url, b)
            assert self.get(path)[1]["x-cache"] == "MISS", path
        # the scheme of an absolute URL is kept: an https key is not this http page
        s, _, b = self.get("/purge?url=https://%s/pe-c?q=1+2" % host, method="PURGE")
        assert s == 200 and json.loads(b)["target"].startswith("GET https://"), b
        assert json.loads(b)["found"] is False, b
        assert self.get("/pe-c?q=1+2")[1]["x-cache"] == "HIT"

    # keys and invalidation

    def test_key_is_the_host_nginx_routed(self):
        # an absolute target is routed by its own host, whatever the Host field says
        out, _ = raw_exchange(self.p, b"GET http://site.example/kh HTTP/1.1\r\n"
                              b"Host: other.example\r\n\r\n", 1)
        assert out and out[0][1]["x-key"] == "GET http://site.example/kh", out
        s, h, _ = self.get("/kh", headers={"Host": "Site.Example."})
        assert h["x-cache"] == "HIT" and h["x-key"] == "GET http://site.example/kh", h
        s, h, _ = self.get("/kh", headers={"Host": "other.example"})
        assert h["x-cache"] == "MISS", h
        s, h, _ = self.get("/kh", headers={"Host": "site.example:8080"})
        assert h["x-key"] == "GET http://site.example:8080/kh", h
        assert self.o.count("/kh") == 3

    def test_unsafe_methods_invalidate(self):
        host = "127.0.0.1:%d" % self.p
        for path in ("/inv-target", "/inv-loc", "/inv-cloc", "/inv-kept", "/vary-inv"):
            self.get(path)
        self.get("/vary-inv", headers={"Accept-Encoding": "gzip"})
        for method, path, hdrs in (
                ("POST", "/inv-target", {"X-Location": "/inv-loc",
                                         "X-Content-Location": "http://%s/inv-cloc" % host}),
                ("PUT", "/vary-inv", {}),
                ("DELETE", "/inv-kept", {"X-Answer": "404"}),        # an error: nothing
                ("PATCH", "/inv-other", {"X-Location": "http://elsewhere.example/inv-kept"})):
            s, h, _ = self.get(path, method=method, headers=hdrs)
            assert s == int(hdrs.get("X-Answer", 200)), (method, path, s)
        for path in ("/inv-target", "/inv-loc", "/inv-cloc", "/vary-inv"):
            assert self.get(path)[1]["x-cache"] == "MISS", path
        assert self.get("/vary-inv", headers={"Accept-Encoding": "gzip"})[1]["x-cache"] == "MISS"
        assert self.get("/inv-kept")[1]["x-cache"] == "HIT"

    def test_error_page_never_stored_as_the_url(self):
        for _ in range(2):
            s, h, b = self.get("/ep/missing")
            assert s == 404 and b == b"error page\n", (s, b)
        assert self.o.count("/ep/missing") == 2

    def test_x_accel_redirect_never_stored_as_the_url(self):
        for _ in range(2):
            s, h, b = self.get("/xaccel")
            assert s == 200 and b == b"internal file\n", (s, b)
        assert self.o.count("/xaccel") == 2

    def test_status_json_and_prometheus(self):
        s, h, b = self.get("/status")
        assert s == 200 and h["content-type"].startswith("application/json")
        st = json.loads(b)
        assert st["lookups"] >= 1, st
        s, h, b = self.get("/status?format=prometheus")
        assert s == 200 and b"peakcache_" in b, b[:200]

    def test_oversized_passes_through(self):
        for _ in range(2):
            s, h, b = self.get("/big")
            assert s == 200 and len(b) == 2 * 1024 * 1024, (s, len(b))
        assert self.o.count("/big") == 2

    def test_vary_variants(self):
        s1, _, b1 = self.get("/vary", headers={"Accept-Encoding": "gzip"})
        s2, _, b2 = self.get("/vary")
        s3, h3, b3 = self.get("/vary", headers={"Accept-Encoding": "gzip"})
        assert s1 == s2 == s3 == 200
        assert b1 == b3 and h3["x-cache"] == "HIT", (b1, b3, h3)
        assert b1 != b2

    def test_vary_change_never_crosses_variants(self):
        visitors = [{"Accept-Encoding": "gzip", "Accept-Language": "en"},
                    {"Accept-Encoding": "gzip", "Accept-Language": "fr"},
                    {"Accept-Encoding": "br", "Accept-Language": "fr"}]
        for v in visitors:
            self.get("/vchange", headers=v)
        time.sleep(1.2)
        self.o.vary_on = "Accept-Language"
        try:
            for rnd in range(3):
                for v in visitors:
                    s, h, b = self.get("/vchange", headers=v)
                    assert s == 200, (rnd, v, s)
                    text = b.decode()
                    # a stale answer from before the change, or one made for this visitor
                    assert ("Accept-Encoding=%s" % v["Accept-Encoding"] in text
                            and h["x-cache"] == "UPDATING") \
                        or "Accept-Language=%s" % v["Accept-Language"] in text, (rnd, v, h, b)
                time.sleep(0.3)
        finally:
            self.o.vary_on = "Accept-Encoding"

    def test_conditionals_at_miss_answered_from_the_fill(self):
        lm = "Sat, 05 Dec 2026 10:00:00 GMT"
        for path, method, cond, status in (
                ("/val-c1", "GET", {"If-None-Match": '"/val-c1-v1"'}, 304),
                ("/val-c2", "GET", {"If-Modified-Since": lm}, 304),
                ("/val-c3", "GET", {"If-None-Match": '"other"'}, 200),
                ("/val-c4", "HEAD", {"If-None-Match": '"/val-c4-v1"'}, 304),
                ("/val-c5", "HEAD", {"If-None-Match": '"other"'}, 200)):
            s, h, b = self.get(path, method=method, headers=cond)
            body = (status == 200 and method == "GET")
            assert s == status and (b != b"") == body, (path, s, h, b)
            assert h["x-cache"] == "MISS" and "etag" in h, (path, h)
            req = self.o.requests(path)[0]
            assert fields(req, "If-None-Match") == fields(req, "If-Modified-Since") == [], req
            for _ in range(2):
                s, h, b = self.get(path)
                assert s == 200 and h["x-cache"] == "HIT", (path, s, h)
                assert b == ("%s v1\n" % path).encode(), (path, b)
            assert self.o.count(path) == 1, (path, self.o.count(path))

    def test_conditionals_at_miss_through_fastcgi(self):
        # PHP sends no Content-Length: the page is held while it is stored
        s, h, b = self.get("/php/val-miss", headers={"If-None-Match": '"v1"'})
        assert s == 304 and b == b"" and h["x-cache"] == "MISS", (s, h, b)
        s, h, b = self.get("/php/val-miss2", headers={"If-None-Match": '"v0"'})
        assert s == 200 and b == b"page /php/val-miss2 for GET\n", (s, h, b)
        for uri in ("/php/val-miss", "/php/val-miss2"):
            s, h, b = self.get(uri)
            assert s == 200 and h["x-cache"] == "HIT" and b.startswith(b"page "), (uri, h, b)
            assert self.fpm.requests(uri) == ["GET"], (uri, self.fpm.requests(uri))

    def test_304_without_date_renews_for_a_whole_max_age(self):
        # PHP's 304 has no Date: the renewed page is fresh for max-age=2 from the 304
        uri = "/php/val-renew"
        self.get(uri)
        time.sleep(2.2)
        s, h, _ = self.get(uri)
        assert h["x-cache"] == "UPDATING", h
        deadline = time.time() + 3
        while len(self.fpm.requests(uri)) < 2 and time.time() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        t0 = time.time()
        while time.time() - t0 < 1.6:
            s, h, b = self.get(uri)
            assert s == 200 and h["x-cache"] == "HIT" and int(h["age"]) <= 1, (h, b)
            time.sleep(0.1)
        assert self.fpm.requests(uri) == ["GET", "GET"], self.fpm.requests(uri)

    def test_conditional_at_miss_of_a_page_too_heavy_to_store(self):
        # the zone "tiny" (128k) cannot hold 200 KiB: the held page goes out as the origin sent it
        for _ in range(2):
            s, h, b = self.get("/small/mid", headers={"If-None-Match": '"zzz"'})
            assert s == 200 and b == b"m" * (200 * 1024), (s, h, len(b))
            assert h["x-cache"] == "MISS" and h["content-length"] == str(200 * 1024), h
        assert self.o.count("/small/mid") == 2
        assert "heavier than the zone's largest object" in self.ngx.log()

    def test_campaign_parameters_share_a_key(self):
        self.get("/camp?utm_source=a&p=1")
        s, h, _ = self.get("/camp?p=1&utm_medium=b")
        assert h["x-cache"] == "HIT", h
        assert self.o.count("/camp") == 1

    def test_default_zone_is_one_cache_for_every_worker(self):
        log = self.ngx.log()
        assert 'shared region "%s" created' % self.ngx.region in log, log[-2000:]
        assert "other.shm" in log, log[-2000:]  # the old "shared" keyword still accepted
        st = json.loads(self.get("/status")[2])
        assert st["backend"] == "shared" and st["region_path"] == self.ngx.region, st


class Shared:
    """Four workers on one shared zone."""

    def __init__(self, ngx, origin):
        self.ngx, self.o, self.p = ngx, origin, ngx.port

    def get(self, path, **kw):
        return request(self.p, path, **kw)

    def status(self):
        s, _, b = self.get("/status")
        assert s == 200, s
        return json.loads(b)

    def test_shared_cold_burst_one_origin_request(self):
        res = burst(self.p, "/slow-shared", 50)
        assert all(r and r[0] == 200 for r in res), [r[:1] for r in res if r]
        assert len({r[2] for r in res}) == 1
        pids = {r[1]["x-pid"] for r in res}
        assert len(pids) > 1, pids  # the burst reached several workers ...
        assert self.o.count("/slow-shared") == 1, self.o.count("/slow-shared")  # ... one fetch
        assert max(r[3] for r in res) < 2.0, max(r[3] for r in res)

    def test_shared_hits_in_every_worker(self):
        self.get("/sh-hit")
        res = [self.get("/sh-hit") for _ in range(24)]
        assert all(h["x-cache"] == "HIT" for _, h, _ in res), [h["x-cache"] for _, h, _ in res]
        assert len({h["x-pid"] for _, h, _ in res}) > 1
        assert self.o.count("/sh-hit") == 1
        for _, h, _ in res:  # the answer memo, keyed by peakcache_entry_id
            assert h["cache-status"] == "peakcache; hit; ttl=%d" % (60 - int(h["age"])), h

    def test_shared_purge_seen_by_every_worker(self):
        for _ in range(12):
            self.get("/sh-purge")
        assert self.o.count("/sh-purge") == 1
        s, _, b = self.get("/purge?url=/sh-purge", method="PURGE")
        assert s == 200 and json.loads(b)["found"] is True, b
        res = [self.get("/sh-purge") for _ in range(16)]
        assert [h["x-cache"] for _, h, _ in res] == ["MISS"] + ["HIT"] * 15, \
            [(h["x-cache"], h["x-pid"]) for _, h, _ in res]
        assert len({h["x-pid"] for _, h, _ in res}) > 1
        assert self.o.count("/sh-purge") == 2, self.o.count("/sh-purge")

    def test_shared_memoized_entry_never_outlives_its_value(self):
        # every worker answers a hit from its memo and hands the memo's entry to the region
        # again (peakcache_lookup_known) instead of copying it out: a soft purge, its refresh
        # and a hard purge are each seen by every worker at once
        def round_():
            return [self.get("/sh-memo") for _ in range(16)]

        round_()
        assert self.o.count("/sh-memo") == 1
        s, _, b = self.get("/purge?url=/sh-memo&soft=1", method="POST")
        assert s == 200, b
        res = round_()
        assert all(h["x-cache"] in ("UPDATING", "HIT") for _, h, _ in res), res
        assert res[0][1]["x-cache"] == "UPDATING", res[0][1]
        assert self.o.wait_count("/sh-memo", 2) == 2
        time.sleep(0.2)
        res = round_()
        assert len({h["x-pid"] for _, h, _ in res}) > 1
        assert all(h["x-cache"] == "HIT" and b"n2" in b for _, h, b in res), \
            [(h["x-cache"], h["x-pid"], b) for _, h, b in res]
        s, _, b = self.get("/purge?url=/sh-memo", method="PURGE")
        assert s == 200 and json.loads(b)["found"] is True, b
        res = round_()
        assert [h["x-cache"] for _, h, _ in res] == ["MISS"] + ["HIT"] * 15, res
        assert all(b"n3" in b for _, _, b in res), [b for _, _, b in res]
        assert self.o.count("/sh-memo") == 3

    def test_shared_memos_of_targets_sharing_key_slots_stay_their_own(self):
        # a worker keeps the keys of the targets it saw in a two-way table, each linked to
        # the memo of its answer (in another two-way table): three targets whose keys share
        # one pair of slots, and three whose memos do, push each other out in turn while
        # their pages are purged and fetched again: every answer is the target's own page of
        # this round, never another's or a purged one
        host = "slots.test"
        paths = (targets_in_one_slot_pair(host, 3, key_slot_pair, "/sh-kslot-")
                 + targets_in_one_slot_pair(host, 3, memo_slot_pair, "/sh-mslot-"))
        for rnd in range(1, 9):
            for _ in range(3):
                for p in paths:
                    s, h, b = self.get(p, headers={"Host": host})
                    assert s == 200, (p, s, b)
                    assert b == ("%s v1 n%d\n" % (p, rnd)).encode(), (rnd, p, h, b)
            for p in paths:
                s, _, b = self.get("/purge?url=" + p, method="PURGE", headers={"Host": host})
                assert s == 200 and json.loads(b)["found"] is True, (p, b)
        assert [self.o.count(p) for p in paths] == [8] * 6

    def test_shared_stats_add_up(self):
        before = [self.status() for _ in range(4)]
        assert before[0]["backend"] == "shared" and before[0]["shards"] >= 1, before[0]
        assert "sz.shm" in before[0]["region_path"], before[0]
        res = [self.get("/sh-stats") for _ in range(40)]
        pids = {h["x-pid"] for _, h, _ in res}
        after = self.status()
        d = {k: after[k] - before[-1][k] for k in ("lookups", "miss", "fresh", "fills_committed")}
        assert len(pids) > 1, pids
        assert d == {"lookups": 40, "miss": 1, "fresh": 39, "fills_committed": 1}, (d, pids)
        assert after["entries"] >= 1

    def test_shared_killed_filler_taken_over(self):
        first = {}

        def filler():
            try:
                first["r"] = request(self.p, "/killslow", timeout=10)
            except Exception as e:  # its worker is killed under it
                first["r"] = e

        t = threading.Thread(target=filler)
        t.start()
        deadline = time.time() + 3
        while not self.o.workers.get("/killslow") and time.time() < deadline:
            time.sleep(0.01)
        victim = int(self.o.workers["/killslow"][0])
        res = [None] * 24
        start = threading.Barrier(len(res) + 1)

        def waiter(i):
            start.wait()
            try:
                res[i] = request(self.p, "/killslow", timeout=10)
            except Exception as e:
                res[i] = e

        threads = [threading.Thread(target=waiter, args=(i,)) for i in range(len(res))]
        for th in threads:
            th.start()
        start.wait()
        time.sleep(0.3)  # the waiters are parked on the fill
        os.kill(victim, signal.SIGKILL)
        t0 = time.time()
        for th in threads:
            th.join(15)
        t.join(15)
        ok = [r for r in res if isinstance(r, tuple)]
        lost = [r for r in res if not isinstance(r, tuple)]  # connections of the killed worker
        assert ok and all(r[0] == 200 for r in ok), [r[:2] for r in ok if r[0] != 200]
        assert all(b"/killslow v1 n2" in r[2] for r in ok), [r[2] for r in ok]
        # Connections are spread over 4 workers (reuseport): about a quarter are the killed
        # worker's; each of those ends with the connection, never a timeout.
        assert all(isinstance(e, ConnectionError) for e in lost), lost
        assert len(lost) <= len(res) * 3 // 4, lost
        assert time.time() - t0 < 2.0, time.time() - t0  # taken over, not the lock timeout
        assert self.o.count("/killslow") == 2, self.o.count("/killslow")
        # the clients of the killed worker retry: a hit, in a respawned or another worker
        for _ in lost + [first.get("r")]:
            s, h, b = self.get("/killslow")
            assert s == 200 and h["x-cache"] == "HIT", (s, h)
        assert self.o.count("/killslow") == 2
        log = self.ngx.log()
        assert "exited on signal 9" in log, log[-2000:]
        assert self.status()["takeovers"] >= 1

    def test_shared_memoized_hits_say_the_http_layers_age(self):
        # a plain hit is answered from its worker's memo, whose Age and Cache-Status are
        # renewed at the instant the Age changes; a hit with a condition the cache answers
        # (If-None-Match that does not match) is answered by the HTTP layer itself. Over
        # seconds, in every worker, both say the same: only a pair straddling the instant the
        # Age changes may differ, and then the later request says one more
        self.get("/sh-agememo")
        pairs = []
        t0 = time.time()
        while time.time() - t0 < 3.5:
            _, h1, _ = self.get("/sh-agememo")
            _, h2, _ = self.get("/sh-agememo", headers={"If-None-Match": '"other"'})
            pairs.append((h1, h2))
            time.sleep(0.01)
        off = 0
        for h1, h2 in pairs:
            assert h1["x-cache"] == h2["x-cache"] == "HIT", (h1, h2)
            a1, a2 = int(h1["age"]), int(h2["age"])
            assert h1["cache-status"] == "peakcache; hit; ttl=%d" % (60 - a1), h1
            assert h2["cache-status"] == "peakcache; hit; ttl=%d" % (60 - a2), h2
            assert a2 - a1 in (0, 1), (a1, a2)
            off += a1 != a2
        ages = [int(h1["age"]) for h1, _ in pairs]
        assert ages[-1] - ages[0] >= 3, ages
        assert len({h1["x-pid"] for h1, _ in pairs}) > 1
        # one straddling pair per second, and a few for the workers' clocks (cached per
        # event loop cycle); a memo a whole tick late or early fails most pairs of that tick
        assert off <= 8, (off, [(h1["age"], h2["age"]) for h1, h2 in pairs])
        assert self.o.count("/sh-agememo") == 1

    def test_shared_memoized_stale_answers_say_the_http_layers_status(self):
        # while the origin is down, a page inside stale-if-error is answered from each worker's
        # memo (its Cache-Status from the HTTP layer, per outcome); a request with a condition
        # the cache answers is answered by the HTTP layer itself: both say the same
        path = "/shm/sie-memo"
        self.get(path)
        time.sleep(1.1)
        self.o.down = True
        try:
            pairs = []
            t0 = time.time()
            while time.time() - t0 < 2.5:
                _, h1, _ = self.get(path)
                _, h2, _ = self.get(path, headers={"If-None-Match": '"other"'})
                pairs.append((h1, h2))
                time.sleep(0.01)
        finally:
            self.o.down = False
        stale = [(h1, h2) for h1, h2 in pairs if h1["x-cache"] == h2["x-cache"] == "STALE"]
        assert len(stale) > len(pairs) // 2, [(h1["x-cache"], h2["x-cache"]) for h1, h2 in pairs]
        off = 0
        for h1, h2 in stale:
            a1, a2 = int(h1["age"]), int(h2["age"])
            # the failed fill's own answer says the origin's status too
            want = [s % (1 - a) for a in (a1, a2) for s in (
                "peakcache; fwd=stale; ttl=%d; detail=stale-if-error",
                "peakcache; fwd=stale; fwd-status=503; ttl=%d; detail=stale-if-error")]
            assert h1["cache-status"] in want[:2], h1
            assert h2["cache-status"] in want[2:], h2
            assert a2 - a1 in (0, 1), (a1, a2)
            off += a1 != a2
        assert off <= 8, (off, [(h1["age"], h2["age"]) for h1, h2 in stale])
        assert len({h1["x-pid"] for h1, _ in stale}) > 1

    def test_shared_waiters_in_every_worker_say_collapsed(self):
        # the waiters of a fill, in its worker and in the others (polled), are answered from
        # the fill's entry, with what the HTTP layer says of a collapsed answer
        res = burst(self.p, "/slow-collapsed", 40)
        assert all(r and r[0] == 200 for r in res), [r[:1] for r in res if r]
        stored = [r[1] for r in res if "stored" in r[1]["cache-status"]]
        assert len(stored) == 1, [r[1]["cache-status"] for r in res]
        waiters = [r[1] for r in res if "stored" not in r[1]["cache-status"]]
        assert len({h["x-pid"] for h in waiters} - {stored[0]["x-pid"]}) > 0, waiters
        for h in waiters:
            assert h["cache-status"] == "peakcache; fwd=miss; ttl=%d; collapsed" % (
                60 - int(h["age"])), h
        assert self.o.count("/slow-collapsed") == 1

    def test_shared_waiters_hear_the_fill_end(self):
        # the worker whose fill ends rings the other workers' bells: their waiters are polled
        # at the commit, not at their poller's next tick. The debug log of the connections
        # from 127.0.0.2 (the configuration's debug_connection) says which polled.
        results, rung = [], []
        for n in range(5):
            path = "/slow-bell-%d" % n
            res = [None] * 24
            start = threading.Barrier(len(res))

            def one(i):
                start.wait()
                c = http.client.HTTPConnection("127.0.0.1", self.p, timeout=10,
                                               source_address=("127.0.0.2", 0))
                try:
                    c.request("GET", path)
                    r = c.getresponse()
                    res[i] = (r.status, r.getheader("X-Pid"), r.getheader("Cache-Status"),
                              r.read())
                finally:
                    c.close()

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(res))]
            for th in threads:
                th.start()
            for th in threads:
                th.join(15)
            assert all(r and r[0] == 200 for r in res), res
            assert len({r[3] for r in res}) == 1 and self.o.count(path) == 1
            filler = [r[1] for r in res if "stored" in r[2]]
            if len({r[1] for r in res} - set(filler)) > 0:
                # waiters in another worker than the fill's
                results.append(path)
                if any("peakcache bell: polling" in l and l.rstrip().endswith(path + '"')
                       for l in self.ngx.log().splitlines()):
                    rung.append(path)
        assert results, "no waiters in another worker than the fill's"
        # a poller's tick may poll between the commit and the bell: not every key
        assert rung, (results, [l for l in self.ngx.log().splitlines() if "bell" in l][-5:])

    def test_shared_waiters_take_over_an_abandoned_fill(self):
        # the visitor whose request fills leaves: the fill is given up, one waiter (in
        # whichever worker) fills again, and every other one, in its worker or polling from
        # another, gets that answer
        path = "/slow-abandoned"
        s = socket.create_connection(("127.0.0.1", self.p))
        s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n" % path).encode())
        assert self.o.wait_count(path, 1)
        res = [None] * 24
        start = threading.Barrier(len(res) + 1)

        def waiter(i):
            start.wait()
            res[i] = request(self.p, path, timeout=10)

        threads = [threading.Thread(target=waiter, args=(i,)) for i in range(len(res))]
        for th in threads:
            th.start()
        start.wait()
        time.sleep(0.1)  # the waiters are parked on the fill
        s.close()
        t0 = time.time()
        for th in threads:
            th.join(15)
        assert all(r and r[0] == 200 for r in res), [r and r[:2] for r in res]
        assert len({r[2] for r in res}) == 1, {r[2] for r in res}
        assert len({r[1]["x-pid"] for r in res}) > 1
        assert time.time() - t0 < 2.0, time.time() - t0  # not the lock timeout
        assert self.o.count(path) == 2, self.o.count(path)

    def test_shared_reload_keeps_entries(self):
        self.get("/sh-reload")
        s, h, _ = self.get("/sh-reload")
        assert h["x-cache"] == "HIT", h
        old = {self.get("/sh-reload")[1]["x-pid"] for _ in range(16)}
        self.ngx.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while time.time() < deadline:
            s, h, _ = self.get("/sh-reload")
            if h["x-pid"] not in old:
                break
            time.sleep(0.05)
        assert h["x-pid"] not in old, "no new worker answered"
        assert s == 200 and h["x-cache"] == "HIT", h  # a new cycle's worker: entries kept
        assert self.o.count("/sh-reload") == 1, [
            (r["t"], fields(r, "X-Worker"), r["method"]) for r in self.o.requests("/sh-reload")]
        assert "attached" in self.ngx.log()


# A master started as root, its workers another user's: the region is theirs.
OWNER_CONF = """
load_module {module};
{user}
worker_processes 2;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    peakcache_zone {zone} size=4m;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            peakcache {zone};
            add_header X-Cache $peakcache_status always;
            proxy_pass http://127.0.0.1:{origin};
        }}
    }}
}}
"""


def test_region_belongs_to_the_workers_user(origin):
    user = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    host = {"Host": "owner.example"}
    ngx = Nginx(origin, template=OWNER_CONF, user=user)
    zone = ngx.zone
    try:
        st = os.stat(ngx.region)
        assert st.st_uid == pwd.getpwnam(user).pw_uid and st.st_mode & 0o077 == 0, \
            (st.st_uid, oct(st.st_mode))
        assert [request(ngx.port, "/own", headers=host)[1]["x-cache"] for _ in range(2)] == \
            ["MISS", "HIT"]
        # a reload attaches to the workers' file, and so does a restart
        old = ngx.proc.pid
        ngx.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 5
        while "attached" not in ngx.log() and time.time() < deadline:
            time.sleep(0.05)
        assert request(ngx.port, "/own", headers=host)[1]["x-cache"] == "HIT"
        bad = [l for l in ngx.log().splitlines() if "[emerg]" in l or "[alert]" in l]
        assert not bad and old == ngx.proc.pid, bad
        ngx.stop(keep_region=True)
        ngx = Nginx(origin, template=OWNER_CONF, user=user, zone=zone)
        assert request(ngx.port, "/own", headers=host)[1]["x-cache"] == "HIT", ngx.log()[-2000:]
        assert origin.count("/own") == 1
    finally:
        ngx.stop()


def run_shared(origin, k):
    names = [n for n in dir(Shared) if n.startswith("test_") and k in n]
    if not names:
        return 0, 0
    passed = failed = 0
    ngx = Nginx(origin, workers=4, template=SHARED_CONF)
    try:
        t = Shared(ngx, origin)
        # reload last: it changes the workers
        for name in sorted(names, key=lambda n: "reload" in n):
            start = time.time()
            try:
                getattr(t, name)()
                passed += 1
                print("ok   %-45s %.2fs" % (name, time.time() - start))
            except Exception as e:
                failed += 1
                print("FAIL %-45s %r" % (name, e))
        log = ngx.log()
        # the worker the kill test killed is the one expected "[alert] ... signal 9"
        bad = [l for l in log.splitlines() if ("[alert]" in l or "[emerg]" in l or
               ("signal" in l and "exited" in l)) and "exited on signal 9" not in l]
        if bad:
            failed += 1
            print("FAIL shared: worker crashed or alert:\n" + "\n".join(bad))
    finally:
        ngx.stop(keep=failed > 0)
        if failed:
            print("shared nginx prefix kept: " + ngx.prefix)
    return passed, failed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-k", default="")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(MODULE):
        print("module not built: %s (make nginx-module)" % MODULE)
        return 2

    t0 = time.time()
    origin = Origin()
    fpm = Fpm()
    ngx = Nginx(origin, fpm=fpm)
    failed = 0
    passed = 0
    try:
        t = T(ngx, origin, fpm)
        names = [n for n in dir(T) if n.startswith("test_") and args.k in n]
        for name in names:
            start = time.time()
            try:
                getattr(t, name)()
                passed += 1
                print("ok   %-45s %.2fs" % (name, time.time() - start))
            except Exception as e:  # report every failure, keep going
                failed += 1
                print("FAIL %-45s %r" % (name, e))
        if args.k in "test_region_belongs_to_the_workers_user":
            start = time.time()
            try:
                test_region_belongs_to_the_workers_user(origin)
                passed += 1
                print("ok   %-45s %.2fs" % ("test_region_belongs_to_the_workers_user",
                                           time.time() - start))
            except Exception as e:
                failed += 1
                print("FAIL %-45s %r" % ("test_region_belongs_to_the_workers_user", e))
        p, f = run_shared(origin, args.k)
        passed += p
        failed += f
        log = ngx.log()
        crashes = [l for l in log.splitlines() if "exited on signal" in l
                   or "[alert]" in l or "[crit]" in l or "[emerg]" in l]
        if crashes:
            failed += 1
            print("FAIL worker crashed or alert:\n" + "\n".join(crashes))
    finally:
        ngx.stop(keep=args.keep or failed > 0)
        fpm.stop()
        origin.stop()
    if failed:
        print("nginx prefix kept: " + ngx.prefix)
    print("%d passed, %d failed in %.1fs" % (passed, failed, time.time() - t0))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
