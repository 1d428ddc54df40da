#!/usr/bin/env python3
"""The recording origin of the hostile suite, for `proxy_pass` and peakcache-proxy.

Usage: origin.py --dir STATE_DIR [--port 0]. Prints `port N` once it listens. Answers every path
from its spec, STATE_DIR/specs/<md5 of the path>.json (read at each request, so the harness can
change an origin's behaviour mid-case), and appends one JSON line per request it receives to
STATE_DIR/log.jsonl. origin.php implements the same semantics for `fastcgi_pass`; the spec
format is described once, in README.md ("The origin").

A hand-written HTTP/1.1 server rather than http.server: the suite must see every header as it
arrived (order, case, duplicates) and must notice when a host announces a body it never sends.
"""

import argparse
import base64
import email.utils
import hashlib
import json
import os
import re
import socket
import socketserver
import sys
import threading
import time

# How long the origin waits for announced body bytes before recording the request incomplete.
BODY_WAIT = 2.0
# How long a "hang" lasts before the connection is dropped (hosts' timeouts are longer).
HANG = 10.0
MAX_HEADER_BYTES = 64 * 1024
TEMPLATE = re.compile(r"\{(n|path|method|query|h:[A-Za-z0-9-]+)\}")
UNSAFE_BODY = "done {method} {path}\n"


def spec_file(state_dir, path):
    """Where the spec of `path` (the raw path, without the query) lives."""
    name = hashlib.md5(path.encode("latin-1")).hexdigest() + ".json"
    return os.path.join(state_dir, "specs", name)


def split_target(target):
    """(path, query) of an origin-form or absolute-form request target."""
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*", target)
    if m:
        target = target[m.end():] or "/"
    path, _, query = target.partition("?")
    return path, query


class Request:
    """One request as the origin received it."""

    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers  # [(name, value)] in arrival order, duplicates kept
        self.path, self.query = split_target(target)
        self.body = b""
        self.declared_length = None
        self.chunked = False
        self.complete = True
        self.body_wait = 0.0

    def header(self, name):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None

    def values(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]


def expand(template, req, n):
    """A spec template with {n}, {path}, {method}, {query} and {h:Header-Name} filled in."""

    def one(m):
        what = m.group(1)
        if what == "n":
            return str(n)
        if what == "path":
            return req.path
        if what == "method":
            return req.method
        if what == "query":
            return req.query
        value = req.header(what[2:])
        return "-" if value is None else value

    return TEMPLATE.sub(one, template)


def etag_matches(if_none_match, etag):
    """RFC 9110 §13.1.2: weak comparison of any listed tag, or `*`."""
    if if_none_match.strip() == "*":
        return True
    bare = etag[2:] if etag.startswith("W/") else etag
    for tag in re.findall(r'(?:W/)?"[^"]*"', if_none_match):
        if (tag[2:] if tag.startswith("W/") else tag) == bare:
            return True
    return False


def not_modified(spec, req, etag):
    """Whether the request's validators say the client already has this representation."""
    inm = req.header("If-None-Match")
    if inm is not None:
        return etag is not None and etag_matches(inm, etag)
    ims = req.header("If-Modified-Since")
    if ims is not None and spec.get("last_modified"):
        try:
            since = email.utils.parsedate_to_datetime(ims)
            modified = email.utils.parsedate_to_datetime(spec["last_modified"])
        except (TypeError, ValueError):
            return False
        return modified <= since
    return False


def byte_range(value, size):
    """(first, last) of a single `bytes=a-b` range inside `size`, or None."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", value or "")
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    if m.group(1) == "":
        first, last = max(0, size - int(m.group(2))), size - 1
    else:
        first = int(m.group(1))
        last = min(size - 1, int(m.group(2))) if m.group(2) else size - 1
    return (first, last) if first <= last < size else None


class Origin:
    """Specs, counters and the log, shared by the connection threads."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.lock = threading.Lock()
        self.counts = {}
        self.log = open(os.path.join(state_dir, "log.jsonl"), "a", encoding="utf-8")

    def spec(self, path):
        try:
            with open(spec_file(self.state_dir, path), encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def record(self, req, t):
        """Counts the request for its path and logs it; returns its number for that path."""
        with self.lock:
            n = self.counts.get(req.path, 0) + 1
            self.counts[req.path] = n
            line = {
                "t": t,
                "n": n,
                "method": req.method,
                "target": req.target,
                "path": req.path,
                "query": req.query,
                "version": req.version,
                "headers": [[k, v] for k, v in req.headers],
                "declared_length": req.declared_length,
                "chunked": req.chunked,
                "body_len": len(req.body),
                "body_b64": base64.b64encode(req.body[:4096]).decode(),
                "complete": req.complete,
                "body_wait": round(req.body_wait, 3),
            }
            self.log.write(json.dumps(line) + "\n")
            self.log.flush()
            return n


class Connection(socketserver.StreamRequestHandler):
    """One visitor connection of the origin: requests in a keep-alive loop."""

    timeout = 30

    def handle(self):
        origin = self.server.origin
        while True:
            req = self.read_request()
            if req is None:
                return
            t = time.time()
            self.read_body(req)
            n = origin.record(req, t)
            spec = origin.spec(req.path)
            if not req.complete:
                self.answer(req, 400, [("Content-Type", "text/plain")], b"incomplete body\n", True)
                return
            keep = self.answer_from_spec(req, spec, n)
            if not keep:
                return

    def read_request(self):
        try:
            line = self.rfile.readline(MAX_HEADER_BYTES)
            while line in (b"\r\n", b"\n"):
                line = self.rfile.readline(MAX_HEADER_BYTES)
        except (OSError, socket.timeout):
            return None
        if not line:
            return None
        parts = line.decode("latin-1").rstrip("\r\n").split(" ")
        if len(parts) != 3:
            return None
        headers = []
        size = len(line)
        while True:
            h = self.rfile.readline(MAX_HEADER_BYTES)
            size += len(h)
            if not h or size > MAX_HEADER_BYTES:
                return None
            if h in (b"\r\n", b"\n"):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name, value.strip(" \t\r\n")))
        return Request(parts[0], parts[1], parts[2], headers)

    def read_body(self, req):
        """Reads the body the request announces; marks it incomplete if the bytes never come."""
        te = ",".join(req.values("Transfer-Encoding")).lower()
        lengths = req.values("Content-Length")
        start = time.time()
        self.connection.settimeout(BODY_WAIT)
        try:
            if "chunked" in te:
                req.chunked = True
                req.body = self.read_chunked(start)
            elif lengths:
                try:
                    req.declared_length = int(lengths[0])
                except ValueError:
                    req.declared_length = -1
                    req.complete = False
                    return
                req.body = self.read_exactly(req.declared_length, start)
                req.complete = len(req.body) == req.declared_length
        except (OSError, socket.timeout, ValueError):
            req.complete = False
        finally:
            req.body_wait = time.time() - start
            self.connection.settimeout(self.timeout)

    def read_exactly(self, size, start):
        out = b""
        while len(out) < size and time.time() - start < BODY_WAIT:
            chunk = self.rfile.read1(size - len(out))
            if not chunk:
                break
            out += chunk
        return out

    def read_chunked(self, start):
        out = b""
        while time.time() - start < BODY_WAIT:
            size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"x", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return out
            out += self.read_exactly(size, time.time())
            self.rfile.readline(1024)
        raise ValueError("chunked body not finished")

    def answer_from_spec(self, req, spec, n):
        """Answers as the path's spec says; False when the connection must end."""
        if spec is None:
            return self.answer(req, 404, [("Content-Type", "text/plain")],
                               ("no spec for %s\n" % req.path).encode(), False)
        if spec.get("delay"):
            time.sleep(float(spec["delay"]))
        fail = spec.get("fail")
        if fail == "drop":
            self.drop()
            return False
        if fail == "hang":
            time.sleep(HANG)
            self.drop()
            return False
        if fail == "503":
            return self.answer(req, 503, [("Content-Type", "text/plain"),
                                          ("Cache-Control", "no-store")], b"origin down\n", False)
        if req.method not in ("GET", "HEAD"):
            body = expand(UNSAFE_BODY, req, n).encode()
            return self.answer(req, int(spec.get("unsafe_status", 200)),
                               [("Content-Type", "text/plain")], body, False)
        headers = [("Content-Type", "text/plain")]
        headers += [(k, expand(v, req, n)) for k, v in spec.get("headers", [])]
        etag = expand(spec["etag"], req, n) if spec.get("etag") else None
        if etag:
            headers.append(("ETag", etag))
        if spec.get("last_modified"):
            headers.append(("Last-Modified", spec["last_modified"]))
        if spec.get("date"):
            headers.append(("Date", email.utils.formatdate(usegmt=True)))
        if not_modified(spec, req, etag):
            return self.answer(req, 304, headers, b"", False)
        body = expand(spec.get("body", "page {path} n={n}\n"), req, n).encode()
        status = int(spec.get("status", 200))
        if spec.get("ranges") and status == 200 and req.header("Range") is not None:
            rng = byte_range(req.header("Range"), len(body))
            if rng:
                headers.append(("Content-Range", "bytes %d-%d/%d" % (rng[0], rng[1], len(body))))
                return self.answer(req, 206, headers, body[rng[0]:rng[1] + 1], False)
        return self.answer(req, status, headers, body, False)

    def answer(self, req, status, headers, body, close):
        """Sends one response (no body to a HEAD, nor with a 304); False when closing."""
        close = close or "close" in ",".join(req.values("Connection")).lower() \
            or req.version != "HTTP/1.1"
        reason = {200: "OK", 206: "Partial Content", 304: "Not Modified", 400: "Bad Request",
                  404: "Not Found", 503: "Service Unavailable"}.get(status, "Status")
        out = ["HTTP/1.1 %d %s" % (status, reason)]
        out += ["%s: %s" % (k, v) for k, v in headers]
        if status not in (204, 304):
            out.append("Content-Length: %d" % len(body))
        if close:
            out.append("Connection: close")
        data = ("\r\n".join(out) + "\r\n\r\n").encode("latin-1")
        if req.method != "HEAD" and status not in (204, 304):
            data += body
        try:
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return False
        return not close

    def drop(self):
        """Closes the connection without a byte of answer (RST where possible)."""
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            self.connection.close()
        except OSError:
            pass


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="state directory: specs/ and log.jsonl")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(os.path.join(args.dir, "specs"), exist_ok=True)
    server = Server(("127.0.0.1", args.port), Connection)
    server.origin = Origin(args.dir)
    print("port %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
