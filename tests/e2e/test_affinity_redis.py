"""Affinity with Redis as the shared pin store, when things go wrong (SPEC.md "Affinity
keys", OPENWEBUI.md "Failure": Redis must never be a single point of failure).

  - pins survive a tether restart (a new tether on the same Redis honours them);
  - redis-server SIGKILLed mid-traffic: no failed request, users keep their instance,
    tether_affinity_store_up 0; restarted on the same port: store_up 1 and the pins
    made during the outage are written;
  - redis-server paused (SIGSTOP): requests wait at most about the lookup timeout (and,
    past affinity.redis.reply_timeout, not at all: test_redis_store.StoppedRedis);
  - a lookup that timed out does not overwrite the pin another tether made;
  - a Redis address that drops the connect's SYN: given up after timeouts.connect and
    tried again, requests served meanwhile.

Pins are made while one backend is drained on the pinning tether, so that a pin and
consistent hashing disagree for some users: a test that passes by hashing alone would
prove nothing.

Run: cd tests/e2e && TETHER_BIN=... /usr/bin/python3 -m unittest -v test_affinity_redis
"""

import json
import socket
import time
import unittest

from harness import E2ETestCase
from affinity_util import (pause, pin_store_key, redis_client, request, resume,
                           start_redis_on, tether_config, user_cookie, user_key)


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


class RedisPins(E2ETestCase):

    def setUp(self):
        self.redis = self.start_redis()
        self.ups = [self.start_http_upstream(name=n) for n in ("up-a", "up-b", "up-c")]
        self.by_name = {u.name.split("[")[1].rstrip("]"): u for u in self.ups}
        self.by_address = {u.address: n for n, u in self.by_name.items()}
        self.cfg = tether_config(store=self.redis.redis_url)

    # ---- helpers -----------------------------------------------------------------------

    def new_tether(self):
        t = self.start_tether(config=self.cfg, backends=[u.url for u in self.ups])
        self.wait_until(lambda: t.metric("tether_affinity_store_up") == 1.0, 5,
                        msg="store_up 1")
        self.wait_until(lambda: all(b["state"] == "up" for b in t.backends_state()), 5,
                        msg="every backend up")
        return t

    def get_id(self, port, user, timeout=5.0):
        r = request(port, "/id", headers={"Cookie": user_cookie(user)}, timeout=timeout)
        return r

    def backend_id(self, t, name):
        address = self.by_name[name].address
        return [b["id"] for b in t.backends_state() if b["address"] == address][0]

    def pin_with_one_drained(self, t, users, drained="up-a"):
        """Pins `users` through t while `drained` is drained there, then enables it again.
        Returns {user: instance}, and the users whose pin differs from hash placement."""
        bid = self.backend_id(t, drained)
        self.assertEqual(t.admin_post("/admin/backends/%s/drain" % bid).status, 200)
        where = {}
        for u in users:
            r = self.get_id(t.proxy_port, u)
            self.assertEqual(r.status, 200)
            where[u] = r.header("X-Upstream-Name")
            self.assertNotEqual(where[u], drained)
        self.assertEqual(t.admin_post("/admin/backends/%s/enable" % bid).status, 200)
        self.wait_until(lambda: all(b["state"] == "up" for b in t.backends_state()), 5)
        against_hash = []
        for u in users:
            j = json.loads(t.admin_get("/admin/affinity?key=" + user_key(u)).body)
            self.assertEqual(j["pinned"]["backend"], self.by_name[where[u]].address, j)
            if j["hash_placement"] != j["pinned"]["backend"]:
                against_hash.append(u)
        self.assertTrue(against_hash, "some pins must disagree with hashing (%r)" % where)
        return where, against_hash

    def redis_pins(self, port):
        c = redis_client(port)
        return {k.decode(): c.get(k).decode() for k in c.keys("tether:pin:*")}

    # ---- tests -------------------------------------------------------------------------

    def test_pins_survive_a_tether_restart(self):
        # Where the pins lead, not how fast the store answers: a lookup slower than
        # the 5 ms default (a loaded machine) would be passed over for hashing.
        self.cfg = tether_config(store=self.redis.redis_url,
                                 extra_affinity={"lookup_timeout": "500ms"})
        a, b = self.new_tether(), self.new_tether()
        users = ["user-%d" % i for i in range(24)]
        where, against_hash = self.pin_with_one_drained(a, users)
        self.assertEqual(a.stop(), 0)
        a2 = self.new_tether()
        for t in (a2, b):
            for u in users:
                j = json.loads(t.admin_get("/admin/affinity?key=" + user_key(u)).body)
                self.assertEqual(j["pinned"]["from"], "redis")
                self.assertEqual(self.by_address[j["pinned"]["backend"]], where[u])
                self.assertTrue(j["pinned"]["honoured"])
        for rnd in range(3):
            for i, u in enumerate(users):
                t = (a2, b)[(rnd + i) % 2]
                r = self.get_id(t.proxy_port, u)
                self.assertEqual((r.status, r.header("X-Upstream-Name")), (200, where[u]),
                                 "%s after the restart (pin against hashing: %s)"
                                 % (u, u in against_hash))
        self.assertGreater(a2.metric("tether_affinity_lookups_total", result="hit"), 0)

    def test_redis_killed_mid_traffic_then_back(self):
        a, b = self.new_tether(), self.new_tether()
        users = ["user-%d" % i for i in range(24)]
        where, _ = self.pin_with_one_drained(a, users)
        for i, u in enumerate(users):  # tether b learns them too
            self.assertEqual(self.get_id(b.proxy_port, u).header("X-Upstream-Name"), where[u])
        redis_port = self.redis.port

        failures, moved, n = [], [], 0
        killed_at = None
        deadline = time.monotonic() + 20
        while n < 288 and time.monotonic() < deadline:
            if n == 60:
                self.redis.kill()
                killed_at = n
            u = users[n % len(users)]
            port = (a, b)[(n // len(users)) % 2].proxy_port
            try:
                r = self.get_id(port, u)
                if r.status != 200:
                    failures.append((n, u, r.status, r.body[:100]))
                elif r.header("X-Upstream-Name") != where[u]:
                    moved.append((n, u, r.header("X-Upstream-Name"), where[u]))
            except OSError as e:
                failures.append((n, u, repr(e)))
            n += 1
        self.assertEqual(killed_at, 60)
        self.assertGreaterEqual(n, 240, "the loop ran long enough after the kill")
        self.assertEqual(failures, [])
        self.assertEqual(moved, [], "users keep their instance while Redis is away")
        for t in (a, b):
            self.assertEqual(t.metric("tether_affinity_store_up"), 0.0)
            t.wait_log(msg="redis down: falling back to local pins and hashing", timeout=2)

        # New users while Redis is down: placed, served, pinned locally, kept for later.
        newcomers = ["new-%d" % i for i in range(6)]
        placed = {}
        for i, u in enumerate(newcomers):
            r = self.get_id((a, b)[i % 2].proxy_port, u)
            self.assertEqual(r.status, 200)
            placed[u] = r.header("X-Upstream-Name")
        self.assertGreater(a.metric("tether_affinity_lookups_total", result="store_error") +
                           b.metric("tether_affinity_lookups_total", result="store_error"), 0)

        self.redis = start_redis_on(redis_port)
        self.addCleanup(self.redis.stop)
        for t in (a, b):
            # Reconnect backoff is at most 5 s.
            self.wait_until(lambda t=t: t.metric("tether_affinity_store_up") == 1.0, 12,
                            msg="store_up back to 1")
        # The outage's pins reach Redis once it is back.
        want = {pin_store_key(user_key(u)): self.by_name[placed[u]].address for u in newcomers}
        got = self.wait_until(lambda: (lambda p: p if all(k in p for k in want) else None)(
            self.redis_pins(redis_port)), 5, msg="pending pins written")
        for k, v in want.items():
            self.assertEqual(got[k], v)
        # And everybody is still where they were.
        for i, u in enumerate(users + newcomers):
            r = self.get_id((a, b)[i % 2].proxy_port, u)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.header("X-Upstream-Name"), where.get(u) or placed[u])

    def test_paused_redis_does_not_hold_requests(self):
        a, b = self.new_tether(), self.new_tether()
        known = ["user-%d" % i for i in range(10)]
        where = {}
        for u in known:
            where[u] = self.get_id(a.proxy_port, u).header("X-Upstream-Name")
        pause(self.redis)
        self.addCleanup(resume, self.redis)
        try:
            latencies, failures = [], []
            for i in range(50):
                # Half new users (their lookup must time out), half known ones.
                u = known[i % len(known)] if i % 2 else "fresh-%d" % i
                port = (a, b)[i % 2].proxy_port
                t0 = time.monotonic()
                try:
                    r = self.get_id(port, u, timeout=3)
                    if r.status != 200:
                        failures.append((u, r.status))
                    elif u in where and r.header("X-Upstream-Name") != where[u]:
                        failures.append((u, "moved", r.header("X-Upstream-Name"), where[u]))
                except OSError as e:
                    failures.append((u, repr(e)))
                latencies.append(time.monotonic() - t0)
            self.assertEqual(failures, [])
            self.assertLess(percentile(latencies, 99), 0.2,
                            "p99 %.3fs, max %.3fs" % (percentile(latencies, 99), max(latencies)))
            self.assertGreater(a.metric("tether_affinity_lookups_total", result="store_error") +
                               b.metric("tether_affinity_lookups_total", result="store_error"), 0)
        finally:
            resume(self.redis)
        # Redis answers again: the store is up, at once or, when the pause outlasted
        # affinity.redis.reply_timeout (the connection was dropped), after a reconnect.
        for t in (a, b):
            self.wait_until(lambda t=t: t.metric("tether_affinity_store_up") == 1.0, 15,
                            msg="store_up 1 once Redis answers")
        c = redis_client(self.redis.port)
        self.wait_until(lambda: c.ping(), 3)
        for i, u in enumerate(known):
            r = self.get_id((a, b)[i % 2].proxy_port, u)
            self.assertEqual((r.status, r.header("X-Upstream-Name")), (200, where[u]))

    def test_an_inserted_cookie_waits_for_its_pin_at_most_the_lookup_timeout(self):
        # The response that hands out a new cookie waits until Redis holds its pin (another
        # tether may get the next request); a silent Redis holds it lookup_timeout, no more.
        cfg = tether_config(store=self.redis.redis_url, keys=["cookie:tether_affinity"],
                            extra_affinity={"cookie": {"insert": True},
                                            "lookup_timeout": "300ms"})
        t = self.start_tether(config=cfg, backends=[u.url for u in self.ups])
        self.wait_until(lambda: t.metric("tether_affinity_store_up") == 1.0, 5)
        self.wait_until(lambda: all(b["state"] == "up" for b in t.backends_state()), 5)
        r = request(t.proxy_port, "/id")
        self.assertEqual(r.status, 200)
        value = r.header("Set-Cookie").split(";")[0].split("=", 1)[1]
        # Acknowledged before the client saw it: the pin is in Redis now.
        self.assertEqual(redis_client(self.redis.port).get(
            pin_store_key("cookie:tether_affinity=" + value)).decode(),
            self.by_name[r.header("X-Upstream-Name")].address)
        self.assertEqual(t.metric("tether_affinity_pin_confirmations_total", result="stored"), 1)

        pause(self.redis)
        self.addCleanup(resume, self.redis)
        try:
            t0 = time.monotonic()
            r = request(t.proxy_port, "/id", timeout=5)
            held = time.monotonic() - t0
        finally:
            resume(self.redis)
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header("Set-Cookie").startswith("tether_affinity="))
        self.assertEqual(r.body.decode().strip(), r.header("X-Upstream-Name"), "body complete")
        self.assertGreaterEqual(held, 0.25, "held for the lookup timeout")
        self.assertLess(held, 2.0)
        self.assertEqual(t.metric("tether_affinity_pin_confirmations_total", result="timeout"), 1)
        t.wait_log(msg="affinity pin not acknowledged within lookup_timeout", timeout=2)
        # Once Redis answers again, the pin made meanwhile is in it.
        value2 = r.header("Set-Cookie").split(";")[0].split("=", 1)[1]
        c = redis_client(self.redis.port)
        self.wait_until(lambda: c.get(pin_store_key("cookie:tether_affinity=" + value2)), 3,
                        msg="the pin reached Redis once it answered again")

    def test_a_lookup_timeout_does_not_overwrite_another_tethers_pin(self):
        # Tether a pins users against hashing; tether b has never seen them. With Redis
        # paused, b's lookups time out and b places those users by hashing (fail open).
        # That local decision must not replace a's pins in Redis once Redis answers again.
        a, b = self.new_tether(), self.new_tether()
        users = ["user-%d" % i for i in range(24)]
        where, against_hash = self.pin_with_one_drained(a, users)
        pause(self.redis)
        self.addCleanup(resume, self.redis)
        try:
            for u in against_hash:
                r = self.get_id(b.proxy_port, u, timeout=3)
                self.assertEqual(r.status, 200)
        finally:
            resume(self.redis)
        c = redis_client(self.redis.port)
        self.wait_until(lambda: c.ping(), 3)
        # Redis runs one connection's commands in order: once a pin b makes now is
        # stored, whatever b queued during the pause has been applied.
        self.assertEqual(self.get_id(b.proxy_port, "sentinel").status, 200)
        self.wait_until(lambda: c.get(pin_store_key(user_key("sentinel"))), 5,
                        msg="b's commands applied")
        for u in against_hash:
            v = c.get(pin_store_key(user_key(u)))
            self.assertEqual(v.decode() if v else None, self.by_name[where[u]].address,
                             "%s: the pin made by tether a survives b's timed-out lookup" % u)
        # A third tether, starting cold, follows the pins.
        a3 = self.new_tether()
        for u in users:
            r = self.get_id(a3.proxy_port, u)
            self.assertEqual(r.header("X-Upstream-Name"), where[u], u)


class UnreachableRedis(E2ETestCase):

    def blackhole(self):
        """A listener whose accept queue is full: the kernel drops every further SYN,
        as a firewalled or vanished host does. Returns its port."""
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        filler = socket.create_connection(lst.getsockname(), timeout=2)
        self.addCleanup(lst.close)
        self.addCleanup(filler.close)
        probe = socket.socket()
        probe.settimeout(0.3)
        with self.assertRaises(socket.timeout, msg="the SYN must be dropped"):
            probe.connect(lst.getsockname())
        probe.close()
        return lst.getsockname()[1]

    def test_a_connect_without_answer_is_given_up_after_timeouts_connect(self):
        port = self.blackhole()
        ups = [self.start_http_upstream(name=n) for n in ("up-a", "up-b")]
        cfg = tether_config(store="redis://127.0.0.1:%d" % port,
                            timeouts={"connect": "300ms"})
        t = self.start_tether(config=cfg, backends=[u.url for u in ups])
        self.wait_until(lambda: all(b["state"] == "up" for b in t.backends_state()), 5)
        # Every attempt is given up after 300 ms and tried again with backoff, where
        # the kernel alone would wait about two minutes for one.
        first = t.wait_log(msg="redis connect failed", timeout=3)
        self.assertEqual(first.get("timeout_ms"), 300)
        second = t.wait_log(msg="redis connect failed", timeout=3,
                            start=t.logs.index(first) + 1)
        self.assertIn("timeouts.connect", second.get("error", ""))
        self.assertEqual(t.metric("tether_affinity_store_up"), 0.0)
        # Meanwhile affinity falls back to hashing at once: requests are not held.
        for i in range(10):
            t0 = time.monotonic()
            r = request(t.proxy_port, "/id", headers={"Cookie": user_cookie("user-%d" % i)},
                        timeout=3)
            self.assertEqual(r.status, 200)
            self.assertLess(time.monotonic() - t0, 0.5)
        self.assertGreater(t.metric("tether_affinity_lookups_total", result="store_error"), 0)


if __name__ == "__main__":
    unittest.main()
