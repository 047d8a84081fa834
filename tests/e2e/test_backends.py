"""Backends end to end: where they come from, how requests are spread over them,
active and passive health, the admin controls, and what happens when none is left.

Run: cd tests/e2e && TETHER_BIN=... /usr/bin/python3 -m unittest -v test_backends
"""

import collections
import json
import threading
import time
import unittest

from harness import E2ETestCase, http_get, http_request, wait_until
from lb_util import (KeepAliveClient, backend_by_address, distribution, wait_all_up,
                     wait_state)

FAST_HEALTH = {"interval": "200ms", "timeout": "1s", "rise": 2, "fall": 2}
# Nothing listens on the discard port: a backend that the active checks keep down.
NEVER_UP = "http://127.0.0.1:9"
NEVER_UP_ADDRESS = "127.0.0.1:9"


def health_json_body():
    """What http_upstream.py's /health answers (json.dumps with its default separators)."""
    return json.dumps({"status": True})


class BackendSources(E2ETestCase):
    """Backends from -b, from TETHER_BACKENDS, from the file; precedence between them."""

    def _ups(self, n):
        return [self.start_http_upstream(name="u%d" % i) for i in range(n)]

    def test_backends_from_flags_serve_requests(self):
        ups = self._ups(2)
        t = self.start_tether(backends=[u.url for u in ups], config={"health": FAST_HEALTH})
        wait_all_up(t, [u.address for u in ups])
        got, bad = distribution(t.proxy_port, 20)
        self.assertEqual(bad, [])
        self.assertEqual(set(got), {"u0", "u1"})

    def test_backends_from_env_comma_separated(self):
        ups = self._ups(2)
        t = self.start_tether(env={"TETHER_BACKENDS": ",".join(u.url for u in ups)},
                              config={"health": FAST_HEALTH})
        self.assertEqual(sorted(b["address"] for b in t.backends_state()),
                         sorted(u.address for u in ups))
        wait_all_up(t, [u.address for u in ups])
        got, bad = distribution(t.proxy_port, 20)
        self.assertEqual(bad, [])
        self.assertEqual(set(got), {"u0", "u1"})

    def test_backends_from_file_with_weight(self):
        ups = self._ups(2)
        t = self.start_tether(config={
            "backends": [{"url": ups[0].url, "weight": 7}, {"url": ups[1].url}],
            "balance": "round_robin", "health": FAST_HEALTH})
        wait_all_up(t, [u.address for u in ups])
        self.assertEqual(backend_by_address(t, ups[0].address)["weight"], 7)
        self.assertEqual(backend_by_address(t, ups[1].address)["weight"], 100)
        got, bad = distribution(t.proxy_port, 107)
        self.assertEqual(bad, [])
        self.assertEqual(dict(got), {"u0": 7, "u1": 100})  # smooth weighted round robin

    def test_flag_beats_env_beats_file(self):
        ups = self._ups(3)
        env = {"TETHER_BACKENDS": ups[1].url}
        cfg = {"backends": [{"url": ups[2].url}], "health": FAST_HEALTH}
        t = self.start_tether(backends=[ups[0].url], env=env, config=cfg)
        self.assertEqual([b["address"] for b in t.backends_state()], [ups[0].address])
        t.stop()
        t2 = self.start_tether(env=env, config=cfg)
        self.assertEqual([b["address"] for b in t2.backends_state()], [ups[1].address])

    def test_dns_name_is_resolved_and_re_resolved(self):
        up = self.start_http_upstream(name="dns")
        url = "http://localhost:%d" % up.port
        t = self.start_tether(config={
            "backends": [{"url": url, "resolve_interval": "200ms"}], "health": FAST_HEALTH})
        state = t.backends_state()
        addresses = {b["address"] for b in state}
        # localhost is 127.0.0.1 and perhaps ::1: one backend per address, all from the URL.
        self.assertIn("127.0.0.1:%d" % up.port, addresses)
        self.assertTrue(addresses <= {"127.0.0.1:%d" % up.port, "[::1]:%d" % up.port},
                        addresses)
        self.assertTrue(all(b["url"] == url for b in state), state)
        wait_state(t, "127.0.0.1:%d" % up.port, "up")
        # Several re-resolutions later: the same backends, none drained or duplicated.
        time.sleep(1.0)
        again = t.backends_state()
        self.assertEqual(sorted(b["address"] for b in again), sorted(addresses))
        self.assertEqual(backend_by_address(t, "127.0.0.1:%d" % up.port)["state"], "up")
        got, bad = distribution(t.proxy_port, 10)
        self.assertEqual((bad, dict(got)), ([], {"dns": 10}))
        # The Host header sent upstream is the URL's, not the address.
        r = http_get(t.url("/echo"))
        hosts = [v for k, v in json.loads(r.body)["headers"] if k.lower() == "host"]
        self.assertEqual(len(hosts), 1)


class Algorithms(E2ETestCase):
    """Every balance algorithm spreads 300 requests over 3 upstreams (consistent_hash keeps
    one client on one), and weights count."""

    def _spread(self, balance, n=300, extra=None):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(3)]
        cfg = {"balance": balance, "health": FAST_HEALTH}
        cfg.update(extra or {})
        t = self.start_tether(backends=[u.url for u in ups], config=cfg)
        wait_all_up(t, [u.address for u in ups])
        got, bad = distribution(t.proxy_port, n)
        self.assertEqual(bad, [])
        self.assertEqual(sum(got.values()), n)
        return t, ups, got

    def test_round_robin_is_even(self):
        _, _, got = self._spread("round_robin")
        self.assertEqual(set(got), {"u0", "u1", "u2"})
        for name, n in got.items():
            self.assertTrue(95 <= n <= 105, got)  # sequential requests: exact turns

    def test_least_conn_spreads(self):
        _, _, got = self._spread("least_conn")
        self.assertEqual(set(got), {"u0", "u1", "u2"})
        for n in got.values():
            self.assertGreaterEqual(n, 30, got)

    def test_p2c_spreads(self):
        _, _, got = self._spread("p2c")
        self.assertEqual(set(got), {"u0", "u1", "u2"})
        for n in got.values():
            self.assertGreaterEqual(n, 30, got)

    def test_consistent_hash_keeps_a_client_on_one_instance(self):
        # Without an affinity key the client's address is hashed (test_affinity has
        # clients behind trusted proxies spread over instances); here every request
        # comes from 127.0.0.1.
        _, _, got = self._spread("consistent_hash")
        self.assertEqual(len(got), 1, got)
        self.assertEqual(sum(got.values()), 300, got)

    def test_consistent_hash_keeps_a_key_on_one_backend(self):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(3)]
        t = self.start_tether(backends=[u.url for u in ups], config={
            "balance": "consistent_hash", "health": FAST_HEALTH,
            "affinity": {"keys": ["header:X-User"]}})
        wait_all_up(t, [u.address for u in ups])
        homes = {}
        for user in range(30):
            got, bad = distribution(t.proxy_port, 5, headers={"X-User": "user-%d" % user})
            self.assertEqual(bad, [])
            self.assertEqual(len(got), 1, "user-%d went to %s" % (user, dict(got)))
            homes[user] = next(iter(got))
        self.assertEqual(set(homes.values()), {"u0", "u1", "u2"}, homes)

    def test_weights_are_honoured_by_round_robin(self):
        light = self.start_http_upstream(name="light")
        heavy = self.start_http_upstream(name="heavy")
        t = self.start_tether(config={
            "balance": "round_robin", "health": FAST_HEALTH,
            "backends": [{"url": light.url, "weight": 100},
                         {"url": heavy.url, "weight": 300}]})
        wait_all_up(t, [light.address, heavy.address])
        # Backends up from the start are not in slow start: full weights at once.
        got, bad = distribution(t.proxy_port, 300)
        self.assertEqual(bad, [])
        self.assertEqual(dict(got), {"light": 75, "heavy": 225})

    def _concurrent_share(self, balance, threads=6, per_thread=25):
        """Share of the weight-300 backend when `threads` clients each send per_thread
        requests of 30 ms: least_conn and p2c weigh load, so they need concurrency."""
        light = self.start_http_upstream(name="light")
        heavy = self.start_http_upstream(name="heavy")
        t = self.start_tether(config={
            "balance": balance, "health": FAST_HEALTH,
            "backends": [{"url": light.url, "weight": 100},
                         {"url": heavy.url, "weight": 300}]})
        wait_all_up(t, [light.address, heavy.address])
        got, bad = collections.Counter(), []
        lock = threading.Lock()

        def client():
            c = KeepAliveClient(t.proxy_port, timeout=10)
            for _ in range(per_thread):
                try:
                    status, h, _ = c.request("GET", "/sleep/30")
                except Exception as e:  # noqa: BLE001 - counted
                    with lock:
                        bad.append(repr(e))
                    continue
                with lock:
                    if status == 200:
                        got[h.get("X-Upstream-Name")] += 1
                    else:
                        bad.append(status)
            c.close()

        ths = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
        for th in ths:
            th.start()
        for th in ths:
            th.join(30)
        self.assertEqual(bad, [])
        self.assertEqual(sum(got.values()), threads * per_thread)
        return got["heavy"] / float(threads * per_thread), got

    def test_weights_are_honoured_by_least_conn(self):
        share, got = self._concurrent_share("least_conn")
        # (load + 1) / weight balanced with 6 in flight: about 0.8 (0.75 by weight).
        self.assertTrue(0.6 <= share <= 0.95, dict(got))
        self.assertGreater(got["light"], 0, dict(got))

    def test_weights_are_honoured_by_p2c(self):
        share, got = self._concurrent_share("p2c")
        self.assertTrue(0.6 <= share <= 0.95, dict(got))
        self.assertGreater(got["light"], 0, dict(got))


class ActiveHealth(E2ETestCase):

    def test_failing_backend_leaves_within_fall_and_returns_after_rise(self):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(3)]
        # slow_start 0: a backend back from down takes its full share at once.
        t = self.start_tether(backends=[u.url for u in ups], config={
            "balance": "round_robin", "health": dict(FAST_HEALTH, slow_start="0s")})
        wait_all_up(t, [u.address for u in ups])
        sick = ups[1]
        self.assertEqual(http_request(sick.url + "/admin/health/503", method="POST",
                                      body=b"").status, 200)
        # fall (2) x interval (200 ms) plus jitter, one check timeout's worth of slack.
        took = wait_state(t, sick.address, "down", timeout=3.0)
        self.assertLess(took, 1.5)
        b = backend_by_address(t, sick.address)
        self.assertEqual(b["last_check"]["status"], 503)
        got, bad = distribution(t.proxy_port, 40)
        self.assertEqual(bad, [])
        self.assertNotIn("u1", got)
        self.assertEqual(set(got), {"u0", "u2"})
        self.assertEqual(t.metric("tether_backend_up", backend=sick.address), 0)
        self.assertEqual(t.metric("tether_backend_state", backend=sick.address, state="down"), 1)
        self.assertGreaterEqual(t.metric("tether_health_checks_total", backend=sick.address,
                                         result="fail"), 2)

        self.assertEqual(http_request(sick.url + "/admin/health/200", method="POST",
                                      body=b"").status, 200)
        took = wait_state(t, sick.address, "up", timeout=3.0)
        self.assertLess(took, 1.5)
        got, bad = distribution(t.proxy_port, 30)
        self.assertEqual(bad, [])
        self.assertEqual(set(got), {"u0", "u1", "u2"})
        self.assertEqual(t.metric("tether_backend_up", backend=sick.address), 1)

    def test_backend_back_from_down_ramps_up_with_slow_start(self):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(2)]
        t = self.start_tether(backends=[u.url for u in ups], config={
            "balance": "round_robin", "health": dict(FAST_HEALTH, slow_start="20s")})
        wait_all_up(t, [u.address for u in ups])
        # At start-up there is no ramp: even turns at once.
        got, bad = distribution(t.proxy_port, 20)
        self.assertEqual((bad, dict(got)), ([], {"u0": 10, "u1": 10}))
        http_request(ups[1].url + "/admin/health/503", method="POST", body=b"")
        wait_state(t, ups[1].address, "down", timeout=3)
        http_request(ups[1].url + "/admin/health/200", method="POST", body=b"")
        wait_state(t, ups[1].address, "up", timeout=3)
        # Back from down: weight ramps from 1 over 20 s, so u1 gets a small share now.
        got, bad = distribution(t.proxy_port, 50)
        self.assertEqual(bad, [])
        self.assertLessEqual(got["u1"], 5, dict(got))

    def test_html_backend_never_used_when_expect_body_set(self):
        real = self.start_http_upstream(name="app")
        html = b"<!doctype html><html><body><div id=app></div></body></html>"
        spa = self.scripted_upstream(
            lambda req: (200, {"Content-Type": "text/html", "X-Upstream-Name": "spa"},
                         b"spa" if req.path == "/id" else html))
        self.assertEqual(health_json_body(), '{"status": true}')
        t = self.start_tether(backends=[real.url, spa.url], config={
            "balance": "round_robin",
            "health": dict(FAST_HEALTH, expect_body='"status": true')})
        wait_state(t, real.address, "up")
        wait_state(t, spa.address, "down")
        got, bad = distribution(t.proxy_port, 30)
        self.assertEqual((bad, dict(got)), ([], {"app": 30}))
        # It never becomes up later either.
        time.sleep(0.6)
        self.assertEqual(backend_by_address(t, spa.address)["state"], "down")
        self.assertEqual([r.path for r in spa.requests if r.path != "/health"], [])
        self.assertGreaterEqual(t.metric("tether_health_checks_total", backend=spa.address,
                                         result="fail"), 2)

    def test_html_backend_is_used_without_expect_body(self):
        # The control: the same SPA backend passes a status-only check.
        html = b"<!doctype html><html></html>"
        spa = self.scripted_upstream(lambda req: (200, {"Content-Type": "text/html"}, html))
        t = self.start_tether(backends=[spa.url], config={"health": FAST_HEALTH})
        wait_state(t, spa.address, "up")


def raw_health(answer, other=(200, {}, b"served")):
    """A scripted-upstream handler: /health gets `answer` written as raw bytes, one write
    (and flush) per piece when `answer` is a list, then the connection is closed; any
    other path gets `other`."""
    def handler(req):
        if req.path != "/health":
            return other
        try:
            for piece in answer if isinstance(answer, list) else [answer]:
                req.write(piece)
                time.sleep(0.01)  # separate reads on tether's side, most of the time
        except (BrokenPipeError, ConnectionResetError):
            pass  # the check stopped reading once it knew
        req.close()
        return None
    return handler


class ActiveHealthAnswers(E2ETestCase):
    """What a check makes of the bytes it reads (health_checker.h, CheckReader): the
    shared HTTP/1 decoder frames the answer, the body streams through the matcher, and
    what cannot be read as a response is a failed check that says why."""

    EXPECT = dict(FAST_HEALTH, expect_body='"status": true')

    def test_chunked_answer_with_the_expected_body_split_across_chunks_passes(self):
        chunks = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Type: application/json\r\nConnection: close\r\n\r\n",
                  b"5\r\n{\"sta\r\n", b"6;x=y\r\ntus\": \r\n", b"5\r\ntrue}\r\n",
                  b"0\r\nX-Trailer: t\r\n\r\n"]
        up = self.scripted_upstream(raw_health(chunks, (200, {}, b"chunky")))
        t = self.start_tether(backends=[up.url], config={"health": self.EXPECT})
        wait_state(t, up.address, "up")
        b = backend_by_address(t, up.address)
        self.assertEqual((b["last_check"]["status"], b["last_check"]["result"]), (200, "ok"))
        self.assertEqual(http_get(t.url("/id")).body, b"chunky")
        self.assertEqual(t.metric("tether_health_checks_total", backend=up.address,
                                  result="fail", default=0), 0)

    def test_answer_read_to_eof_and_a_204_pass(self):
        to_eof = self.scripted_upstream(raw_health(
            [b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":",
             b" true}"]))
        no_content = self.scripted_upstream(raw_health(b"HTTP/1.1 204 No Content\r\n\r\n"))
        t = self.start_tether(backends=[to_eof.url], config={"health": self.EXPECT})
        wait_state(t, to_eof.address, "up")
        t2 = self.start_tether(backends=[no_content.url], config={"health": FAST_HEALTH})
        wait_state(t2, no_content.address, "up")

    def _down_with(self, handler, reason, health=None):
        up = self.scripted_upstream(handler)
        t = self.start_tether(backends=[up.url], config={"health": health or FAST_HEALTH})
        wait_state(t, up.address, "down")
        wait_until(lambda: t.metric("tether_health_checks_total", backend=up.address,
                                    result="fail", default=0) >= 2, 5)
        result = backend_by_address(t, up.address)["last_check"]["result"]
        self.assertIn(reason, result)
        self.assertEqual([r.path for r in up.requests if r.path != "/health"], [])
        self.assertIsNone(t.proc.poll(), "tether exited")
        self.assertEqual(t.admin_get("/healthz").status, 200)
        return result

    def test_expected_body_beyond_the_checks_bound_fails_with_a_reason(self):
        # The needle ends past the first 64 KiB the check inspects (check_response.h).
        body = b"x" * (70 * 1024) + b'{"status": true}'
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        result = self._down_with(raw_health(answer), "in its first 65536 bytes", self.EXPECT)
        self.assertTrue(result.startswith("body does not contain"), result)

    def test_malformed_answers_fail_with_a_reason_naming_them(self):
        cases = [
            (b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
             "bad response: obsolete line folding"),
            (b"HTTP/1.1 200 OK\r\nX-Pad: " + b"p" * (70 * 1024) + b"\r\nContent-Length: 2\r\n\r\nok",
             "bad response: response head too large"),
            (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
             "bad response: malformed response"),
            (b"SSH-2.0-OpenSSH_9.2p1\r\n", "bad response: malformed response"),
            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "connection closed mid-response"),
        ]
        for answer, reason in cases:
            with self.subTest(reason=reason, answer=answer[:40]):
                self._down_with(raw_health(answer), reason)


class PassiveHealth(E2ETestCase):

    def test_consecutive_502_eject_the_backend(self):
        good = self.start_http_upstream(name="good")
        # Healthy to the active check, 502 to every request.
        bad = self.scripted_upstream(
            lambda req: (200, {}, b'{"status": true}') if req.path == "/health"
            else (502, {}, b"bad gateway"))
        t = self.start_tether(backends=[good.url, bad.url], config={
            "balance": "round_robin", "health": dict(FAST_HEALTH, interval="5s"),
            "passive": {"consecutive_failures": 3, "eject_for": "30s"}})
        wait_all_up(t, [good.address, bad.address])
        self.assertEqual(t.metric("tether_backend_ejections_total", backend=bad.address), 0)
        statuses = collections.Counter()
        c = KeepAliveClient(t.proxy_port)
        for _ in range(20):
            status, _, _ = c.request("GET", "/id")
            statuses[status] += 1
        c.close()
        # At most 3 answers came from the bad backend (502 is passed on, not retried:
        # the request reached it); then it is ejected.
        self.assertLessEqual(statuses[502], 3, statuses)
        self.assertEqual(t.metric("tether_backend_ejections_total", backend=bad.address), 1)
        self.assertTrue(backend_by_address(t, bad.address)["ejected"])
        served_before = len([r for r in bad.requests if r.path != "/health"])
        got, errs = distribution(t.proxy_port, 20)
        self.assertEqual((errs, dict(got)), ([], {"good": 20}))
        self.assertEqual(len([r for r in bad.requests if r.path != "/health"]), served_before)
        t.wait_log(msg="backend ejected", backend=bad.address, timeout=1)

    def test_ejected_backend_returns_after_eject_for(self):
        mode = {"fail": True}
        flaky = self.scripted_upstream(
            lambda req: (200, {}, b'{"status": true}') if req.path == "/health"
            else (503, {}, b"busy") if mode["fail"] else (200, {}, b"flaky"), name="flaky")
        # A second backend that is never up: the floor (max_ejection_percent 50) counts
        # configured backends, so flaky, the only one serving, may be ejected.
        t = self.start_tether(backends=[flaky.url, NEVER_UP], config={
            "health": dict(FAST_HEALTH, slow_start="0s"),
            "passive": {"consecutive_failures": 2, "eject_for": "1s",
                        "failure_statuses": [503]}})
        wait_state(t, flaky.address, "up")
        wait_state(t, NEVER_UP_ADDRESS, "down")
        for _ in range(2):
            self.assertEqual(http_get(t.url("/id")).status, 503)
        self.assertEqual(t.metric("tether_backend_ejections_total", backend=flaky.address), 1)
        # Ejected: no backend left, so tether answers 503 itself, at once, and is not ready.
        n = len(flaky.requests)
        r = http_get(t.url("/id"))
        self.assertEqual(r.status, 503)
        self.assertIsNotNone(r.headers.get("Retry-After"))
        self.assertEqual([q.path for q in flaky.requests[n:] if q.path != "/health"], [])
        self.assertEqual(t.admin_get("/readyz").status, 503)
        self.assertTrue(backend_by_address(t, flaky.address)["ejected"])
        wait_state(t, flaky.address, "down", timeout=2)
        mode["fail"] = False
        # eject_for (1 s), then rise (2) good checks.
        wait_state(t, flaky.address, "up", timeout=4)
        self.assertEqual(http_get(t.url("/id")).body, b"flaky")
        self.assertEqual(t.admin_get("/readyz").status, 200)
        self.assertFalse(backend_by_address(t, flaky.address)["ejected"])

    def test_failures_in_flight_during_an_ejection_do_not_count_afterwards(self):
        # Requests already sent when the backend is ejected fail later; once the
        # backend is back, a single failure must not eject it again.
        mode = {"fail": True}
        release = threading.Event()

        def handler(req):
            if req.path == "/health":
                return 200, {}, b'{"status": true}'
            if req.path == "/slow":
                release.wait(10)
                return 503, {}, b"busy"
            return (503, {}, b"busy") if mode["fail"] else (200, {}, b"fine")

        flaky = self.scripted_upstream(handler, name="flaky")
        t = self.start_tether(backends=[flaky.url, NEVER_UP], config={
            "health": dict(FAST_HEALTH, slow_start="0s"),
            "passive": {"consecutive_failures": 2, "eject_for": "1s",
                        "failure_statuses": [503]}})
        wait_state(t, flaky.address, "up")
        wait_state(t, NEVER_UP_ADDRESS, "down")
        slow = []
        threads = [threading.Thread(target=lambda: slow.append(http_get(t.url("/slow")).status))
                   for _ in range(3)]
        for th in threads:
            th.start()
        self.wait_until(lambda: len([r for r in flaky.requests if r.path == "/slow"]) == 3,
                        msg="three slow requests at the backend")
        for _ in range(2):
            self.assertEqual(http_get(t.url("/id")).status, 503)
        self.assertEqual(t.metric("tether_backend_ejections_total", backend=flaky.address), 1)
        release.set()
        for th in threads:
            th.join(10)
        self.assertEqual(slow, [503, 503, 503], "the backend's answers are passed on")
        mode["fail"] = False
        wait_state(t, flaky.address, "down", timeout=2)
        wait_state(t, flaky.address, "up", timeout=4)
        mode["fail"] = True
        self.assertEqual(http_get(t.url("/id")).status, 503)
        mode["fail"] = False
        self.assertEqual(http_get(t.url("/id")).body, b"fine", "one failure is not a streak")
        self.assertEqual(t.metric("tether_backend_ejections_total", backend=flaky.address), 1)
        self.assertFalse(backend_by_address(t, flaky.address)["ejected"])

    def test_connect_errors_eject_and_are_retried(self):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(2)]
        # A long check interval: only passive health can notice the dead one.
        t = self.start_tether(backends=[u.url for u in ups], config={
            "balance": "round_robin", "health": dict(FAST_HEALTH, interval="30s"),
            "passive": {"consecutive_failures": 2, "eject_for": "30s"}})
        wait_all_up(t, [u.address for u in ups])
        dead = ups[1]
        dead.kill()
        got, bad = distribution(t.proxy_port, 20)
        self.assertEqual((bad, dict(got)), ([], {"u0": 20}))
        self.assertEqual(t.metric("tether_backend_ejections_total", backend=dead.address), 1)
        self.assertGreaterEqual(t.metric("tether_retries_total", backend=dead.address), 1)
        self.assertTrue(backend_by_address(t, dead.address)["ejected"])


class EjectionFloor(E2ETestCase):
    """Issue 12, item 16: passive.max_ejection_percent (50) and passive.failure_statuses
    ([502, 504])."""

    def _only_backend_answering_503(self, passive):
        mode = {"fail": True}
        only = self.scripted_upstream(
            lambda req: (200, {}, b'{"status": true}') if req.path == "/health"
            else (503, {"Retry-After": "7"}, b"app busy") if mode["fail"]
            else (200, {}, b"only"), name="only")
        t = self.start_tether(backends=[only.url], config={
            "health": dict(FAST_HEALTH, interval="30s"), "passive": passive})
        wait_state(t, only.address, "up")
        c = KeepAliveClient(t.proxy_port)
        for i in range(10):
            status, headers, body = c.request("GET", "/id")
            # The application's answer, passed on: not tether's own "no backend" 503.
            self.assertEqual((status, body), (503, b"app busy"), "request %d" % i)
            self.assertEqual(headers.get("Retry-After"), "7")
        c.close()
        self.assertEqual(t.metric("tether_backend_ejections_total", backend=only.address), 0)
        b = backend_by_address(t, only.address)
        self.assertFalse(b["ejected"])
        self.assertEqual(b["state"], "up")
        self.assertEqual(t.admin_get("/readyz").status, 200)
        mode["fail"] = False
        self.assertEqual(http_get(t.url("/id")).body, b"only")
        return t, only

    def test_503s_from_the_only_backend_do_not_eject_it(self):
        self._only_backend_answering_503({"consecutive_failures": 5, "eject_for": "30s"})

    def test_the_only_backend_is_kept_even_when_503_counts(self):
        t, only = self._only_backend_answering_503(
            {"consecutive_failures": 5, "eject_for": "30s", "failure_statuses": [503],
             "max_ejection_percent": 100})
        t.wait_log(msg="backend not ejected: passive.max_ejection_percent reached",
                   backend=only.address, timeout=1)

    def test_the_floor_keeps_one_of_two_backends_failing_connections(self):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(2)]
        # A long check interval: only passive health sees the failures.
        t = self.start_tether(backends=[u.url for u in ups], config={
            "balance": "round_robin", "health": dict(FAST_HEALTH, interval="30s"),
            "passive": {"consecutive_failures": 2, "eject_for": "30s"}})
        wait_all_up(t, [u.address for u in ups])
        ports = {u.address: u.port for u in ups}
        for u in ups:
            u.kill()
        statuses = []
        for _ in range(12):
            statuses.append(http_get(t.url("/id")).status)
        self.assertNotIn(200, statuses)
        state = t.backends_state()
        ejected = [b["address"] for b in state if b["ejected"]]
        kept = [b["address"] for b in state if not b["ejected"]]
        self.assertEqual(len(ejected), 1, state)
        self.assertEqual(len(kept), 1, state)
        self.assertEqual(sum(t.metric("tether_backend_ejections_total", backend=a)
                             for a in ports), 1)
        t.wait_log(msg="backend not ejected: passive.max_ejection_percent reached",
                   backend=kept[0], timeout=1)
        # The one the floor kept is still in rotation: once it is back, it serves at once
        # (the active checks, 30 s apart, have not seen anything).
        back = self.start_http_upstream(name="back", port=ports[kept[0]])
        self.assertEqual(back.port, ports[kept[0]])
        got, bad = distribution(t.proxy_port, 6)
        self.assertEqual((bad, dict(got)), ([], {"back": 6}))
        self.assertTrue(backend_by_address(t, ejected[0])["ejected"])

    def test_with_four_backends_two_may_be_ejected(self):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(4)]
        t = self.start_tether(backends=[u.url for u in ups], config={
            "balance": "round_robin", "health": dict(FAST_HEALTH, interval="30s"),
            "passive": {"consecutive_failures": 2, "eject_for": "30s"}})
        wait_all_up(t, [u.address for u in ups])
        for u in ups[:3]:
            u.kill()
        got, bad = distribution(t.proxy_port, 30)
        self.assertEqual(sum(1 for b in t.backends_state() if b["ejected"]), 2)
        self.assertGreater(got["u3"], 0)


class KillDuringTraffic(E2ETestCase):

    def test_sigkill_of_one_backend_costs_no_request(self):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(3)]
        t = self.start_tether(backends=[u.url for u in ups], config={
            "balance": "round_robin", "health": FAST_HEALTH,
            "passive": {"consecutive_failures": 3, "eject_for": "30s"}})
        wait_all_up(t, [u.address for u in ups])
        results = collections.Counter()
        failures = []
        stop = threading.Event()
        started = threading.Event()

        def loop():
            # At most 2000 requests, paced over about 3 s (one per 1.5 ms at most).
            c = KeepAliveClient(t.proxy_port)
            t0 = time.monotonic()
            for i in range(2000):
                now = time.monotonic()
                if now - t0 > 4.0 or stop.is_set():
                    break
                if t0 + i * 0.0015 > now:
                    time.sleep(t0 + i * 0.0015 - now)
                try:
                    status, _, body = c.request("GET", "/id")
                except Exception as e:  # noqa: BLE001 - counted
                    failures.append(repr(e))
                    continue
                if i == 20:
                    started.set()
                if status != 200:
                    failures.append((status, body[:100]))
                else:
                    results[body.decode()] += 1
            c.close()

        th = threading.Thread(target=loop, daemon=True)
        th.start()
        self.assertTrue(started.wait(5))
        time.sleep(0.8)
        before_kill = results["u1"]
        ups[1].kill()
        killed_at = sum(results.values())
        th.join(10)
        stop.set()
        self.assertFalse(th.is_alive())
        total = sum(results.values()) + len(failures)
        self.assertGreater(total, 100, "the loop ran too few requests to mean anything")
        self.assertEqual(failures, [], "%d failed of %d" % (len(failures), total))
        self.assertGreater(before_kill, 0)
        self.assertGreater(total - killed_at, 300, "the kill came too late in the loop")
        self.assertLessEqual(results["u1"], before_kill + 5)
        wait_state(t, ups[1].address, "down", timeout=3)


class AdminControls(E2ETestCase):

    def _setup(self, n=2):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(n)]
        t = self.start_tether(backends=[u.url for u in ups],
                              config={"balance": "round_robin", "health": FAST_HEALTH})
        wait_all_up(t, [u.address for u in ups])
        return t, ups

    def test_drain_then_enable(self):
        t, ups = self._setup()
        names = {u.address: "u%d" % i for i, u in enumerate(ups)}
        # A slow request in flight on the backend when it is drained finishes normally.
        slow = {}

        def slow_request():
            r = http_get(t.url("/sleep/800"), timeout=10)
            slow["result"] = (r.status, r.headers.get("X-Upstream-Name"))

        th = threading.Thread(target=slow_request, daemon=True)
        th.start()
        busy = wait_until(lambda: [b for b in t.backends_state() if b["active_requests"] == 1],
                          timeout=3)
        victim, other = busy[0]["address"], [u.address for u in ups if u.address !=
                                              busy[0]["address"]][0]
        r = t.admin_post("/admin/backends/%d/drain" % busy[0]["id"])
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(backend_by_address(t, victim)["state"], "draining")
        got, bad = distribution(t.proxy_port, 20)
        self.assertEqual((bad, dict(got)), ([], {names[other]: 20}))
        th.join(5)
        self.assertEqual(slow.get("result"), (200, names[victim]))
        # Health checks go on and do not undo the drain.
        time.sleep(0.5)
        self.assertEqual(backend_by_address(t, victim)["state"], "draining")

        r = t.admin_post("/admin/backends/%d/enable" % busy[0]["id"])
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(backend_by_address(t, victim)["state"], "up")
        got, bad = distribution(t.proxy_port, 20)
        self.assertEqual((bad, dict(got)), ([], {"u0": 10, "u1": 10}))

    def test_drain_unknown_backend_is_404(self):
        t, _ = self._setup(1)
        self.assertEqual(t.admin_post("/admin/backends/7/drain").status, 404)
        self.assertEqual(t.admin_post("/admin/backends/x/enable").status, 404)
        self.assertEqual(t.admin_post("/admin/backends/0/explode").status, 404)

    def test_weight_change(self):
        t, ups = self._setup()
        bid = backend_by_address(t, ups[1].address)["id"]
        r = t.admin_post("/admin/backends/%d/weight?value=300" % bid)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(backend_by_address(t, ups[1].address)["weight"], 300)
        got, bad = distribution(t.proxy_port, 200)
        self.assertEqual(bad, [])
        self.assertTrue(0.6 <= got["u1"] / 200.0 <= 0.9, dict(got))
        for bad_value in ("", "abc", "-1", "1.5", "99999999999999999999", "12abc"):
            with self.subTest(value=bad_value):
                r = t.admin_post("/admin/backends/%d/weight?value=%s" % (bid, bad_value))
                self.assertEqual(r.status, 400, r.body)
        r = t.admin_post("/admin/backends/%d/weight" % bid)
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(backend_by_address(t, ups[1].address)["weight"], 300)
        self.assertEqual(t.admin_post("/admin/backends/9/weight?value=5").status, 404)
        # Weight 0: no new requests.
        self.assertEqual(t.admin_post("/admin/backends/%d/weight?value=0" % bid).status, 200)
        got, bad = distribution(t.proxy_port, 20)
        self.assertEqual((bad, dict(got)), ([], {"u0": 20}))


class AllDown(E2ETestCase):

    def test_all_down_prompt_503_with_retry_after_and_readyz_503(self):
        ups = [self.start_http_upstream(name="u%d" % i, health_status=503) for i in range(2)]
        t = self.start_tether(backends=[u.url for u in ups], config={"health": FAST_HEALTH})
        for u in ups:
            wait_state(t, u.address, "down")
        self.assertEqual(t.admin_get("/readyz").status, 503)
        for _ in range(3):
            t0 = time.monotonic()
            r = http_get(t.url("/id"), timeout=5)
            took = time.monotonic() - t0
            self.assertEqual(r.status, 503)
            self.assertIsNotNone(r.headers.get("Retry-After"))
            self.assertTrue(r.headers.get("Retry-After").strip().isdigit())
            self.assertLess(took, 1.0)
        # One comes back: ready again and serving.
        http_request(ups[0].url + "/admin/health/200", method="POST", body=b"")
        wait_state(t, ups[0].address, "up", timeout=3)
        self.assertEqual(t.admin_get("/readyz").status, 200)
        self.assertEqual(http_get(t.url("/id")).body, b"u0")

    def test_all_drained_is_503_too(self):
        up = self.start_http_upstream(name="u0")
        t = self.start_tether(backends=[up.url], config={"health": FAST_HEALTH})
        wait_state(t, up.address, "up")
        self.assertEqual(t.admin_post("/admin/backends/0/drain").status, 200)
        t0 = time.monotonic()
        r = http_get(t.url("/id"))
        self.assertEqual(r.status, 503)
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(t.admin_get("/readyz").status, 503)


class PerBackendLimit(E2ETestCase):
    """limits.max_connections_per_backend with queue_timeout (SPEC: above the cap a request
    queues; queued longer than queue_timeout: 503)."""

    def _setup(self, queue_timeout):
        up = self.start_http_upstream(name="u0")
        t = self.start_tether(backends=[up.url], config={
            "health": FAST_HEALTH,
            "limits": {"max_connections_per_backend": 1, "queue_timeout": queue_timeout}})
        wait_state(t, up.address, "up")
        return t, up

    def _hold(self, t, ms):
        """Starts a request that occupies the backend for ms; returns (thread, result)."""
        out = {}

        def run():
            try:
                out["status"] = http_get(t.url("/sleep/%d" % ms), timeout=10).status
            except Exception as e:  # noqa: BLE001 - reported by the test's assertions
                out["status"] = repr(e)
        th = threading.Thread(target=run, daemon=True)
        th.start()
        wait_until(lambda: t.backends_state()[0]["active_requests"] == 1, timeout=3)
        return th, out

    def test_request_over_the_cap_queues_until_a_slot_frees(self):
        t, _ = self._setup("3s")
        th, first = self._hold(t, 600)
        t0 = time.monotonic()
        r = http_get(t.url("/id"), timeout=10)
        took = time.monotonic() - t0
        th.join(5)
        self.assertEqual(first.get("status"), 200)
        self.assertEqual(r.status, 200)
        self.assertGreater(took, 0.3)

    def test_queued_longer_than_queue_timeout_is_503(self):
        t, _ = self._setup("500ms")
        th, first = self._hold(t, 2000)
        t0 = time.monotonic()
        r = http_get(t.url("/id"), timeout=10)
        took = time.monotonic() - t0
        self.assertEqual(r.status, 503)
        self.assertTrue(0.4 <= took <= 1.5, took)
        th.join(5)
        self.assertEqual(first.get("status"), 200)

    def test_under_the_cap_is_served(self):
        t, _ = self._setup("1s")
        got, bad = distribution(t.proxy_port, 10)
        self.assertEqual((bad, dict(got)), ([], {"u0": 10}))

    def test_pinned_requests_queue_for_their_backend_and_keep_their_pin(self):
        # Six slow requests of one user, a cap of 1: one at a time on that user's
        # instance, the others queued for it (not run at once, not sent elsewhere).
        ups = [self.start_http_upstream(name=n) for n in ("u0", "u1", "u2")]
        t = self.start_tether(backends=[u.url for u in ups], config={
            "health": FAST_HEALTH, "affinity": {"keys": ["cookie:user"]},
            "limits": {"max_connections_per_backend": 1, "queue_timeout": "10s"}})
        for u in ups:
            wait_state(t, u.address, "up")
        home = http_get(t.url("/id"), headers={"Cookie": "user=alice"}).headers["X-Upstream-Name"]
        results, peak = [], [0]

        def one():
            r = http_get(t.url("/sleep/250"), headers={"Cookie": "user=alice"}, timeout=15)
            results.append((r.status, r.headers.get("X-Upstream-Name")))

        threads = [threading.Thread(target=one, daemon=True) for _ in range(6)]
        t0 = time.monotonic()
        for th in threads:
            th.start()
        while any(th.is_alive() for th in threads) and time.monotonic() - t0 < 15:
            peak[0] = max(peak[0], max(b["active_requests"] for b in t.backends_state()))
            time.sleep(0.02)
        took = time.monotonic() - t0
        for th in threads:
            th.join(1)
        self.assertEqual(results, [(200, home)] * 6)
        self.assertLessEqual(peak[0], 1, "never above the cap")
        self.assertGreater(took, 5 * 0.25, "served one after another (%.2fs)" % took)


if __name__ == "__main__":
    unittest.main()
