"""What every case uses: a raw HTTP client, the origin's records, a case's context and checks.

The client writes requests byte for byte (duplicate headers, absolute-form targets, bodies on a
GET, a missing Host) and reads answers without trusting them: bytes after a HEAD answer are
noticed, not swallowed.
"""

import base64
import hashlib
import json
import math
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse

DEFAULT_HOST = "hostile.test"
# The lifetimes the cases give their pages: short, so stale states come within a few seconds.
MAX_AGE = 2
SWR = 30
SIE = 60
# How much earlier than max-age two fills of one key may come and still count as one per expiry:
# the origin records a request when it arrives, the cache starts counting when the answer does.
EXPIRY_SLACK = 0.25
# The body of an ordinary page; {n} says which origin answer a visitor got.
PAGE = "page {path} n={n} " + "x" * 64 + "\n"


class Fail(Exception):
    """A case's expectation did not hold; the message is the one-line reason."""


def expect(condition, message):
    """Fails the case with `message` unless `condition` holds."""
    if not condition:
        raise Fail(message)


def cache_control(max_age=MAX_AGE, swr=SWR, sie=SIE):
    """A Cache-Control value with the suite's short lifetimes."""
    parts = ["max-age=%d" % max_age]
    if swr:
        parts.append("stale-while-revalidate=%d" % swr)
    if sie:
        parts.append("stale-if-error=%d" % sie)
    return ", ".join(parts)


def clip(data, size=60):
    text = data.decode("latin-1") if isinstance(data, bytes) else str(data)
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    return text if len(text) <= size else text[:size] + "..."


# ---------------------------------------------------------------------------------------------
# The client


class Response:
    """One answer as the visitor got it."""

    def __init__(self):
        self.status = 0
        self.headers = []
        self.body = b""
        self.extra = b""  # bytes that came after the answer's end (a body after HEAD, ...)
        self.error = None  # why no answer came (connection closed, timeout)

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def served_n(self):
        """Which origin answer (its {n}) this body is, or None."""
        m = re.search(rb"\bn=(\d+)\b", self.body)
        return int(m.group(1)) if m else None

    def brief(self):
        if self.error:
            return "no answer (%s)" % self.error
        tags = []
        for name in ("X-Cache", "Cache-Status", "Age"):
            value = self.header(name)
            if value is not None:
                tags.append("%s %s" % (name, value))
        n = self.served_n()
        what = "answer #%d" % n if n is not None else repr(clip(self.body, 48))
        return "%d %s%s" % (self.status, what, " (" + ", ".join(tags) + ")" if tags else "")


class Reader:
    """Buffered reads from a socket that raise EOFError at the end."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def line(self):
        while b"\n" not in self.buf:
            self.fill()
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r")

    def exactly(self, size):
        while len(self.buf) < size:
            self.fill()
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def until_close(self):
        try:
            while True:
                self.fill()
        except EOFError:
            pass
        out, self.buf = self.buf, b""
        return out

    def pending(self, wait):
        """Whatever arrives within `wait` seconds (for bytes that should not come)."""
        self.sock.settimeout(wait)
        try:
            self.fill()
        except (EOFError, OSError):
            pass
        out, self.buf = self.buf, b""
        return out


def build_request(method, target, headers=(), body=b"", host=DEFAULT_HOST):
    """The request's bytes. `host` None sends no Host; a Content-Length is added for a body
    unless the headers carry one (or Transfer-Encoding)."""
    headers = list(headers.items()) if isinstance(headers, dict) else list(headers)
    names = {k.lower() for k, _ in headers}
    lines = ["%s %s HTTP/1.1" % (method, target)]
    if host is not None and "host" not in names:
        lines.append("Host: " + host)
    lines += ["%s: %s" % (k, v) for k, v in headers]
    if body and not names & {"content-length", "transfer-encoding"}:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), body


class Conn:
    """One client connection to a host (plain or TLS), for one or several requests."""

    def __init__(self, port, tls=False, source=None, timeout=10, server_name=DEFAULT_HOST):
        sock = socket.create_connection(("127.0.0.1", port), timeout,
                                        source_address=(source, 0) if source else None)
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = context.wrap_socket(sock, server_hostname=server_name)
        sock.settimeout(timeout)
        self.sock = sock
        self.timeout = timeout
        self.reader = Reader(sock)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def exchange(self, method, target, headers=(), body=b"", host=DEFAULT_HOST,
                 expect_continue=False, extra_wait=None):
        """Sends one request and reads its answer. With `expect_continue` the body waits for
        a 100 (or 1 s), as a client that sent `Expect: 100-continue` does."""
        head, body = build_request(method, target, headers, body, host)
        r = Response()
        try:
            if expect_continue:
                self.send(head)
                self.sock.settimeout(1.0)
                try:
                    self.reader.fill()
                except socket.timeout:
                    pass
                self.sock.settimeout(self.timeout)
                if self.reader.buf.startswith(b"HTTP/1.1 100") or not self.reader.buf:
                    self.send(body)
            else:
                self.send(head + body)
            self.read_answer(r, method)
            if extra_wait is not None:
                r.extra = self.reader.pending(extra_wait)
                self.sock.settimeout(self.timeout)
        except (OSError, EOFError, ValueError) as e:
            r.error = str(e) or type(e).__name__
        return r

    def read_answer(self, r, method):
        while True:
            status_line = self.reader.line().decode("latin-1")
            parts = status_line.split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError("not an HTTP answer: %r" % clip(status_line))
            r.status = int(parts[1])
            r.headers = []
            while True:
                h = self.reader.line().decode("latin-1")
                if not h:
                    break
                k, _, v = h.partition(":")
                r.headers.append((k.strip(), v.strip()))
            if 100 <= r.status < 200 and r.status != 101:
                continue  # an interim answer (100 Continue): the final one follows
            break
        if method == "HEAD" or r.status in (204, 304):
            return
        te = (r.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                size = int(self.reader.line().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.reader.line():
                        pass
                    break
                body += self.reader.exactly(size)
                self.reader.line()
            r.body = body
        elif r.header("Content-Length") is not None:
            r.body = self.reader.exactly(int(r.header("Content-Length")))
        else:
            r.body = self.reader.until_close()


def send_request(port, method, target, headers=(), body=b"", host=DEFAULT_HOST, tls=False,
                 source=None, timeout=10, expect_continue=False, extra_wait=None):
    """One request on its own connection; the answer (with `error` set if none came)."""
    try:
        conn = Conn(port, tls=tls, source=source, timeout=timeout)
    except OSError as e:
        r = Response()
        r.error = "connect: %s" % e
        return r
    try:
        return conn.exchange(method, target, headers, body, host, expect_continue, extra_wait)
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# The origin's records


def norm_name(name):
    """Header names as both origins report them: FastCGI params become X-Forwarded-Host."""
    return name.replace("_", "-").lower()


class Record:
    """One request as the origin received it (see origin.py / origin.php)."""

    def __init__(self, d):
        self.t = d["t"]
        self.n = d["n"]
        self.method = d["method"]
        self.target = d["target"]
        self.path = d["path"]
        self.query = d.get("query", "")
        self.headers = [(k, v) for k, v in d["headers"]]
        self.declared_length = d.get("declared_length")
        self.chunked = d.get("chunked", False)
        self.body = base64.b64decode(d.get("body_b64", ""))
        self.body_len = d.get("body_len", 0)
        self.complete = d.get("complete", True)
        self.body_wait = d.get("body_wait", 0.0)

    def values(self, name):
        name = norm_name(name)
        return [v for k, v in self.headers if norm_name(k) == name]

    def header(self, name):
        values = self.values(name)
        return values[0] if values else None

    def has(self, name):
        return bool(self.values(name))

    BORING = {"host", "connection", "accept", "user-agent", "content-type", "x-forwarded-for",
              "x-real-ip"}

    def brief(self):
        shown = ["%s: %s" % (k, clip(v, 40)) for k, v in self.headers
                 if norm_name(k) not in self.BORING]
        target = self.target
        if target.startswith("/") and target.count("/") >= 2:
            target = ".../" + target.split("/", 2)[2]
        return "#%d %s %s%s%s" % (self.n, self.method, clip(target, 50),
                                  " [" + "; ".join(shown) + "]" if shown else "",
                                  " body %dB" % self.body_len if self.body_len else "")


def describe(records, limit=4):
    """`origin got N: #1 GET /x [..], ...` for a failure message."""
    if not records:
        return "origin got nothing"
    shown = ", ".join(r.brief() for r in records[:limit])
    more = " (+%d more)" % (len(records) - limit) if len(records) > limit else ""
    return "origin got %d: %s%s" % (len(records), shown, more)


def is_conditional(record):
    """Whether the origin was asked a conditional GET (it answers 304 when the page matches)."""
    return record.has("If-None-Match") or record.has("If-Modified-Since")


class OriginControl:
    """The harness's side of an origin: writes specs, reads the request log."""

    def __init__(self, state_dir, docroot=None, script=None):
        self.state_dir = state_dir
        self.docroot = docroot  # fastcgi: every defined path is a symlink to the script here
        self.script = script
        self.lock = threading.Lock()
        self.offset = 0
        self.partial = b""
        self.by_path = {}
        for sub in ("specs", "counts"):
            os.makedirs(os.path.join(state_dir, sub), exist_ok=True)
        self.log_path = os.path.join(state_dir, "log.jsonl")
        open(self.log_path, "a").close()

    def define(self, path, spec):
        """Makes the origin answer `path` (raw, without query) as `spec` says, from now on."""
        name = hashlib.md5(path.encode("latin-1")).hexdigest() + ".json"
        final = os.path.join(self.state_dir, "specs", name)
        tmp = final + ".%d.tmp" % threading.get_ident()
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        os.replace(tmp, final)
        if self.docroot:
            link = os.path.join(self.docroot, path.lstrip("/"))
            os.makedirs(os.path.dirname(link), exist_ok=True)
            if not os.path.lexists(link):
                os.symlink(self.script, link)

    def records(self, path):
        """Every request the origin received for `path` so far, in arrival order."""
        with self.lock:
            with open(self.log_path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
            self.offset += len(data)
            data = self.partial + data
            lines = data.split(b"\n")
            self.partial = lines.pop()
            for line in lines:
                if line.strip():
                    rec = Record(json.loads(line))
                    self.by_path.setdefault(rec.path, []).append(rec)
            return sorted(self.by_path.get(path, []), key=lambda r: r.n)


# ---------------------------------------------------------------------------------------------
# Cases


class Case:
    """A registered case: its function, the hosts it runs on and why, the issue items it pins."""

    def __init__(self, fn, hosts, solo, why, observations, cls):
        self.fn = fn
        self.name = fn.__name__
        self.slug = self.name[len("test_"):] if self.name.startswith("test_") else self.name
        self.doc = " ".join(fn.__doc__.split())
        self.hosts = hosts
        self.solo = solo
        self.why = why
        self.observations = observations
        self.cls = cls


CASES = []
ALL_HOSTS = ("proxy", "nginx-proxy", "nginx-fastcgi")
NGINX_HOSTS = ("nginx-proxy", "nginx-fastcgi")


def case(cls, hosts=ALL_HOSTS, why=None, obs=(), solo=False):
    """Registers a case. `cls` is its class in issue 10's list, `obs` the numbered
    observations of issue 10 it pins, `why` says why it runs on fewer hosts, `solo` keeps it
    from running beside others (load or timing it must own)."""

    def register(fn):
        assert fn.__name__.startswith("test_"), fn.__name__
        assert fn.__doc__ and fn.__doc__.strip(), "%s needs a docstring" % fn.__name__
        assert hosts == ALL_HOSTS or why, "%s runs on fewer hosts: say why" % fn.__name__
        CASES.append(Case(fn, tuple(hosts), solo, why, tuple(obs), cls))
        return fn

    return register


def normalised_host(value):
    """A Host as a cache must compare it: lower case, no trailing dot, no default port."""
    host = (value or "").strip().lower()
    if host.endswith(":80"):
        host = host[:-3]
    return host.rstrip(".")


class Ctx:
    """One case on one host: its own paths, requests that leave a trace, and the checks."""

    def __init__(self, host, case_):
        self.host = host
        self.case = case_
        self.trace = []
        self.paths = []
        self.failures = []
        self.once = set()
        self.lock = threading.Lock()

    # paths and specs

    def path(self, name="page"):
        """A path only this case uses; it ends in .php so the fastcgi host routes it to PHP."""
        return "/%s/%s.php" % (self.case.slug, name)

    def define(self, path, **spec):
        """The origin answers `path` like this from now on (see README.md, "The origin")."""
        spec.setdefault("body", PAGE)
        self.host.origin.define(path, spec)

    def page(self, path, max_age=MAX_AGE, swr=SWR, sie=SIE, **spec):
        """An ordinary cacheable page at `path`."""
        headers = [("Cache-Control", cache_control(max_age, swr, sie))] + spec.pop("headers", [])
        self.define(path, headers=headers, **spec)

    # requests

    def request(self, method, target, headers=(), body=b"", host=DEFAULT_HOST, tls=False,
                source=None, expect_continue=False, extra_wait=None, port=None, timeout=10):
        """Sends one request to the host on a new connection and returns the answer."""
        if port is None:
            port = self.host.tls_port if tls else self.host.port
        r = send_request(port, method, target, headers, body, host, tls, source, timeout,
                         expect_continue, extra_wait)
        pairs = headers.items() if isinstance(headers, dict) else headers
        shown = "; ".join("%s: %s" % (k, v) for k, v in pairs)
        where = " (Host %s)" % host if host != DEFAULT_HOST else ""
        self.note("%s %s%s [%s] -> %s" % (method, target, where, clip(shown, 160), r.brief()),
                  target)
        return r

    def get(self, path, headers=(), **kw):
        return self.request("GET", path, headers, **kw)

    def head(self, path, headers=(), **kw):
        kw.setdefault("extra_wait", 0.3)
        return self.request("HEAD", path, headers, **kw)

    def plain(self, path, count=20, **kw):
        """`count` plain GETs, one after another, as ordinary visitors send them."""
        return [self.get(path, **kw) for _ in range(count)]

    def note(self, line, target=None):
        with self.lock:
            self.trace.append("%.3f %s" % (time.time(), line))
            if target is not None:
                path = urllib.parse.urlsplit(target).path if "://" in target else \
                    target.split("?")[0]
                if path not in self.paths:
                    self.paths.append(path)

    def origin_seen(self):
        """What the origin received for every path this case used, for -v."""
        return ["%.3f %s" % (rec.t, rec.brief()) for path in self.paths
                for rec in self.origin(path)]

    # the origin

    def origin(self, path):
        return self.host.origin.records(path)

    def settle(self, path, count, timeout=4.0, grace=0.3):
        """Waits until the origin has received `count` requests for `path` (a background
        refresh), then a little longer for the cache to store the answer. Returns the records."""
        deadline = time.time() + timeout
        while time.time() < deadline and len(self.origin(path)) < count:
            time.sleep(0.05)
        time.sleep(grace)
        return self.origin(path)

    def quiet(self, path, idle=0.5, timeout=5.0):
        """Waits until the origin has received nothing new for `path` during `idle` seconds
        (whatever background refresh a request started is over). Returns the records."""
        deadline = time.time() + timeout
        seen, since = len(self.origin(path)), time.time()
        while time.time() < deadline and time.time() - since < idle:
            time.sleep(0.05)
            now = len(self.origin(path))
            if now != seen:
                seen, since = now, time.time()
        return self.origin(path)

    def until_stale(self, path, max_age=MAX_AGE):
        """Sleeps until the last answer the origin gave for `path` is past its max-age."""
        recs = self.origin(path)
        expect(recs, "the page was never fetched: %s" % describe(recs))
        wait = recs[-1].t + max_age + 0.4 - time.time()
        if wait > 0:
            time.sleep(wait)

    def trials(self, fn, count):
        """Runs fn(i) for i in range(count) side by side (independent trials on their own
        paths: with two nginx workers, a fault of one worker shows in some trials only) and
        fails with the first trial that failed."""
        errors = [None] * count

        def one(i):
            try:
                fn(i)
            except Exception as e:  # re-raised below, in the case's own thread
                errors[i] = e

        threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for e in errors:
            if e is not None:
                raise e

    # checks shared by many cases

    def check(self, condition, message, once=None):
        """Like expect(), but the case goes on: every such failure is reported at its end;
        of the failures sharing a `once` key, only the first. Returns whether it held."""
        if not condition and message not in self.failures:
            if once is None or once not in self.once:
                self.failures.append(message)
            if once is not None:
                self.once.add(once)
        return bool(condition)

    def finish(self, error=None):
        """The case's verdict: None when it passed, else the one-line reason (the checks that
        failed along the way first, then the one that stopped it)."""
        reasons = list(self.failures)
        if error is not None and str(error) not in reasons:
            reasons.append(str(error))
        return "; ".join(reasons) or None

    def expect_page(self, r, path, what, n=None):
        """`r` is a whole page of `path` from the origin (answer number `n` if given)."""
        expect(not r.error and r.status == 200 and r.body.startswith(b"page " + path.encode()),
               "%s: got %s, expected the page (200)" % (what, r.brief()))
        if n is not None:
            expect(r.served_n() in (n if isinstance(n, (set, list, tuple)) else {n}),
                   "%s: got answer #%s, expected #%s: %s" % (what, r.served_n(), n, r.brief()))

    def expect_one_per_expiry(self, path, max_age=MAX_AGE, records=None, what="one per expiry"):
        """The origin's requests for `path` (or `records`) come at most once per expiry: any
        two are max-age apart, and there are no more than the time elapsed allows."""
        recs = self.origin(path) if records is None else records
        for a, b in zip(recs, recs[1:]):
            renewed = " (#%d, a conditional refresh, did not renew the entry)" % a.n \
                if is_conditional(a) else ""
            expect(b.t - a.t >= max_age - EXPIRY_SLACK,
                   "%s: origin got #%d and #%d %.2f s apart with max-age=%d%s; %s"
                   % (what, a.n, b.n, b.t - a.t, max_age, renewed, describe(recs)))
        if recs:
            allowed = math.ceil((time.time() - recs[0].t) / max_age) + 1
            expect(len(recs) <= allowed, "%s: origin got %d requests in %.1f s, max-age=%d: %s"
                   % (what, len(recs), time.time() - recs[0].t, max_age, describe(recs)))

    def expect_never_forwarded(self, records, names, what):
        """No record carries any of the header `names`."""
        for rec in records:
            for name in names:
                expect(not rec.has(name), "%s: the origin received %s: %s"
                       % (what, name, rec.brief()))
