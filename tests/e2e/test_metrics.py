"""Metrics end to end: the scrape after real HTTP, SSE and WebSocket traffic passes
promtool, carries every metric of SPEC.md, is scraped by a real Prometheus, and counts
known traffic exactly.

Run: cd tests/e2e && TETHER_BIN=... /usr/bin/python3 -m unittest -v test_metrics
"""

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

from harness import (E2ETestCase, RawClient, free_port, http_get, http_request,
                     parse_responses, require_program, wait_until)
from lb_util import distribution, wait_all_up, wait_state

FAST_HEALTH = {"interval": "200ms", "timeout": "1s", "rise": 2, "fall": 2}

# SPEC.md, "Metrics (names are the contract; labels as given)": name -> (type, labels).
SPEC_METRICS = {
    "tether_build_info": ("gauge", {"version"}),
    "tether_downstream_connections_active": ("gauge", set()),
    "tether_downstream_connections_total": ("counter", set()),
    "tether_http_requests_total": ("counter", {"backend", "method", "code"}),
    "tether_http_request_duration_seconds": ("histogram", {"backend"}),
    "tether_http_first_byte_seconds": ("histogram", {"backend"}),
    "tether_upstream_connect_seconds": ("histogram", {"backend"}),
    "tether_upstream_connect_errors_total": ("counter", {"backend"}),
    "tether_upstream_connections": ("gauge", {"backend", "state"}),
    "tether_retries_total": ("counter", {"backend"}),
    "tether_backend_up": ("gauge", {"backend"}),
    "tether_backend_state": ("gauge", {"backend", "state"}),
    "tether_health_checks_total": ("counter", {"backend", "result"}),
    "tether_backend_ejections_total": ("counter", {"backend"}),
    "tether_websocket_upgrades_total": ("counter", {"backend", "result"}),
    "tether_websocket_connections_active": ("gauge", {"backend"}),
    "tether_websocket_messages_total": ("counter", {"backend", "direction"}),
    "tether_websocket_closes_total": ("counter", {"backend", "code", "by"}),
    "tether_websocket_duration_seconds": ("histogram", {"backend"}),
    "tether_sse_streams_active": ("gauge", {"backend"}),
    "tether_bytes_total": ("counter", {"backend", "direction"}),
    "tether_affinity_lookups_total": ("counter", {"result"}),
    "tether_affinity_store_up": ("gauge", set()),
    "tether_affinity_store_seconds": ("histogram", {"op"}),
    "tether_config_reloads_total": ("counter", {"result"}),
}


def spec_path():
    """SPEC.md when it can be found (it lives outside the repository)."""
    here = os.path.dirname(os.path.abspath(__file__))
    for p in (os.environ.get("TETHER_SPEC", ""), os.path.join(here, "..", "..", "SPEC.md"),
              "/work/shared/SPEC.md"):
        if p and os.path.isfile(p):
            return p
    return None


def spec_table_names(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("## Metrics"):]
    return set(re.findall(r"^\|\s*`(tether_[a-z0-9_]+)`", section, re.M))


def scrape_families(text):
    """{family name: (type, set of label names seen on its samples)} from a 0.0.4 scrape."""
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    labels = {name: set() for name in types}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s", line)
        if not m:
            continue
        name = m.group(1)
        fam = name
        if fam not in types:
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and name[:-len(suffix)] in types:
                    fam = name[:-len(suffix)]
        lbl = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(2) or ""))
        lbl.discard("le")
        labels.setdefault(fam, set()).update(lbl)
    return {name: (types.get(name), labels.get(name, set())) for name in types}


def ws_session(url, messages, close_code=1000):
    """Opens a WebSocket (python websockets), sends each message and reads its echo,
    then closes with close_code. Returns the echoes."""
    import websockets

    async def run():
        out = []
        async with websockets.connect(url, open_timeout=5, close_timeout=5) as ws:
            for m in messages:
                await ws.send(m)
                out.append(await asyncio.wait_for(ws.recv(), 5))
            await ws.close(close_code)
        return out
    return asyncio.run(run())


def ws_handshake_status(port, path="/"):
    """Sends a WebSocket upgrade request by hand; returns the response status."""
    with RawClient(port) as c:
        c.send("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n" % (path, port))
        r = c.recv_response(timeout=5)
        return r.status if r else None


class Exposition(E2ETestCase):

    def _traffic(self):
        """A tether with an http_upstream, an SSE app and a WebSocket echo backend, after
        some of each kind of traffic. Returns (tether, http_upstream, sse, ws)."""
        require_program("uvicorn")
        up = self.start_http_upstream(name="http")
        sse = self.start_sse_app(name="sse")
        ws = self.start_ws_echo(name="ws")
        t = self.start_tether(backends=[up.url], config={"health": FAST_HEALTH})
        wait_state(t, up.address, "up")
        for path in ("/id", "/status/404", "/chunked?n=3&delay_ms=10"):
            http_get(t.url(path))
        http_request(t.url("/echo"), method="POST", body=b"x" * 1000)
        # SSE and WebSocket through a second tether to their own backends (one backend
        # each, so that the requests land where they are served).
        t_sse = self.start_tether(backends=[sse.url], config={"health": FAST_HEALTH})
        wait_state(t_sse, sse.address, "up")
        r = http_get(t_sse.url("/sse?n=3&interval_ms=10"))
        self.assertEqual(r.status, 200)
        self.assertIn(b"[DONE]", r.body)
        t_ws = self.start_tether(backends=[ws.url], config={"health": FAST_HEALTH})
        wait_state(t_ws, ws.address, "up")
        self.assertEqual(ws_session(t_ws.ws_url("/"), ["a", "bb"]), ["a", "bb"])
        return t, t_sse, t_ws

    def test_promtool_check_metrics_is_clean(self):
        promtool = require_program("promtool")
        for t in self._traffic():
            text = t.metrics_text()
            p = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                               capture_output=True, timeout=30)
            out = (p.stdout + p.stderr).decode()
            self.assertEqual((p.returncode, out), (0, ""), "promtool on %s" % t.admin_url())

    def test_every_spec_metric_is_exposed_with_its_type_and_labels(self):
        t, t_sse, t_ws = self._traffic()
        if spec_path():
            self.assertEqual(spec_table_names(spec_path()), set(SPEC_METRICS),
                             "SPEC.md's metrics table and this test's list differ")
        fams = scrape_families(t.metrics_text())
        missing = sorted(set(SPEC_METRICS) - set(fams))
        self.assertEqual(missing, [], "metrics of SPEC.md missing from /metrics")
        for name, (typ, labels) in SPEC_METRICS.items():
            with self.subTest(metric=name):
                self.assertEqual(fams[name][0], typ)
        # Labels: checked on the tether whose traffic produced samples of each family.
        seen = {}
        for tt in (t, t_sse, t_ws):
            for name, (_, lbl) in scrape_families(tt.metrics_text()).items():
                seen.setdefault(name, set()).update(lbl)
        for name, (_, labels) in SPEC_METRICS.items():
            with self.subTest(metric=name, check="labels"):
                if seen.get(name):
                    self.assertEqual(seen[name], labels)

    def test_content_type_is_prometheus_text_0_0_4(self):
        up = self.start_http_upstream(name="u")
        t = self.start_tether(backends=[up.url])
        r = t.admin_get("/metrics")
        self.assertEqual(r.status, 200)
        ctype = r.headers.get("Content-Type")
        self.assertTrue(ctype.startswith("text/plain; version=0.0.4"), ctype)
        self.assertEqual(http_request(t.admin_url("/metrics"), method="HEAD").status, 200)

    def test_histogram_buckets_match_spec_ranges(self):
        up = self.start_http_upstream(name="u")
        t = self.start_tether(backends=[up.url], config={"health": FAST_HEALTH})
        wait_state(t, up.address, "up")
        http_get(t.url("/id"))
        text = t.metrics_text()

        def bounds(name):
            les = re.findall(r'^%s_bucket\{[^}]*le="([^"]+)"' % name, text, re.M)
            return [float(x) for x in les if x != "+Inf"]
        for name, lo, hi in (("tether_http_request_duration_seconds", 0.005, 3600),
                             ("tether_http_first_byte_seconds", 0.001, 1800)):
            with self.subTest(metric=name):
                b = bounds(name)
                self.assertTrue(b, text[:2000])
                self.assertEqual((min(b), max(b)), (lo, hi))
        self.assertIn('le="+Inf"', text)


class ExactCounts(E2ETestCase):

    def _one(self, **cfg):
        up = self.start_http_upstream(name="u")
        config = {"health": FAST_HEALTH}
        config.update(cfg)
        t = self.start_tether(backends=[up.url], config=config)
        wait_state(t, up.address, "up")
        return t, up

    def test_requests_by_method_and_code(self):
        t, up = self._one()
        for _ in range(7):
            self.assertEqual(http_get(t.url("/id")).status, 200)
        for _ in range(2):
            self.assertEqual(http_request(t.url("/echo"), method="POST", body=b"abc").status,
                             200)
        self.assertEqual(http_get(t.url("/status/404")).status, 404)
        self.assertEqual(http_request(t.url("/id"), method="HEAD").status, 200)
        m = lambda **l: t.metric("tether_http_requests_total", backend=up.address, **l)  # noqa
        self.assertEqual(m(method="GET", code="200"), 7)
        self.assertEqual(m(method="POST", code="200"), 2)
        self.assertEqual(m(method="GET", code="404"), 1)
        self.assertEqual(m(method="HEAD", code="200"), 1)
        self.assertEqual(m(), 11)
        # One connection per request (urllib), none open now.
        self.assertEqual(t.metric("tether_downstream_connections_total"), 11)
        wait_until(lambda: t.metric("tether_downstream_connections_active") == 0, 3)
        for name in ("tether_http_request_duration_seconds_count",
                     "tether_http_first_byte_seconds_count"):
            self.assertEqual(t.metric(name, backend=up.address), 11, name)
        self.assertEqual(t.metric("tether_retries_total", backend=up.address), 0)
        self.assertEqual(t.metric("tether_upstream_connect_errors_total", backend=up.address),
                         0)
        self.assertGreaterEqual(
            t.metric("tether_upstream_connect_seconds_count", backend=up.address), 1)

    # tether_bytes_total{direction="upstream"} counts the request bytes tether received
    # from the client (headed for the backend), direction="downstream" every byte it
    # wrote to the client.
    REQS = ("GET /id HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
            "GET /big?bytes=10000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    def _bytes(self, t, up):
        return (t.metric("tether_bytes_total", backend=up.address, direction="upstream"),
                t.metric("tether_bytes_total", backend=up.address, direction="downstream"))

    def test_bytes_in_both_directions(self):
        t, up = self._one()
        received = 0
        with RawClient(t.proxy_port) as c:
            for req in self.REQS:  # one at a time on one keep-alive connection
                c.send(req)
                head = c.recv_until(b"\r\n\r\n")
                n = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
                body = c.buffer
                while len(body) < n and c._recv_some(time.monotonic() + 5):
                    body = c.buffer
                self.assertEqual(len(body), n)
                c.buffer = b""
                self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
                received += len(head) + n
            self.assertTrue(c.is_closed(2))  # Connection: close on the last one
        self.assertEqual(self._bytes(t, up), (sum(len(r) for r in self.REQS), received))

    # Pipelined requests read in one read: each request counts only its own bytes.
    def test_bytes_of_pipelined_requests_counted_once(self):
        t, up = self._one()
        req = "".join(self.REQS)
        with RawClient(t.proxy_port) as c:
            c.send(req)
            got = c.recv_all(timeout=5)
        self.assertEqual([r.status for r in parse_responses(got)], [200, 200, 200])
        self.assertEqual(self._bytes(t, up), (len(req), len(got)))

    def test_websocket_upgrades_messages_closes(self):
        ws = self.start_ws_echo(name="ws")
        t = self.start_tether(backends=[ws.url], config={"health": FAST_HEALTH})
        wait_state(t, ws.address, "up")
        for i in range(3):
            self.assertEqual(ws_session(t.ws_url("/"), ["m%d" % k for k in range(i + 1)]),
                             ["m%d" % k for k in range(i + 1)])
        # The backend closes one with 4000 after the first echo.
        import websockets

        async def backend_closes():
            async with websockets.connect(t.ws_url("/?close=4000")) as s:
                await s.send("x")
                self.assertEqual(await s.recv(), "x")
                try:
                    await asyncio.wait_for(s.recv(), 5)
                except websockets.ConnectionClosed as e:
                    return e.code
        self.assertEqual(asyncio.run(backend_closes()), 4000)
        b = ws.address
        wait_until(lambda: t.metric("tether_websocket_connections_active", backend=b) == 0, 3)
        self.assertEqual(t.metric("tether_websocket_upgrades_total", backend=b, result="101"), 4)
        self.assertEqual(t.metric("tether_websocket_messages_total", backend=b,
                                  direction="upstream"), 1 + 2 + 3 + 1)
        self.assertEqual(t.metric("tether_websocket_messages_total", backend=b,
                                  direction="downstream"), 1 + 2 + 3 + 1)
        self.assertEqual(t.metric("tether_websocket_closes_total", backend=b, code="1000",
                                  by="client"), 3)
        self.assertEqual(t.metric("tether_websocket_closes_total", backend=b, code="4000",
                                  by="backend"), 1)
        self.assertEqual(t.metric("tether_websocket_duration_seconds_count", backend=b), 4)

    def test_refused_upgrade_counts_its_status(self):
        up = self.scripted_upstream(
            lambda req: (200, {}, b'{"status": true}') if req.path == "/health"
            else (403, {"Content-Type": "text/plain"}, b"no"))
        t = self.start_tether(backends=[up.url], config={"health": FAST_HEALTH})
        wait_state(t, up.address, "up")
        self.assertEqual(ws_handshake_status(t.proxy_port, "/ws"), 403)
        self.assertEqual(t.metric("tether_websocket_upgrades_total", backend=up.address,
                                  result="403"), 1)
        self.assertIsNone(t.metric("tether_websocket_upgrades_total", backend=up.address,
                                   result="101"))

    def test_sse_stream_is_active_while_it_streams(self):
        require_program("uvicorn")
        sse = self.start_sse_app(name="sse")
        t = self.start_tether(backends=[sse.url], config={"health": FAST_HEALTH})
        wait_state(t, sse.address, "up")
        done = {}

        def stream():
            done["r"] = http_get(t.url("/sse?n=5&interval_ms=200"), timeout=10)
        th = threading.Thread(target=stream, daemon=True)
        th.start()
        wait_until(lambda: t.metric("tether_sse_streams_active", backend=sse.address) == 1, 3)
        th.join(10)
        self.assertEqual(done["r"].status, 200)
        wait_until(lambda: t.metric("tether_sse_streams_active", backend=sse.address) == 0, 3)

    def test_health_check_results(self):
        good = self.start_http_upstream(name="good")
        sick = self.start_http_upstream(name="sick", health_status=500)
        # Accepts and never answers: every check times out.
        mute_sock = socket.socket()
        mute_sock.bind(("127.0.0.1", 0))
        mute_sock.listen(16)
        self.addCleanup(mute_sock.close)
        mute = "127.0.0.1:%d" % mute_sock.getsockname()[1]
        t = self.start_tether(backends=[good.url, sick.url, "http://" + mute], config={
            "health": {"interval": "200ms", "timeout": "300ms", "rise": 1, "fall": 1}})
        wait_until(lambda: (t.metric("tether_health_checks_total", backend=mute,
                                     result="timeout") or 0) >= 2, 5)
        self.assertGreaterEqual(t.metric("tether_health_checks_total", backend=good.address,
                                         result="ok"), 2)
        self.assertGreaterEqual(t.metric("tether_health_checks_total", backend=sick.address,
                                         result="fail"), 2)
        self.assertEqual(t.metric("tether_health_checks_total", backend=good.address,
                                  result="fail") or 0, 0)
        self.assertEqual(t.metric("tether_backend_up", backend=good.address), 1)
        self.assertEqual(t.metric("tether_backend_up", backend=sick.address), 0)
        self.assertEqual(t.metric("tether_backend_up", backend=mute), 0)
        self.assertEqual(t.metric("tether_backend_state", backend=sick.address, state="down"), 1)
        self.assertEqual(t.metric("tether_backend_state", backend=sick.address), 1)

    def test_backend_state_follows_drain(self):
        t, up = self._one()
        self.assertEqual(t.metric("tether_backend_state", backend=up.address, state="up"), 1)
        self.assertEqual(t.admin_post("/admin/backends/0/drain").status, 200)
        self.assertEqual(t.metric("tether_backend_state", backend=up.address, state="draining"),
                         1)
        self.assertEqual(t.metric("tether_backend_state", backend=up.address), 1)
        self.assertEqual(t.admin_post("/admin/backends/0/enable").status, 200)
        self.assertEqual(t.metric("tether_backend_state", backend=up.address, state="up"), 1)
        self.assertEqual(t.metric("tether_backend_state", backend=up.address), 1)

    def test_connect_errors_retries_ejections(self):
        ups = [self.start_http_upstream(name="u%d" % i) for i in range(2)]
        t = self.start_tether(backends=[u.url for u in ups], config={
            "balance": "round_robin", "health": dict(FAST_HEALTH, interval="30s"),
            "passive": {"consecutive_failures": 2, "eject_for": "30s"}})
        wait_all_up(t, [u.address for u in ups])
        ups[1].kill()
        got, bad = distribution(t.proxy_port, 10)
        self.assertEqual((bad, dict(got)), ([], {"u0": 10}))
        dead = ups[1].address
        self.assertEqual(t.metric("tether_backend_ejections_total", backend=dead), 1)
        # Two tries reached the dead backend before the ejection (round robin), each a
        # connect error (its pooled connection was reset, or there was none) and a retry.
        retries = t.metric("tether_retries_total", backend=dead)
        self.assertEqual(retries, 2)
        self.assertEqual(t.metric("tether_http_requests_total", backend=ups[0].address), 10)
        self.assertIsNone(t.metric("tether_http_requests_total", backend=dead) or None)

    def test_config_reloads(self):
        t, up = self._one()
        t.reload(config={"health": FAST_HEALTH, "balance": "round_robin"})
        wait_until(lambda: t.metric("tether_config_reloads_total", result="ok") == 1, 3)
        t.reload(config="balance: [not, valid\n")
        wait_until(lambda: t.metric("tether_config_reloads_total", result="invalid") == 1, 3)
        self.assertEqual(t.metric("tether_config_reloads_total", result="ok"), 1)

    def test_affinity_and_build_info(self):
        t, up = self._one()
        self.assertEqual(t.metric("tether_build_info"), 1)
        self.assertEqual(t.metric("tether_affinity_store_up"), 1)  # memory store


class RealPrometheus(E2ETestCase):

    def test_prometheus_scrapes_tether(self):
        prom = require_program("prometheus")
        up = self.start_http_upstream(name="u")
        t = self.start_tether(backends=[up.url], config={"health": FAST_HEALTH})
        wait_state(t, up.address, "up")
        for _ in range(7):
            self.assertEqual(http_get(t.url("/id")).status, 200)

        tmp = tempfile.mkdtemp(prefix="tether-prom-")
        self.addCleanup(shutil.rmtree, tmp, True)
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: tether\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % t.admin_port)
        last = None
        for _ in range(3):  # free_port() races; retry on "address in use"
            port = free_port()
            app = self.start_app([prom, "--config.file=" + cfg,
                                  "--storage.tsdb.path=" + os.path.join(tmp, "data"),
                                  "--web.listen-address=127.0.0.1:%d" % port,
                                  "--log.level=warn"],
                                 name="prometheus", cwd=tmp, port=port)
            try:
                wait_until(lambda: http_get("http://127.0.0.1:%d/-/ready" % port,
                                            timeout=2).status == 200, 30, 0.2,
                           "prometheus ready")
                break
            except AssertionError as e:
                last = "%s\n%s" % (e, app.output()[-2000:])
                app.stop()
        else:
            self.fail("prometheus did not start: %s" % last)

        def query(q):
            url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (port, urllib.parse.quote(q))
            r = http_get(url, timeout=5)
            body = json.loads(r.body)
            self.assertEqual(body.get("status"), "success", body)
            return [(s["metric"], float(s["value"][1])) for s in body["data"]["result"]]

        def up_is_one():
            res = query('up{job="tether"}')
            return res and res[0][1] == 1.0
        wait_until(up_is_one, 20, 0.25, "prometheus up{job=tether} == 1")
        q = 'sum(tether_http_requests_total{method="GET",code="200",backend="%s"})' % \
            up.address
        wait_until(lambda: query(q) and query(q)[0][1] == 7.0, 10, 0.25,
                   "prometheus sees the 7 requests")
        res = query('tether_backend_up{backend="%s"}' % up.address)
        self.assertEqual([v for _, v in res], [1.0])
        # Histograms are usable as such.
        res = query('histogram_quantile(0.5, sum by (le) '
                    '(tether_http_request_duration_seconds_bucket))')
        self.assertEqual(len(res), 1)


if __name__ == "__main__":
    unittest.main()
