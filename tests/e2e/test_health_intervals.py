"""Active checks' two intervals (README, "Balancing and health"): health.down_interval
while a backend is unknown, down or failing, health.interval while it is up and
passing. The first minute of issue 15: a backend that starts after tether, or comes
back, is in rotation within seconds, not rise x interval later.
"""

import json
import time
import unittest
import urllib.request

from harness import E2ETestCase, free_port, http_get, wait_until


def state_of(t, index=0):
    return t.backends_state()[index]["state"]


def checks_total(t):
    return t.metric("tether_health_checks_total", default=0.0)


class DownInterval(E2ETestCase):
    def test_a_backend_that_starts_after_tether_is_up_within_seconds(self):
        port = free_port()
        # interval 30 s: with it alone, the backend would wait 2 x 30 s to come up.
        t = self.start_tether(backends=["http://127.0.0.1:%d" % port], config={
            "health": {"interval": "30s", "down_interval": "200ms", "rise": 2}})
        wait_until(lambda: state_of(t) == "down", 5, msg="down: nothing listens yet")
        self.assertEqual(http_get(t.url("/id")).status, 503)
        up = self.start_http_upstream(name="late", port=port)
        listening = time.monotonic()
        wait_until(lambda: state_of(t) == "up", 5, interval=0.02,
                   msg="up within rise x down_interval")
        took = time.monotonic() - listening
        # rise (2) checks, 200 ms +-10 % apart, and some slack for a busy machine.
        self.assertLess(took, 2.5, "up %.2fs after the backend listened" % took)
        r = http_get(t.url("/id"))
        self.assertEqual((r.status, r.body), (200, b"late"))
        self.assertEqual(up.port, port)

    def test_an_up_backend_is_checked_at_interval(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tether(backends=[up.url], config={
            "health": {"interval": "30s", "down_interval": "100ms", "rise": 2}})
        wait_until(lambda: state_of(t) == "up", 5, msg="up")
        before = checks_total(t)
        # A window of ten down_intervals: at down_interval there would be ~10 checks.
        time.sleep(1.0)
        self.assertLessEqual(checks_total(t) - before, 1)

    def test_a_failing_backend_is_checked_at_down_interval_until_down(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tether(backends=[up.url], config={
            "health": {"interval": "2s", "down_interval": "100ms", "fall": 3, "rise": 2}})
        wait_until(lambda: state_of(t) == "up", 5, msg="up")
        req = urllib.request.Request(up.url + "/admin/health/503", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=5).read()
        failing = time.monotonic()
        wait_until(lambda: state_of(t) == "down", 10, interval=0.02, msg="down")
        took = time.monotonic() - failing
        # The first failure comes at the next interval (2 s +-10 %), the two more at
        # down_interval: well under 3 x interval (6 s).
        self.assertLess(took, 4.0, "down %.2fs after the backend started failing" % took)
        last = t.backends_state()[0]["last_check"]
        self.assertEqual(last["status"], 503, json.dumps(last))
        # Back: again at down_interval.
        req = urllib.request.Request(up.url + "/admin/health/200", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=5).read()
        healthy = time.monotonic()
        wait_until(lambda: state_of(t) == "up", 5, interval=0.02, msg="up again")
        self.assertLess(time.monotonic() - healthy, 2.0)


if __name__ == "__main__":
    unittest.main()
