"""Several event-loop workers (--workers N): SO_REUSEPORT listeners, shared
backends, metrics and pins, and a clean stop."""
import concurrent.futures
import signal
import unittest

from harness import E2ETestCase, http_get, wait_until


class Workers(E2ETestCase):
    def test_two_workers_serve_share_pins_and_stop_cleanly(self):
        a = self.start_http_upstream(name="a")
        b = self.start_http_upstream(name="b")
        t = self.start_tether(args=["--workers", "2"], backends=[a.url, b.url], config={
            "health": {"interval": "200ms"},
            "affinity": {"keys": ["header:X-User"]},
        })
        wait_until(lambda: all(x["state"] == "up" for x in t.backends_state()), 5, msg="backends up")

        def get(i):
            r = http_get(t.url("/id"), headers={"X-User": "user-%d" % (i % 10)})
            return i % 10, r.status, r.body
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(get, range(200)))
        self.assertTrue(all(status == 200 for _, status, _ in results))
        # Each user on one backend whichever worker took its connection.
        by_user = {}
        for user, _, body in results:
            by_user.setdefault(user, set()).add(body)
        self.assertTrue(all(len(v) == 1 for v in by_user.values()), by_user)
        self.assertEqual(sum(t.metric("tether_http_requests_total", method="GET", code="200", backend=x)
                             for x in (a.address, b.address)), 200)
        self.assertEqual(t.stop(signal.SIGTERM), 0)


if __name__ == "__main__":
    unittest.main()
