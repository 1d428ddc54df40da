#!/usr/bin/env python3
"""The origin behind nginx in the install test: counts the requests it answers.

GET /PATH answers "page PATH #N" (N: requests for PATH so far) with Cache-Control: max-age=60
and Surrogate-Key: pkg-test; GET /_count?path=/PATH answers N. Listens on a free loopback port
and writes it to the file named by its argument once listening.
"""
import os
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

counts = {}
lock = threading.Lock()


class Origin(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/_count":
            path = urllib.parse.parse_qs(url.query).get("path", [""])[0]
            with lock:
                self.answer(str(counts.get(path, 0)), {})
            return
        with lock:
            counts[url.path] = counts.get(url.path, 0) + 1
            n = counts[url.path]
        self.answer(
            f"page {url.path} #{n}",
            {"Cache-Control": "max-age=60", "Surrogate-Key": "pkg-test"},
        )

    def answer(self, body, headers):
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Origin)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    # renamed into place: the reader never sees a half-written port
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
