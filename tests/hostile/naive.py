"""Two deliberately wrong caches, for `run.py --self-check`: every case must fail on one of them.

- `store`: keys on the path and query alone (no host, no Vary), forwards the visitor's request
  as it came (every header, an absolute target's authority as Host, a HEAD as a HEAD) without
  reading its body, stores every answer to a GET or HEAD forever, serves it as a 200 with its
  body even to a HEAD and whatever the visitor's validators say, purges by any method and
  decodes `+` after `%2B`; no single flight, no stale handling, no invalidation, no counters.
- `pass`: stores nothing and forwards every request byte for byte, body included.

A case that passes on both cannot see the fault it is named after.
"""

import json
import socket
import socketserver
import threading
import urllib.parse

MAX_HEADER_BYTES = 64 * 1024


def split_authority(target):
    """(authority or None, origin-form target) of a request target."""
    if "://" in target:
        rest = target.split("://", 1)[1]
        authority, slash, path = rest.partition("/")
        return authority, slash + path or "/"
    return None, target


class Naive:
    """The cache's state: its mode, the origin's port, what it stored."""

    def __init__(self, mode, origin_port):
        self.mode = mode
        self.origin_port = origin_port
        self.store = {}
        self.lock = threading.Lock()


class Visitor(socketserver.StreamRequestHandler):
    timeout = 30

    def handle(self):
        naive = self.server.naive
        while True:
            head = self.read_head()
            if head is None:
                return
            request_line, headers = head
            parts = request_line.split(" ")
            if len(parts) != 3:
                return
            method, target, _ = parts
            body = b""
            if naive.mode == "pass":
                length = [v for k, v in headers if k.lower() == "content-length"]
                if length and length[0].strip().isdigit():
                    body = self.rfile.read(int(length[0]))
            _, path = split_authority(target)
            if path.startswith("/_purge"):
                self.purge(naive, path)
                continue
            answer = None
            if naive.mode == "store" and method in ("GET", "HEAD"):
                with naive.lock:
                    answer = naive.store.get(path)
            if answer is None:
                answer = self.forward(naive, request_line, headers, body, method, target)
                if naive.mode == "store" and method in ("GET", "HEAD") and answer:
                    with naive.lock:
                        naive.store[path] = answer
            if answer is None:
                return
            status, answer_headers, answer_body = answer
            if naive.mode == "store":
                status = 200
            self.send(status, answer_headers, answer_body,
                      method == "HEAD" and naive.mode == "pass")

    def read_head(self):
        try:
            line = self.rfile.readline(MAX_HEADER_BYTES)
        except OSError:
            return None
        if not line.strip():
            return None
        headers = []
        while True:
            h = self.rfile.readline(MAX_HEADER_BYTES)
            if not h or h in (b"\r\n", b"\n"):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name, value.strip()))
        return line.decode("latin-1").rstrip("\r\n"), headers

    def forward(self, naive, request_line, headers, body, method, target):
        authority, _ = split_authority(target)
        if authority is not None and naive.mode == "store":
            headers = [(k, v) for k, v in headers if k.lower() != "host"] + [("Host", authority)]
        data = request_line + "\r\n" + "".join("%s: %s\r\n" % kv for kv in headers) + "\r\n"
        try:
            with socket.create_connection(("127.0.0.1", naive.origin_port), 15) as s:
                s.sendall(data.encode("latin-1") + body)
                f = s.makefile("rb")
                status = int(f.readline().split(b" ")[1])
                answer_headers = []
                while True:
                    h = f.readline()
                    if not h or h in (b"\r\n", b"\n"):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    answer_headers.append((name, value.strip()))
                length = [v for k, v in answer_headers if k.lower() == "content-length"]
                if method == "HEAD" or status in (204, 304) or not length:
                    answer_body = b""
                else:
                    answer_body = f.read(int(length[0]))
                return status, answer_headers, answer_body
        except (OSError, ValueError, IndexError):
            return 502, [("Content-Type", "text/plain")], b"naive: no answer from the origin\n"

    def send(self, status, headers, body, head_only):
        lines = ["HTTP/1.1 %d Naive" % status]
        lines += ["%s: %s" % (k, v) for k, v in headers
                  if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        lines.append("Content-Length: %d" % len(body))
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head_only:
            data += body
        self.wfile.write(data)
        self.wfile.flush()

    def purge(self, naive, path):
        query = urllib.parse.urlsplit(path).query
        url = ""
        for pair in query.split("&"):
            if pair.startswith("url="):
                url = urllib.parse.unquote(pair[4:]).replace("+", " ")
        with naive.lock:
            found = naive.store.pop(url, None) is not None
        self.send(200, [("Content-Type", "application/json")],
                  json.dumps({"purged": url, "found": found}).encode(), False)


class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def serve(mode, origin_port):
    """Starts a naive cache in this process; returns the server (its port: server_address)."""
    server = Server(("127.0.0.1", 0), Visitor)
    server.naive = Naive(mode, origin_port)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                     daemon=True).start()
    return server
