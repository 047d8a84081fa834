"""Admin state shared by every tether on one Redis (README, "Admin state shared through
Redis"): a drain, an enable or a weight asked of one tether is applied by all of them
within a second, a drain's deadline counts from the original request everywhere, a
tether that starts later finds the state, and with Redis down each keeps the last one.

Three tethers on one redis-server, two WebSocket echo backends (apps/ws_echo.py, which
also answers a plain GET /id with its name); the third tether lists the backends in the
other order, so that matching is by address and not by position. Hostile bytes in the
key or on the channel are logged and ignored.

Run: cd tests/e2e && TETHER_BIN=... /usr/bin/python3 -m unittest -v test_admin_shared
"""

import asyncio
import json
import time

import websockets

from affinity_util import redis_client, start_redis_on
from harness import E2ETestCase, http_get
from redis_util import (ACL_PASSWORD, ACL_USER, MASTER_NAME, SentinelSet, acl_args, client,
                        start_redis_server)
from wsutil import arun, ws_connect

HEALTH = {"interval": "200ms", "timeout": "1s", "rise": 1, "fall": 2}
KEY_PREFIX = "tether:admin:backend:"
SYNC_UP = "admin state shared through redis"
SYNC_DOWN = "admin state: redis down, every backend keeps its last state"


class SharedAdmin(E2ETestCase):

    def setUp(self):
        self.redis = self.start_redis()
        self.a = self.start_ws_echo(name="a")
        self.b = self.start_ws_echo(name="b")
        self.tethers = [self.new_tether(i) for i in range(3)]

    # ---- helpers -----------------------------------------------------------------------

    def config(self):
        return {"health": HEALTH, "balance": "round_robin",
                "affinity": {"store": self.redis.redis_url}}

    def new_tether(self, i):
        ups = [self.a, self.b] if i != 2 else [self.b, self.a]
        t = self.start_tether(config=self.config(), backends=[u.url for u in ups])
        t.wait_log(msg=SYNC_UP, timeout=5)
        self.wait_until(lambda: all(x["state"] == "up" for x in t.backends_state()), 5,
                        msg="backends up")
        return t

    def entry(self, t, app):
        return [x for x in t.backends_state() if x["address"] == app.address][0]

    def post(self, t, app, action, query=""):
        r = t.admin_post("/admin/backends/%d/%s%s" % (self.entry(t, app)["id"], action, query))
        self.assertEqual(r.status, 200, r.body)
        return json.loads(r.body)

    def names(self, t, n=8):
        out = set()
        for _ in range(n):
            r = http_get(t.url("/id"))
            self.assertEqual(r.status, 200, r.body)
            out.add(r.body.decode())
        return out

    def wait_everywhere(self, pred, tethers=None, timeout=1.0, msg=""):
        for t in tethers or self.tethers:
            self.wait_until(lambda: pred(t), timeout, msg="%s on tether %s" % (msg, t.admin_port))

    def state_is(self, app, state):
        return lambda t: self.entry(t, app)["state"] == state

    def rc(self):
        return redis_client(self.redis.port)

    # ---- tests -------------------------------------------------------------------------

    def test_drain_enable_and_weight_on_one_are_applied_by_all(self):
        t1, t2, t3 = self.tethers

        async def go():
            # A tunnel through the third tether to backend a (round robin: within a few tries).
            ws = None
            for _ in range(6):
                c = await ws_connect(t3.ws_url("/id"))
                if await c.recv() == "a":
                    ws = c
                    break
                await c.close()
            assert ws is not None, "no tunnel reached backend a"
            body = self.post(t1, self.a, "drain", "?deadline=1500ms")
            start = time.monotonic()
            self.assertEqual((body["state"], body["shared"]), ("draining", "sent"))

            async def watch():
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                    return "message", None
                except websockets.ConnectionClosed as e:
                    return (e.rcvd.code if e.rcvd else None), time.monotonic() - start

            watcher = asyncio.ensure_future(watch())

            def everywhere():
                # Within a second, every tether says so, and sends nothing new to a.
                self.wait_everywhere(self.state_is(self.a, "draining"), msg="draining")
                self.assertLess(time.monotonic() - start, 1.0)
                for t in self.tethers:
                    self.assertEqual(self.names(t), {"b"})
                    self.assertEqual(t.metric("tether_backend_state", backend=self.a.address,
                                              state="draining"), 1.0)
                    shared = self.entry(t, self.a)["shared"]
                    self.assertTrue(shared["drain"])
                    self.assertGreater(shared["version"], 0)

            await asyncio.to_thread(everywhere)
            return await watcher

        code, when = arun(go(), timeout=20)
        # The deadline counts from the request to tether 1, not from when tether 3 heard.
        self.assertEqual(code, 1001)
        self.assertGreaterEqual(when, 1.3)
        self.assertLess(when, 2.5)

        body = self.post(t2, self.a, "enable")
        self.assertEqual(body["shared"], "sent")
        self.wait_everywhere(self.state_is(self.a, "up"), msg="up again")
        for t in self.tethers:
            self.wait_until(lambda: "a" in self.names(t, 4), 2, msg="a in rotation again")

        self.post(t3, self.b, "weight", "?value=7")
        self.wait_everywhere(lambda t: self.entry(t, self.b)["weight"] == 7, msg="weight 7")
        for t in self.tethers:
            self.assertEqual(t.metric("tether_backend_weight", backend=self.b.address), 7.0)
            self.assertEqual(t.metric("tether_backend_weight", backend=self.a.address), 100.0)
        stored = self.rc().hgetall(KEY_PREFIX + self.b.address)
        self.assertEqual(stored[b"weight"].split(b" ")[0], b"7")

    def test_a_restarted_tether_comes_up_with_the_backend_still_drained(self):
        t1, t2, _ = self.tethers
        self.post(t1, self.a, "drain")
        self.wait_everywhere(self.state_is(self.a, "draining"), msg="draining")
        self.post(t1, self.b, "weight", "?value=3")
        self.wait_everywhere(lambda t: self.entry(t, self.b)["weight"] == 3, msg="weight 3")
        self.assertEqual(t2.stop(), 0)
        t2 = self.start_tether(config=self.config(), backends=[self.a.url, self.b.url])
        t2.wait_log(msg=SYNC_UP, timeout=5)
        self.wait_until(lambda: self.entry(t2, self.a)["state"] == "draining", 1,
                        msg="drained at start")
        self.assertEqual(self.entry(t2, self.b)["weight"], 3)
        self.wait_until(lambda: self.entry(t2, self.b)["state"] == "up", 5, msg="b up")
        self.assertEqual(self.names(t2), {"b"})
        self.assertEqual(t2.admin_get("/readyz").status, 200)

    def test_redis_down_each_keeps_the_last_state_then_all_agree_again(self):
        t1, t2, t3 = self.tethers
        self.post(t1, self.a, "drain")
        self.wait_everywhere(self.state_is(self.a, "draining"), msg="draining")
        port = self.redis.port
        marks = [len(t.logs) for t in self.tethers]
        self.redis.kill()
        # A tether started now serves with its configuration's state.
        late = self.start_tether(config=self.config(), backends=[self.a.url, self.b.url])
        self.wait_until(lambda: late.admin_get("/readyz").status == 200, 5, msg="late ready")
        self.assertIsNone(self.entry(late, self.a)["shared"])
        for t, mark in zip(self.tethers, marks):
            t.wait_log(msg=SYNC_DOWN, timeout=5, start=mark)
        for t in self.tethers:
            self.assertEqual(self.entry(t, self.a)["state"], "draining")
            self.assertEqual(self.names(t), {"b"})

        # A change while Redis is away: applied where it was asked, written once it is back.
        body = self.post(t2, self.a, "enable")
        self.assertEqual(body["shared"], "pending")
        self.assertEqual(self.entry(t2, self.a)["state"], "up")
        self.assertTrue(self.entry(t2, self.a)["shared"]["pending"])
        self.assertEqual(self.entry(t1, self.a)["state"], "draining")

        # Back without its data: the later change (the enable) wins everywhere, and Redis
        # holds it again.
        self.redis = start_redis_on(port)
        self.addCleanup(self.redis.stop)
        self.wait_everywhere(self.state_is(self.a, "up"), timeout=10, msg="enabled")
        self.wait_everywhere(lambda t: not self.entry(t, self.a)["shared"]["pending"],
                             timeout=5, msg="nothing pending")
        stored = self.rc().hgetall(KEY_PREFIX + self.a.address)
        self.assertEqual(stored[b"drain"].split(b" ")[0], b"0")
        for t in self.tethers:
            self.wait_until(lambda: "a" in self.names(t, 4), 2, msg="a in rotation")

    def test_redis_back_without_its_data_gets_the_state_written_back(self):
        self.post(self.tethers[0], self.a, "drain")
        self.wait_everywhere(self.state_is(self.a, "draining"), msg="draining")
        r = self.rc()
        r.flushall()  # as a restart without persistence would
        self.assertEqual(r.hgetall(KEY_PREFIX + self.a.address), {})
        # A reconnect reads every backend again: restart the connections by restarting Redis.
        port = self.redis.port
        self.redis.kill()
        self.redis = start_redis_on(port)
        self.addCleanup(self.redis.stop)
        self.wait_until(lambda: self.rc().hget(KEY_PREFIX + self.a.address, "drain"), 10,
                        msg="drain written back")
        self.assertEqual(self.rc().hget(KEY_PREFIX + self.a.address, "drain").split(b" ")[0],
                         b"1")
        for t in self.tethers:
            self.assertEqual(self.entry(t, self.a)["state"], "draining")

    def test_hostile_data_in_redis_is_logged_and_ignored(self):
        t1, t2, t3 = self.tethers
        r = self.rc()
        key = KEY_PREFIX + self.a.address
        marks = [len(t.logs) for t in self.tethers]
        # A garbage value: the aspect is ignored, the backend keeps its state.
        r.hset(key, "drain", "yes please")
        r.publish("tether:admin", self.a.address)
        for t, mark in zip(self.tethers, marks):
            rec = t.wait_log(msg="admin state in redis malformed: those fields ignored",
                             timeout=2, start=mark)
            self.assertEqual(rec["backend"], self.a.address)
            self.assertIn("drain", rec["error"])
        for t in self.tethers:
            self.assertEqual(self.entry(t, self.a)["state"], "up")
        # A message for a backend nobody has, and one that is no address.
        r.publish("tether:admin", "10.99.99.99:1")
        r.publish("tether:admin", "\x00\xff garbage " * 20)
        for t, mark in zip(self.tethers, marks):
            t.wait_log(msg="admin state: a change for a backend not configured here: ignored",
                       timeout=2, start=mark, backend="10.99.99.99:1")
            t.wait_log(msg="admin state: a message that names no backend address: ignored",
                       timeout=2, start=mark)
        # A key of another type.
        r.delete(key)
        r.set(key, "not a hash")
        r.publish("tether:admin", self.a.address)
        for t, mark in zip(self.tethers, marks):
            rec = t.wait_log(msg="admin state in redis unreadable: ignored, the backend keeps "
                                 "its last state", timeout=2, start=mark)
            self.assertIn("WRONGTYPE", rec["error"])
        r.delete(key)
        # Every tether is still serving and still sharing.
        self.post(t1, self.a, "drain")
        self.wait_everywhere(self.state_is(self.a, "draining"), msg="draining")
        for t in self.tethers:
            self.assertEqual(self.names(t), {"b"})
            self.assertTrue(t.running)

    def test_a_reload_keeps_the_shared_state(self):
        t1, t2, _ = self.tethers
        self.post(t1, self.a, "drain")
        self.post(t1, self.b, "weight", "?value=9")
        self.wait_everywhere(lambda t: self.entry(t, self.b)["weight"] == 9, msg="weight 9")
        rec = t2.reload()
        self.assertEqual(rec["msg"], "reloaded")
        self.assertEqual(self.entry(t2, self.b)["weight"], 9)
        self.assertEqual(self.entry(t2, self.a)["state"], "draining")
        self.assertEqual(t2.metric("tether_backend_weight", backend=self.b.address), 9.0)

    def test_the_memory_store_keeps_admin_changes_to_the_tether_asked(self):
        one = self.start_tether(config={"health": HEALTH}, backends=[self.a.url, self.b.url])
        two = self.start_tether(config={"health": HEALTH}, backends=[self.a.url, self.b.url])
        for t in (one, two):
            self.wait_until(lambda: all(x["state"] == "up" for x in t.backends_state()), 5)
        body = self.post(one, self.a, "drain")
        self.assertNotIn("shared", body)
        self.assertNotIn("shared", self.entry(one, self.a))
        self.assertEqual(self.entry(one, self.a)["state"], "draining")
        self.assertEqual(self.entry(two, self.a)["state"], "up")
        self.assertEqual(one.find_logs(SYNC_UP), [])


class SharedAdminSentinel(E2ETestCase):
    """With Sentinel, both connections follow the master the pins follow, subscribe again
    there, and read every backend again."""

    PASSWORD = "admin-sentinel-pw"

    def setUp(self):
        self.set = SentinelSet(self.PASSWORD)
        self.addCleanup(self.set.stop)
        self.a = self.start_ws_echo(name="a")
        self.b = self.start_ws_echo(name="b")

    def entry(self, t, app):
        return [x for x in t.backends_state() if x["address"] == app.address][0]

    def post(self, t, app, action, query=""):
        r = t.admin_post("/admin/backends/%d/%s%s" % (self.entry(t, app)["id"], action, query))
        self.assertEqual(r.status, 200, r.body)

    def test_a_failover_is_followed(self):
        cfg = {"health": HEALTH, "affinity": {"store": self.set.url()}}
        master = "127.0.0.1:%d" % self.set.master.port
        new_master = "127.0.0.1:%d" % self.set.replica.port
        ts = [self.start_tether(config=cfg, backends=[self.a.url, self.b.url]) for _ in range(2)]
        for t in ts:
            t.wait_log(msg=SYNC_UP, timeout=10, address=master)
        self.post(ts[0], self.a, "drain")
        for t in ts:
            self.wait_until(lambda: self.entry(t, self.a)["state"] == "draining", 1)
        replica = client(self.set.replica.port, self.PASSWORD)
        self.wait_until(lambda: replica.hget(KEY_PREFIX + self.a.address, "drain"), 5,
                        msg="replicated")
        marks = [len(t.logs) for t in ts]
        client(self.set.sentinels[0].port).execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        for t, mark in zip(ts, marks):
            t.wait_log(msg=SYNC_UP, timeout=30, start=mark, address=new_master)
        for t in ts:
            self.assertEqual(self.entry(t, self.a)["state"], "draining")
        # Changes go on through the new master, both ways.
        self.post(ts[1], self.b, "weight", "?value=5")
        self.post(ts[1], self.a, "enable")
        for t in ts:
            self.wait_until(lambda: self.entry(t, self.b)["weight"] == 5, 1, msg="weight 5")
            self.wait_until(lambda: self.entry(t, self.a)["state"] == "up", 1, msg="enabled")
        stored = client(self.set.replica.port, self.PASSWORD).hgetall(KEY_PREFIX + self.b.address)
        self.assertEqual(stored[b"weight"].split(b" ")[0], b"5")


class SharedAdminWithoutTheCommands(E2ETestCase):
    """An ACL user with only the pins' commands: pins work, the admin state stays with
    each tether, and the refusal is logged once, not at every retry."""

    def test_pins_only_acl(self):
        rules = ["on", ">" + ACL_PASSWORD, "~tether:*", "+get", "+set", "+pexpire", "+pttl",
                 "+ping"]
        redis = start_redis_server(acl_args(rules=rules))
        self.addCleanup(redis.stop)
        a = self.start_ws_echo(name="a")
        url = "redis://%s:%s@127.0.0.1:%d/0" % (ACL_USER, ACL_PASSWORD, redis.port)
        t = self.start_tether(config={"health": HEALTH, "affinity": {"store": url}},
                              backends=[a.url])
        refused = "admin state: redis refused the subscription; changes made elsewhere are not seen"
        rec = t.wait_log(msg=refused, timeout=5)
        self.assertIn("NOPERM", rec["error"])
        self.wait_until(lambda: t.admin_get("/readyz").status == 200, 5, msg="ready")
        self.wait_until(lambda: t.metric("tether_affinity_store_up") == 1.0, 5, msg="store up")
        r = t.admin_post("/admin/backends/0/drain")
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.body)["shared"], "pending")
        t.wait_log(msg="admin state not written to redis: kept here, written again on reconnect",
                   timeout=2)
        self.assertEqual(t.backends_state()[0]["state"], "draining")
        # Retried with the backoff (100, 200, 400 ms ...): the same refusal at debug.
        self.wait_until(lambda: len(t.find_logs(msg="admin state: redis refused the subscription"))
                        >= 2, 5, msg="two retries")
        self.assertEqual(len(t.find_logs(msg=refused)), 1)
        self.assertTrue(t.running)
