"""The three hosts, configured as the READMEs tell users, each with its recording origin.

- `proxy`: target/release/peakcache-proxy in front of origin.py;
- `nginx-proxy`: Debian's nginx with the module, a shared zone, `proxy_pass` to origin.py, the
  operator removing cookies (`proxy_set_header Cookie ""`);
- `nginx-fastcgi`: the README's WordPress configuration, `fastcgi_pass` to a PHP-FPM pool
  running origin.php.

Everything listens on free loopback ports, lives in a temporary directory and is stopped by
`stop()`; nothing of the system's nginx or PHP-FPM is touched.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

import naive
from harness import DEFAULT_HOST, OriginControl, Response, send_request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
NGINX = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
PHP_FPM = os.environ.get("PHP_FPM", "php-fpm8.2")
PROXY = os.environ.get("PEAKCACHE_PROXY", os.path.join(ROOT, "target/release/peakcache-proxy"))
MODULE = os.environ.get("PEAKCACHE_MODULE",
                        os.path.join(ROOT, "target/nginx/ngx_http_peakcache_module.so"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, what, log, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s: %s" % (what, proc.returncode, tail(log)))
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("%s did not listen on %d: %s" % (what, port, tail(log)))


def tail(path, size=2000):
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def stop_process(proc, sig=signal.SIGTERM):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_certificate(directory):
    """A self-signed certificate for the nginx hosts' TLS listener (https purge URLs), or None
    without openssl (the https case then says so)."""
    if shutil.which("openssl") is None:
        return None
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=" + DEFAULT_HOST],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return cert, key


class PythonOrigin:
    """origin.py in its own process (so the suite's client threads do not slow it down)."""

    def __init__(self, state_dir):
        self.control = OriginControl(state_dir)
        self.log = os.path.join(state_dir, "origin.err")
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "origin.py"),
                                      "--dir", state_dir], stdout=subprocess.PIPE,
                                     stderr=open(self.log, "wb"), text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError("origin.py did not start: " + tail(self.log))
        self.port = int(line.split()[1])

    def stop(self):
        stop_process(self.proc)


class Host:
    """A host under test: `port` for visitors, `origin` for specs and records."""

    name = None
    tls_port = None

    def __init__(self, workdir):
        self.dir = os.path.join(workdir, self.name)
        os.makedirs(self.dir)
        self.port = free_port()
        self.origin = None

    def purge(self, method, query, source=None):
        """One request to the host's purge endpoint with this query string."""
        raise NotImplementedError

    def purge_url_query(self, path, host=DEFAULT_HOST, scheme="http"):
        """The `url=` parameter naming `path` on `host`, percent-encoded as a user would."""
        raise NotImplementedError

    def counters(self):
        """The host's status counters by name (JSON keys, or Prometheus series)."""
        raise NotImplementedError


class ProxyHost(Host):
    """peakcache-proxy as its README starts it."""

    name = "proxy"

    def start(self):
        self.py = PythonOrigin(os.path.join(self.dir, "origin"))
        self.origin = self.py.control
        self.admin = free_port()
        self.log = os.path.join(self.dir, "proxy.log")
        self.proc = subprocess.Popen(
            [PROXY, "--listen", "127.0.0.1:%d" % self.port, "--origin",
             "http://127.0.0.1:%d" % self.py.port, "--admin", "127.0.0.1:%d" % self.admin],
            stdout=open(self.log, "wb"), stderr=subprocess.STDOUT)
        wait_listening(self.port, self.proc, "peakcache-proxy", self.log)
        wait_listening(self.admin, self.proc, "peakcache-proxy admin", self.log)

    def stop(self):
        stop_process(getattr(self, "proc", None))
        if getattr(self, "py", None):
            self.py.stop()

    def purge(self, method, query, source=None):
        return send_request(self.admin, method, "/purge?" + query, source=source,
                            host="127.0.0.1:%d" % self.admin)

    def purge_url_query(self, path, host=DEFAULT_HOST, scheme="http"):
        return "url=" + urllib.parse.quote("%s://%s%s" % (scheme, host, path), safe="")

    def counters(self):
        r = send_request(self.admin, "GET", "/metrics", host="127.0.0.1:%d" % self.admin)
        out = {}
        for line in r.body.decode("utf-8", "replace").splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                try:
                    out[name] = float(value)
                except ValueError:
                    pass
        return out

    def freeze(self, frozen):
        """Freezes (or thaws) the cache through the admin API; the answer."""
        return send_request(self.admin, "POST", "/freeze" if frozen else "/thaw",
                            host="127.0.0.1:%d" % self.admin)


NGINX_CONF = """
load_module {module};
{user}
worker_processes 2;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log notice;
events {{ worker_connections 4096; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;

    # As README.md configures a site; the region file lives in this run's prefix, since the
    # default (/dev/shm/peakcache-site) would be shared with any other nginx on the machine.
    peakcache_zone site size=64m shared path={prefix}/site.shm;
{http_extra}
    server {{
        listen 127.0.0.1:{port};
{tls}{locations}
        location = /_purge {{
            allow 127.0.0.1;
            deny all;
            peakcache_purge site;
        }}
        location = /_peakcache {{
            allow 127.0.0.1;
            deny all;
            peakcache_status_page site;
        }}
        # What an X-Accel-Redirect or an error_page leads to: unique per request, so a copy
        # served twice can only come from a cache.
        location /_hostile_internal/ {{
            internal;
            return 200 "internal page $uri $request_id\\n";
        }}
    }}
}}
"""

# A TLS listener beside the README's plain one, so https pages (and their purge) exist.
TLS_LISTEN = """        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
"""

PROXY_LOCATION = """
            peakcache site;
            add_header X-Cache $peakcache_status always;
            proxy_set_header Host $host;
            proxy_set_header Cookie "";
            proxy_pass http://127.0.0.1:{origin};
"""

PROXY_LOCATIONS = """
        location / {{{body}
        }}
        # The same site, with a maintenance page for an unreachable origin.
        location /error-page/ {{{body}
            error_page 502 504 =200 /_hostile_internal/maintenance;
        }}
"""

FASTCGI_HTTP = """
    map $http_cookie $logged_in {
        default              "";
        ~wordpress_logged_in "1";
    }
"""

FASTCGI_LOCATION = """
            peakcache site;
            peakcache_bypass $logged_in $arg_preview;
            peakcache_no_store $logged_in;
            peakcache_default_ttl 60s;
            peakcache_default_swr 30s;
            peakcache_default_sie 1d;
            peakcache_lock_timeout 5s;
            add_header X-Cache $peakcache_status always;

            include fastcgi_params;
            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;
            fastcgi_pass unix:{socket};
"""

FASTCGI_LOCATIONS = """
        root {www};
        # The same site, with a maintenance page for an unreachable origin.
        location ~ ^/error-page/.+\\.php$ {{{body}
            error_page 502 504 =200 /_hostile_internal/maintenance;
        }}
        location ~ \\.php$ {{{body}
        }}
"""

FPM_CONF = """
[global]
pid = {dir}/fpm.pid
error_log = {dir}/fpm.log
daemonize = no
[hostile]
{user}
listen = {socket}
listen.backlog = 1024
pm = static
pm.max_children = 16
request_terminate_timeout = 30s
clear_env = yes
env[HOSTILE_DIR] = {state}
catch_workers_output = yes
"""


class NginxHost(Host):
    """nginx with the module, from a generated configuration in a temporary prefix."""

    def __init__(self, workdir):
        super().__init__(workdir)
        self.tls_port = free_port()
        self.prefix = os.path.join(self.dir, "nginx")
        os.makedirs(self.prefix)

    def write_conf(self, http_extra, locations):
        pair = make_certificate(self.dir)
        tls = ""
        if pair is None:
            self.tls_port = None
        else:
            tls = TLS_LISTEN.format(tls_port=self.tls_port, cert=pair[0], key=pair[1])
        conf = NGINX_CONF.format(
            module=MODULE, user="user root root;" if os.geteuid() == 0 else "",
            prefix=self.prefix, port=self.port, tls=tls, http_extra=http_extra,
            locations=locations)
        self.conf = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)

    def start_nginx(self):
        self.error_log = os.path.join(self.prefix, "error.log")
        env = {k: v for k, v in os.environ.items() if k != "NGINX"}
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix, "-c", self.conf, "-e",
                                      self.error_log], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.prefix, "stderr"), "wb"),
                                     env=env)
        wait_listening(self.port, self.proc, "nginx", self.error_log)

    def stop_nginx(self):
        stop_process(getattr(self, "proc", None), signal.SIGQUIT)

    def purge(self, method, query, source=None):
        return send_request(self.port, method, "/_purge?" + query, source=source)

    def purge_url_query(self, path, host=DEFAULT_HOST, scheme="http"):
        if scheme == "http" and host == DEFAULT_HOST:
            return "url=" + urllib.parse.quote(path, safe="/")
        return "url=" + urllib.parse.quote("%s://%s%s" % (scheme, host, path), safe=":/")

    def counters(self):
        r = send_request(self.port, "GET", "/_peakcache")
        try:
            return json.loads(r.body)
        except ValueError:
            return {}


class NginxProxyHost(NginxHost):
    """nginx + module in front of `proxy_pass`, as bindings/nginx/README.md configures it."""

    name = "nginx-proxy"

    def start(self):
        self.py = PythonOrigin(os.path.join(self.dir, "origin"))
        self.origin = self.py.control
        body = PROXY_LOCATION.format(origin=self.py.port)
        self.write_conf("", PROXY_LOCATIONS.format(body=body))
        self.start_nginx()

    def stop(self):
        self.stop_nginx()
        if getattr(self, "py", None):
            self.py.stop()


class NginxFastcgiHost(NginxHost):
    """nginx + module in front of PHP-FPM, as README.md's WordPress example configures it."""

    name = "nginx-fastcgi"

    def start(self):
        state = os.path.join(self.dir, "origin")
        www = os.path.join(self.dir, "www")
        os.makedirs(www)
        os.makedirs(state)
        script = os.path.join(state, "origin.php")
        shutil.copy(os.path.join(HERE, "origin.php"), script)
        self.origin = OriginControl(state, docroot=www, script=script)
        self.socket = os.path.join(self.dir, "fpm.sock")
        self.start_fpm(state)
        shutil.copy("/etc/nginx/fastcgi_params", os.path.join(self.prefix, "fastcgi_params"))
        body = FASTCGI_LOCATION.format(socket=self.socket)
        self.write_conf(FASTCGI_HTTP, FASTCGI_LOCATIONS.format(www=www, body=body))
        self.start_nginx()

    def start_fpm(self, state):
        root = os.geteuid() == 0
        conf = os.path.join(self.dir, "fpm.conf")
        with open(conf, "w") as f:
            f.write(FPM_CONF.format(dir=self.dir, socket=self.socket, state=state,
                                    user="user = root\ngroup = root" if root else ""))
        self.fpm_log = os.path.join(self.dir, "fpm.out")
        cmd = [PHP_FPM, "-n", "-F", "-y", conf, "-d", "extension=posix"]
        if root:
            cmd.insert(2, "-R")
        self.fpm = subprocess.Popen(cmd, stdout=open(self.fpm_log, "wb"),
                                    stderr=subprocess.STDOUT)
        deadline = time.time() + 15
        while not os.path.exists(self.socket):
            if self.fpm.poll() is not None or time.time() > deadline:
                raise RuntimeError("php-fpm did not start: " + tail(self.fpm_log)
                                   + tail(os.path.join(self.dir, "fpm.log")))
            time.sleep(0.05)

    def stop(self):
        self.stop_nginx()
        stop_process(getattr(self, "fpm", None), signal.SIGQUIT)


class NaiveHost(Host):
    """One of naive.py's deliberately wrong caches, in front of origin.py (for --self-check)."""

    mode = None

    def start(self):
        self.py = PythonOrigin(os.path.join(self.dir, "origin"))
        self.origin = self.py.control
        self.server = naive.serve(self.mode, self.py.port)
        self.port = self.server.server_address[1]

    def stop(self):
        if getattr(self, "server", None):
            self.server.shutdown()
            self.server.server_close()
        if getattr(self, "py", None):
            self.py.stop()

    def purge(self, method, query, source=None):
        return send_request(self.port, method, "/_purge?" + query, source=source)

    def purge_url_query(self, path, host=DEFAULT_HOST, scheme="http"):
        return "url=" + urllib.parse.quote(path, safe="/")

    def counters(self):
        return {}

    def freeze(self, frozen):
        r = Response()
        r.status = 200
        return r


class NaiveStoreHost(NaiveHost):
    name = "naive-store"
    mode = "store"


class NaivePassHost(NaiveHost):
    name = "naive-pass"
    mode = "pass"


HOSTS = {cls.name: cls for cls in (ProxyHost, NginxProxyHost, NginxFastcgiHost)}
SELF_CHECK_HOSTS = {cls.name: cls for cls in (NaiveStoreHost, NaivePassHost)}
