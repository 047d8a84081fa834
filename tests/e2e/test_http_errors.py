"""Bad input from clients and failures of backends, end to end: each answered with
a clear status, nothing forwarded that should not be, other connections unharmed."""

import json
import time
import unittest

from harness import E2ETestCase, free_port, header, wait_until
from test_http_core import (FAST_HEALTH, app_requests, curl, curl_status, wait_ready,
                            with_health)


class BadInput(E2ETestCase):
    """One tether in front of a scripted upstream that records what reaches it."""

    LIMITS = {"max_request_header_bytes": "4KiB", "max_request_body_bytes": "1KiB"}

    def setUp(self):
        self.up = self.scripted_upstream(with_health(lambda req: (200, {}, b"ok")))
        self.t = self.start_tether(backends=[self.up.url], config={
            "health": dict(FAST_HEALTH), "limits": dict(self.LIMITS),
            "timeouts": {"request_header": "1s"}})
        wait_ready(self.t)
        # A keep-alive connection opened before the bad input: it must carry on.
        self.bystander = self.raw_client(self.t.proxy_port)
        self.assert_bystander_ok()

    def assert_bystander_ok(self):
        self.bystander.send(b"GET /bystander HTTP/1.1\r\nHost: x\r\n\r\n")
        r = self.bystander.recv_response(timeout=5)
        self.assertIsNotNone(r, "the bystander connection got no answer")
        self.assertEqual((r.status, r.body), (200, b"ok"))

    def reject(self, data, status, closes=True, timeout=5.0):
        """Sends data on a fresh connection; asserts one `status` response, the
        connection closed (when `closes`), nothing reached the backend, and the
        bystander still works. Returns the response."""
        before = len(app_requests(self.up))
        c = self.raw_client(self.t.proxy_port, timeout=timeout)
        c.send(data)
        r = c.recv_response(timeout=timeout)
        self.assertIsNotNone(r, "no response to %r" % data[:200])
        self.assertEqual(r.status, status, (data[:200], r))
        self.assertTrue(r.body, "an error answer should say what went wrong")
        if closes:
            self.assertEqual((header(r, "Connection") or "").lower(), "close", r)
            self.assertTrue(c.is_closed(2.0), "connection left open after %d" % status)
        self.assertEqual([(q.method, q.path) for q in app_requests(self.up)[before:]], [],
                         "a rejected request reached the backend")
        self.assert_bystander_ok()
        return r

    def test_malformed_request_line_is_400_and_closes(self):
        self.reject(b"GET /a b c HTTP/1.1\r\nHost: x\r\n\r\n", 400)
        self.reject(b"HELLO\r\n\r\n", 400)
        self.reject(b"GET / HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n", 400)

    def test_content_length_with_transfer_encoding_is_400(self):
        self.reject(b"POST /smuggle HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /inner HTTP/1.1\r\n"
                    b"Host: x\r\n\r\n", 400)

    def test_two_different_content_lengths_are_400(self):
        self.reject(b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                    b"Content-Length: 10\r\n\r\nabcdefghij", 400)
        self.reject(b"POST /cl HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 10\r\n\r\n"
                    b"abcdefghij", 400)

    def test_bad_chunk_size_is_400(self):
        before = len(app_requests(self.up))
        c = self.raw_client(self.t.proxy_port)
        c.send(b"POST /chunks HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"zz\r\nhello\r\n0\r\n\r\n")
        r = c.recv_response(timeout=5)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 400, r)
        self.assertTrue(c.is_closed(2.0))
        # The head may have gone ahead of the body; no complete request reached the app.
        self.assertEqual(len(app_requests(self.up)[before:]), 0)
        self.assert_bystander_ok()

    def test_obs_fold_is_400(self):
        self.reject(b"GET /fold HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n  folded\r\n\r\n", 400)

    def test_cr_or_nul_in_a_header_value_is_400(self):
        self.reject(b"GET /cr HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400)
        self.reject(b"GET /nul HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400)
        self.reject(b"GET /lf HTTP/1.1\r\nHost: x\r\nX-A: a\nX-B: b\r\n\r\n", 400)

    def test_header_too_large_is_431(self):
        self.reject(b"GET /big-head HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8000 +
                    b"\r\n\r\n", 431)
        many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(150))
        self.reject(b"GET /many HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n", 431)
        status, _ = curl_status(self.t.url("/curl-big"), "-H", "X-Big: " + "b" * 6000)
        self.assertEqual(status, 431)

    def test_body_too_large_is_413_with_content_length(self):
        self.reject(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n" +
                    b"b" * 2000, 413)
        status, _ = curl_status(self.t.url("/curl-body"), "--data-binary", "c" * 5000)
        self.assertEqual(status, 413)
        # At the limit passes.
        status, body = curl_status(self.t.url("/at-limit"), "--data-binary", "d" * 1024)
        self.assertEqual((status, body), (200, b"ok"))

    def test_body_too_large_is_413_when_chunked(self):
        before = len(app_requests(self.up))
        c = self.raw_client(self.t.proxy_port)
        c.send(b"POST /chunked-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
               b"".join(b"200\r\n" + b"e" * 0x200 + b"\r\n" for _ in range(4)) + b"0\r\n\r\n")
        r = c.recv_response(timeout=5)
        self.assertIsNotNone(r)
        self.assertEqual(r.status, 413, r)
        self.assertTrue(c.is_closed(2.0))
        self.assertEqual(len(app_requests(self.up)[before:]), 0,
                         "a too-large chunked body reached the backend whole")
        status, _ = curl_status(self.t.url("/curl-chunked"), "-H",
                                "Transfer-Encoding: chunked", "--data-binary", "f" * 5000)
        self.assertEqual(status, 413)
        self.assert_bystander_ok()

    def test_slow_header_is_408_and_closes(self):
        c = self.raw_client(self.t.proxy_port, timeout=5)
        start = time.monotonic()
        c.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n")
        for i in range(3):  # trickling bytes does not extend the deadline
            if c.is_closed(0.3):
                break
            c.send(b"X-Drip-%d: 1\r\n" % i)
        data = c.recv_all(timeout=4)
        took = time.monotonic() - start
        self.assertTrue(data.startswith(b"HTTP/1.1 408"), data[:200])
        self.assertTrue(c.eof, "connection not closed after 408")
        self.assertLess(took, 3.0)
        self.assertGreater(took, 0.8)
        self.assertEqual([q.path for q in app_requests(self.up)], ["/bystander"])
        self.assert_bystander_ok()

    def test_good_requests_still_work_between_bad_ones(self):
        for bad in (b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00\r\n\r\n",
                    b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"):
            self.reject(bad, 400)
            status, body = curl_status(self.t.url("/fine"))
            self.assertEqual((status, body), (200, b"ok"))


class MaxConnections(E2ETestCase):
    def test_connections_past_the_limit_get_503_and_existing_ones_carry_on(self):
        up = self.scripted_upstream(with_health(lambda req: (200, {}, b"ok")))
        t = self.start_tether(backends=[up.url], config={
            "health": dict(FAST_HEALTH), "limits": {"max_connections": 3}})
        wait_ready(t)
        held = []
        for i in range(3):
            c = self.raw_client(t.proxy_port)
            c.send(b"GET /held%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            self.assertEqual(c.recv_response(timeout=5).status, 200)
            held.append(c)
        for _ in range(3):
            extra = self.raw_client(t.proxy_port)
            try:
                extra.send(b"GET /extra HTTP/1.1\r\nHost: x\r\n\r\n")
            except OSError:
                pass
            data = extra.recv_all(timeout=3)
            self.assertTrue(extra.eof, "an over-limit connection was left open")
            self.assertTrue(data.startswith(b"HTTP/1.1 503"), data[:200])
            extra.close()
        self.assertNotIn("/extra", [q.path for q in up.requests])
        for i, c in enumerate(held):
            c.send(b"GET /again%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            r = c.recv_response(timeout=5)
            self.assertEqual((r.status, r.body), (200, b"ok"))
        # A slot freed is a slot usable again.
        held[0].close()
        wait_until(lambda: curl_status(t.url("/after"))[0] == 200, 5,
                   msg="a new connection after one closed")


class UpstreamErrors(E2ETestCase):
    def test_connect_refused_is_retried_on_another_backend(self):
        a = self.start_http_upstream(name="a")
        b = self.start_http_upstream(name="b")
        t = self.start_tether(backends=[a.url, b.url], config={
            "health": {"interval": "60s", "rise": 1}, "balance": "round_robin",
            "passive": {"consecutive_failures": 1000}})
        wait_until(lambda: all(x.get("state") == "up" for x in
                               _backend_list(t.backends_state())), 10, msg="both up")
        b.kill()  # still "up" for tether: health checks are a minute apart
        results = [curl_status(t.url("/id")) for _ in range(10)]
        self.assertEqual(results, [(200, b"a")] * 10)
        wait_until(lambda: (t.metric("tether_retries_total") or 0) >= 1, 5,
                   msg="tether_retries_total counted")
        self.assertGreaterEqual(t.metric("tether_upstream_connect_errors_total",
                                         backend=b.address) or 0, 1)
        # A POST that never reached the dead backend is retried as well.
        for _ in range(4):
            status, body = curl_status(t.url("/echo"), "--data-binary", "x" * 100)
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["name"], "a")

    def test_connect_refused_without_another_backend_is_502(self):
        a = self.start_http_upstream(name="a")
        t = self.start_tether(backends=[a.url], config={
            "health": {"interval": "60s", "rise": 1}})
        wait_ready(t)
        a.kill()
        r = curl("-i", t.url("/id"))
        self.assertTrue(r.stdout.startswith(b"HTTP/1.1 502"), r.stdout[:300])

    def test_bad_response_from_backend_is_502(self):
        def garbage(req):
            req.write(b"THIS IS NOT HTTP\r\n\r\n")
            req.close()
        up = self.scripted_upstream(with_health(garbage))
        t = self.start_tether(backends=[up.url], config={
            "health": dict(FAST_HEALTH), "passive": {"consecutive_failures": 1000}})
        wait_ready(t)
        status, body = curl_status(t.url("/x"))
        self.assertEqual(status, 502, body)

    def test_obs_fold_in_a_response_is_502_never_forwarded(self):
        # RFC 9112 5.2: a proxy discards such a response (502) or unfolds it; tether
        # used to forward the fold, mangled, CRLF and all.
        def folded(req):
            req.write(b"HTTP/1.1 200 OK\r\nX-Fold: a\r\n  folded\r\nContent-Length: 2\r\n"
                      b"\r\nok")
        up = self.scripted_upstream(with_health(folded))
        t = self.start_tether(backends=[up.url], config={
            "health": dict(FAST_HEALTH), "passive": {"consecutive_failures": 1000}})
        wait_ready(t)
        r = curl("-i", t.url("/x"))
        self.assertTrue(r.stdout.startswith(b"HTTP/1.1 502"), r.stdout[:300])
        self.assertNotIn(b"fold", r.stdout)

    def test_no_backend_available_is_prompt_503_with_retry_after(self):
        dead = "http://127.0.0.1:%d" % free_port()
        t = self.start_tether(backends=[dead], config={"health": dict(FAST_HEALTH)})
        self.assertEqual(t.admin_get("/readyz").status, 503)
        start = time.monotonic()
        r = curl("-i", t.url("/x"))
        took = time.monotonic() - start
        self.assertTrue(r.stdout.startswith(b"HTTP/1.1 503"), r.stdout[:300])
        self.assertRegex(r.stdout.split(b"\r\n\r\n")[0].lower(), rb"\r\nretry-after: \d+")
        self.assertLess(took, 1.0)

    def test_no_first_byte_in_time_is_504(self):
        a = self.start_http_upstream(name="a")
        t = self.start_tether(backends=[a.url], config={
            "health": dict(FAST_HEALTH), "timeouts": {"upstream_first_byte": "500ms"},
            "passive": {"consecutive_failures": 1000}})
        wait_ready(t)
        start = time.monotonic()
        status, body = curl_status(t.url("/sleep/3000"))
        took = time.monotonic() - start
        self.assertEqual(status, 504, body)
        self.assertLess(took, 2.5)
        self.assertGreater(took, 0.4)
        # A fast answer on the same backend still goes through.
        self.assertEqual(curl_status(t.url("/id")), (200, b"a"))

    def test_backend_dying_mid_response_closes_the_client_connection(self):
        a = self.start_http_upstream(name="a")
        t = self.start_tether(backends=[a.url], config={
            "health": dict(FAST_HEALTH), "passive": {"consecutive_failures": 1000}})
        wait_ready(t)
        r = curl("-o", "-", t.url("/close-mid"))
        # curl: (18) transfer closed with outstanding read data remaining
        self.assertEqual(r.returncode, 18, (r.returncode, r.stderr))
        self.assertEqual(r.stdout, b"0123456789")
        c = self.raw_client(t.proxy_port)
        c.send(b"GET /close-mid HTTP/1.1\r\nHost: x\r\n\r\n")
        data = c.recv_all(timeout=5)
        self.assertTrue(c.eof, "tether kept the connection after a truncated body")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"content-length: 1000", head.lower())
        self.assertEqual(body, b"0123456789")
        # Chunked: the client must not see the terminating zero chunk.
        def chunked_then_die(req):
            req.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
            req.close()
        sc = self.scripted_upstream(with_health(chunked_then_die))
        t2 = self.start_tether(backends=[sc.url], config={
            "health": dict(FAST_HEALTH), "passive": {"consecutive_failures": 1000}})
        wait_ready(t2)
        r = curl("-o", "-", t2.url("/x"))
        self.assertNotEqual(r.returncode, 0, "curl saw a complete response")
        self.assertEqual(r.stdout, b"hello")


def _backend_list(state):
    return state["backends"] if isinstance(state, dict) else state


if __name__ == "__main__":
    unittest.main()
