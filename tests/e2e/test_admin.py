"""The admin listener end to end: its endpoints and its access rules (SPEC.md, "Admin
endpoints").

Run: cd tests/e2e && TETHER_BIN=... /usr/bin/python3 -m unittest -v test_admin
"""

import os
import shutil
import tempfile
import threading
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


if __name__ == "__main__":
    unittest.main()
