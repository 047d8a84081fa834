#!/usr/bin/python3
"""A scripted HTTP/1.1 backend for tether's e2e tests and demo.

Threaded, keep-alive, binds port 0 by default and prints "PORT <n>" as its
first stdout line. Every response carries `X-Upstream-Name: <--name>`.

Routes (GET unless noted; HEAD works wherever GET does):
  /health                 200 {"status": true}, or the status set by POST /admin/health/<code>
  /ready                  like /health, but also settable alone by POST /admin/ready/<code>
  POST /admin/health/<c>  make /health and /ready answer <c> (body {"detail": ...} unless 2xx)
  POST /admin/ready/<c>   make /ready answer <c>
  /id                     the instance's name (text/plain)
  /echo  (any method)     JSON: method, path, query, headers ([[name, value], ...] in order),
                          body_length, body_sha256, client ("ip:port"), connection_request
                          (1 for the first request on this TCP connection), name
  /status/<code>          answers <code> with a short body (none for 204/304)
  /sleep/<ms>             answers 200 after <ms> milliseconds
  /chunked?n=5&delay_ms=100&size=16&first_delay_ms=0
                          chunked response of n chunks of size bytes, delay_ms apart
  /big?bytes=N[&chunked=1][&delay_ms=0]
                          N bytes streamed in 64 KiB writes (Content-Length unless chunked=1)
  /close-mid              Content-Length: 1000, then 10 bytes, then closes the connection
  /asset?bytes=N&type=T[&chunked=1][&delay_ms=0][&pieces=1][&h=Name:Value ...][&cut=1]
                          N bytes of compressible text (assetBody(N)) as type T, in
                          `pieces` writes delay_ms apart; h adds fields; cut=1 closes
                          the connection after half the body
  /stats                  JSON: requests served, connections accepted, per-path counts,
                          per-target counts (path and query, "targets": what a cache saves)
  anything else           200 text/html page (like Open WebUI's SPA)

Request bodies may be Content-Length or chunked; they are read (and hashed)
streaming, so a 100 MB upload costs no memory.

Usage: python3 http_upstream.py [--port 0] [--host 127.0.0.1] [--name NAME]
                                 [--health-status 200] [--ready-status 200]
                                 [--idle-close-ms N] [--close-after-response]
  --idle-close-ms N       close a keep-alive connection idle for N ms (no Connection: close)
  --close-after-response  close every connection right after its first response, without
                          announcing it (no Connection: close): a pooled connection that is dead
"""
import argparse
import hashlib
import json
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HTML = (b"<!doctype html><html><head><title>Open WebUI</title></head>"
        b"<body><div id=\"app\"></div></body></html>\n")


def asset_body(n):
    """n bytes of text that compresses as a web asset does (repetitive, not constant)."""
    words = [b"const ", b"function ", b"return ", b"{\"id\":", b"\"model\":\"llama3\",",
             b"<div class=\"msg\">", b"</div>\n", b"chat ", b"42, ", b"token "]
    out = bytearray()
    i = 0
    while len(out) < n:
        out += words[(i * 7 + i // 13) % len(words)]
        out += b"%d " % (i % 97)
        i += 1
    return bytes(out[:n])


class State:
    def __init__(self, name, health_status, ready_status):
        self.name = name
        self.health_status = health_status
        self.ready_status = ready_status
        self.lock = threading.Lock()
        self.requests = 0
        self.connections = 0
        self.paths = {}
        self.targets = {}

    def count(self, path, target):
        with self.lock:
            self.requests += 1
            self.paths[path] = self.paths.get(path, 0) + 1
            self.targets[target] = self.targets.get(target, 0) + 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "http_upstream"
    sys_version = ""
    state: State = None  # set in main()
    idle_close_s = None  # --idle-close-ms
    close_after_response = False

    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_requests = 0
        if self.idle_close_s:
            self.connection.settimeout(self.idle_close_s)
        with self.state.lock:
            self.state.connections += 1

    def log_message(self, fmt, *args):  # quiet: tests read stdout for the port only
        pass

    # ---- helpers -----------------------------------------------------------
    def read_body(self):
        """Reads the request body (Content-Length or chunked); returns (length, sha256 hex)."""
        h = hashlib.sha256()
        n = 0
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    break
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:  # trailers until the empty line
                        t = self.rfile.readline(65537)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                left = size
                while left:
                    data = self.rfile.read(min(left, 65536))
                    if not data:
                        return n, h.hexdigest()
                    h.update(data)
                    n += len(data)
                    left -= len(data)
                self.rfile.readline(3)  # CRLF after the chunk
        else:
            left = int(self.headers.get("Content-Length") or 0)
            while left > 0:
                data = self.rfile.read(min(left, 65536))
                if not data:
                    break
                h.update(data)
                n += len(data)
                left -= len(data)
        return n, h.hexdigest()

    def send(self, status, body=b"", ctype="text/plain", headers=()):
        self.send_response(status)
        self.send_header("X-Upstream-Name", self.state.name)
        if status not in (204, 304) and not (100 <= status < 200):
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and status not in (204, 304):
            self.wfile.write(body)

    def send_json(self, status, obj, headers=()):
        self.send(status, json.dumps(obj).encode() + b"\n", "application/json", headers)

    def start_body(self, ctype, chunked, total, fields=()):
        """A 200 head for a streamed body of `total` bytes (chunked or with a
        Content-Length); False for HEAD (no body follows)."""
        self.send_response(200)
        self.send_header("X-Upstream-Name", self.state.name)
        self.send_header("Content-Type", ctype)
        for name, value in fields:
            self.send_header(name, value.strip())
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(total))
        self.end_headers()
        return self.command != "HEAD"

    def cut_connection(self):
        """Ends the connection where the response stands, unannounced."""
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def write_chunk(self, data):
        self.wfile.write(b"%x\r\n" % len(data) + data + b"\r\n")
        self.wfile.flush()

    # ---- dispatch ----------------------------------------------------------
    def handle_any(self):
        self.handle_route()
        if self.close_after_response:
            self.wfile.flush()
            self.close_connection = True

    def handle_route(self):
        self.conn_requests += 1
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        q = dict(urllib.parse.parse_qsl(url.query))
        self.state.count(path, self.path)
        parts = [p for p in path.split("/") if p]

        if path == "/echo":
            length, digest = self.read_body()
            peer = self.client_address
            return self.send_json(200, {
                "method": self.command, "path": path, "query": url.query,
                "raw_path": self.path, "version": self.request_version,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body_length": length, "body_sha256": digest,
                "client": "%s:%d" % (peer[0], peer[1]),
                "connection_request": self.conn_requests, "name": self.state.name})

        # Every other route ignores the body but must consume it for keep-alive.
        self.read_body()

        if path in ("/health", "/ready"):
            code = self.state.health_status if path == "/health" else self.state.ready_status
            if 200 <= code < 300:
                return self.send_json(code, {"status": True})
            return self.send_json(code, {"detail": "Startup not complete"})
        if len(parts) == 3 and parts[0] == "admin" and parts[1] in ("health", "ready") \
                and self.command == "POST":
            code = int(parts[2])
            if parts[1] == "health":
                self.state.health_status = code
            self.state.ready_status = code
            return self.send_json(200, {"health": self.state.health_status,
                                        "ready": self.state.ready_status})
        if path == "/id":
            return self.send(200, self.state.name.encode())
        if path == "/stats":
            with self.state.lock:
                return self.send_json(200, {"name": self.state.name,
                                            "requests": self.state.requests,
                                            "connections": self.state.connections,
                                            "paths": dict(self.state.paths),
                                            "targets": dict(self.state.targets)})
        if len(parts) == 2 and parts[0] == "status":
            code = int(parts[1])
            return self.send(code, b"" if code in (204, 304) else b"status %d\n" % code)
        if len(parts) == 2 and parts[0] == "sleep":
            time.sleep(min(int(parts[1]), 600_000) / 1000.0)
            return self.send(200, b"slept %s\n" % parts[1].encode())
        if path == "/chunked":
            n = min(int(q.get("n", 5)), 100_000)
            delay = int(q.get("delay_ms", 100)) / 1000.0
            size = max(1, int(q.get("size", 16)))
            time.sleep(int(q.get("first_delay_ms", 0)) / 1000.0)
            self.send_response(200)
            self.send_header("X-Upstream-Name", self.state.name)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command == "HEAD":
                return
            self.wfile.flush()
            for i in range(n):
                if i:
                    time.sleep(delay)
                body = (b"chunk %d " % i).ljust(size, b".")[:max(size, 1)]
                self.write_chunk(body)
            self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/big":
            total = int(q.get("bytes", 1 << 20))
            chunked = q.get("chunked") in ("1", "true")
            delay = int(q.get("delay_ms", 0)) / 1000.0
            if not self.start_body("application/octet-stream", chunked, total):
                return
            block = bytes(range(256)) * 256  # 64 KiB, a known pattern
            left = total
            while left > 0:
                piece = block[:min(left, len(block))]
                if chunked:
                    self.write_chunk(piece)
                else:
                    self.wfile.write(piece)
                left -= len(piece)
                if delay:
                    time.sleep(delay)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/asset":
            qs = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            total = min(int(q.get("bytes", 4096)), 64 << 20)
            chunked = q.get("chunked") in ("1", "true")
            pieces = max(1, min(int(q.get("pieces", 1)), 10_000))
            delay = int(q.get("delay_ms", 0)) / 1000.0
            body = asset_body(total)
            fields = [hv.partition(":")[::2] for hv in qs.get("h", [])]
            if not self.start_body(q.get("type", "text/html"), chunked, total, fields):
                return
            step = max(1, -(-total // pieces))
            for at in range(0, total, step):
                if q.get("cut") == "1" and at >= total // 2:
                    return self.cut_connection()
                piece = body[at:at + step]
                if chunked:
                    self.write_chunk(piece)
                else:
                    self.wfile.write(piece)
                self.wfile.flush()
                if delay:
                    time.sleep(delay)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
            return
        if path == "/close-mid":
            self.send_response(200)
            self.send_header("X-Upstream-Name", self.state.name)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            return self.cut_connection()
        return self.send(200, HTML, "text/html; charset=utf-8")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = handle_any


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--name", default="upstream")
    ap.add_argument("--health-status", type=int, default=200)
    ap.add_argument("--ready-status", type=int, default=None)
    ap.add_argument("--idle-close-ms", type=int, default=0)
    ap.add_argument("--close-after-response", action="store_true")
    args = ap.parse_args()
    Handler.idle_close_s = args.idle_close_ms / 1000.0 if args.idle_close_ms else None
    Handler.close_after_response = args.close_after_response
    Handler.state = State(args.name, args.health_status,
                          args.ready_status if args.ready_status is not None
                          else args.health_status)
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.request_queue_size = 1024
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
