"""HTTP/2 to clients, end to end: prior knowledge on a cleartext listener (and
listeners[].h2c: false), ALPN h2 on a TLS listener, curl --http2 and
--http2-prior-knowledge, nghttp and h2load, requests proxied as HTTP/1.1 with
the same header policy (Host from :authority, X-Forwarded-*, a chunked body
for an upload without content-length), bodies both ways with flow control
(a 256 MiB upload and a 64 MiB download in bounded memory), event streams
frame by frame, HEAD, 204 and 304, response trailers, RST_STREAM cancelling
the upstream request, a backend dying mid-response resetting its stream only,
HTTP/1-only request headers refused as a stream error, the two-step GOAWAY on
SIGTERM with streams in flight answered, the idle close, the access log and
the tether_http2_* metrics. RFC 8441 WebSockets close on SIGTERM and on a
drain as HTTP/1.1 ones do (websocket_close, websocket_close_spread, the close
metrics). WebSockets over HTTP/1.1 keep working beside an h2 listener. Attacks on the HTTP/2 layer are in test_http2_attacks.py.

Run: cd tests/e2e && TETHER_BIN=... python3 -m unittest -v test_http2
"""

import hashlib
import http.client
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import unittest
from signal import SIGTERM

from h2util import H2Client, require_h2
from harness import E2ETestCase, require_program, sanitized, wait_until
from rawupstream import RawUpstream
from test_http_core import FAST_HEALTH, RssSampler, curl, echo_headers, hget, wait_ready

import test_tls

MiB = 1 << 20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def setUpModule():
    test_tls.setUpModule()  # the test CA and certificates, for the TLS cases


def tearDownModule():
    test_tls.tearDownModule()


class H2TestCase(E2ETestCase):
    def setUp(self):
        require_h2()

    def start(self, upstreams, config=None, listen=("127.0.0.1:0",), ready=True, **kw):
        cfg = {"health": dict(FAST_HEALTH), "access_log": {"flush": "50ms"}}
        cfg.update(config or {})
        t = self.start_tether(backends=[u.url for u in upstreams], config=cfg, listen=list(listen),
                              **kw)
        if ready:
            wait_ready(t)
        return t

    def client(self, port, **kw):
        c = H2Client(port, **kw)
        self.addCleanup(c.close)
        return c

    def get(self, t, path, headers=(), **kw):
        c = self.client(t.proxy_port, **kw)
        sid = c.request("GET", path, headers=headers)
        return c.response(sid)


class PriorKnowledge(H2TestCase):
    def test_get_is_proxied_as_http_1_1_with_the_header_policy(self):
        up = self.start_http_upstream(name="a")
        t = self.start(up and [up])
        c = self.client(t.proxy_port)
        sid = c.request("GET", "/echo?q=1", headers=[("x-a", "1"), ("cookie", "a=1"), ("cookie", "b=2"),
                                                     ("x-forwarded-for", "6.6.6.6")])
        r = c.response(sid)
        self.assertEqual(r.status, 200, bytes(r.body))
        e = json.loads(bytes(r.body))
        hs = echo_headers(bytes(r.body))
        self.assertEqual((e["method"], e["path"], e["query"]), ("GET", "/echo", "q=1"))
        self.assertEqual(hget(hs, "Host"), ["127.0.0.1:%d" % t.proxy_port])
        self.assertEqual(hget(hs, "X-A"), ["1"])
        self.assertEqual(hget(hs, "Cookie"), ["a=1; b=2"])  # crumbs joined (RFC 9113 §8.2.3)
        self.assertEqual(hget(hs, "X-Forwarded-For"), ["127.0.0.1"])  # not trusted: replaced
        self.assertEqual(hget(hs, "X-Forwarded-Proto"), ["http"])
        self.assertEqual(len(hget(hs, "X-Request-Id")), 1)
        self.assertEqual(r.header("x-upstream-name"), ["a"])
        self.assertEqual(r.header("x-request-id"), hget(hs, "X-Request-Id"))
        # Several streams at once on the connection, answered each on its own.
        sids = [c.request("GET", "/id") for _ in range(20)]
        for s in sids:
            r = c.response(s)
            self.assertEqual((r.status, bytes(r.body)), (200, b"a"))
        line = wait_until(lambda: [x for x in t.access_logs() if x["path"].startswith("/echo")], 5,
                          msg="access line %r" % t.access_logs()[:2])[0]
        self.assertEqual((line["protocol"], line["status"], line["method"]), ("HTTP/2", 200, "GET"))
        self.assertEqual(t.metric("tether_http2_connections_total"), 1)
        self.assertEqual(t.metric("tether_http2_connections_active"), 1)
        self.assertEqual(t.metric("tether_http_requests_total", code="200", method="GET") >= 21, True)
        c.close()
        wait_until(lambda: t.metric("tether_http2_connections_active") == 0, 5,
                   msg="the connection is no longer counted")

    def test_streams_that_reuse_closed_entries_carry_only_their_own_fields(self):
        # A closed stream's entry, head and storage are reused by the next stream of any
        # connection of the worker: nothing of one request may reach the next.
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        conns = [self.client(t.proxy_port), self.client(t.proxy_port)]
        for n in range(120):
            c = conns[n % 2]
            mine = [("x-n%d-%d" % (n, i), "v%d" % (n * 7 + i)) for i in range(n % 5)]
            if n % 9 == 0:
                mine.append(("x-big-%d" % n, "b" * (5000 + n)))  # past what a spare keeps
            path = "/echo?n=%d%s" % (n, "&q=" + "q" * n if n % 3 == 0 else "")
            method = "HEAD" if n % 11 == 5 else "GET"
            sid = c.request(method, path, headers=mine)
            r = c.response(sid)
            self.assertEqual(r.status, 200, (n, bytes(r.body)[:200]))
            if method == "HEAD":
                self.assertEqual(bytes(r.body), b"", n)
                continue
            e = json.loads(bytes(r.body))
            self.assertEqual(e["method"], "GET")
            self.assertEqual(e["path"], "/echo")
            self.assertEqual(e["query"], path.split("?", 1)[1])
            seen = {k.lower(): v for k, v in echo_headers(bytes(r.body))
                    if k.lower().startswith("x-n") or k.lower().startswith("x-big")}
            self.assertEqual(seen, dict(mine), n)

    def test_a_small_body_without_content_length_goes_with_one(self):
        # HEADERS and DATA(END_STREAM) in one flight: the body has arrived before the
        # upstream head is written (a fresh tether connects first), so the backend gets
        # a Content-Length rather than a chunked body.
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        c = self.client(t.proxy_port)
        sid = c.request("POST", "/echo", body=b"0123456789")
        r = c.response(sid)
        hs = echo_headers(bytes(r.body))
        self.assertEqual((hget(hs, "Content-Length"), hget(hs, "Transfer-Encoding")), (["10"], []))
        self.assertEqual(json.loads(bytes(r.body))["body_length"], 10)

    def test_curl_and_nghttp_prior_knowledge(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        r = curl("--http2-prior-knowledge", "-w", "\n%{http_code} %{http_version}",
                 "http://127.0.0.1:%d/id" % t.proxy_port)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"a\n200 2")
        # POST with a Content-Length, and a chunked upload (no length) from stdin.
        body = os.urandom(300_000)
        r = curl("--http2-prior-knowledge", "--data-binary", "@-", "http://127.0.0.1:%d/echo" % t.proxy_port,
                 input=body)
        e = json.loads(r.stdout)
        self.assertEqual((e["method"], e["body_length"], e["body_sha256"]),
                         ("POST", len(body), hashlib.sha256(body).hexdigest()))
        self.assertEqual(hget(echo_headers(r.stdout), "Content-Length"), [str(len(body))])
        r = curl("--http2-prior-knowledge", "-T", "-", "-X", "POST", "http://127.0.0.1:%d/echo" % t.proxy_port,
                 input=body)
        e = json.loads(r.stdout)
        self.assertEqual((e["body_length"], e["body_sha256"]), (len(body), hashlib.sha256(body).hexdigest()))
        self.assertEqual(hget(echo_headers(r.stdout), "Transfer-Encoding"), ["chunked"])
        nghttp = require_program("nghttp")
        p = subprocess.run([nghttp, "-n", "-s", "http://127.0.0.1:%d/id" % t.proxy_port,
                            "http://127.0.0.1:%d/echo" % t.proxy_port],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"responseEnd", p.stdout)

    def test_h2load_streams_are_all_answered(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        h2load = require_program("h2load")
        p = subprocess.run([h2load, "-n", "2000", "-c", "4", "-m", "10", "-T", "30",
                            "http://127.0.0.1:%d/id" % t.proxy_port], capture_output=True, timeout=120)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        self.assertIn("2000 succeeded, 0 failed, 0 errored, 0 timeout", out)
        self.assertIn("status codes: 2000 2xx", out)

    def test_h2c_false_speaks_only_http_1_1(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up], listen=[], config={"listeners": [{"address": "127.0.0.1:0", "h2c": False}]})
        s = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(PREFACE)
        data = s.recv(4096)
        self.assertTrue(data.startswith(b"HTTP/1.1 4") or data.startswith(b"HTTP/1.1 505"), data)
        r = curl("-w", "%{http_code} %{http_version}", "-o", "/dev/null", "http://127.0.0.1:%d/id" % t.proxy_port)
        self.assertEqual(r.stdout, b"200 1.1")
        self.assertEqual(t.metric("tether_http2_connections_total"), 0)

    def test_a_preface_in_pieces_and_http_1_1_beside_it(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        # The preface byte by byte is still HTTP/2; a request starting with P is HTTP/1.1.
        s = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=5)
        self.addCleanup(s.close)
        for b in PREFACE:
            s.sendall(bytes([b]))
        s.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")  # SETTINGS
        data = s.recv(4096)
        self.assertEqual(data[3], 4, data)  # the server's SETTINGS frame first
        c = http.client.HTTPConnection("127.0.0.1", t.proxy_port, timeout=5)
        self.addCleanup(c.close)
        c.request("PUT", "/echo", body=b"P" * 10)
        r = c.getresponse()
        self.assertEqual((r.status, json.loads(r.read())["method"]), (200, "PUT"))


class Bodies(H2TestCase):
    def test_a_256_mib_upload_streams_in_bounded_memory(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        c = self.client(t.proxy_port)
        total = 256 * MiB
        chunk = os.urandom(MiB)
        digest = hashlib.sha256()
        sampler = RssSampler(t.proc.pid)
        sid = c.request("POST", "/echo", headers=[("content-length", str(total))], end=False)
        for _ in range(total // MiB):
            c.send_data(sid, chunk, end=False)
            digest.update(chunk)
        c.send_data(sid, b"", end=True)
        r = c.response(sid, timeout=120)
        peak = sampler.stop()
        e = json.loads(bytes(r.body))
        self.assertEqual((r.status, e["body_length"], e["body_sha256"]), (200, total, digest.hexdigest()))
        if not sanitized():
            self.assertLess(peak, 64 * 1024, "RSS peaked at %d KiB for a 256 MiB upload" % peak)

    def test_a_64_mib_download_follows_the_clients_window(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        c = self.client(t.proxy_port)
        sampler = RssSampler(t.proc.pid)
        sid = c.request("GET", "/big?bytes=%d" % (64 * MiB))
        r = c.response(sid, timeout=120)
        peak = sampler.stop()
        self.assertEqual((r.status, len(r.body)), (200, 64 * MiB))
        self.assertEqual(r.header("content-length"), [str(64 * MiB)])
        if not sanitized():
            self.assertLess(peak, 64 * 1024, "RSS peaked at %d KiB for a 64 MiB download" % peak)
        # Chunked from the backend: the same bytes, framed by HTTP/2 alone.
        sid = c.request("GET", "/big?bytes=%d&chunked=1" % (3 * MiB))
        r = c.response(sid, timeout=60)
        self.assertEqual((r.status, len(r.body), r.header("transfer-encoding")), (200, 3 * MiB, []))

    def test_a_body_over_the_limit_is_413_with_or_without_content_length(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up], config={"limits": {"max_request_body_bytes": "100KiB"}})
        c = self.client(t.proxy_port)
        sid = c.request("POST", "/echo", headers=[("content-length", str(200 * 1024))], end=False)
        r = c.response(sid)
        self.assertEqual(r.status, 413)
        sid = c.request("POST", "/echo", end=False)
        c.send_data(sid, b"x" * (150 * 1024), end=True)
        r = c.response(sid)
        self.assertEqual(r.status, 413)
        sid = c.request("POST", "/echo", body=b"y" * (50 * 1024))
        r = c.response(sid)
        self.assertEqual((r.status, json.loads(bytes(r.body))["body_length"]), (200, 50 * 1024))

    def test_event_stream_frames_arrive_as_they_are_produced(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        c = self.client(t.proxy_port)
        sid = c.request("GET", "/chunked?n=4&delay_ms=300&size=16")
        r = c.response(sid, timeout=20)
        self.assertEqual((r.status, len(r.body)), (200, 64))
        # Each chunk is its own DATA frame, about 300 ms apart: nothing is held back.
        sized = [(at, n) for at, n in r.data_times if n]
        self.assertGreaterEqual(len(sized), 4, r.data_times)
        self.assertGreater(sized[-1][0] - sized[0][0], 0.6, r.data_times)

    def test_request_trailers_reach_the_backend_filtered(self):
        seen = []

        def handler(req, conn):
            seen.append(req)
            return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        up = RawUpstream(handler)
        self.addCleanup(up.stop)
        t = self.start([up])
        c = self.client(t.proxy_port)
        sid = c.request("POST", "/t", end=False)
        # The head reaches the backend before the body ends: it goes chunked.
        self.assertTrue(up.wait(lambda: any(b"\r\n\r\n" in bytes(x.data) for x in up.conns()), 5),
                        "the request head at the backend")
        c.send_data(sid, b"hello", end=False)
        c.conn.send_headers(sid, [("x-checksum", "abc"), ("host", "evil")], end_stream=True)
        c.flush()
        r = c.response(sid)
        self.assertEqual((r.status, bytes(r.body)), (200, b"ok"))
        req = seen[-1]
        self.assertEqual((req.framing, req.body), ("chunked", b"hello"))
        names = [n.lower() for n, _ in req.trailers]
        self.assertIn("x-checksum", names)
        self.assertNotIn("host", names)  # a field that may not be a trailer is dropped

    def test_head_204_304_and_status_codes(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        c = self.client(t.proxy_port)
        sid = c.request("HEAD", "/big?bytes=1000")
        r = c.response(sid)
        self.assertEqual((r.status, bytes(r.body), r.header("content-length")), (200, b"", ["1000"]))
        for code in (204, 304, 404, 500):
            sid = c.request("GET", "/status/%d" % code)
            r = c.response(sid)
            self.assertEqual(r.status, code)
            if code in (204, 304):
                self.assertEqual(bytes(r.body), b"")

    def test_response_trailers_reach_the_client(self):
        def handler(req, conn):
            return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n"
                    b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nContent-Length: 9\r\n\r\n")
        up = RawUpstream(handler)
        self.addCleanup(up.stop)
        t = self.start([up])
        c = self.client(t.proxy_port)
        sid = c.request("GET", "/t", headers=[("te", "trailers")])
        r = c.response(sid)
        self.assertEqual((r.status, bytes(r.body)), (200, b"hello"))
        self.assertEqual(r.trailers, [("x-checksum", "abc")])  # a framing field is never a trailer


class Applications(H2TestCase):
    def test_informational_heads_reach_the_client(self):
        def handler(req, conn):
            return (b"HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n"
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        up = RawUpstream(handler)
        self.addCleanup(up.stop)
        t = self.start([up])
        c = self.client(t.proxy_port)
        sid = c.request("GET", "/hints")
        r = c.response(sid)
        self.assertEqual((r.informational, r.status, bytes(r.body)), ([103], 200, b"ok"))

    def test_uvicorn_event_stream_through_http2(self):
        app = self.start_sse_app()
        t = self.start([app])
        c = self.client(t.proxy_port)
        sid = c.request("GET", "/sse?n=5&interval_ms=200")
        r = c.response(sid, timeout=20)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("content-type")[0].split(";")[0], "text/event-stream")
        frames = [f for f in bytes(r.body).split(b"\n\n") if f]
        self.assertEqual(len(frames), 6)  # 5 events and [DONE]
        self.assertEqual(frames[-1], b"data: [DONE]")
        # Each event left the backend ~200 ms apart and arrived as it was sent.
        sized = [at for at, n in r.data_times if n]
        self.assertGreater(sized[-1] - sized[0], 0.6, r.data_times)
        wait_until(lambda: t.metric("tether_sse_streams_active") == 0, 5)

    def test_socketio_polling_keeps_its_instance_over_http2(self):
        from affinity_util import SIO_PATH, eio_packets, eio_path, hello_name, tether_config
        apps = [self.start_socketio_app(name="s%d" % i) for i in range(2)]
        cfg = tether_config()
        cfg["access_log"] = {"flush": "50ms"}
        t = self.start(apps, config=cfg)
        wait_until(lambda: t.metric("tether_backend_up") == 2, 10, msg="both instances up")
        c = self.client(t.proxy_port)
        sid = c.request("GET", eio_path())
        r = c.response(sid)
        self.assertEqual(r.status, 200, bytes(r.body))
        eio = json.loads(bytes(r.body)[1:].split(b"\x1e")[0])["sid"]
        served_by = []
        # The Socket.IO connect, then polls: every one on the instance that holds the sid.
        # (with content-length, as browsers send it: python-engineio does not read a
        # chunked body, which is what a body without one becomes if it has not fully
        # arrived when tether writes the upstream head)
        s = c.request("POST", eio_path(eio), headers=[("content-type", "text/plain;charset=UTF-8"),
                                                      ("content-length", "2")], body=b"40")
        self.assertEqual(c.response(s).status, 200)
        for _ in range(6):
            s = c.request("GET", eio_path(eio))
            r = c.response(s, timeout=30)
            self.assertEqual(r.status, 200, bytes(r.body))
            name = hello_name(eio_packets(bytes(r.body)))
            if name:
                served_by.append(name)
            served_by.append(r.header("x-upstream-name") and r.header("x-upstream-name")[0])
            if any(p.startswith("42") for p in eio_packets(bytes(r.body))):
                break
        names = {n for n in served_by if n}
        self.assertLessEqual(len(names), 1, served_by)
        lines = [x for x in t.access_logs() if x["path"].startswith(SIO_PATH)]
        self.assertTrue(lines and all(x["protocol"] == "HTTP/2" for x in lines), lines[:3])
        self.assertEqual(len({x["backend"] for x in lines}), 1, [x["backend"] for x in lines])


class Cancel(H2TestCase):
    def test_rst_stream_closes_the_upstream_request(self):
        requests = []
        lock = threading.Condition()

        def handler(req, conn):
            if req.target == b"/slow":
                with lock:
                    requests.append(conn)
                    lock.notify_all()
                return None  # never answered
            return None if False else b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        up = RawUpstream(handler)
        self.addCleanup(up.stop)
        t = self.start([up])
        c = self.client(t.proxy_port)
        sid = c.request("GET", "/slow")
        with lock:
            self.assertTrue(lock.wait_for(lambda: requests, 5), "the request reached the backend")
        conn = requests[0]
        c.reset(sid)
        # The upstream connection closes: never reused with an unanswered request.
        up.wait(lambda: conn.closed, 5)
        self.assertTrue(conn.closed)
        # The connection goes on: the next stream is answered.
        sid = c.request("GET", "/fast")
        r = c.response(sid)
        self.assertEqual((r.status, bytes(r.body)), (200, b"ok"))
        wait_until(lambda: t.metric("tether_http2_stream_errors_total", reason="client_reset") == 1, 5,
                   msg="the reset is counted")

    def test_a_backend_that_dies_mid_response_resets_that_stream_only(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        c = self.client(t.proxy_port)
        slow = c.request("GET", "/chunked?n=3&delay_ms=400&size=8")
        dead = c.request("GET", "/close-mid")
        r = c.response(dead)
        self.assertEqual(r.reset, 2, "INTERNAL_ERROR")
        r = c.response(slow, timeout=10)
        self.assertEqual((r.status, len(r.body), r.reset), (200, 24, None))
        self.assertIsNone(c.goaway)

    def test_http_1_only_headers_are_a_stream_error(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up])
        c = self.client(t.proxy_port)
        for name, value in (("connection", "keep-alive"), ("transfer-encoding", "chunked"),
                            ("upgrade", "websocket"), ("keep-alive", "5"), ("te", "gzip")):
            sid = c.request("GET", "/id", headers=[(name, value)])
            r = c.response(sid)
            self.assertEqual((r.status, r.reset), (None, 1), name)  # PROTOCOL_ERROR
        sid = c.request("GET", "/id", headers=[("te", "trailers")])
        self.assertEqual(c.response(sid).status, 200)
        self.assertIsNone(c.goaway)


class Tls(H2TestCase):
    def setUp(self):
        super().setUp()
        self.certs = test_tls.CERTS

    def tls_start(self, upstreams, alpn=None):
        cert, key = self.certs.pair("a")
        listener = {"address": "127.0.0.1:0", "tls": {"certificates": [{"cert": cert, "key": key}]}}
        if alpn:
            listener["tls"]["alpn"] = alpn
        return self.start(upstreams, listen=[], config={"listeners": [listener]})

    def ctx(self, alpn):
        ctx = ssl.create_default_context(cafile=self.certs.ca)
        ctx.set_alpn_protocols(alpn)
        return ctx

    def test_alpn_h2_with_the_python_client_and_curl(self):
        up = self.start_http_upstream(name="a")
        t = self.tls_start([up])
        c = self.client(t.proxy_port, tls_ctx=self.ctx(["h2", "http/1.1"]), sni="a.test")
        self.assertEqual(c.alpn, "h2")
        sid = c.request("POST", "/echo", body=b"x" * 100_000)
        r = c.response(sid)
        e = json.loads(bytes(r.body))
        self.assertEqual((r.status, e["body_length"]), (200, 100_000))
        self.assertEqual(hget(echo_headers(bytes(r.body)), "X-Forwarded-Proto"), ["https"])
        line = wait_until(lambda: [x for x in t.access_logs() if x["path"].startswith("/echo")], 5,
                          msg="access line")[0]
        self.assertEqual(line["protocol"], "HTTP/2")
        self.assertNotEqual(line["tls"], "-")
        r = curl("--cacert", self.certs.ca, "--resolve", "a.test:%d:127.0.0.1" % t.proxy_port, "--http2",
                 "-w", "\n%{http_version}", "https://a.test:%d/id" % t.proxy_port)
        self.assertEqual(r.stdout, b"a\n2", r.stderr)

    def test_websocket_over_http_1_1_beside_h2(self):
        from test_tls import TlsClient, client_ctx
        from wsutil import OP_TEXT, accept_for, frame, new_key, recv_frame, upgrade_head
        ws = self.start_ws_echo()
        t = self.tls_start([ws])
        # A browser opens its WebSocket on a connection of its own, offering
        # http/1.1 only (or both, when the server does not do RFC 8441).
        for offer in (["http/1.1"], None):
            c = TlsClient(t.proxy_port, ctx=client_ctx(alpn=offer))
            self.addCleanup(c.close)
            self.assertEqual(c.sock.selected_alpn_protocol(), offer and "http/1.1")
            key = new_key()
            c.send(upgrade_head("a.test:%d" % t.proxy_port, "/", key))
            head = c.recv_until(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
            self.assertIn(("Sec-WebSocket-Accept: " + accept_for(key)).encode(), head)
            c.send(frame(OP_TEXT, b"hi"))
            f = recv_frame(c, 5)
            self.assertEqual((f.opcode, f.payload), (OP_TEXT, b"hi"))
        # And the h2 client on the same listener is told nothing of RFC 8441.
        h = self.client(t.proxy_port, tls_ctx=self.ctx(["h2"]), sni="a.test")
        sid = h.request("GET", "/")
        h.response(sid)
        self.assertNotIn(8, h.remote_settings)  # SETTINGS_ENABLE_CONNECT_PROTOCOL


class H2WsTestCase(H2TestCase):
    """RFC 8441 extended CONNECT streams, and the WebSocket frames they carry."""

    def ws_stream(self, c, path="/", extra=()):
        sid = c.request("CONNECT", path, headers=[(":protocol", "websocket"),
                                                  ("sec-websocket-version", "13")] + list(extra),
                        end=False)
        r = c.responses[sid]
        self.assertTrue(c.until(lambda: r.status is not None or r.reset is not None, 10), "an answer")
        return sid, r

    def recv_ws(self, c, r, have, timeout=5):
        """The next WebSocket frame in r.body after `have` bytes: (opcode, payload, used)."""
        from wsutil import _parse
        deadline = time.monotonic() + timeout
        while True:
            f, used = _parse(bytes(r.body[have:]))
            if f is not None:
                return f, have + used
            if time.monotonic() > deadline or c.closed:
                raise AssertionError("no WebSocket frame (%d bytes, reset %r)" % (len(r.body) - have, r.reset))
            now = len(r.body)
            c.until(lambda: len(r.body) > now or r.ended or r.reset is not None, 0.5)


class WebSocketsOverH2(H2WsTestCase):
    """RFC 8441 extended CONNECT, with http2.websockets: true."""

    def test_off_by_default_not_advertised_and_refused(self):
        ws = self.start_ws_echo()
        t = self.start([ws])
        c = self.client(t.proxy_port)
        sid = c.request("GET", "/id")
        c.response(sid)
        self.assertNotIn(8, c.remote_settings)  # SETTINGS_ENABLE_CONNECT_PROTOCOL
        sid, r = self.ws_stream(c)
        self.assertTrue(r.reset is not None or (r.status or 0) >= 400, (r.status, r.reset))

    def test_echo_through_an_http_1_1_upgrade_to_the_backend(self):
        from wsutil import OP_BINARY, OP_CLOSE, OP_TEXT, frame
        ws = self.start_ws_echo()
        t = self.start([ws], config={"http2": {"websockets": True}})
        c = self.client(t.proxy_port)
        self.assertTrue(c.until(lambda: c.remote_settings.get(8) == 1, 5), c.remote_settings)
        sid, r = self.ws_stream(c, "/headers")
        self.assertEqual((r.status, r.reset), (200, None))
        self.assertEqual(r.header("sec-websocket-accept"), [])
        f, used = self.recv_ws(c, r, 0)
        seen = {n.lower(): v for n, v in json.loads(f.payload)}
        self.assertEqual(seen.get("upgrade", "").lower(), "websocket")
        self.assertEqual(len(seen.get("sec-websocket-key", "")), 24)
        # Messages both ways, a big one across many DATA frames and windows.
        for op, payload in ((OP_TEXT, b"hello"), (OP_BINARY, os.urandom(300_000))):
            c.send_data(sid, frame(op, payload, mask=True), end=False)
            f, used = self.recv_ws(c, r, used, timeout=20)
            self.assertEqual((f.opcode, f.payload == payload), (op, True))
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 1, 5)
        # A close from the client: echoed by the backend, the stream ends.
        c.send_data(sid, frame(OP_CLOSE, b"\x03\xe8", mask=True), end=False)
        f, used = self.recv_ws(c, r, used)
        self.assertEqual(f.opcode, OP_CLOSE)
        c.send_data(sid, b"", end=True)
        self.assertTrue(c.until(lambda: r.ended or r.reset is not None, 10), "the stream ends")
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 0, 5)
        self.assertEqual(t.metric("tether_websocket_closes_total", code="1000", by="client"), 1)
        # The connection is still good for requests.
        sid = c.request("GET", "/id")
        self.assertEqual(c.response(sid).status, 200)

    def test_sigterm_sends_1001_on_the_tunnel_streams(self):
        from wsutil import OP_CLOSE, OP_TEXT, close_payload, frame
        ws = self.start_ws_echo()
        t = self.start([ws], config={"http2": {"websockets": True}, "timeouts": {"shutdown_grace": "5s"}})
        c = self.client(t.proxy_port)
        sid, r = self.ws_stream(c)
        self.assertEqual(r.status, 200)
        c.send_data(sid, frame(OP_TEXT, b"x", mask=True), end=False)
        f, used = self.recv_ws(c, r, 0)
        t.signal(SIGTERM)
        f, used = self.recv_ws(c, r, used)
        self.assertEqual(f.opcode, OP_CLOSE)
        self.assertEqual(f.payload[:2], b"\x03\xe9")  # 1001 Going Away
        c.send_data(sid, frame(OP_CLOSE, close_payload(1001) if callable(close_payload) else b"\x03\xe9",
                               mask=True), end=False)
        self.assertTrue(c.until(lambda: r.ended or r.reset is not None, 10), "the stream ends")
        self.assertEqual(t.wait_exit(10), 0)

    def test_socketio_upgrades_over_http2_to_the_instance_of_its_sid(self):
        # What Chrome does with http2.websockets on: the Engine.IO handshake and the
        # namespace connect by polling, then the WebSocket upgrade as an extended
        # CONNECT on the same HTTP/2 connection, routed by the sid to its instance.
        from affinity_util import eio_packets, eio_path, hello_name, tether_config
        from wsutil import OP_TEXT, frame
        apps = [self.start_socketio_app(name="s%d" % i) for i in range(2)]
        cfg = tether_config()
        cfg["http2"] = {"websockets": True}
        t = self.start(apps, config=cfg)
        wait_until(lambda: t.metric("tether_backend_up") == 2, 10, msg="both instances up")
        c = self.client(t.proxy_port)
        sid = c.request("GET", eio_path())
        eio = json.loads(bytes(c.response(sid).body)[1:].split(b"\x1e")[0])["sid"]
        s = c.request("POST", eio_path(eio), headers=[("content-type", "text/plain;charset=UTF-8"),
                                                      ("content-length", "2")], body=b"40")
        self.assertEqual(c.response(s).status, 200)
        hello = None
        for _ in range(5):
            s = c.request("GET", eio_path(eio))
            hello = hello_name(eio_packets(bytes(c.response(s, timeout=30).body)))
            if hello:
                break
        self.assertIsNotNone(hello, "the app's hello event")
        ws, r = self.ws_stream(c, eio_path(eio, "websocket"))
        self.assertEqual((r.status, r.reset), (200, None))
        c.send_data(ws, frame(OP_TEXT, b"2probe", mask=True), end=False)
        f, used = self.recv_ws(c, r, 0)
        self.assertEqual(f.payload, b"3probe")
        c.send_data(ws, frame(OP_TEXT, b"5", mask=True), end=False)
        c.send_data(ws, frame(OP_TEXT, b'421["whoami"]', mask=True), end=False)
        who = None
        for _ in range(10):
            f, used = self.recv_ws(c, r, used)
            if f.payload.startswith(b"431"):
                who = json.loads(f.payload[3:])[0]
                break
        self.assertIsNotNone(who, "an answer on the upgraded stream")
        self.assertEqual(who["name"], hello)  # the instance that holds the sid
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 1, 5)

    def test_an_idle_tunnel_ends_after_tunnel_idle(self):
        from wsutil import OP_TEXT, frame
        ws = self.start_ws_echo()
        t = self.start([ws], config={"http2": {"websockets": True},
                                     "timeouts": {"tunnel_idle": "1s", "downstream_idle": "30s"}})
        c = self.client(t.proxy_port)
        sid, r = self.ws_stream(c)
        self.assertEqual(r.status, 200)
        c.send_data(sid, frame(OP_TEXT, b"x", mask=True), end=False)
        f, used = self.recv_ws(c, r, 0)
        t0 = time.monotonic()
        self.assertTrue(c.until(lambda: r.reset is not None, 10), "the idle tunnel is reset")
        self.assertGreater(time.monotonic() - t0, 0.7)
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 0, 5)
        self.assertEqual(t.metric("tether_websocket_closes_total", by="tether"), 1)
        # The connection itself stays: a request on it is answered.
        sid = c.request("GET", "/id")
        self.assertEqual(c.response(sid).status, 200)

    def test_a_client_that_drops_its_connection_ends_its_tunnels_as_their_closer(self):
        # The client's connection ends under its tunnels: closed by the client (the
        # tunnels of a connection tether closes count by="tether").
        from wsutil import OP_TEXT, frame
        ws = self.start_ws_echo()
        t = self.start([ws], config={"http2": {"websockets": True}})
        c = self.client(t.proxy_port)
        for _ in range(2):
            sid, r = self.ws_stream(c)
            self.assertEqual(r.status, 200)
            c.send_data(sid, frame(OP_TEXT, b"x", mask=True), end=False)
            self.recv_ws(c, r, 0)
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 2, 5)
        c.close()
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 0, 5,
                   msg="both tunnels end with their connection")
        self.assertEqual(t.metric("tether_websocket_closes_total", by="client"), 2)
        self.assertEqual(t.metric("tether_websocket_closes_total", by="tether", default=0.0), 0.0)

    def test_client_reset_closes_the_upstream_websocket(self):
        ws = self.start_ws_echo()
        t = self.start([ws], config={"http2": {"websockets": True}})
        c = self.client(t.proxy_port)
        sid, r = self.ws_stream(c)
        self.assertEqual(r.status, 200)
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 1, 5)
        c.reset(sid)
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 0, 5,
                   msg="the tunnel is over")
        self.assertEqual(t.metric("tether_upstream_connections", state="active"), 0)
        sid = c.request("GET", "/id")
        self.assertEqual(c.response(sid).status, 200)


class WebSocketsOverH2Closing(H2WsTestCase):
    """The going-away closes of RFC 8441 tunnels, as of HTTP/1.1 ones: after the
    1001, timeouts.websocket_close bounds the close handshake; the 1001s are
    spread over timeouts.websocket_close_spread; tether_websocket_closes_total
    counts them."""

    def ws_config(self, **timeouts):
        return {"http2": {"websockets": True}, "timeouts": timeouts}

    def open_tunnels(self, c, n):
        """n tunnel streams on c, each past one echoed message: [(sid, r, used)]."""
        from wsutil import OP_TEXT, frame
        out = []
        for _ in range(n):
            sid, r = self.ws_stream(c)
            self.assertEqual((r.status, r.reset), (200, None))
            c.send_data(sid, frame(OP_TEXT, b"x", mask=True), end=False)
            f, used = self.recv_ws(c, r, 0)
            self.assertEqual(f.payload, b"x")
            out.append((sid, r, used))
        return out

    def assert_going_away(self, c, r, used):
        from wsutil import OP_CLOSE
        f, used = self.recv_ws(c, r, used)
        self.assertEqual((f.opcode, f.payload[:2]), (OP_CLOSE, b"\x03\xe9"))  # 1001 Going Away
        return used

    def silent_backend(self):
        """A WebSocket backend that never answers a close frame; .results gets
        (frames it read, when tether closed its connection)."""
        from wsutil import RawWsBackend, read_frames_from_socket
        def script(conn, rest):
            fs, _ = read_frames_from_socket(conn, rest, 1, timeout=15)
            conn.settimeout(30)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass
            b.results.append((fs, time.monotonic()))
        b = RawWsBackend(script)
        self.addCleanup(b.stop)
        return b

    def sigterm_one_tunnel(self, up, **timeouts):
        """tether on `up` with `timeouts`, a tunnel stream through it, then SIGTERM
        and the stream's 1001: (tether, client, stream id, response, time of the
        signal)."""
        t = self.start([up], config=self.ws_config(shutdown_grace="20s", **timeouts))
        c = self.client(t.proxy_port)
        sid, r = self.ws_stream(c)
        self.assertEqual((r.status, r.reset), (200, None))
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 1, 5)
        t0 = time.monotonic()
        t.signal(SIGTERM)
        self.assert_going_away(c, r, 0)
        return t, c, sid, r, t0

    def test_an_unanswered_1001_ends_the_tunnel_after_websocket_close(self):
        # Neither peer answers the 1001: at websocket_close the stream ends
        # (END_STREAM, then RST_STREAM NO_ERROR for the client's open side),
        # the upstream connection closes, and tether exits long before
        # shutdown_grace.
        up = self.silent_backend()
        t, c, sid, r, t0 = self.sigterm_one_tunnel(up, websocket_close="1s")
        self.assertFalse(r.ended or r.reset is not None, "the tunnel waits for the close handshake")
        self.assertTrue(c.until(lambda: r.ended and r.reset is not None, 10), "the stream ends")
        took = time.monotonic() - t0
        self.assertGreater(took, 0.7)
        self.assertLess(took, 3.0)
        self.assertEqual(r.reset, 0)  # NO_ERROR: an end, not a failure
        self.assertTrue(c.wait_closed(5), "the connection closes once its tunnel is over")
        self.assertEqual(t.wait_exit(5), 0)
        wait_until(lambda: up.results, 5, msg="tether closed the upstream connection")
        frames, closed_at = up.results[0]
        self.assertEqual([(f.opcode, f.payload[:2], f.masked) for f in frames], [(8, b"\x03\xe9", True)])
        self.assertLess(closed_at - t0, 3.0)

    def test_a_client_that_never_answers_is_closed_after_websocket_close(self):
        # The backend answers the 1001 (and leaves); the client does not. The
        # client gets one close frame, ours: not the backend's answer after it.
        from wsutil import _parse
        t, c, sid, r, t0 = self.sigterm_one_tunnel(self.start_ws_echo(), websocket_close="1s")
        self.assertTrue(c.wait_closed(10), "the connection closes")
        took = time.monotonic() - t0
        self.assertGreater(took, 0.7)
        self.assertLess(took, 3.0)
        self.assertTrue(r.ended)
        self.assertIn(r.reset, (None, 0))
        f, used = _parse(bytes(r.body))
        self.assertEqual((f.opcode, f.payload[:2]), (8, b"\x03\xe9"))
        self.assertEqual(bytes(r.body[used:]), b"", "nothing after our close frame")
        self.assertEqual(t.wait_exit(5), 0)

    def test_a_client_that_answers_1001_ends_at_once(self):
        # websocket_close is long: the stream, the connection and tether end
        # when the handshake does, not when the wait would.
        from wsutil import OP_CLOSE, close_payload, frame
        t, c, sid, r, t0 = self.sigterm_one_tunnel(self.start_ws_echo(), websocket_close="10s")
        c.send_data(sid, frame(OP_CLOSE, close_payload(1001), mask=True), end=False)
        self.assertTrue(c.until(lambda: r.ended, 5), "the stream ends")
        self.assertIn(r.reset, (None, 0))
        self.assertTrue(c.wait_closed(5), "the connection closes")
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertEqual(t.wait_exit(5), 0)

    def test_frames_in_flight_at_sigterm_end_before_the_1001s(self):
        # Each side has half of the other's frame when the drain starts: the rest is
        # forwarded, then the 1001, between frames both ways (as over HTTP/1.1).
        from wsutil import OP_BINARY, OP_CLOSE, RawWsBackend, close_payload, frame, read_and_answer_close
        payload_b, payload_c = os.urandom(9000), os.urandom(9000)
        to_backend = frame(OP_BINARY, payload_b, mask=True)
        to_client = frame(OP_BINARY, payload_c, mask=False)
        half, go, got = threading.Event(), threading.Event(), []

        def script(conn, rest):
            conn.sendall(to_client[:3000])
            buf = rest
            conn.settimeout(8)
            while len(buf) < 1000:
                buf += conn.recv(65536)
            half.set()
            if not go.wait(8):
                return
            conn.sendall(to_client[3000:])
            read_and_answer_close(conn, buf, 2, got)

        up = RawWsBackend(script)
        self.addCleanup(up.stop)
        t = self.start([up], config=self.ws_config(shutdown_grace="20s"))
        c = self.client(t.proxy_port)
        sid, r = self.ws_stream(c)
        self.assertEqual((r.status, r.reset), (200, None))
        c.send_data(sid, to_backend[:4000], end=False)
        self.assertTrue(half.wait(5), "the first half reached the backend")
        self.assertTrue(c.until(lambda: len(r.body) >= 1000, 5), "the client has part of a frame")
        t.signal(SIGTERM)
        t.wait_log(msg="stopping", timeout=5)
        time.sleep(0.2)  # the tunnel is going away before the rest comes (sooner: a weaker test)
        c.send_data(sid, to_backend[4000:], end=False)
        go.set()
        f, used = self.recv_ws(c, r, 0)
        self.assertEqual((f.opcode, f.payload), (OP_BINARY, payload_c))
        used = self.assert_going_away(c, r, used)
        c.send_data(sid, frame(OP_CLOSE, close_payload(1001), mask=True), end=False)
        self.assertTrue(c.until(lambda: r.ended, 5), "the stream ends")
        self.assertIn(r.reset, (None, 0))
        self.assertEqual(t.wait_exit(10), 0)
        self.assertEqual([(g.opcode, len(g.payload)) for g in got], [(OP_BINARY, 9000), (OP_CLOSE, 2)])
        self.assertEqual(got[0].payload, payload_b, "the client's frame in flight arrived whole")
        self.assertTrue(got[1].masked)
        self.assertEqual(got[1].payload, close_payload(1001))

    def test_a_1001_the_client_window_cannot_take_goes_whole_when_it_opens(self):
        # The client's stream window is 2 bytes and stays shut: the 4-byte 1001
        # goes out as far as it opens, the rest once it does, never cut short.
        import h2.settings
        from wsutil import OP_CLOSE, _parse, close_payload, frame
        t = self.start([self.start_ws_echo()],
                       config=self.ws_config(shutdown_grace="20s", websocket_close="10s"))
        c = self.client(t.proxy_port, auto_ack=False,
                        settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2})
        sid, r = self.ws_stream(c)
        self.assertEqual((r.status, r.reset), (200, None))
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 1, 5)
        t0 = time.monotonic()
        t.signal(SIGTERM)
        self.assertTrue(c.until(lambda: len(r.body) >= 2, 5), "the first two bytes of the 1001")
        self.assertFalse(c.until(lambda: len(r.body) > 2 or r.ended or r.reset is not None, 0.5),
                         "nothing past the client's window, and the stream still open")
        c.conn.increment_flow_control_window(64, stream_id=sid)
        c.flush()
        self.assertTrue(c.until(lambda: len(r.body) >= 4, 5), "the rest of the 1001")
        f, used = _parse(bytes(r.body))
        self.assertEqual((f.opcode, f.payload[:2]), (OP_CLOSE, b"\x03\xe9"))
        self.assertEqual(bytes(r.body[used:]), b"")
        c.send_data(sid, frame(OP_CLOSE, close_payload(1001), mask=True), end=False)
        self.assertTrue(c.until(lambda: r.ended, 5), "the stream ends")
        self.assertIn(r.reset, (None, 0))
        self.assertLess(time.monotonic() - t0, 8.0)
        self.assertEqual(t.wait_exit(10), 0)

    def test_sigterm_spreads_the_1001s_over_websocket_close_spread(self):
        ws = self.start_ws_echo()
        t = self.start([ws], config=self.ws_config(websocket_close_spread="1s", websocket_close="1s"))
        conns = [self.client(t.proxy_port) for _ in range(2)]
        tunnels = [self.open_tunnels(c, 10) for c in conns]
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 20, 5)
        arrived = [[None] * 10 for _ in conns]

        def watch(i):
            c = conns[i]
            marks = [(r, len(r.body), len(r.data_times)) for _, r, _ in tunnels[i]]
            c.until(lambda: all(len(r.body) > n for r, n, _ in marks), 10)
            for k, (r, n, k0) in enumerate(marks):
                if len(r.body) > n:
                    arrived[i][k] = r.data_times[k0][0]

        watchers = [threading.Thread(target=watch, args=(i,)) for i in range(2)]
        t0 = time.monotonic()
        t.signal(SIGTERM)
        for w in watchers:
            w.start()
        for w in watchers:
            w.join(15)
        for i, c in enumerate(conns):
            for _, r, used in tunnels[i]:
                self.assert_going_away(c, r, used)
        times = sorted(x - t0 for row in arrived for x in row)
        # Not all at once: over most of the window, the streams of one
        # connection too, and within it.
        self.assertGreater(times[-1] - times[0], 0.5, times)
        self.assertLess(times[-1], 2.0, times)
        for row in arrived:
            self.assertGreater(max(row) - min(row), 0.2, row)
        self.assertEqual(t.wait_exit(10), 0)

    def test_a_drain_closes_and_counts_them_as_http_1_1_tunnels(self):
        # The backend's drain deadline: 1001s spread over the window, then the
        # unanswered ones end after websocket_close, each counted once as
        # tether's 1001.
        ws = self.start_ws_echo()
        t = self.start([ws], config=self.ws_config(websocket_close_spread="500ms", websocket_close="1s"))
        c = self.client(t.proxy_port)
        tunnels = self.open_tunnels(c, 4)
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 4, 5)
        bid = t.backends_state()[0]["id"]
        t0 = time.monotonic()
        self.assertEqual(t.admin_post("/admin/backends/%s/drain?deadline=100ms" % bid).status, 200)
        for sid, r, used in tunnels:
            self.assert_going_away(c, r, used)
        self.assertTrue(c.until(lambda: all(r.reset is not None for _, r, _ in tunnels), 10),
                        "the tunnels end")
        took = time.monotonic() - t0
        self.assertGreater(took, 1.0)
        self.assertLess(took, 4.0)
        self.assertEqual([r.reset for _, r, _ in tunnels], [0] * 4)
        wait_until(lambda: t.metric("tether_websocket_connections_active") == 0, 5)
        self.assertEqual(t.metric("tether_websocket_closes_total", code="1001", by="tether"), 4)
        self.assertEqual(sum(v for (n, _), v in t.metrics().items() if n == "tether_websocket_closes_total"), 4)
        self.assertEqual(t.metric("tether_websocket_duration_seconds_count"), 4)
        self.assertFalse(c.closed, "the connection itself stays")


class Drain(H2TestCase):
    def test_sigterm_sends_two_goaways_and_answers_streams_in_flight(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up], config={"timeouts": {"shutdown_grace": "10s"}})
        c = self.client(t.proxy_port)
        sid = c.request("GET", "/sleep/1500")
        wait_until(lambda: t.metric("tether_http2_connections_active") == 1, 5)
        time.sleep(0.2)  # the request is at the backend
        t.signal(SIGTERM)
        self.assertTrue(c.until(lambda: c.goaway is not None, 5), "a GOAWAY")
        self.assertEqual(c.goaways[0], (0, 2**31 - 1))  # the notice: NO_ERROR, every stream
        r = c.response(sid, timeout=10)
        self.assertEqual((r.status, r.reset), (200, None))
        self.assertTrue(c.wait_closed(10), "closed once the stream is answered")
        self.assertEqual(c.goaways[-1][0], 0)
        self.assertEqual(c.goaways[-1][1], sid)  # the final one names the last stream processed
        self.assertEqual(t.wait_exit(10), 0)

    def test_an_idle_connection_gets_a_goaway_then_closes(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up], config={"timeouts": {"downstream_idle": "1s"}})
        c = self.client(t.proxy_port)
        sid = c.request("GET", "/id")
        self.assertEqual(c.response(sid).status, 200)
        t0 = time.monotonic()
        self.assertTrue(c.wait_closed(10), "the idle connection is closed")
        self.assertGreater(time.monotonic() - t0, 0.5)
        self.assertEqual(c.goaway, (0, sid))

    def test_a_client_that_never_reads_is_closed_after_downstream_idle(self):
        up = self.start_http_upstream(name="a")
        t = self.start([up], config={"timeouts": {"downstream_idle": "1s"}})
        # A window of 0: the response can never be sent.
        c = self.client(t.proxy_port, settings={4: 0})
        sid = c.request("GET", "/big?bytes=%d" % (8 * MiB))
        self.assertTrue(c.wait_closed(10), "the stalled connection is closed")
        self.assertIsNone(c.responses[sid].reset if c.responses[sid].ended else None)
        wait_until(lambda: t.metric("tether_http2_connections_active") == 0, 5)
        # Its upstream request is let go too.
        wait_until(lambda: (t.metric("tether_upstream_connections", state="active") or 0) == 0, 5,
                   msg="no upstream connection in use")


if __name__ == "__main__":
    unittest.main()
