"""Response compression end to end: every answer tether compresses is decoded with
the real command-line tools (zstd -d, brotli -d, gzip -d) and compared with what the
backend sent; every "never compressed" case; streaming (a slow response is decoded
piece by piece as it arrives); a backend that dies mid-body leaves the client with a
body that never looks whole; HTTP/1.0 clients; routes; metrics."""

import os
import socket
import subprocess
import sys
import time
import unittest
import zlib

from harness import E2ETestCase, require_program, wait_until

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps"))
from http_upstream import asset_body  # noqa: E402

FAST_HEALTH = {"interval": "200ms", "rise": 1}
DECODER = {"zstd": ["zstd", "-d", "-c", "-q"], "br": ["brotli", "-d", "-c"],
           "gzip": ["gzip", "-d", "-c"]}


def decode(coding, data):
    exe = require_program(DECODER[coding][0])
    r = subprocess.run([exe] + DECODER[coding][1:], input=data, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError("%s could not decode %d bytes: %s" % (coding, len(data), r.stderr))
    return r.stdout


def request(port, path, headers=(), method="GET", version="1.1", timeout=20.0):
    """One request on a new connection; returns (status, headers dict lower-case -> list,
    raw body bytes as framed, whether the connection closed, the decoded body for chunked)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    lines = ["%s %s HTTP/%s" % (method, path, version), "Host: t"] + list(headers)
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    status = int(status_line.split()[1])
    hdrs = {}
    for f in fields:
        k, _, v = f.partition(":")
        hdrs.setdefault(k.strip().lower(), []).append(v.strip())
    body = rest
    complete = False
    if method == "HEAD" or status in (204, 304):
        s.close()
        return status, hdrs, b"", True
    if "chunked" in ",".join(hdrs.get("transfer-encoding", [])):
        data = b""
        while True:
            while b"\r\n" not in body:
                more = s.recv(65536)
                if not more:
                    s.close()
                    return status, hdrs, data, False
                body += more
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(body) < size + 2:
                more = s.recv(65536)
                if not more:
                    s.close()
                    return status, hdrs, data + body[:size], False
                body += more
            if size == 0:
                while not body.startswith(b"\r\n") and b"\r\n\r\n" not in body:
                    body += s.recv(65536)
                complete = True
                break
            data += body[:size]
            body = body[size + 2:]
        s.close()
        return status, hdrs, data, complete
    if "content-length" in hdrs:
        n = int(hdrs["content-length"][0])
        while len(body) < n and time.monotonic() < deadline:
            more = s.recv(65536)
            if not more:
                break
            body += more
        s.close()
        return status, hdrs, body, len(body) == n
    while time.monotonic() < deadline:  # to the close
        more = s.recv(65536)
        if not more:
            break
        body += more
    s.close()
    return status, hdrs, body, True


class CompressionBase(E2ETestCase):
    def setUp(self):
        for tool in ("zstd", "brotli", "gzip"):
            require_program(tool)
        self.up = self.start_http_upstream(name="a")

    def tether(self, compression=None, routes=None):
        cfg = {"health": dict(FAST_HEALTH),
               "compression": compression if compression is not None else {"enabled": True}}
        if routes:
            cfg["routes"] = routes
        t = self.start_tether(backends=[self.up.url], config=cfg)
        wait_until(lambda: t.admin_get("/readyz").status == 200, 10, msg="/readyz 200")
        return t


class Compresses(CompressionBase):
    def test_each_coding_decodes_to_the_backend_body(self):
        t = self.tether()
        n = 200_000
        for coding in ("zstd", "br", "gzip"):
            for chunked in ("0", "1"):
                with self.subTest(coding=coding, chunked=chunked):
                    status, h, body, complete = request(
                        t.proxy_port, "/asset?bytes=%d&type=application/json&chunked=%s" % (n, chunked),
                        ["Accept-Encoding: " + coding])
                    self.assertEqual(status, 200)
                    self.assertTrue(complete)
                    self.assertEqual(h.get("content-encoding"), [coding])
                    self.assertNotIn("content-length", h)
                    self.assertEqual(h.get("transfer-encoding"), ["chunked"])
                    self.assertIn("Accept-Encoding", ", ".join(h.get("vary", [])))
                    self.assertLess(len(body), n // 3)
                    self.assertEqual(decode(coding, body), asset_body(n))

    def test_browser_accept_encoding_picks_by_q_then_server_preference(self):
        t = self.tether()
        cases = {"gzip, deflate, br, zstd": "zstd", "gzip, deflate, br": "br",
                 "gzip": "gzip", "br;q=0.5, gzip;q=0.9": "gzip", "zstd;q=0, *": "br"}
        for ae, want in cases.items():
            with self.subTest(ae=ae):
                _, h, body, _ = request(t.proxy_port, "/asset?bytes=5000", ["Accept-Encoding: " + ae])
                self.assertEqual(h.get("content-encoding"), [want])
                self.assertEqual(decode(want, body), asset_body(5000))

    def test_keep_alive_connection_carries_several_compressed_answers(self):
        t = self.tether()
        s = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=10)
        req = b"GET /asset?bytes=30000&chunked=%d HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n"
        s.sendall(req % 0 + req % 1 + req % 0)
        d = zlib.decompressobj(16 + 15)
        buf = b""
        answers = 0
        deadline = time.monotonic() + 20
        while answers < 3 and time.monotonic() < deadline:
            more = s.recv(65536)
            self.assertTrue(more, "connection closed after %d answers" % answers)
            buf += more
            answers = buf.count(b"\r\n0\r\n\r\n")
        s.close()
        self.assertEqual(answers, 3)
        self.assertEqual(buf.count(b"Content-Encoding: gzip"), 3)
        # Each body, de-chunked, decodes.
        for part in buf.split(b"HTTP/1.1 200")[1:]:
            body = part.split(b"\r\n\r\n", 1)[1]
            data = b""
            while True:
                size_line, _, body = body.partition(b"\r\n")
                size = int(size_line, 16)
                if size == 0:
                    break
                data += body[:size]
                body = body[size + 2:]
            self.assertEqual(zlib.decompressobj(16 + 15).decompress(data), asset_body(30000))
        del d

    def test_http10_client_gets_the_body_to_the_close(self):
        t = self.tether()
        for chunked in ("0", "1"):
            status, h, body, _ = request(t.proxy_port, "/asset?bytes=40000&chunked=" + chunked,
                                         ["Accept-Encoding: br"], version="1.0")
            self.assertEqual(status, 200)
            self.assertEqual(h.get("content-encoding"), ["br"])
            self.assertNotIn("transfer-encoding", h)
            self.assertNotIn("content-length", h)
            self.assertEqual(h.get("connection"), ["close"])
            self.assertEqual(decode("br", body), asset_body(40000))

    def test_a_strong_etag_becomes_weak(self):
        t = self.tether()
        _, h, _, _ = request(t.proxy_port, "/asset?bytes=5000&h=ETag:%22v1%22&h=Vary:Origin",
                             ["Accept-Encoding: gzip"])
        self.assertEqual(h.get("etag"), ['W/"v1"'])
        self.assertEqual(h.get("vary"), ["Origin, Accept-Encoding"])

    def test_head_says_what_get_would_get(self):
        t = self.tether()
        status, h, body, _ = request(t.proxy_port, "/asset?bytes=5000", ["Accept-Encoding: zstd"],
                                     method="HEAD")
        self.assertEqual(status, 200)
        self.assertEqual(h.get("content-encoding"), ["zstd"])
        self.assertNotIn("content-length", h)
        # The connection is still usable: a GET on it afterwards works.
        _, h2, body2, _ = request(t.proxy_port, "/asset?bytes=5000", ["Accept-Encoding: zstd"])
        self.assertEqual(decode("zstd", body2), asset_body(5000))

    def test_slow_response_is_decodable_piece_by_piece(self):
        # 5 pieces, 400 ms apart: the first decodes long before the backend is done.
        t = self.tether()
        s = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=10)
        s.sendall(b"GET /asset?bytes=10000&type=application/x-ndjson&chunked=1&pieces=5&delay_ms=400"
                  b" HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n")
        start = time.monotonic()
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += s.recv(65536)
        body = buf.split(b"\r\n\r\n", 1)[1]
        d = zlib.decompressobj(16 + 15)
        got = b""
        first_at = None
        while len(got) < 10000:
            while b"\r\n" not in body:
                body += s.recv(65536)
            size_line, _, body = body.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            while len(body) < size + 2:
                body += s.recv(65536)
            got += d.decompress(body[:size])
            body = body[size + 2:]
            if got and first_at is None:
                first_at = time.monotonic() - start
        s.close()
        self.assertEqual(got, asset_body(10000))
        self.assertIsNotNone(first_at)
        self.assertLess(first_at, 1.0, "the first piece was held back")


class NeverCompressed(CompressionBase):
    def assert_identity(self, t, path, headers=("Accept-Encoding: gzip, br, zstd",), vary=True,
                        n=None):
        status, h, body, complete = request(t.proxy_port, path, list(headers))
        self.assertNotIn("content-encoding", h, path)
        if vary:
            self.assertIn("Accept-Encoding", ", ".join(h.get("vary", [])), path)
        if n is not None:
            self.assertEqual(body, asset_body(n), path)
        return status, h

    def test_each_case(self):
        t = self.tether()
        self.assert_identity(t, "/asset?bytes=5000&type=image/png", vary=False, n=5000)
        self.assert_identity(t, "/asset?bytes=1000", vary=False, n=1000)  # below min_length
        self.assert_identity(t, "/asset?bytes=5000&h=Cache-Control:public,no-transform",
                             vary=False, n=5000)
        status, h, body, _ = request(t.proxy_port, "/asset?bytes=5000&h=Content-Encoding:identity",
                                     ["Accept-Encoding: gzip"])
        self.assertEqual(h.get("content-encoding"), ["gzip"])  # identity is no coding
        # Already encoded: passed through byte for byte.
        status, h, body, _ = request(t.proxy_port, "/asset?bytes=5000&h=Content-Encoding:br",
                                     ["Accept-Encoding: gzip"])
        self.assertEqual(h.get("content-encoding"), ["br"])
        self.assertEqual(body, asset_body(5000))
        # A Range request is forwarded uncompressed; eligible answers still say they vary.
        self.assert_identity(t, "/asset?bytes=5000", ("Accept-Encoding: gzip", "Range: bytes=0-9"),
                             n=5000)
        # No or no usable Accept-Encoding.
        self.assert_identity(t, "/asset?bytes=5000", (), n=5000)
        self.assert_identity(t, "/asset?bytes=5000", ("Accept-Encoding: gzip;q=0, identity",), n=5000)
        status, h = self.assert_identity(t, "/status/204", vary=False)
        self.assertEqual(status, 204)

    def test_event_streams_stay_byte_exact(self):
        sse = self.start_sse_app(name="s")
        t = self.start_tether(backends=[sse.url],
                              config={"health": dict(FAST_HEALTH), "compression": {"enabled": True}})
        wait_until(lambda: t.admin_get("/readyz").status == 200, 10, msg="/readyz 200")
        status, h, body, complete = request(t.proxy_port, "/sse?n=3&interval_ms=50",
                                            ["Accept-Encoding: gzip, br, zstd"])
        self.assertEqual(status, 200)
        self.assertNotIn("content-encoding", h)
        self.assertTrue(body.startswith(b"data: "), body[:100])
        self.assertIn(b"[DONE]", body)

    def test_off_by_default_and_per_route(self):
        t = self.tether(compression={})
        self.assert_identity(t, "/asset?bytes=5000", vary=False, n=5000)
        t2 = self.tether(routes=[{"match": {"path_prefix": "/asset"},
                                  "compression": {"enabled": False}}])
        self.assert_identity(t2, "/asset?bytes=5000", vary=False, n=5000)
        _, h, _, _ = request(t2.proxy_port, "/other?x", ["Accept-Encoding: gzip"])
        # /other is the SPA page (short): not compressed, but the route does not apply either.
        self.assertNotIn("content-encoding", h)


class Failures(CompressionBase):
    def test_backend_dying_mid_body_never_looks_whole(self):
        t = self.tether()
        for chunked in ("0", "1"):
            status, h, body, complete = request(
                t.proxy_port, "/asset?bytes=200000&pieces=10&cut=1&chunked=" + chunked,
                ["Accept-Encoding: gzip"])
            self.assertEqual(h.get("content-encoding"), ["gzip"])
            self.assertFalse(complete, "a truncated compressed body ended like a whole one")
            d = zlib.decompressobj(16 + 15)
            d.decompress(body)
            self.assertFalse(d.eof, "the gzip stream looks complete")
        # tether is still serving.
        _, h, body, complete = request(t.proxy_port, "/asset?bytes=5000", ["Accept-Encoding: gzip"])
        self.assertTrue(complete)
        self.assertEqual(decode("gzip", body), asset_body(5000))

    def test_metrics_count_bytes_before_and_after(self):
        t = self.tether()
        request(t.proxy_port, "/asset?bytes=100000", ["Accept-Encoding: zstd"])
        wait_until(lambda: (t.metric("tether_compression_bytes_total", 0, algorithm="zstd",
                                     stage="in") or 0) >= 100000, 5, msg="in bytes counted")
        out = t.metric("tether_compression_bytes_total", 0, algorithm="zstd", stage="out")
        self.assertGreater(out, 0)
        self.assertLess(out, 50000)
        self.assertEqual(t.metric("tether_compressed_responses_total", 0, algorithm="zstd"), 1)


if __name__ == "__main__":
    unittest.main()
