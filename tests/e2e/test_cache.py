"""The cache of immutable assets (routes[].cache) end to end, against the scripted
backend, whose /stats counts the requests it received per target: hits and misses,
Age, expiry, each "not cacheable" case, 304 from the cache, compressed variants
compressed once, purge, a body that ends badly stores nothing, and the byte bound
under a flood of distinct URLs (tether_cache_bytes never above max_size)."""

import json
import time
import unittest
import urllib.parse

from harness import E2ETestCase, http_get, require_program, wait_until
from test_compression import decode, request
from test_upgrade import read_head

FAST_HEALTH = {"interval": "200ms", "rise": 1}
IMMUTABLE = "public, max-age=31536000, immutable"


def asset(n=4000, cc=IMMUTABLE, tag="", ctype="application/javascript", extra=(), **params):
    """The scripted backend's /asset target: n bytes with Cache-Control `cc` (None: none)."""
    q = [("bytes", str(n)), ("type", ctype), ("v", tag)]
    if cc is not None:
        q.append(("h", "Cache-Control:" + cc))
    q += [("h", h) for h in extra]
    q += sorted(params.items())
    return "/asset?" + urllib.parse.urlencode(q)


class CacheBase(E2ETestCase):
    def setUp(self):
        self.up = self.start_http_upstream(name="a")

    def tether(self, cache=None, compression=None, token=None):
        route = {"match": {"path_prefix": "/asset"}, "cache": cache if cache is not None else {}}
        cfg = {"health": dict(FAST_HEALTH), "routes": [route]}
        if compression is not None:
            cfg["compression"] = compression
        t = self.start_tether(backends=[self.up.url], config=cfg)
        wait_until(lambda: t.admin_get("/readyz").status == 200, 10, msg="/readyz 200")
        return t

    def backend_count(self, target):
        stats = json.loads(http_get(self.up.url + "/stats").body)
        return stats["targets"].get(target, 0)

    def get(self, t, target, headers=(), method="GET"):
        return request(t.proxy_port, target, list(headers), method=method)


class HitsAndMisses(CacheBase):
    def test_second_request_is_a_hit_with_age_and_the_same_body(self):
        t = self.tether()
        target = asset(tag="hit", extra=['ETag:"v1"'])
        s1, h1, b1, c1 = self.get(t, target)
        self.assertEqual((s1, c1), (200, True))
        self.assertEqual(self.backend_count(target), 1)
        s2, h2, b2, c2 = self.get(t, target)
        self.assertEqual((s2, c2), (200, True))
        self.assertEqual(b2, b1)
        self.assertEqual(self.backend_count(target), 1)
        self.assertIn("age", h2)
        self.assertGreaterEqual(int(h2["age"][0]), 0)
        self.assertEqual(h2["content-length"], [str(len(b1))])
        self.assertEqual(h2["cache-control"], [IMMUTABLE])
        self.assertEqual(h2["etag"], ['"v1"'])
        self.assertEqual(len(h2["x-request-id"]), 1)
        self.assertNotEqual(h2["x-request-id"], h1["x-request-id"])
        # HEAD is answered from the GET's entry.
        s3, h3, _, _ = self.get(t, target, method="HEAD")
        self.assertEqual(s3, 200)
        self.assertEqual(h3["content-length"], [str(len(b1))])
        self.assertEqual(self.backend_count(target), 1)
        self.assertEqual(t.metric("tether_cache_requests_total", result="hit"), 2)
        self.assertEqual(t.metric("tether_cache_requests_total", result="miss"), 1)
        self.assertEqual(t.metric("tether_http_requests_total", backend="cache", code="200"), 2)
        wait_until(lambda: len(t.access_logs(backend="cache")) == 2, 5, msg="two access lines from the cache")
        self.assertGreater(t.metric("tether_cache_bytes"), len(b1))

    def test_entry_expires_with_its_max_age(self):
        t = self.tether()
        target = asset(cc="max-age=1", tag="exp")
        self.get(t, target)
        self.get(t, target)
        self.assertEqual(self.backend_count(target), 1)
        start = time.monotonic()
        wait_until(lambda: self.get(t, target)[0] == 200 and self.backend_count(target) == 2, 5,
                   msg="a miss once max-age=1 passed")
        self.assertGreaterEqual(time.monotonic() - start, 0.5)

    def test_backend_age_counts_against_the_lifetime(self):
        t = self.tether()
        target = asset(cc="max-age=600", tag="age", extra=["Age:100"])
        self.get(t, target)
        _, h, _, _ = self.get(t, target)
        self.assertGreaterEqual(int(h["age"][0]), 100)
        self.assertEqual(self.backend_count(target), 1)


class Connections(CacheBase):
    def read_answers(self, s, n):
        """n Content-Length answers from socket s: [(status line, body)]."""
        out, buf = [], b""
        deadline = time.monotonic() + 20
        while len(out) < n and time.monotonic() < deadline:
            got = read_head(s, buf)
            if got is None:
                return out
            head, buf = got
            lines = head.encode("latin-1").split(b"\r\n")
            length = [int(l.split(b":")[1]) for l in lines if l.lower().startswith(b"content-length:")]
            want = length[0] if length else 0
            while len(buf) < want:
                more = s.recv(65536)
                if not more:
                    return out
                buf += more
            out.append((lines[0], buf[:want]))
            buf = buf[want:]
        return out

    def test_pipelined_requests_are_answered_in_order(self):
        import socket
        t = self.tether()
        a, b = asset(n=3000, tag="pa"), asset(n=5000, tag="pb")
        self.get(t, a)
        self.get(t, b)
        s = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=20)
        try:
            order = [a, b, a, "/id", b, a]
            s.sendall(b"".join(b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % p.encode() for p in order))
            answers = self.read_answers(s, len(order))
        finally:
            s.close()
        self.assertEqual(len(answers), len(order))
        for path, (status, body) in zip(order, answers):
            self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
            if path != "/id":
                self.assertEqual(len(body), 3000 if path == a else 5000)
        self.assertEqual(t.metric("tether_http_requests_total", backend="cache", code="200") or 0,
                         t.metric("tether_cache_requests_total", result="hit"))

    def test_keep_alive_connection_serves_hits_then_misses(self):
        import socket
        t = self.tether()
        target = asset(tag="ka")
        self.get(t, target)
        s = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=10)
        try:
            for path in (target, target, "/id", target):
                s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path).encode())
                [(status, body)] = self.read_answers(s, 1)
                self.assertTrue(status.startswith(b"HTTP/1.1 200"), status)
                if path != "/id":
                    self.assertEqual(len(body), 4000)
        finally:
            s.close()
        self.assertEqual(self.backend_count(target), 1)

    def test_http10_client_gets_a_hit_and_the_connection_closes(self):
        t = self.tether()
        target = asset(tag="h10")
        self.get(t, target)
        s, h, body, complete = request(t.proxy_port, target, version="1.0")
        self.assertEqual((s, complete, len(body)), (200, True, 4000))
        self.assertEqual(h.get("connection"), ["close"])
        self.assertEqual(self.backend_count(target), 1)

    def test_a_client_that_leaves_mid_body_stores_nothing(self):
        import socket
        t = self.tether()
        target = asset(n=200_000, tag="leave", pieces="20", delay_ms="50")
        s = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=10)
        s.sendall(("GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % target).encode())
        self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
        s.close()
        wait_until(lambda: self.backend_count(target) == 1, 5, msg="the backend got the request")
        time.sleep(1.5)  # the backend's writes (20 x 50 ms) have ended
        _, _, body, complete = self.get(t, target)
        self.assertTrue(complete)
        self.assertEqual(len(body), 200_000)
        self.assertEqual(self.backend_count(target), 2)

    def test_purge_reaches_every_worker(self):
        route = {"match": {"path_prefix": "/asset"}, "cache": {}}
        t = self.start_tether(backends=[self.up.url],
                              config={"health": dict(FAST_HEALTH), "routes": [route], "workers": 2})
        wait_until(lambda: t.admin_get("/readyz").status == 200, 10, msg="/readyz 200")
        target = asset(tag="w2")
        for _ in range(40):  # new connections: spread over both workers
            self.get(t, target)
        self.assertLessEqual(self.backend_count(target), 2)
        self.assertGreater(t.metric("tether_cache_bytes"), 4000)
        self.assertEqual(t.admin_post("/admin/cache/purge?prefix=/asset").status, 200)
        wait_until(lambda: t.metric("tether_cache_bytes") == 0, 5, msg="every worker emptied")


class NotCacheable(CacheBase):
    def assert_not_cached(self, t, target, headers=(), method="GET"):
        for _ in range(2):
            s, _, _, complete = self.get(t, target, headers, method)
            self.assertEqual(s, 200)
            self.assertTrue(complete)
        self.assertEqual(self.backend_count(target), 2, target)

    def test_each_response_a_shared_cache_must_not_keep(self):
        t = self.tether()
        cases = {
            "none": asset(cc=None, tag="n1"),
            "private": asset(cc="private, max-age=600", tag="n2"),
            "no-store": asset(cc="no-store, max-age=600", tag="n3"),
            "no-cache": asset(cc="no-cache, max-age=600", tag="n4"),
            "max-age=0": asset(cc="max-age=0", tag="n5"),
            "no lifetime": asset(cc="public", tag="n6"),
            "set-cookie": asset(tag="n7", extra=["Set-Cookie:a=b"]),
            "vary cookie": asset(tag="n8", extra=["Vary:Cookie"]),
            "vary star": asset(tag="n9", extra=["Vary:*"]),
            "bad max-age": asset(cc="max-age=soon", tag="n10"),
        }
        for name, target in cases.items():
            with self.subTest(name):
                self.assert_not_cached(t, target)

    def test_requests_that_bypass_the_cache(self):
        t = self.tether()
        self.assert_not_cached(t, asset(tag="b1"), ["Cookie: token=x"])
        self.assert_not_cached(t, asset(tag="b2"), ["Authorization: Bearer x"])
        self.assert_not_cached(t, asset(tag="b3"), method="POST")
        target = asset(tag="b4")
        self.get(t, target)
        s, _, _, _ = self.get(t, target, ["Range: bytes=0-9"])
        self.assertEqual(self.backend_count(target), 2)
        self.assertGreaterEqual(t.metric("tether_cache_requests_total", result="bypass"), 7)

    def test_declared_irrelevant_credentials_are_cached(self):
        t = self.tether(cache={"ignore_request_headers": ["cookie"]})
        target = asset(tag="c1")
        self.get(t, target, ["Cookie: token=x"])
        self.get(t, target, ["Cookie: token=y"])
        self.assertEqual(self.backend_count(target), 1)
        self.assert_not_cached(t, asset(tag="c2"), ["Authorization: Bearer x"])

    def test_body_above_max_object_is_forwarded_whole_and_not_stored(self):
        t = self.tether(cache={"max_size": "1MiB", "max_object": "8KiB"})
        for chunked in ("0", "1"):
            target = asset(n=50_000, tag="big" + chunked, chunked=chunked)
            for _ in range(2):
                s, _, body, complete = self.get(t, target)
                self.assertEqual((s, complete, len(body)), (200, True, 50_000))
            self.assertEqual(self.backend_count(target), 2)

    def test_a_body_cut_by_the_backend_stores_nothing(self):
        t = self.tether()
        target = asset(n=100_000, tag="cut", cut="1", pieces="4")
        for _ in range(2):
            _, _, _, complete = self.get(t, target)
            self.assertFalse(complete)
        self.assertEqual(self.backend_count(target), 2)
        self.assertEqual(t.metric("tether_cache_stored_total"), 0)


class Conditional(CacheBase):
    def test_if_none_match_and_if_modified_since_answered_304_from_the_cache(self):
        t = self.tether()
        lm = "Sun, 06 Nov 1994 08:49:37 GMT"
        target = asset(tag="cond", extra=['ETag:"abc"', "Last-Modified:" + lm])
        self.get(t, target)
        s, h, body, _ = self.get(t, target, ['If-None-Match: W/"abc"'])
        self.assertEqual(s, 304)
        self.assertEqual(h["etag"], ['"abc"'])
        s, _, _, _ = self.get(t, target, ['If-None-Match: "other"'])
        self.assertEqual(s, 200)
        s, _, _, _ = self.get(t, target, ["If-Modified-Since: " + lm])
        self.assertEqual(s, 304)
        s, _, _, _ = self.get(t, target, ["If-Modified-Since: Sat, 05 Nov 1994 08:49:37 GMT"])
        self.assertEqual(s, 200)
        self.assertEqual(self.backend_count(target), 1)
        self.assertEqual(t.metric("tether_http_requests_total", backend="cache", code="304"), 2)


class Compressed(CacheBase):
    def test_each_variant_is_compressed_once(self):
        for tool in ("zstd", "brotli", "gzip"):
            require_program(tool)
        t = self.tether(compression={"enabled": True})
        n = 100_000
        target = asset(n=n, tag="zip")
        for coding in ("gzip", "br", "zstd"):
            for _ in range(3):
                s, h, body, complete = self.get(t, target, ["Accept-Encoding: " + coding])
                self.assertEqual((s, complete), (200, True))
                self.assertEqual(h.get("content-encoding"), [coding])
                self.assertEqual(decode(coding, body), __import__("http_upstream").asset_body(n))
        s, h, body, _ = self.get(t, target)
        self.assertNotIn("content-encoding", h)
        self.assertEqual(len(body), n)
        self.assertEqual(self.backend_count(target), 4)  # one per variant
        for coding in ("gzip", "br", "zstd"):
            self.assertEqual(t.metric("tether_compressed_responses_total", algorithm=coding), 1, coding)


class Purge(CacheBase):
    def test_purge_empties_the_stores(self):
        t = self.tether()
        a, b = asset(tag="p1"), asset(tag="p2")
        for target in (a, b, a, b):
            self.get(t, target)
        self.assertEqual(self.backend_count(a), 1)
        r = t.admin_post("/admin/cache/purge?prefix=/nothing")
        self.assertEqual(r.status, 200)
        self.get(t, a)
        self.assertEqual(self.backend_count(a), 1)
        self.assertEqual(t.admin_post("/admin/cache/purge?prefix=bad").status, 400)
        self.assertEqual(t.admin_post("/admin/cache/purge").status, 200)
        wait_until(lambda: t.metric("tether_cache_bytes") == 0, 5, msg="stores emptied")
        self.get(t, a)
        self.get(t, b)
        self.assertEqual(self.backend_count(a), 2)
        self.assertEqual(self.backend_count(b), 2)

    def test_a_reload_empties_the_stores(self):
        t = self.tether()
        target = asset(tag="rl")
        self.get(t, target)
        self.get(t, target)
        self.assertEqual(self.backend_count(target), 1)
        cfg = {"health": dict(FAST_HEALTH),
               "routes": [{"match": {"path_prefix": "/asset"}, "cache": {"max_size": "1MiB"}}]}
        rec = t.reload(config=cfg)
        self.assertEqual(rec.get("msg"), "reloaded", rec)
        wait_until(lambda: t.metric("tether_cache_bytes") == 0, 5,
                   msg="stores dropped by the reload")
        self.get(t, target)
        self.assertEqual(self.backend_count(target), 2)
        self.get(t, target)
        self.assertEqual(self.backend_count(target), 2)  # the new store caches again


class Bounded(CacheBase):
    def test_a_flood_of_distinct_urls_stays_within_max_size(self):
        max_size = 64 * 1024
        t = self.tether(cache={"max_size": "64KiB", "max_object": "8KiB"})
        peak = 0
        for i in range(300):
            self.get(t, asset(n=3000, tag="f%d" % i))
            if i % 10 == 9:
                peak = max(peak, t.metric("tether_cache_bytes"))
                self.assertLessEqual(peak, max_size)
        self.assertGreater(peak, max_size // 2)  # it did fill
        # The most recent is still held; the first long gone.
        self.get(t, asset(n=3000, tag="f299"))
        self.assertEqual(self.backend_count(asset(n=3000, tag="f299")), 1)
        self.get(t, asset(n=3000, tag="f0"))
        self.assertEqual(self.backend_count(asset(n=3000, tag="f0")), 2)


if __name__ == "__main__":
    unittest.main()
