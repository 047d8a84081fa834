"""The Redis pin store as operators run it (README "Affinity", "Redis"; issue 14 part 2):

  - an ACL user (redis://user:password@host:port/db) with only the commands tether needs;
    a wrong password is a store that is down (store_up 0, a log line with the address
    and Redis's reason, never the password), tried again until Redis accepts it;
  - TLS (rediss:// and affinity.redis.tls) against redis-server's tls-port, with a client
    certificate, an ACL user and verification: a server certificate from another CA, or
    for another name, keeps the store down; verify: false accepts it; an unreadable CA
    file stops the start;
  - Sentinel (redis+sentinel://): a master, a replica and three redis-sentinel; the
    master killed under traffic costs no request, the store comes back on the new master
    and the pins made meanwhile are there; a manual failover is followed the same way;
  - a Redis that accepts but stops answering (SIGSTOP) is down within a couple of
    seconds, requests are not slowed, and it is up again after SIGCONT.

Run: cd tests/e2e && TETHER_BIN=... /usr/bin/python3 -m unittest -v test_redis_store
"""

import json
import os
import shutil
import signal
import tempfile
import time
import unittest

from harness import E2ETestCase, run_tether
from affinity_util import pin_store_key, request, tether_config, user_cookie, user_key
from redis_util import (ACL_PASSWORD, ACL_USER, ADMIN_PASSWORD, ADMIN_USER, MASTER_NAME, SentinelSet, acl_args, client,
                        make_certificates, start_redis_server, tls_args, tls_client)


def percentile(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


class StoreCase(E2ETestCase):
    """Three named upstreams and helpers shared by the store tests."""

    def setUp(self):
        self.ups = [self.start_http_upstream(name=n) for n in ("up-a", "up-b", "up-c")]
        self.by_name = {u.name.split("[")[1].rstrip("]"): u for u in self.ups}

    def tether(self, store, wait_up=True, **affinity):
        cfg = tether_config(store=store, extra_affinity=affinity or None)
        t = self.start_tether(config=cfg, backends=[u.url for u in self.ups])
        self.wait_until(lambda: all(b["state"] == "up" for b in t.backends_state()), 5,
                        msg="every backend up")
        if wait_up:
            self.wait_until(lambda: t.metric("tether_affinity_store_up") == 1.0, 10,
                            msg="store_up 1")
        return t

    def get_id(self, port, user, timeout=5.0):
        return request(port, "/id", headers={"Cookie": user_cookie(user)}, timeout=timeout)

    def place(self, t, users):
        """Requests /id for each user through t; returns {user: backend address}."""
        where = {}
        for u in users:
            r = self.get_id(t.proxy_port, u)
            self.assertEqual(r.status, 200, r)
            where[u] = self.by_name[r.header("X-Upstream-Name")].address
        return where

    def assert_down_for(self, t, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.assertEqual(t.metric("tether_affinity_store_up"), 0.0)
            time.sleep(0.05)

    def assert_served_without_store(self, t, n=10):
        for i in range(n):
            t0 = time.monotonic()
            r = self.get_id(t.proxy_port, "nostore-%d" % i, timeout=3)
            self.assertEqual(r.status, 200)
            self.assertLess(time.monotonic() - t0, 0.5)


class AclUser(StoreCase):

    def setUp(self):
        super().setUp()
        self.redis = start_redis_server(acl_args())
        self.addCleanup(self.redis.stop)

    def admin(self):
        return client(self.redis.port, ADMIN_PASSWORD, ADMIN_USER)

    def test_an_acl_user_holds_the_pins(self):
        url = "redis://%s:%s@127.0.0.1:%d/0" % (ACL_USER, ACL_PASSWORD, self.redis.port)
        # Every lookup is answered: a Redis round trip slower than the 5 ms default on
        # a loaded machine would count as a store_error, which this test rules out.
        t = self.tether(url, lookup_timeout="2s")
        users = ["acl-%d" % i for i in range(8)]
        where = self.place(t, users)
        c = self.admin()
        got = self.wait_until(lambda: all(c.get(pin_store_key(user_key(u))) for u in users) and
                              {u: c.get(pin_store_key(user_key(u))).decode() for u in users}, 3,
                              msg="pins in Redis")
        self.assertEqual(got, where)
        j = json.loads(t.admin_get("/admin/affinity?key=" + user_key(users[0])).body)
        self.assertEqual(j["pinned"]["from"], "redis", j)
        self.assertGreater(j["ttl_ms"], 0)
        # The user is refused everything else: tether asked for nothing more.
        self.assertIn(t.metric("tether_affinity_lookups_total", result="store_error"), (None, 0.0))
        connected = t.wait_log(msg="redis connected", timeout=2)
        self.assertEqual(connected["address"], "127.0.0.1:%d" % self.redis.port)

    def test_a_wrong_password_is_a_store_down_and_tried_again(self):
        wrong = "not-the-password-%d" % os.getpid()
        url = "redis://%s:%s@127.0.0.1:%d/0" % (ACL_USER, wrong, self.redis.port)
        t = self.tether(url, wait_up=False)
        first = t.wait_log(msg="redis connect failed", timeout=5)
        self.assertEqual(first["address"], "127.0.0.1:%d" % self.redis.port)
        self.assertIn("AUTH refused", first["error"])
        self.assertIn("WRONGPASS", first["error"])
        t.wait_log(msg="redis connect failed", timeout=5, start=t.logs.index(first) + 1)
        self.assert_down_for(t, 1.0)
        self.assertEqual(t.metric("tether_affinity_store_up"), 0.0)
        self.assert_served_without_store(t)
        self.assertFalse(any(wrong in line for line in t.stderr.lines),
                         "the password never reaches the log")
        # The operator fixes the user: the next try (backoff at most 5 s) is accepted.
        self.admin().execute_command("ACL", "SETUSER", ACL_USER, ">" + wrong)
        self.wait_until(lambda: t.metric("tether_affinity_store_up") == 1.0, 10,
                        msg="store_up 1 once the password is right")
        where = self.place(t, ["fixed"])
        c = client(self.redis.port, wrong, ACL_USER)
        self.wait_until(lambda: c.get(pin_store_key(user_key("fixed"))), 3)
        self.assertEqual(c.get(pin_store_key(user_key("fixed"))).decode(), where["fixed"])

    def test_a_missing_password_is_a_store_down(self):
        t = self.tether("redis://127.0.0.1:%d/0" % self.redis.port, wait_up=False)
        failed = t.wait_log(msg="redis connect failed", timeout=5)
        self.assertIn("NOAUTH", failed["error"])
        self.assert_down_for(t, 0.5)


class Tls(StoreCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="tether-redis-tls-")
        cls.certs = make_certificates(cls.dir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def setUp(self):
        super().setUp()
        self.redis = start_redis_server(tls_args(self.certs) + acl_args(), tls_port=True,
                                        name="redis-tls")
        self.addCleanup(self.redis.stop)
        self.url = "rediss://%s:%s@127.0.0.1:%d/0" % (ACL_USER, ACL_PASSWORD, self.redis.port)

    def client_tls(self, **over):
        tls = {"ca": self.certs["ca"], "cert": self.certs["client_cert"],
               "key": self.certs["client_key"], "server_name": "localhost"}
        tls.update(over)
        return {"tls": {k: v for k, v in tls.items() if v is not None}}

    def test_pins_over_tls_with_a_client_certificate(self):
        t = self.tether(self.url, redis=self.client_tls())
        users = ["tls-%d" % i for i in range(8)]
        where = self.place(t, users)
        c = tls_client(self.redis.port, self.certs)
        got = self.wait_until(lambda: all(c.get(pin_store_key(user_key(u))) for u in users) and
                              {u: c.get(pin_store_key(user_key(u))).decode() for u in users}, 3,
                              msg="pins in Redis")
        self.assertEqual(got, where)
        # Known pins come back from Redis through a second tether.
        t2 = self.tether(self.url, redis=self.client_tls(server_name=None))  # checks 127.0.0.1
        for u in users:
            r = self.get_id(t2.proxy_port, u)
            self.assertEqual(self.by_name[r.header("X-Upstream-Name")].address, where[u])
        self.assertGreater(t2.metric("tether_affinity_lookups_total", result="hit"), 0)
        # The shared admin state takes the same TLS and ACL user: a drain on t reaches t2.
        address = self.by_name["up-c"].address
        bid = [b["id"] for b in t.backends_state() if b["address"] == address][0]
        self.assertEqual(t.admin_post("/admin/backends/%d/drain" % bid).status, 200)
        self.wait_until(lambda: [b["state"] for b in t2.backends_state()
                                 if b["address"] == address] == ["draining"], 2,
                        msg="drained through TLS")
        self.assertEqual(t.admin_post("/admin/backends/%d/enable" % bid).status, 200)
        self.wait_until(lambda: [b["state"] for b in t2.backends_state()
                                 if b["address"] == address] == ["up"], 2, msg="enabled")
        # The admin's blocking lookup speaks no TLS: it shows the local view and says so.
        j = json.loads(t.admin_get("/admin/affinity?key=" + user_key(users[0])).body)
        self.assertEqual((j["pinned"]["from"], j["pinned"]["backend"]), ("local", where[users[0]]), j)
        self.assertIn("TLS", j["store_error"])
        # An idle connection stays up (PING each second, answered through TLS).
        time.sleep(2.5)
        self.assertEqual(t.metric("tether_affinity_store_up"), 1.0)
        self.assertFalse(t.find_logs(msg="redis down: falling back to local pins and hashing"))

    def test_a_certificate_from_another_ca_keeps_the_store_down(self):
        t = self.tether(self.url, wait_up=False, redis=self.client_tls(ca=self.certs["other_ca"]))
        failed = t.wait_log(msg="redis connect failed", timeout=5)
        self.assertEqual(failed["address"], "127.0.0.1:%d" % self.redis.port)
        self.assertIn("certificate verify failed", failed["error"])
        self.assert_down_for(t, 0.5)
        self.assert_served_without_store(t)

    def test_a_certificate_for_another_name_keeps_the_store_down(self):
        t = self.tether(self.url, wait_up=False, redis=self.client_tls(server_name="redis.example"))
        failed = t.wait_log(msg="redis connect failed", timeout=5)
        self.assertIn("certificate verify failed: hostname mismatch", failed["error"])
        self.assert_down_for(t, 0.5)

    def test_verify_false_accepts_any_certificate(self):
        t = self.tether(self.url, redis=self.client_tls(ca=self.certs["other_ca"], verify=False))
        self.place(t, ["noverify"])
        c = tls_client(self.redis.port, self.certs)
        self.wait_until(lambda: c.get(pin_store_key(user_key("noverify"))), 3)

    def test_without_a_client_certificate_the_server_refuses(self):
        t = self.tether(self.url, wait_up=False, redis=self.client_tls(cert="", key=""))
        failed = t.wait_log(msg="redis connect failed", timeout=5)
        self.assertEqual(failed["address"], "127.0.0.1:%d" % self.redis.port)
        self.assertIn("certificate required", failed["error"])  # the server's TLS alert
        self.assert_down_for(t, 0.5)

    def test_an_unreadable_ca_file_stops_the_start(self):
        missing = os.path.join(self.dir, "nope.pem")
        cfg = tether_config(store=self.url, extra_affinity={"redis": {"tls": {"ca": missing}}})
        r = run_tether(["--check-config"], config=cfg)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("affinity.redis.tls.ca: %s: cannot read" % missing, r.stderr)
        self.assertNotIn(ACL_PASSWORD, r.stderr + r.stdout)
        r = run_tether(["-l", "127.0.0.1:0", "--admin", "127.0.0.1:0"], config=cfg)
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("affinity.redis.tls.ca", r.stderr)

    def test_tls_options_need_a_rediss_store(self):
        cfg = tether_config(store="redis://127.0.0.1:%d" % self.redis.port,
                            extra_affinity={"redis": {"tls": {"ca": self.certs["ca"]}}})
        r = run_tether(["--check-config"], config=cfg)
        self.assertEqual(r.returncode, 1)
        self.assertIn("affinity.redis.tls: set, but affinity.store is a redis:// URL", r.stderr)


class Sentinel(StoreCase):

    PASSWORD = "sentinel-set-pw"

    def setUp(self):
        super().setUp()
        self.set = SentinelSet(self.PASSWORD)
        self.addCleanup(self.set.stop)

    def master_pins(self, port):
        c = client(port, self.PASSWORD)
        return {k.decode(): c.get(k).decode() for k in c.keys("tether:pin:*")}

    def traffic(self, ts, users, where, until, deadline_s, newcomers=None, action=None):
        """Requests round robin over tethers `ts` for `users` until until() holds or
        deadline_s; action() at the 20th request, then newcomers (each placed once, every
        third request, so right after the action). Returns (failures, moved, placed, n)."""
        failures, moved, placed = [], [], {}
        newcomers = list(newcomers or [])
        deadline = time.monotonic() + deadline_s
        n = 0
        acted = action is None
        while time.monotonic() < deadline:
            if not acted and n == 20:
                action()
                acted = True
            t = ts[n % len(ts)]
            if acted and newcomers and n % 3 == 2:
                u = newcomers.pop(0)
            else:
                u = users[n % len(users)]
            try:
                r = self.get_id(t.proxy_port, u, timeout=3)
                got = self.by_name[r.header("X-Upstream-Name")].address if r.status == 200 else None
                if r.status != 200:
                    failures.append((n, u, r.status))
                elif u in where and got != where[u]:
                    moved.append((n, u, got, where[u]))
                elif u not in where:
                    placed[u] = got
            except OSError as e:
                failures.append((n, u, repr(e)))
            n += 1
            if n > 40 and not newcomers and until():
                break
        return failures, moved, placed, n

    def test_the_master_killed_under_traffic_costs_no_request(self):
        url = self.set.url()
        a, b = self.tether(url), self.tether(url)
        old_master = self.set.master.port
        for t in (a, b):
            t.wait_log(msg="redis connected", timeout=2, address="127.0.0.1:%d" % old_master)
        users = ["s-%d" % i for i in range(12)]
        where = self.place(a, users)
        self.wait_until(lambda: all(pin_store_key(user_key(u)) in self.master_pins(old_master)
                                    for u in users), 3, msg="pins on the master")
        newcomers = ["during-%d" % i for i in range(8)]
        new_master = self.set.replica.port

        def on_new_master():
            return all(t.metric("tether_affinity_store_up") == 1.0 and
                       t.find_logs(msg="redis connected", address="127.0.0.1:%d" % new_master)
                       for t in (a, b))

        failures, moved, placed, n = self.traffic(
            (a, b), users, where, on_new_master, 45, newcomers, action=self.set.master.kill)
        self.assertEqual(failures, [])
        self.assertEqual(moved, [], "users keep their instance through the failover")
        self.assertTrue(on_new_master(), "both tethers on the new master (%d requests)" % n)
        self.assertEqual(self.set.master_port(), new_master)
        for t in (a, b):
            self.assertTrue(t.find_logs(msg="redis down: falling back to local pins and hashing"))
        self.assertEqual(len(placed), 8, "every newcomer placed")
        # They were placed while no master answered: written once the new one did.
        waited = sum(r["pending_pins"] for t in (a, b) for r in
                     t.find_logs(msg="redis connected", address="127.0.0.1:%d" % new_master))
        self.assertGreaterEqual(waited, 8)
        # Pins made during the failover are on the new master, and so are the old ones
        # (replicated before the kill).
        want = {pin_store_key(user_key(u)): v for u, v in list(placed.items()) + list(where.items())}
        got = self.wait_until(lambda: (lambda p: p if all(k in p for k in want) else None)(
            self.master_pins(new_master)), 5, msg="every pin on the new master")
        for k, v in want.items():
            self.assertEqual(got[k], v, k)
        self.assertEqual(client(new_master, self.PASSWORD).execute_command("ROLE")[0], b"master")
        # The admin's lookup asks the master the store follows.
        j = json.loads(b.admin_get("/admin/affinity?key=" + user_key(users[0])).body)
        self.assertEqual((j["pinned"]["from"], j["pinned"]["backend"]), ("redis", where[users[0]]), j)

    def test_a_manual_failover_is_followed(self):
        url = self.set.url()
        t = self.tether(url)
        # The subscription to +switch-master stays up when idle (PING in subscribed mode
        # is answered), and so does the master's connection.
        time.sleep(2.5)
        self.assertFalse(t.find_logs(msg="redis sentinel subscription lost"))
        self.assertEqual(len(t.find_logs(msg="redis connected")), 1)
        users = ["m-%d" % i for i in range(6)]
        where = self.place(t, users)
        new_master = self.set.replica.port

        def failover():
            client(self.set.sentinels[0].port).execute_command("SENTINEL", "FAILOVER", MASTER_NAME)

        failures, moved, placed, n = self.traffic(
            (t,), users, where,
            lambda: t.find_logs(msg="redis connected", address="127.0.0.1:%d" % new_master) and
            t.metric("tether_affinity_store_up") == 1.0, 30, ["f-%d" % i for i in range(4)],
            action=failover)
        self.assertEqual(failures, [])
        self.assertEqual(moved, [])
        t.wait_log(msg="redis master switched", timeout=1, to="127.0.0.1:%d" % new_master)
        want = {pin_store_key(user_key(u)): v for u, v in placed.items()}
        self.wait_until(lambda: all(k in self.master_pins(new_master) for k in want), 5,
                        msg="the failover's pins on the new master")

    def test_sentinels_that_do_not_know_the_master(self):
        hosts = ",".join("127.0.0.1:%d" % s.port for s in self.set.sentinels)
        t = self.tether("redis+sentinel://:%s@%s/unknown-master/0" % (self.PASSWORD, hosts),
                        wait_up=False)
        failed = t.wait_log(msg="redis sentinel failed", timeout=5)
        self.assertEqual(failed["error"], "unknown master")
        t.wait_log(msg="redis master not found: no sentinel named it", timeout=5)
        self.assert_down_for(t, 0.5)
        self.assert_served_without_store(t)


class StoppedRedis(StoreCase):

    def test_a_redis_that_stops_answering_is_down_then_back(self):
        redis = start_redis_server()
        self.addCleanup(redis.stop)
        t = self.tether("redis://127.0.0.1:%d/0" % redis.port)
        known = ["k-%d" % i for i in range(10)]
        where = self.place(t, known)
        os.kill(redis.proc.pid, signal.SIGSTOP)
        self.addCleanup(lambda: redis.running and os.kill(redis.proc.pid, signal.SIGCONT))
        stopped_at = time.monotonic()
        latencies, failures, n = [], [], 0
        down_after = None
        fresh = []
        while time.monotonic() - stopped_at < 6:
            u = known[n % len(known)] if n % 2 else "fresh-%d" % n
            t0 = time.monotonic()
            try:
                r = self.get_id(t.proxy_port, u, timeout=3)
                if r.status != 200:
                    failures.append((u, r.status))
                elif u in where and self.by_name[r.header("X-Upstream-Name")].address != where[u]:
                    failures.append((u, "moved"))
                elif u not in where:
                    fresh.append((u, self.by_name[r.header("X-Upstream-Name")].address))
            except OSError as e:
                failures.append((u, repr(e)))
            latencies.append(time.monotonic() - t0)
            if down_after is None and t.metric("tether_affinity_store_up") == 0.0:
                down_after = time.monotonic() - stopped_at
            n += 1
            time.sleep(0.02)
        self.assertEqual(failures, [])
        self.assertIsNotNone(down_after, "store_up 0 while Redis does not answer")
        self.assertLess(down_after, 4.0, "seen within a couple of seconds (reply_timeout 2s)")
        self.assertLess(percentile(latencies, 99), 0.2,
                        "p99 %.3fs, max %.3fs" % (percentile(latencies, 99), max(latencies)))
        down = t.wait_log(msg="redis down: falling back to local pins and hashing", timeout=1)
        self.assertIn("reply_timeout", down["error"])
        self.assertEqual(down["address"], "127.0.0.1:%d" % redis.port)

        os.kill(redis.proc.pid, signal.SIGCONT)
        self.wait_until(lambda: t.metric("tether_affinity_store_up") == 1.0, 15,
                        msg="store_up 1 after SIGCONT")
        # The pins made while it was stopped reach it.
        c = client(redis.port)
        for u, v in fresh[:5]:
            self.wait_until(lambda u=u: c.get(pin_store_key(user_key(u))), 5, msg="pin of " + u)
            self.assertEqual(c.get(pin_store_key(user_key(u))).decode(), v)
        for u in known:
            self.assertEqual(self.by_name[self.get_id(t.proxy_port, u).header(
                "X-Upstream-Name")].address, where[u])


if __name__ == "__main__":
    unittest.main()
