"""The admin listener end to end: its endpoints and its access rules (SPEC.md, "Admin
endpoints").

Run: cd tests/e2e && TETHER_BIN=... /usr/bin/python3 -m unittest -v test_admin
"""

import json
import os
import shutil
import tempfile
import threading
import time
import unittest

from harness import E2ETestCase, SIGTERM, http_get, http_request, run_tether, wait_until
from lb_util import backend_by_address, wait_state

FAST_HEALTH = {"interval": "200ms", "timeout": "1s", "rise": 2, "fall": 2}
TOKEN = "s3cr3t-token-for-tests"


def write_token(testcase, text):
    d = tempfile.mkdtemp(prefix="tether-token-")
    testcase.addCleanup(shutil.rmtree, d, True)
    path = os.path.join(d, "token")
    with open(path, "w") as f:
        f.write(text)
    return path


def post(t, path, authorization=None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return http_request(t.admin_url(path), method="POST", body=b"", headers=headers)


class TokenAuth(E2ETestCase):

    def _start(self, token=TOKEN):
        up = self.start_http_upstream(name="u0")
        self.token_path = write_token(self, token + "\n")  # a trailing newline is trimmed
        cfg = {"admin": {"token_file": self.token_path}, "health": FAST_HEALTH,
               "backends": [{"url": up.url}]}
        t = self.start_tether(config=cfg)
        wait_state(t, up.address, "up")
        self.cfg = cfg
        return t, up

    def test_post_without_token_is_401(self):
        t, up = self._start()
        for path in ("/admin/backends/0/drain", "/admin/backends/0/enable",
                     "/admin/backends/0/weight?value=5", "/admin/reload"):
            with self.subTest(path=path):
                r = post(t, path)
                self.assertEqual(r.status, 401, r.body)
                self.assertIn("Bearer", r.headers.get("WWW-Authenticate") or "")
        for auth in ("", "Basic dXNlcjpwYXNz", "Bearer", "Bearer "):
            with self.subTest(authorization=auth):
                self.assertEqual(post(t, "/admin/backends/0/drain", auth).status, 401)
        # Nothing changed.
        b = backend_by_address(t, up.address)
        self.assertEqual((b["state"], b["weight"]), ("up", 100))

    def test_post_with_wrong_token_is_refused(self):
        t, up = self._start()
        for token in ("wrong", TOKEN + "x", TOKEN[:-1], TOKEN.upper(), " " + TOKEN):
            with self.subTest(token=token):
                r = post(t, "/admin/backends/0/drain", "Bearer " + token)
                self.assertIn(r.status, (401, 403), r.body)
        self.assertEqual(backend_by_address(t, up.address)["state"], "up")

    def test_post_with_right_token_works(self):
        t, up = self._start()
        auth = "Bearer " + TOKEN
        self.assertEqual(post(t, "/admin/backends/0/drain", auth).status, 200)
        self.assertEqual(backend_by_address(t, up.address)["state"], "draining")
        self.assertEqual(post(t, "/admin/backends/0/enable", auth).status, 200)
        self.assertEqual(backend_by_address(t, up.address)["state"], "up")
        self.assertEqual(post(t, "/admin/backends/0/weight?value=42", auth).status, 200)
        self.assertEqual(backend_by_address(t, up.address)["weight"], 42)
        self.assertEqual(post(t, "/admin/reload", auth).status, 200)
        # The harness helper sends the same header.
        self.assertEqual(t.admin_post("/admin/backends/0/enable", token=TOKEN).status, 200)

    def test_auth_scheme_is_case_insensitive(self):
        # RFC 9110 section 11.1: the authentication scheme is case-insensitive.
        t, up = self._start()
        for scheme in ("bearer", "BEARER"):
            with self.subTest(scheme=scheme):
                self.assertEqual(post(t, "/admin/backends/0/enable",
                                      scheme + " " + TOKEN).status, 200)

    def test_get_endpoints_need_no_token(self):
        t, _ = self._start()
        for path, status in (("/metrics", 200), ("/healthz", 200), ("/readyz", 200),
                             ("/admin/backends", 200)):
            with self.subTest(path=path):
                self.assertEqual(t.admin_get(path).status, status)

    def test_token_is_re_read_on_reload(self):
        t, _ = self._start()
        with open(self.token_path, "w") as f:
            f.write("rotated-token\n")
        rec = t.reload(config=self.cfg)
        self.assertEqual(rec.get("msg"), "reloaded", rec)
        self.assertIn(post(t, "/admin/backends/0/enable", "Bearer " + TOKEN).status,
                      (401, 403))
        self.assertEqual(post(t, "/admin/backends/0/enable", "Bearer rotated-token").status,
                         200)


class LoopbackWithoutToken(E2ETestCase):

    def test_post_on_loopback_admin_without_token_works(self):
        up = self.start_http_upstream(name="u0")
        t = self.start_tether(backends=[up.url], config={"health": FAST_HEALTH})
        wait_state(t, up.address, "up")
        self.assertEqual(post(t, "/admin/backends/0/drain").status, 200)
        self.assertEqual(post(t, "/admin/backends/0/enable").status, 200)
        self.assertEqual(post(t, "/admin/backends/0/weight?value=3").status, 200)
        self.assertEqual(post(t, "/admin/reload").status, 200)
        self.assertEqual(backend_by_address(t, up.address)["weight"], 100)  # reload: config's

    def test_ipv6_loopback_admin_without_token_works(self):
        up = self.start_http_upstream(name="u0")
        t = self.start_tether(backends=[up.url], admin="[::1]:0",
                              config={"health": FAST_HEALTH})
        addr = [r["address"] for r in t.find_logs("listening") if r.get("kind") == "admin"][0]
        port = int(addr.rsplit(":", 1)[1])
        r = http_request("http://[::1]:%d/admin/backends/0/drain" % port, method="POST",
                         body=b"")
        self.assertEqual(r.status, 200, r.body)


class NonLoopbackAdmin(E2ETestCase):
    """A non-loopback admin address without a token: refuse to start, exit 1, say why.
    (Nothing is bound: the check is on the configuration.)"""

    def _assert_refused(self, res):
        self.assertEqual(res.returncode, 1, res)
        text = (res.stderr + res.stdout).lower()
        self.assertIn("admin", text, res)
        self.assertIn("token", text, res)
        self.assertIn("loopback", text, res)

    def test_flag(self):
        self._assert_refused(run_tether(["--admin", "0.0.0.0:0", "-l", "127.0.0.1:0",
                                         "-b", "http://127.0.0.1:9"], timeout=10))

    def test_ipv6_any(self):
        self._assert_refused(run_tether(["--admin", "[::]:0", "-l", "127.0.0.1:0",
                                         "-b", "http://127.0.0.1:9"], timeout=10))

    def test_env(self):
        self._assert_refused(run_tether(["-l", "127.0.0.1:0", "-b", "http://127.0.0.1:9"],
                                        env={"TETHER_ADMIN": "0.0.0.0:0"}, timeout=10))

    def test_file(self):
        self._assert_refused(run_tether(["-l", "127.0.0.1:0"], config={
            "admin": {"address": "0.0.0.0:0"}, "backends": [{"url": "http://127.0.0.1:9"}]},
            timeout=10))

    def test_check_config_reports_it_too(self):
        self._assert_refused(run_tether(["--check-config"], config={
            "admin": {"address": "0.0.0.0:9901"}, "backends": [{"url": "http://127.0.0.1:9"}]},
            timeout=10))

    def test_with_a_token_it_is_accepted(self):
        path = write_token(self, TOKEN)
        res = run_tether(["--check-config"], config={
            "admin": {"address": "0.0.0.0:9901", "token_file": path},
            "backends": [{"url": "http://127.0.0.1:9"}]}, timeout=10)
        self.assertEqual(res.returncode, 0, res)

    def test_unreadable_or_empty_token_file_is_a_config_error(self):
        for content, why in ((None, "cannot read"), ("  \n", "empty")):
            with self.subTest(why=why):
                path = write_token(self, content or "x")
                if content is None:
                    os.unlink(path)
                else:
                    with open(path, "w") as f:
                        f.write(content)
                res = run_tether(["-l", "127.0.0.1:0", "--admin", "127.0.0.1:0"], config={
                    "admin": {"token_file": path}, "backends": [{"url": "http://127.0.0.1:9"}]},
                    timeout=10)
                self.assertEqual(res.returncode, 1, res)
                self.assertIn("admin.token_file", res.stderr + res.stdout)


class Endpoints(E2ETestCase):

    def _start(self, n=1, **kw):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(n)]
        t = self.start_tether(backends=[u.url for u in ups], config={"health": FAST_HEALTH},
                              **kw)
        for u in ups:
            wait_state(t, u.address, "up")
        return t, ups

    def test_backends_json(self):
        t, ups = self._start(2)
        state = t.backends_state()
        self.assertEqual([b["id"] for b in state], [0, 1])
        for b, u in zip(state, ups):
            self.assertEqual(b["url"], u.url)
            self.assertEqual(b["address"], u.address)
            self.assertEqual(b["state"], "up")
            self.assertEqual(b["weight"], 100)
            self.assertEqual(b["active_requests"], 0)
            self.assertEqual(b["active_tunnels"], 0)
            self.assertIsInstance(b["last_check"], dict)
            self.assertEqual(b["last_check"]["status"], 200)
        r = t.admin_get("/admin/backends")
        self.assertTrue(r.headers.get("Content-Type").startswith("application/json"))

    def test_active_requests_are_shown(self):
        t, ups = self._start()
        th = threading.Thread(target=lambda: http_get(t.url("/sleep/700")), daemon=True)
        th.start()
        wait_until(lambda: t.backends_state()[0]["active_requests"] == 1, 3)
        th.join(5)
        self.assertEqual(t.backends_state()[0]["active_requests"], 0)

    def test_healthz_and_readyz(self):
        t, ups = self._start()
        self.assertEqual(t.admin_get("/healthz").status, 200)
        self.assertEqual(t.admin_get("/readyz").status, 200)
        http_request(ups[0].url + "/admin/health/503", method="POST", body=b"")
        wait_state(t, ups[0].address, "down")
        self.assertEqual(t.admin_get("/readyz").status, 503)
        self.assertEqual(t.admin_get("/healthz").status, 200)

    def test_readyz_is_503_while_shutting_down(self):
        t, ups = self._start()
        result = {}
        th = threading.Thread(target=lambda: result.update(r=http_get(t.url("/sleep/1500"))),
                              daemon=True)
        th.start()
        wait_until(lambda: t.backends_state()[0]["active_requests"] == 1, 3)
        t.signal(SIGTERM)
        t.wait_log(msg="stopping", timeout=3)
        r = t.admin_get("/readyz")
        self.assertEqual(r.status, 503)
        self.assertEqual(t.admin_get("/healthz").status, 200)
        th.join(5)
        self.assertEqual(result["r"].status, 200)
        self.assertEqual(t.wait_exit(10), 0)

    def test_readyz_is_503_before_any_backend_is_up(self):
        t = self.start_tether(backends=["http://127.0.0.1:9"], config={"health": FAST_HEALTH})
        self.assertEqual(t.admin_get("/readyz").status, 503)
        self.assertEqual(t.admin_get("/healthz").status, 200)

    def test_wrong_method_and_unknown_path(self):
        t, _ = self._start()
        self.assertEqual(t.admin_get("/admin/backends/0/drain").status, 405)
        self.assertEqual(t.admin_get("/admin/reload").status, 405)
        self.assertEqual(post(t, "/metrics").status, 405)
        self.assertEqual(post(t, "/admin/backends").status, 405)
        self.assertEqual(t.admin_get("/nope").status, 404)
        self.assertEqual(post(t, "/admin/nope").status, 404)
        # The backend did not change, and the admin listener still answers.
        self.assertEqual(t.backends_state()[0]["state"], "up")

    def test_reload_endpoint_applies_the_file(self):
        up = self.start_http_upstream(name="u0")
        cfg = {"health": FAST_HEALTH, "backends": [{"url": up.url, "weight": 100}]}
        t = self.start_tether(config=cfg)
        wait_state(t, up.address, "up")
        t.write_config({"health": FAST_HEALTH, "backends": [{"url": up.url, "weight": 250}]})
        r = post(t, "/admin/reload")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(backend_by_address(t, up.address)["weight"], 250)
        t.write_config("backends: [{url: 'http://no-port-here'}]\nbalance: sideways\n")
        r = post(t, "/admin/reload")
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(backend_by_address(t, up.address)["weight"], 250)
        self.assertEqual(http_get(t.url("/id")).body, b"u0")
        self.assertEqual(t.metric("tether_config_reloads_total", result="invalid"), 1)


class HostileInput(E2ETestCase):
    """Issue 12, item 14: no admin input ends the process; answers are JSON with
    invalid UTF-8 replaced (U+FFFD)."""

    def _start(self):
        up = self.start_http_upstream(name="u0")
        t = self.start_tether(backends=[up.url], config={"health": FAST_HEALTH})
        wait_state(t, up.address, "up")
        return t, up

    def assert_alive(self, t):
        self.assertIsNone(t.proc.poll(), "tether exited")
        self.assertEqual(t.admin_get("/healthz").status, 200)
        self.assertEqual(http_get(t.url("/id")).body, b"u0")

    def test_invalid_utf8_in_an_affinity_key_is_answered_as_json(self):
        t, _ = self._start()
        for key in ("cookie:x=%ff", "cookie:x=%c3%28", "header:x=%ed%a0%80", "%ff%fe",
                    "query:q=%e2%82", "cookie:x=ok%80ok"):
            with self.subTest(key=key):
                r = t.admin_get("/admin/affinity?key=" + key)
                self.assertEqual(r.status, 200, r.body)
                self.assertTrue(r.headers.get("Content-Type").startswith("application/json"))
                doc = json.loads(r.body.decode("utf-8"))  # strict: the answer is UTF-8
                self.assertIn("\ufffd", doc["key"])
                self.assertIn("why", doc)
        self.assert_alive(t)

    def test_invalid_utf8_in_error_messages_is_answered_as_json(self):
        t, _ = self._start()
        # The action and the backend id are echoed in the error.
        for path in ("/admin/backends/0/%ff", "/admin/backends/%ff/drain"):
            with self.subTest(path=path):
                r = post(t, path)
                self.assertEqual(r.status, 404, r.body)
                json.loads(r.body.decode("utf-8"))
        # Raw bytes >= 0x80 in the target: refused or answered, never a crash.
        for target in (b"/admin/backends/0/\xff", b"/admin/affinity?key=cookie:x=\xff\xfe",
                       b"/\xc3\x28"):
            with self.subTest(target=target):
                c = self.raw_client(t.admin_port)
                c.send(b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n")
                resp = c.recv_response(timeout=3)
                self.assertIsNotNone(resp)
                self.assertIn(resp.status, (200, 400, 404))
                if resp.status != 400:
                    json.loads(resp.body.decode("utf-8"))
        self.assert_alive(t)

    def test_garbage_on_the_admin_port_is_refused(self):
        t, _ = self._start()
        for data in (b"\x00\xff\xfe garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                     b"POST /admin/reload HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
                     b"GET /metrics HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"zz\r\n"):
            with self.subTest(data=data):
                c = self.raw_client(t.admin_port)
                c.send(data)
                c.recv_all(timeout=2)
        self.assert_alive(t)


class RequestFraming(E2ETestCase):
    """The admin listener reads requests with tether's one HTTP/1 decoder (admin.h):
    what it refuses is answered with the decoder's status and reason, Connection: close,
    and nothing else changes; well-framed requests keep the connection."""

    def _start(self):
        up = self.start_http_upstream(name="u0")
        t = self.start_tether(backends=[up.url], config={"health": FAST_HEALTH})
        wait_state(t, up.address, "up")
        return t, up

    def assert_alive(self, t):
        self.assertIsNone(t.proc.poll(), "tether exited")
        self.assertEqual(t.admin_get("/healthz").status, 200)
        self.assertEqual(http_get(t.url("/id")).body, b"u0")

    def refused(self, t, data, status):
        c = self.raw_client(t.admin_port)
        c.send(data)
        resp = c.recv_response(timeout=3)
        self.assertIsNotNone(resp, "no answer to %r" % data[:80])
        self.assertEqual(resp.status, status, (data[:80], resp))
        self.assertEqual(resp.reason, {400: "Bad Request", 405: "Method Not Allowed",
                                       413: "Content Too Large",
                                       431: "Request Header Fields Too Large",
                                       505: "HTTP Version Not Supported"}[status])
        self.assertEqual(dict((k.lower(), v) for k, v in resp.headers).get("connection"),
                         "close")
        self.assertTrue(resp.body.strip(), "the reason is in the body")
        self.assertTrue(c.is_closed(timeout=2), "the connection stays open after %d" % status)
        return resp

    def test_obs_fold_and_bad_framing_are_400_and_the_process_lives(self):
        t, up = self._start()
        cases = [
            # obs-fold (RFC 9112 section 5.2), also with an empty first line
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
            b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
            b"0\r\n\r\n",
            b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 0\r\n\r\n",
            # framing that has more than one reading
            b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 5\r\n"
            b"\r\n",
            b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"0\r\n\r\n",
            b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\n"
            b"Content-Length: 0\r\n\r\n",
            b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"zz\r\n\r\n",
            # syntax
            b"GET /healthz HTTP/1.1\r\n: empty-name\r\nHost: a\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\n\r\n",
            b"GET /healthz\r\nHost: a\r\n\r\n",
            b"\x00\xff garbage\r\n\r\n",
        ]
        for data in cases:
            with self.subTest(data=data):
                self.refused(t, data, 400)
        # The refused POSTs changed nothing.
        self.assertEqual(t.metric("tether_config_reloads_total", default=0, result="ok"), 0)
        self.assert_alive(t)

    def test_limits_and_versions_get_the_decoders_status(self):
        t, _ = self._start()
        self.refused(t, b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * (65 * 1024) +
                     b"\r\n\r\n", 431)
        self.refused(t, b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 70000\r\n"
                     b"\r\n", 413)
        # A chunked body over the bound is refused as it passes it.
        self.refused(t, b"POST /admin/reload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                     b"\r\n\r\n" + (b"4000\r\n" + b"b" * 0x4000 + b"\r\n") * 5, 413)
        self.refused(t, b"GET /healthz HTTP/2.0\r\nHost: a\r\n\r\n", 505)
        self.refused(t, b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405)
        self.assert_alive(t)

    def test_keep_alive_pipelining_and_bodies_within_the_bounds(self):
        t, up = self._start()
        c = self.raw_client(t.admin_port)
        # Three requests in one write: a chunked POST body, a Content-Length one, a GET.
        c.send(b"POST /admin/backends/0/weight?value=7 HTTP/1.1\r\nHost: a\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
               b"POST /admin/backends/0/weight?value=8 HTTP/1.1\r\nHost: a\r\n"
               b"Content-Length: 4\r\n\r\nbody"
               b"GET /admin/backends HTTP/1.1\r\nHost: a\r\n\r\n")
        answers = [c.recv_response(timeout=3) for _ in range(3)]
        self.assertEqual([a.status if a else None for a in answers], [200, 200, 200])
        self.assertEqual(json.loads(answers[0].body)["weight"], 7)
        self.assertEqual(json.loads(answers[1].body)["weight"], 8)
        self.assertEqual(json.loads(answers[2].body)[0]["weight"], 8)
        # A body of 64 KiB exactly is within the bound; the connection is still open.
        c.send(b"POST /admin/backends/0/weight?value=9 HTTP/1.1\r\nHost: a\r\n"
               b"Content-Length: 65536\r\n\r\n" + b"x" * 65536)
        r = c.recv_response(timeout=3)
        self.assertEqual(r.status, 200, r)
        # HEAD: the head only, and the next request on the connection reads cleanly.
        c.send(b"HEAD /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        head = c.recv_until(b"\r\n\r\n", timeout=3)
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"), head)
        c.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(c.recv_response(timeout=3).status, 200)
        # An absolute-form target is served by its path; an HTTP/1.0 request closes.
        c.send(b"GET http://a/healthz?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(c.recv_response(timeout=3).status, 200)
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        r = c.recv_response(timeout=3)
        self.assertEqual(r.status, 200)
        self.assertTrue(c.is_closed(timeout=2))
        # A bad request behind a good one: the good one is answered, then 400 and close.
        c = self.raw_client(t.admin_port)
        c.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
               b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n")
        self.assertEqual(c.recv_response(timeout=3).status, 200)
        self.assertEqual(c.recv_response(timeout=3).status, 400)
        self.assertTrue(c.is_closed(timeout=2))
        self.assert_alive(t)


def admin_request(client, path="/healthz"):
    """One keep-alive GET on a RawClient; returns the parsed response or None."""
    client.send(("GET %s HTTP/1.1\r\nHost: admin\r\n\r\n" % path).encode())
    return client.recv_response(timeout=3)


class ConnectionLimits(E2ETestCase):
    """Issue 12, item 15: admin.max_connections, timeouts, and closing at shutdown."""

    def test_an_idle_admin_connection_does_not_delay_sigterm(self):
        up = self.start_http_upstream(name="u0")
        # Timeouts far beyond the grace: only the shutdown can close these connections.
        t = self.start_tether(backends=[up.url], config={
            "health": FAST_HEALTH,
            "timeouts": {"shutdown_grace": "2s", "request_header": "60s",
                         "downstream_idle": "60s"}})
        wait_state(t, up.address, "up")
        silent = self.raw_client(t.admin_port)           # never sends a byte
        kept = self.raw_client(t.admin_port)             # kept alive after an answer
        self.assertEqual(admin_request(kept).status, 200)
        partial = self.raw_client(t.admin_port)          # half a request head
        partial.send(b"GET /healthz HTTP/1.1\r\nHo")
        # A drain deadline far in the future must not hold the loop either.
        self.assertEqual(post(t, "/admin/backends/0/drain?deadline=1h").status, 200)
        time.sleep(0.2)
        started = time.monotonic()
        t.signal(SIGTERM)
        self.assertEqual(t.wait_exit(10), 0)
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, 2.0 + 1.5, "exit took %.1fs with a 2s grace" % elapsed)
        for c in (silent, kept, partial):
            self.assertTrue(c.is_closed(timeout=1))

    def test_connections_beyond_the_cap_are_closed_at_once(self):
        up = self.start_http_upstream(name="u0")
        t = self.start_tether(backends=[up.url], config={
            "health": FAST_HEALTH, "admin": {"max_connections": 3}})
        wait_state(t, up.address, "up")
        time.sleep(0.3)  # the harness's own admin connections have closed
        held = [self.raw_client(t.admin_port) for _ in range(3)]
        for c in held:
            self.assertEqual(admin_request(c).status, 200)
        extra = self.raw_client(t.admin_port)
        started = time.monotonic()
        self.assertTrue(extra.is_closed(timeout=2), "the 4th connection stayed open")
        self.assertLess(time.monotonic() - started, 1.5)
        # The ones within the cap still work.
        for c in held:
            self.assertEqual(admin_request(c, "/admin/backends").status, 200)
        # One closes: a new connection is accepted again.
        held.pop().close()

        def fresh_works():
            c = self.raw_client(t.admin_port)
            try:
                r = admin_request(c)
                return r is not None and r.status == 200
            finally:
                c.close()

        wait_until(fresh_works, 3, msg="a new admin connection after one closed")
        self.assertEqual(http_get(t.url("/id")).body, b"u0")

    def test_idle_and_slow_admin_connections_are_closed(self):
        up = self.start_http_upstream(name="u0")
        t = self.start_tether(backends=[up.url], config={
            "health": FAST_HEALTH,
            "timeouts": {"request_header": "500ms", "downstream_idle": "1500ms"}})
        wait_state(t, up.address, "up")

        def closed_after(c, at_most):
            started = time.monotonic()
            self.assertTrue(c.is_closed(timeout=at_most), "not closed within %.1fs" % at_most)
            return time.monotonic() - started

        # Nothing sent: request_header.
        silent = self.raw_client(t.admin_port)
        self.assertLess(closed_after(silent, 3), 2.0)
        # Half a head, then silence: request_header.
        partial = self.raw_client(t.admin_port)
        partial.send(b"GET /healthz HTTP/1.1\r\nHost: a\r\n")
        self.assertLess(closed_after(partial, 3), 2.0)
        # A byte every 200 ms does not keep the head alive: it must be whole in 500 ms.
        trickle = self.raw_client(t.admin_port)
        started = time.monotonic()
        try:
            for b in b"GET /healthz HTTP/1.1\r\nHost: a\r\nX-Pad: aaaaaaaaaaaaaaaaaaaa":
                trickle.send(bytes([b]))
                time.sleep(0.2)
                if time.monotonic() - started > 4:
                    break
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.assertTrue(trickle.is_closed(timeout=1))
        self.assertLess(time.monotonic() - started, 3.0)
        # Kept alive after an answer: downstream_idle (longer than request_header).
        kept = self.raw_client(t.admin_port)
        self.assertEqual(admin_request(kept).status, 200)
        self.assertFalse(kept.is_closed(timeout=0.9), "closed after request_header, not idle")
        self.assertEqual(admin_request(kept).status, 200, "still usable between requests")
        self.assertGreater(closed_after(kept, 4), 1.0)
        self.assertEqual(t.admin_get("/healthz").status, 200)


if __name__ == "__main__":
    unittest.main()
