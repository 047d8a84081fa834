"""The HTTP/1.1 core, end to end: keep-alive and pipelining, the upstream pool,
bodies both ways (Content-Length, chunked, close-delimited, 1xx, HEAD, 204/304),
memory under big bodies, event streams, header rewriting, the access log and
the readiness endpoints. Every check runs the real binary with curl and raw
sockets against real upstream programs."""

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (E2ETestCase, header, http_get, http_request, parse_responses,
                     require_program, wait_until)

# Health checks every 200 ms, one success makes a backend up: tests need not wait long.
FAST_HEALTH = {"interval": "200ms", "rise": 1}
MiB = 1 << 20


# ---- helpers shared with test_http_errors.py and test_cli.py (functions only: importing
# a TestCase class would run its tests twice) ------------------------------------------

def curl(*args, timeout=60, input=None):
    """Runs curl (never through a proxy); returns CompletedProcess with bytes output."""
    exe = require_program("curl")
    return subprocess.run([exe, "-sS", "--noproxy", "*", *args], capture_output=True,
                          timeout=timeout, input=input)


def curl_status(url, *args, timeout=30):
    """(status, body bytes) of one request made with curl."""
    r = curl("-o", "-", "-w", "\n%{http_code}", *args, url, timeout=timeout)
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code or 0), body


def wait_ready(t, timeout=10.0):
    """Waits until /readyz says a backend is up (the first health check passed)."""
    wait_until(lambda: t.admin_get("/readyz").status == 200, timeout, msg="/readyz 200")


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """Samples VmRSS of a process every 20 ms in a thread; .max_kib after stop()."""

    def __init__(self, pid):
        self.pid, self.max_kib, self.samples = pid, 0, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.wait(0.02):
            try:
                self.max_kib = max(self.max_kib, rss_kib(self.pid))
                self.samples += 1
            except OSError:
                return

    def stop(self):
        self._stop.set()
        self._t.join(2)
        return self.max_kib


def with_health(handler):
    """A ScriptedUpstream handler that answers the health checks (GET /health) itself."""
    def h(req):
        if req.path == "/health":
            return 200, {}, b'{"status": true}'
        return handler(req)
    return h


def app_requests(up):
    """Requests a ScriptedUpstream received, health checks left out."""
    return [r for r in up.requests if r.path != "/health"]


def echo_headers(body):
    """[(name, value)] the http_upstream /echo saw."""
    return [(k, v) for k, v in json.loads(body)["headers"]]


def hget(pairs, name):
    vals = [v for k, v in pairs if k.lower() == name.lower()]
    return vals


def big_pattern_sha(total):
    """sha256 of http_upstream's /big body of `total` bytes."""
    block = bytes(range(256)) * 256
    h = hashlib.sha256()
    left = total
    while left > 0:
        piece = block[:min(left, len(block))]
        h.update(piece)
        left -= len(piece)
    return h.hexdigest()


def read_stream_lines(proc, deadline, pred_stop):
    """Reads lines from proc.stdout with their arrival times until pred_stop(line) or
    EOF or deadline (a watchdog kills curl at the deadline)."""
    out = []
    timer = threading.Timer(max(0.0, deadline - time.monotonic()), proc.kill)
    timer.start()
    try:
        for raw in iter(proc.stdout.readline, b""):
            out.append((time.monotonic(), raw))
            if pred_stop(raw):
                break
    finally:
        timer.cancel()
    return out


# ---------------------------------------------------------------------------------------


class HttpCoreBase(E2ETestCase):
    def tether_for(self, *upstreams, config=None, **kw):
        cfg = {"health": dict(FAST_HEALTH)}
        for k, v in (config or {}).items():
            cfg[k] = v
        t = self.start_tether(backends=[u.url for u in upstreams], config=cfg, **kw)
        wait_ready(t)
        return t


class KeepAliveAndPipelining(HttpCoreBase):
    def test_curl_reuses_the_downstream_connection(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        r = curl("-w", "connects=%{num_connects}\n", "-o", "/dev/null", t.url("/id"),
                 "-o", "/dev/null", t.url("/id"), "-o", "/dev/null", t.url("/id"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.decode().split(), ["connects=1", "connects=0", "connects=0"])

    def test_pipelined_requests_are_answered_in_order_on_one_connection(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        c = self.raw_client(t.proxy_port)
        c.send(b"GET /echo?i=1 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"POST /echo?i=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
               b"GET /status/404 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /chunked?n=3&delay_ms=10 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /echo?i=5 HTTP/1.1\r\nHost: x\r\n\r\n")
        got = []
        for _ in range(5):
            r = c.recv_response(timeout=5)
            self.assertIsNotNone(r, "only %d responses arrived" % len(got))
            got.append(r)
        self.assertEqual([r.status for r in got], [200, 200, 404, 200, 200])
        e1, e2, e5 = (json.loads(got[i].body) for i in (0, 1, 4))
        self.assertEqual((e1["query"], e2["query"], e5["query"]), ("i=1", "i=2", "i=5"))
        self.assertEqual((e2["method"], e2["body_length"]),
                         ("POST", 5))
        self.assertEqual(e2["body_sha256"], hashlib.sha256(b"hello").hexdigest())
        self.assertIn(b"chunk 2", got[3].body)
        self.assertFalse(c.is_closed(0.2), "tether closed a keep-alive connection")
        # And the connection still carries a request after the pipeline drained.
        c.send(b"GET /id HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(c.recv_response(timeout=5).body, b"a")

    def test_request_head_arriving_in_small_pieces(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        c = self.raw_client(t.proxy_port)
        req = (b"GET /echo?split=1 HTTP/1.1\r\nHost: x\r\nX-Long-Value: " + b"v" * 300 +
               b"\r\nX-Other: o\r\n\r\n")
        for i in range(0, len(req), 7):  # separate segments (TCP_NODELAY), read apart
            c.send(req[i:i + 7])
        r = c.recv_response(timeout=5)
        self.assertEqual(r.status, 200, r)
        hs = echo_headers(r.body)
        self.assertEqual(hget(hs, "X-Long-Value"), ["v" * 300])
        self.assertEqual(hget(hs, "X-Other"), ["o"])

    def test_connection_close_from_client_is_honoured(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        c = self.raw_client(t.proxy_port)
        c.send(b"GET /id HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = c.recv_response(timeout=5)
        self.assertEqual((r.status, r.body), (200, b"a"))
        self.assertEqual((header(r, "Connection") or "").lower(), "close")
        self.assertTrue(c.is_closed(2.0))

    def test_http10_client_gets_a_close_delimited_or_sized_body(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        data = b""
        c = self.raw_client(t.proxy_port)
        c.send(b"GET /chunked?n=3&delay_ms=10&size=8 HTTP/1.0\r\nHost: x\r\n\r\n")
        data = c.recv_all(timeout=5)
        self.assertTrue(c.eof, "an HTTP/1.0 response without keep-alive must end with close")
        self.assertTrue(data.startswith(b"HTTP/1."), data[:100])
        self.assertNotIn(b"transfer-encoding: chunked", data.lower(),
                         "HTTP/1.0 clients cannot read chunked")
        body = data.split(b"\r\n\r\n", 1)[1]
        self.assertEqual(body, b"chunk 0 chunk 1 chunk 2 ")


class UpstreamPool(HttpCoreBase):
    def echo(self, t, **kw):
        status, body = curl_status(t.url("/echo"), **kw)
        self.assertEqual(status, 200, body)
        return json.loads(body)

    def test_upstream_connections_are_reused(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        seen = [self.echo(t)["connection_request"] for _ in range(6)]
        # Six client connections in a row; one pooled upstream connection serves them.
        self.assertEqual(seen[1:], list(range(seen[0] + 1, seen[0] + 6)), seen)
        self.assertGreaterEqual(t.metric("tether_upstream_connections", state="idle",
                                         backend=up.address), 1)

    def test_a_burst_keeps_its_upstream_connections_until_the_load_falls(self):
        # max_idle_upstream_per_backend is a floor: a burst of 12 concurrent requests keeps
        # its 12 connections for the next burst, and the sweep brings the pool back to 2
        # once two quiet seconds have passed.
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up, config={"limits": {"max_idle_upstream_per_backend": 2}})
        connects = lambda: t.metric("tether_upstream_connect_seconds_count", backend=up.address)

        def burst():
            with ThreadPoolExecutor(12) as ex:
                codes = list(ex.map(lambda _: curl_status(t.url("/sleep/300"))[0], range(12)))
            self.assertEqual(codes, [200] * 12)

        idle = lambda: t.metric("tether_upstream_connections", state="idle", backend=up.address)
        burst()
        opened = connects()
        self.assertGreaterEqual(opened, 12)
        self.assertGreaterEqual(idle(), 10, "the burst's connections were closed")
        burst()
        self.assertLessEqual(connects() - opened, 2,
                             "the second burst opened new upstream connections")
        wait_until(lambda: idle() == 2, 10, msg="idle connections back to the floor of 2")

    def test_idle_upstream_connections_are_closed_after_upstream_keepalive(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up, config={"timeouts": {"upstream_keepalive": "300ms"}})
        self.echo(t)
        self.assertEqual(self.echo(t)["connection_request"], 2)
        wait_until(lambda: t.metric("tether_upstream_connections", state="idle",
                                    backend=up.address) == 0, 5,
                   msg="idle upstream connection swept")
        self.assertEqual(self.echo(t)["connection_request"], 1,
                         "a swept connection was used again")

    def test_backend_closing_idle_connections_costs_no_request(self):
        # The backend closes a keep-alive connection after 300 ms idle, silently.
        up = self.start_http_upstream(name="a", extra_args=["--idle-close-ms", "300"])
        t = self.tether_for(up)
        self.echo(t)
        # tether notices the close while the connection sits in the pool...
        wait_until(lambda: t.metric("tether_upstream_connections", state="idle",
                                    backend=up.address) == 0, 5,
                   msg="pool dropped the connection the backend closed")
        # ...and requests made around the backend's idle timeout all succeed. The pauses
        # are the stimulus here (gaps of 270..330 ms against the backend's 300 ms), not a
        # wait for something to happen.
        failures = []
        c = self.raw_client(t.proxy_port)
        for i in range(12):
            time.sleep(0.27 + 0.005 * i)
            c.send(b"GET /id HTTP/1.1\r\nHost: x\r\n\r\n")
            r = c.recv_response(timeout=5)
            if r is None or r.status != 200:
                failures.append((i, r))
                c.close()
                c = self.raw_client(t.proxy_port)
        self.assertEqual(failures, [])

    def test_backend_closing_after_every_response_costs_no_request(self):
        # Every upstream connection dies right after its response, without a
        # Connection: close: each pooled connection is dead when tether takes it.
        up = self.start_http_upstream(name="a", extra_args=["--close-after-response"])
        t = self.tether_for(up)
        c = self.raw_client(t.proxy_port)
        failures = []
        for i in range(40):
            if i % 2:
                c.send(b"GET /echo?i=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            else:
                c.send(b"POST /echo?i=%d HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"
                       % i)
            r = c.recv_response(timeout=5)
            if r is None or r.status != 200:
                failures.append((i, r and r.status, r and r.body[:200]))
                c.close()
                c = self.raw_client(t.proxy_port)
                continue
            self.assertEqual(json.loads(r.body)["query"], "i=%d" % i)
        for i in range(10):
            status, body = curl_status(t.url("/id"))
            if status != 200:
                failures.append(("curl", i, status, body[:200]))
        self.assertEqual(failures, [])
        self.assertGreaterEqual(json.loads(http_get(up.url + "/stats").body)["connections"], 40)


class Bodies(HttpCoreBase):
    def test_upload_content_length_and_chunked(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        payload = os.urandom(3 * MiB + 17)
        want = hashlib.sha256(payload).hexdigest()
        for extra in ([], ["-H", "Transfer-Encoding: chunked"]):
            r = curl("--data-binary", "@-", "-H", "Content-Type: application/octet-stream",
                     *extra, t.url("/echo"), input=payload)
            self.assertEqual(r.returncode, 0, r.stderr)
            e = json.loads(r.stdout)
            self.assertEqual((e["body_length"], e["body_sha256"]), (len(payload), want), extra)
            te = hget(echo_headers(r.stdout), "Transfer-Encoding")
            cl = hget(echo_headers(r.stdout), "Content-Length")
            if extra:
                self.assertEqual((te, cl), (["chunked"], []))
            else:
                self.assertEqual((te, cl), ([], [str(len(payload))]))

    def test_download_content_length_chunked_and_close_delimited(self):
        up = self.start_http_upstream(name="a")
        total = 5 * MiB + 3
        want = big_pattern_sha(total)

        def close_delimited(req):
            req.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"z" * 100000)
            req.close()
            return None
        sc = self.scripted_upstream(with_health(close_delimited))
        t = self.tether_for(up)
        for q in ("", "&chunked=1"):
            r = curl("-D", "-", "-o", "-", t.url("/big?bytes=%d%s" % (total, q)))
            self.assertEqual(r.returncode, 0, r.stderr)
            head, _, body = r.stdout.partition(b"\r\n\r\n")
            self.assertEqual((len(body), hashlib.sha256(body).hexdigest()), (total, want), q)
            if q:
                self.assertIn(b"transfer-encoding: chunked", head.lower())
            else:
                self.assertIn(b"content-length: %d" % total, head.lower())
        t2 = self.tether_for(sc)
        r = curl("-o", "-", t2.url("/x"))
        self.assertEqual((r.returncode, r.stdout), (0, b"z" * 100000), r.stderr)

    def test_head_has_no_body_and_keeps_the_connection_in_sync(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        r = curl("-I", t.url("/big?bytes=1000"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"content-length: 1000", r.stdout.lower())
        c = self.raw_client(t.proxy_port)
        c.send(b"HEAD /big?bytes=1000 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"HEAD /chunked HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /id HTTP/1.1\r\nHost: x\r\n\r\n")
        data = c.recv_until(b"\r\n\r\na", timeout=5)
        heads = data.split(b"\r\n\r\n")
        self.assertEqual(len(heads), 4, data)  # 3 heads and "a"
        self.assertTrue(heads[0].startswith(b"HTTP/1.1 200"), heads[0])
        self.assertTrue(heads[1].startswith(b"HTTP/1.1 200"), heads[1])
        self.assertTrue(heads[2].startswith(b"HTTP/1.1 200"), heads[2])
        self.assertEqual(heads[3], b"a")
        self.assertFalse(c.is_closed(0.2))

    def test_expect_100_continue(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        # curl waits 1 s for a 100 before sending anyway: a proxy that swallows
        # the 100 shows up as a slow upload. Give it 30 s to make that obvious.
        payload = os.urandom(8 * MiB)
        start = time.monotonic()
        r = curl("-v", "--expect100-timeout", "30", "-H", "Expect: 100-continue",
                 "--data-binary", "@-", t.url("/echo"), input=payload)
        took = time.monotonic() - start
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        self.assertIn(b"HTTP/1.1 100", r.stderr)
        self.assertEqual(json.loads(r.stdout)["body_sha256"], hashlib.sha256(payload).hexdigest())
        self.assertLess(took, 20)
        # Raw: the 100 arrives before any body byte is sent.
        c = self.raw_client(t.proxy_port)
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               b"Content-Length: 5\r\n\r\n")
        interim = c.recv_until(b"\r\n\r\n", timeout=5)
        self.assertTrue(interim.startswith(b"HTTP/1.1 100"), interim)
        c.send(b"hello")
        final = c.recv_response(timeout=5)
        self.assertEqual(final.status, 200)
        self.assertEqual(json.loads(final.body)["body_length"], 5)

    def test_other_1xx_are_relayed_before_the_final_response(self):
        def early_hints(req):
            req.write(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                      b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return None
        sc = self.scripted_upstream(with_health(early_hints))
        t = self.tether_for(sc)
        c = self.raw_client(t.proxy_port)
        c.send(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\nGET /page HTTP/1.1\r\nHost: x\r\n\r\n")
        rs = [c.recv_response(timeout=5) for _ in range(4)]
        self.assertNotIn(None, rs)
        self.assertEqual([r.status for r in rs], [103, 200, 103, 200])
        self.assertEqual(header(rs[0], "Link"), "</s.css>; rel=preload")
        self.assertEqual(rs[1].body, b"ok")
        r = curl("-i", t.url("/page"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith(b"HTTP/1.1 103"), r.stdout[:200])
        self.assertTrue(r.stdout.endswith(b"\r\n\r\nok"), r.stdout[-200:])

    def test_204_and_304_carry_no_body(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        c = self.raw_client(t.proxy_port)
        c.send(b"GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n"
               b"GET /status/304 HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\"\r\n\r\n"
               b"GET /id HTTP/1.1\r\nHost: x\r\n\r\n")
        data = c.recv_until(b"\r\n\r\na", timeout=5)
        rs = parse_responses(data)
        self.assertEqual([r.status for r in rs], [204, 304, 200], data)
        for r in rs[:2]:
            self.assertIsNone(header(r, "Transfer-Encoding"), r)
            self.assertIn(header(r, "Content-Length"), (None, "0"), r)
        self.assertEqual(rs[2].body, b"a")

    @unittest.skipIf(os.environ.get("TETHER_SANITIZED"),
                     "resident memory under ASan is not tether's")
    def test_256_mib_upload_keeps_rss_small(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        tmp = tempfile.mkdtemp(prefix="tether-upload-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "blob")
        h = hashlib.sha256()
        chunk = os.urandom(MiB)
        with open(path, "wb") as f:
            for i in range(256):
                piece = chunk[i:] + chunk[:i]
                h.update(piece)
                f.write(piece)
        base = rss_kib(t.proc.pid)
        sampler = RssSampler(t.proc.pid)
        try:
            r = curl("-X", "POST", "-T", path, t.url("/echo"), timeout=240)
        finally:
            peak = sampler.stop()
        self.assertEqual(r.returncode, 0, r.stderr)
        e = json.loads(r.stdout)
        self.assertEqual((e["body_length"], e["body_sha256"]), (256 * MiB, h.hexdigest()))
        self.assertGreater(sampler.samples, 5)
        self.assertLess(peak, 64 * 1024, "tether RSS peaked at %d KiB (start %d KiB)"
                        % (peak, base))

    @unittest.skipIf(os.environ.get("TETHER_SANITIZED"),
                     "resident memory under ASan is not tether's")
    def test_256_mib_download_keeps_rss_small(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        total = 256 * MiB
        sampler = RssSampler(t.proc.pid)
        exe = require_program("curl")
        p = subprocess.Popen([exe, "-sS", "--noproxy", "*", "-o", "-",
                              t.url("/big?bytes=%d" % total)], stdout=subprocess.PIPE)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(5)))
        h, n = hashlib.sha256(), 0
        watchdog = threading.Timer(240, p.kill)
        watchdog.start()
        try:
            while True:
                b = p.stdout.read(MiB)
                if not b:
                    break
                h.update(b)
                n += len(b)
        finally:
            watchdog.cancel()
            peak = sampler.stop()
            p.stdout.close()
        self.assertEqual(p.wait(10), 0)
        self.assertEqual((n, h.hexdigest()), (total, big_pattern_sha(total)))
        self.assertLess(peak, 64 * 1024, "tether RSS peaked at %d KiB" % peak)

    @unittest.skipIf(os.environ.get("TETHER_SANITIZED"),
                     "resident memory under ASan is not tether's")
    def test_slow_reader_backpressure_stops_reading_the_backend(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        total = 128 * MiB
        c = self.raw_client(t.proxy_port, timeout=60)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                          64 * 1024)
        c.send(b"GET /big?bytes=%d HTTP/1.1\r\nHost: x\r\n\r\n" % total)
        # The client reads nothing for 1.5 s: tether must not buffer the backend's 128 MiB.
        sampler = RssSampler(t.proc.pid)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            time.sleep(0.05)
        peak_stalled = sampler.stop()
        self.assertLess(peak_stalled, 64 * 1024, "tether buffered %d KiB" % peak_stalled)
        head = c.recv_until(b"\r\n\r\n", timeout=10)
        self.assertIn(b"200", head.split(b"\r\n")[0])
        got, h = len(c.buffer), hashlib.sha256(c.buffer)
        c.buffer = b""
        deadline = time.monotonic() + 120
        while got < total and time.monotonic() < deadline:
            b = c.sock.recv(MiB)
            if not b:
                break
            h.update(b)
            got += len(b)
        self.assertEqual((got, h.hexdigest()), (total, big_pattern_sha(total)))


class EventStreams(HttpCoreBase):
    def stream(self, t, path, stop, timeout=20):
        exe = require_program("curl")
        p = subprocess.Popen([exe, "-sS", "-N", "--noproxy", "*", t.url(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(5),
                                 p.stdout.close(), p.stderr.close()))
        start = time.monotonic()
        lines = read_stream_lines(p, start + timeout, stop)
        rc = p.wait(10)
        return rc, start, lines

    def assert_spread(self, arrivals, gap):
        """Events sent `gap` s apart arrived spread out, each soon after it was sent."""
        self.assertGreaterEqual(len(arrivals), 6)
        spread = arrivals[-1] - arrivals[0]
        self.assertGreater(spread, gap * (len(arrivals) - 1) * 0.6,
                           "events arrived bunched: %r" % [round(a - arrivals[0], 3)
                                                          for a in arrivals])
        for a, b in zip(arrivals, arrivals[1:]):
            self.assertGreater(b - a, gap * 0.3, "two events arrived together")

    def test_sse_events_arrive_as_sent(self):
        app = self.start_sse_app(name="s")
        t = self.tether_for(app)
        rc, _, lines = self.stream(t, "/sse?n=7&interval_ms=300",
                                   lambda l: l.startswith(b"data: [DONE]"))
        self.assertEqual(rc, 0)
        events = [(at, json.loads(l[6:])) for at, l in lines
                  if l.startswith(b"data: {")]
        self.assertEqual([e["i"] for _, e in events], list(range(7)))
        self.assertTrue(lines[-1][1].startswith(b"data: [DONE]"))
        self.assert_spread([at for at, _ in events], 0.3)
        # Sent-to-arrived delay, on one host's clock: no event was held back.
        wall_minus_mono = time.time() - time.monotonic()
        lags = [at + wall_minus_mono - e["t"] for at, e in events]
        self.assertLess(max(lags), 0.25, lags)

    def test_ndjson_lines_arrive_as_sent(self):
        app = self.start_sse_app(name="s")
        t = self.tether_for(app)
        rc, _, lines = self.stream(t, "/ollama/api/chat?n=6&interval_ms=300",
                                   lambda l: b'"done": true' in l)
        self.assertEqual(rc, 0)
        objs = [(at, json.loads(l)) for at, l in lines]
        self.assertEqual([o.get("i") for _, o in objs], [0, 1, 2, 3, 4, 5, None])
        self.assertTrue(objs[-1][1]["done"])
        self.assert_spread([at for at, _ in objs[:-1]], 0.3)

    def test_chunked_response_chunks_arrive_as_sent(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        c = self.raw_client(t.proxy_port)
        c.send(b"GET /chunked?n=6&delay_ms=300&size=10 HTTP/1.1\r\nHost: x\r\n\r\n")
        c.recv_until(b"\r\n\r\n", timeout=5)
        arrivals = []
        for i in range(6):
            got = c.recv_until(b"chunk %d" % i, timeout=5)
            self.assertIn(b"chunk %d" % i, got)
            arrivals.append(time.monotonic())
        self.assert_spread(arrivals, 0.3)
        self.assertIn(b"0\r\n\r\n", c.recv_until(b"0\r\n\r\n", timeout=5))

    def test_a_moving_stream_has_no_total_timeout(self):
        app = self.start_sse_app(name="s")
        t = self.tether_for(app, config={"timeouts": {"upstream_first_byte": "1s",
                                                      "upstream_idle": "1s"}})
        start = time.monotonic()
        rc, _, lines = self.stream(t, "/sse?n=11&interval_ms=300",
                                   lambda l: l.startswith(b"data: [DONE]"))
        self.assertEqual(rc, 0)
        self.assertGreater(time.monotonic() - start, 2.5)
        self.assertEqual(len([l for _, l in lines if l.startswith(b"data: {")]), 11)
        self.assertTrue(lines[-1][1].startswith(b"data: [DONE]"))
        # Counter-check: silence longer than upstream_idle does end a stream.
        rc, _, lines = self.stream(t, "/sse?n=3&interval_ms=2500",
                                   lambda l: l.startswith(b"data: [DONE]"))
        self.assertNotEqual(rc, 0, "a stream silent for 2.5 s outlived upstream_idle=1s")
        self.assertFalse(any(l.startswith(b"data: [DONE]") for _, l in lines))


class Headers(HttpCoreBase):
    def echo_raw(self, t, extra, host=b"app.example:8443"):
        c = self.raw_client(t.proxy_port)
        c.send(b"GET /echo HTTP/1.1\r\nHost: " + host + b"\r\n" + extra + b"\r\n")
        r = c.recv_response(timeout=5)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 200, r)
        return r, echo_headers(r.body)

    def test_hop_by_hop_headers_are_removed(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        r, hs = self.echo_raw(t, b"Connection: keep-alive, X-Secret, x-other\r\n"
                                 b"X-Secret: s\r\nX-Other: o\r\nKeep-Alive: timeout=5\r\n"
                                 b"TE: trailers\r\nTrailer: X-T\r\n"
                                 b"Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\n"
                                 b"X-Kept: yes\r\n")
        names = {k.lower() for k, _ in hs}
        for gone in ("x-secret", "x-other", "keep-alive", "te", "trailer",
                     "proxy-connection", "upgrade"):
            self.assertNotIn(gone, names, hs)
        self.assertEqual(hget(hs, "X-Kept"), ["yes"])
        for v in hget(hs, "Connection"):
            self.assertNotIn("x-secret", v.lower())

    def test_hop_by_hop_response_headers_are_removed(self):
        sc = self.scripted_upstream(with_health(lambda req: (200, [
            ("Connection", "X-Internal"), ("X-Internal", "secret"),
            ("Keep-Alive", "timeout=9"), ("Proxy-Connection", "keep-alive"),
            ("X-Public", "p")], b"ok")))
        t = self.tether_for(sc)
        r = curl("-i", t.url("/"))
        self.assertEqual(r.returncode, 0, r.stderr)
        head = r.stdout.split(b"\r\n\r\n")[0].lower()
        self.assertIn(b"x-public: p", head)
        for gone in (b"x-internal", b"keep-alive:", b"proxy-connection"):
            self.assertNotIn(gone, head)
        self.assertTrue(r.stdout.endswith(b"\r\n\r\nok"))

    def test_host_and_origin_pass_untouched(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        _, hs = self.echo_raw(t, b"Origin: https://chat.example.com\r\n")
        self.assertEqual(hget(hs, "Host"), ["app.example:8443"])
        self.assertEqual(hget(hs, "Origin"), ["https://chat.example.com"])
        self.assertEqual(hget(hs, "X-Forwarded-Host"), ["app.example:8443"])
        self.assertEqual(hget(hs, "X-Forwarded-Proto"), ["http"])

    def test_x_forwarded_for_is_replaced_for_untrusted_peers(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        _, hs = self.echo_raw(t, b"X-Forwarded-For: 6.6.6.6\r\n"
                                 b"X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n")
        self.assertEqual(hget(hs, "X-Forwarded-For"), ["127.0.0.1"])
        self.assertEqual(hget(hs, "X-Forwarded-Proto"), ["http"])
        self.assertEqual(hget(hs, "X-Forwarded-Host"), ["app.example:8443"])
        r = curl("-H", "X-Forwarded-For: 6.6.6.6", t.url("/echo"))
        self.assertEqual(hget(echo_headers(r.stdout), "X-Forwarded-For"), ["127.0.0.1"])

    def test_x_forwarded_for_is_appended_for_trusted_proxies(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up, config={"trusted_proxies": ["127.0.0.0/8"]})
        _, hs = self.echo_raw(t, b"X-Forwarded-For: 6.6.6.6, 10.0.0.1\r\n")
        self.assertEqual(hget(hs, "X-Forwarded-For"), ["6.6.6.6, 10.0.0.1, 127.0.0.1"])
        _, hs = self.echo_raw(t, b"")
        self.assertEqual(hget(hs, "X-Forwarded-For"), ["127.0.0.1"])

    def test_x_request_id_is_kept_or_generated_and_returned(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        r, hs = self.echo_raw(t, b"X-Request-Id: req-from-client-42\r\n")
        self.assertEqual(hget(hs, "X-Request-Id"), ["req-from-client-42"])
        self.assertEqual(header(r, "X-Request-Id"), "req-from-client-42")
        ids = set()
        for _ in range(3):
            r = curl("-D", "-", t.url("/echo"))
            head, _, body = r.stdout.partition(b"\r\n\r\n")
            sent = hget(echo_headers(body), "X-Request-Id")
            self.assertEqual(len(sent), 1, body)
            self.assertGreaterEqual(len(sent[0]), 16)
            self.assertIn(("x-request-id: " + sent[0]).encode(), head.lower())
            ids.add(sent[0])
        self.assertEqual(len(ids), 3, "generated request ids repeat: %r" % ids)


class AccessLog(HttpCoreBase):
    def test_one_json_line_per_request(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up)
        mark = len(t.logs)
        r = curl("-H", "X-Request-Id: rid-1", "--data-binary", "0123456789",
                 t.url("/echo?q=1"))
        self.assertEqual(r.returncode, 0)
        rec = t.wait_log(msg="access", request_id="rid-1", start=mark)
        for k in ("time", "request_id", "client", "method", "path", "status", "backend",
                  "bytes_in", "bytes_out", "duration", "ttfb"):
            self.assertIn(k, rec)
        self.assertEqual((rec["method"], rec["status"], rec["backend"]),
                         ("POST", 200, up.address))
        self.assertTrue(rec["path"].startswith("/echo"), rec)
        self.assertTrue(rec["client"].startswith("127.0.0.1"), rec)
        self.assertGreaterEqual(rec["bytes_in"], 10)
        self.assertGreater(rec["bytes_out"], len(r.stdout) - 1)
        self.assertGreaterEqual(rec["duration"], rec["ttfb"])
        # One line per request: three pipelined requests, three lines.
        c = self.raw_client(t.proxy_port)
        c.send(b"".join(b"GET /id HTTP/1.1\r\nHost: x\r\nX-Request-Id: p%d\r\n\r\n" % i
                        for i in range(3)))
        for _ in range(3):
            self.assertEqual(c.recv_response(timeout=5).status, 200)
        for i in range(3):
            t.wait_log(msg="access", request_id="p%d" % i, start=mark)
        self.assertEqual(len([x for x in t.access_logs() if x["request_id"] in
                              ("p0", "p1", "p2", "rid-1")]), 4)
        # A request answered by tether itself is logged too.
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: bad\r\nContent-Length: 1\r\n"
               b"Content-Length: 2\r\n\r\nab")
        self.assertEqual(c.recv_response(timeout=5).status, 400)
        t.wait_log(lambda x: x.get("status") == 400, msg="access", start=mark)

    def test_access_log_can_be_turned_off(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up, config={"access_log": {"enabled": False}})
        for _ in range(3):
            self.assertEqual(curl_status(t.url("/id"))[0], 200)
        # Another line that tether logs after the requests: the requests' lines would be
        # before it.
        mark = len(t.logs)
        t.signal(signal.SIGHUP)
        t.wait_log(lambda r: "reload" in str(r.get("msg", "")), start=mark)
        self.assertEqual(t.access_logs(), [])


class Readiness(HttpCoreBase):
    def test_healthz_and_readyz(self):
        up = self.start_http_upstream(name="a")
        t = self.tether_for(up, config={"health": {"interval": "200ms", "rise": 1,
                                                   "fall": 1, "timeout": "200ms"}})
        self.assertEqual(t.admin_get("/healthz").status, 200)
        self.assertEqual(t.admin_get("/readyz").status, 200)
        up.kill()
        wait_until(lambda: t.admin_get("/readyz").status == 503, 5, msg="/readyz 503")
        self.assertEqual(t.admin_get("/healthz").status, 200)

    def test_readyz_503_until_a_backend_is_up(self):
        up = self.start_http_upstream(name="a", health_status=503)
        t = self.start_tether(backends=[up.url], config={"health": dict(FAST_HEALTH)})
        # A few health checks fail: still not ready, though alive.
        wait_until(lambda: (t.metric("tether_health_checks_total", result="fail") or 0) >= 2,
                   5, msg="two failed health checks")
        self.assertEqual(t.admin_get("/readyz").status, 503)
        self.assertEqual(t.admin_get("/healthz").status, 200)
        http_request(up.url + "/admin/health/200", method="POST", body=b"")
        wait_ready(t)

if __name__ == "__main__":
    unittest.main()
