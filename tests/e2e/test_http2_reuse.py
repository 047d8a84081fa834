"""HTTP/2 streams reuse what closed streams leave (their entries, request heads, blocks):
each stream carries only its own fields, target, trailers and upgrade, whatever happened
to the streams before it on its connection or another (reset, 431, 400, 501, refused,
upgraded, heads past what a spare keeps)."""
import random
import unittest

from h2util import H2Client, require_h2
from harness import E2ETestCase, wait_until
from rawupstream import RawUpstream, simple_response
from test_http_core import FAST_HEALTH, wait_ready
from wsutil import accept_for


def _h(req, name):
    e = lambda x: x.encode("latin-1") if isinstance(x, str) else bytes(x)
    return [e(v) for k, v in req.headers if e(k).lower() == name]


def handler(req, conn):
    if _h(req, b"upgrade"):
        acc = accept_for(_h(req, b"sec-websocket-key")[0]).encode()
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + acc + b"\r\n\r\n")
    body = b"ok"
    return simple_response(200, body, head=req.method == b"HEAD")


def safe_reset(c, sid):
    try:
        c.reset(sid)
    except Exception:  # already closed on the client's side
        pass


class StreamReuse(E2ETestCase):
    def setUp(self):
        super().setUp()
        require_h2()

    def start(self, up, config=None):
        cfg = {"health": dict(FAST_HEALTH), "access_log": {"flush": "50ms"},
               "http2": {"websockets": True, "glitch_budget": 100000,
                         "max_concurrent_streams": 8},
               "limits": {"max_request_header_bytes": 16384}}
        cfg.update(config or {})
        t = self.start_tether(backends=[up.url], config=cfg, listen=["127.0.0.1:0"])
        wait_ready(t)
        return t

    def test_hostile_mix_leaks_nothing_into_later_streams(self):
        up = RawUpstream(handler)
        self.addCleanup(up.stop)
        t = self.start(up)
        rnd = random.Random(7)
        conns = []

        def conn(i):
            while len(conns) <= i:
                conns.append(None)
            if conns[i] is None or conns[i].closed or conns[i].goaway is not None:
                c = H2Client(t.proxy_port)
                self.addCleanup(c.close)
                conns[i] = c
            return conns[i]

        expected = {}  # n -> (target, own marker fields, own trailers)
        for n in range(400):
            c = conn(n % 3)
            kind = n % 10
            mine = [("x-m%d-%d" % (n, i), "v%d-%d" % (n, i) + "z" * rnd.randrange(0, 900))
                    for i in range(rnd.randrange(0, 6))]
            path = "/n%d?%s" % (n, "q" * rnd.randrange(0, 3000))
            if kind == 0:  # plain GET, sometimes a head just under / above 4 KiB
                if n % 20 == 0:
                    mine.append(("x-m%d-big" % n, "B" * rnd.choice((3000, 3900, 4200, 9000))))
                sid = c.request("GET", path, headers=mine)
                r = c.response(sid)
                self.assertEqual(r.status, 200, n)
                expected[n] = (path, mine, [])
            elif kind == 1:  # a body with trailers (chunked upstream)
                sid = c.request("POST", path, headers=mine, end=False)
                c.send_data(sid, b"b%d" % n * 10, end=False)
                tr = [("x-t%d" % n, "tv%d" % n)]
                c.conn.send_headers(sid, tr, end_stream=True)
                c.flush()
                r = c.response(sid)
                self.assertEqual(r.status, 200, n)
                expected[n] = (path, mine, tr)
            elif kind == 2:  # 431: a header list past the bound
                sid = c.request("GET", path, headers=mine + [("x-huge", "h" * 20000)])
                r = c.responses[sid]
                c.until(lambda: r.status is not None or r.reset is not None or c.closed, 10)
                self.assertTrue(r.status == 431 or r.reset is not None or c.closed, (n, r.status))
            elif kind == 3:  # 400: bad authority
                sid = c.request("GET", path, headers=mine, authority=("bad host/x", "u@h", "h/p")[n % 3])
                r = c.responses[sid]
                c.until(lambda: r.status is not None or r.reset is not None, 10)
                self.assertTrue(r.status == 400 or r.reset is not None, (n, r.status))
            elif kind == 4:  # reset by the client before the body ends
                sid = c.request("POST", path, headers=mine, end=False)
                c.send_data(sid, b"x" * 100, end=False)
                safe_reset(c, sid)
            elif kind == 5:  # extended CONNECT, upgraded, then reset
                sid = c.request("CONNECT", path, headers=[(":protocol", "websocket"),
                                                           ("sec-websocket-version", "13")] + mine,
                                end=False)
                r = c.responses[sid]
                c.until(lambda: r.status is not None or r.reset is not None, 10)
                self.assertEqual(r.status, 200, n)
                safe_reset(c, sid)
            elif kind == 6:  # extended CONNECT of another protocol: 501
                sid = c.request("CONNECT", path, headers=[(":protocol", "junkproto")] + mine, end=False)
                r = c.responses[sid]
                c.until(lambda: r.status is not None or r.reset is not None, 10)
                self.assertEqual(r.status, 501, n)
                safe_reset(c, sid)
            elif kind == 7:  # HEAD
                sid = c.request("HEAD", path, headers=mine)
                r = c.response(sid)
                self.assertEqual((r.status, bytes(r.body)), (200, b""), n)
                expected[n] = (path, mine, [])
            elif kind == 8 and n % 30 == 8:  # a burst up to max_concurrent_streams: some refused
                sids = [c.request("GET", "/burst%d-%d" % (n, j), headers=[("x-burst%d" % n, str(j))],
                                  end=False) for j in range(8)]
                for s in sids[::2]:
                    safe_reset(c, s)
                for s in sids[1::2]:
                    try:
                        c.conn.end_stream(s)
                        c.flush()
                    except Exception:
                        pass
            elif kind == 8:
                continue
            else:  # underscore field: refused 400 or dropped (policy)
                sid = c.request("GET", path, headers=mine + [("x_under", "u")])
                r = c.responses[sid]
                c.until(lambda: r.status is not None or r.reset is not None, 10)
                if r.status == 200:
                    expected[n] = (path, mine, [])
        def targets():
            return {t.decode("latin-1") if isinstance(t, (bytes, bytearray)) else t
                    for t in (q.target for q in up.requests())}
        wait_until(lambda: all(p in targets() for p, _, _ in expected.values()), 10,
                   msg="every answered request seen by the backend")
        reqs = [q for q in up.requests()]
        got = {}
        def d(x):
            return x.decode("latin-1") if isinstance(x, (bytes, bytearray)) else x
        for q in reqs:
            tgt = d(q.target)
            if not tgt.startswith("/n"):
                continue
            n = int(tgt[2:].split("?")[0])
            names = [d(k).lower() for k, _ in q.headers]
            marks = [(d(k).lower(), d(v)) for k, v in q.headers
                     if d(k).lower().startswith("x-m")]
            own = [m for m in marks if m[0].startswith("x-m%d-" % n)]
            self.assertEqual(own, marks, (n, "foreign fields", [m[0] for m in marks]))
            self.assertFalse([x for x in names if x.startswith("x-burst") or x.startswith("x-t")
                              or x in ("x-huge", "x_under")], (n, names))
            if n % 10 != 5:
                self.assertNotIn("upgrade", names, n)
                self.assertNotIn("sec-websocket-key", names, n)
            tr = [(d(k).lower(), d(v)) for k, v in q.trailers]
            if n in expected:
                self.assertEqual(tgt, expected[n][0], n)
                self.assertEqual([m for m in marks], [(k, v) for k, v in expected[n][1]], n)
                self.assertEqual(tr, expected[n][2], n)
            else:
                self.assertEqual(tr, [], n)
            got[n] = True
        self.assertGreaterEqual(len(got), 180)
        for n in expected:
            self.assertIn(n, got, "request %d never reached the backend" % n)


if __name__ == "__main__":
    unittest.main()
