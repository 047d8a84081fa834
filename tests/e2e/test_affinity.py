"""Session affinity end to end (SPEC.md "Affinity keys", OPENWEBUI.md): two tether
processes sharing one redis-server in front of several instances.

  EngineIoAcrossTethers   python-socketio on uvicorn (Socket.IO Redis manager): Engine.IO
                          long-polling with no cookie, alternating tethers; a Socket.IO
                          client that polls then upgrades; an upgrade through the other
                          tether than the handshake.
  UserAffinity            http_upstream instances: one user (JWT `id` in the `token`
                          cookie) on one instance through both tethers; inserted cookie;
                          /admin/affinity; a pinned instance killed (redispatch, strict).
  HostileAffinityInput    huge cookies, broken JWTs, odd sids through the real binary.

Run: cd tests/e2e && TETHER_BIN=... /usr/bin/python3 -m unittest -v test_affinity
"""

import asyncio
import collections
import json
import os
import re
import time
import unittest

from harness import E2ETestCase, RawClient, require_program
import wsutil
from affinity_util import (SIO_PATH, Poller, b64url, eio_path, make_jwt, pin_store_key,
                           redis_client, request, sid_key, tether_config, user_cookie,
                           user_key)


def lookups(t, result):
    return t.metric("tether_affinity_lookups_total", default=0.0, result=result)


class TwoTethersMixin:
    """redis-server, instances, and two tethers using that Redis as their pin store."""

    def start_two_tethers(self, backends, **cfg_kw):
        # These tests assert what a healthy shared store gives: every pin written and
        # found. The 5 ms default lookup_timeout is a bound for production, where a
        # late answer falls back to a local pick (test_affinity_redis covers that); on a
        # loaded 2-core CI machine a Redis round trip can take longer than 5 ms.
        extra = dict(cfg_kw.pop("extra_affinity", None) or {})
        extra.setdefault("lookup_timeout", "2s")
        cfg = tether_config(store=self.redis.redis_url, extra_affinity=extra, **cfg_kw)
        self.tethers = [self.start_tether(config=cfg, backends=[b.url for b in backends])
                        for _ in range(2)]
        self.ports = [t.proxy_port for t in self.tethers]
        for t in self.tethers:
            self.wait_until(lambda t=t: t.metric("tether_affinity_store_up") == 1.0, 5,
                            msg="store_up 1")
            self.wait_until(lambda t=t: all(b["state"] == "up" for b in t.backends_state()),
                            5, msg="every backend up")
        return self.tethers

    def redis_pin(self, key):
        v = redis_client(self.redis.port).get(pin_store_key(key))
        return v.decode() if v is not None else None


# ---------------------------------------------------------------------------------------


# Two tethers share a sid's pin through Redis. The handshake answer that reveals
# the sid is held until Redis has acknowledged the pin, so that the client's next
# request, through either tether, finds it.
class EngineIoAcrossTethers(TwoTethersMixin, E2ETestCase):

    def setUp(self):
        require_program("uvicorn")
        self.redis = self.start_redis()
        self.apps = [self.start_socketio_app(n, redis_url=self.redis.redis_url)
                     for n in ("sio-a", "sio-b", "sio-c")]
        self.by_address = {a.address: a for a in self.apps}
        self.start_two_tethers(self.apps)

    def test_long_polling_without_cookies_alternates_tethers_and_stays_on_the_issuer(self):
        names = collections.Counter()
        for n in range(6):
            # Start on either tether; every later request goes to the other one.
            p = Poller(self.ports[n % 2:] + self.ports[:n % 2])
            sid = p.handshake()
            hello = p.connect_namespace()
            who = p.ack_call("whoami", 1)
            echo = p.ack_call("echo", 2, {"n": n})
            for port, method, status, body in p.log:
                self.assertEqual(status, 200, "%s on %d: %r (log %r)" % (method, port, body,
                                                                         p.log))
                self.assertNotIn(b"Invalid session", body)
            self.assertEqual(who["name"], hello)
            self.assertEqual(echo, {"n": n})
            used = {port for port, *_ in p.log}
            self.assertEqual(used, set(self.ports), "both tethers carried the session")
            # The pin of the sid is in the shared store, naming the issuing instance.
            pinned = self.redis_pin(sid_key(sid))
            self.assertIn(pinned, self.by_address)
            self.assertEqual(self.by_address[pinned].name, "socketio_app[%s]" % hello)
            names[hello] += 1
        self.assertEqual(sum(names.values()), 6)
        for t in self.tethers:
            self.assertGreater(lookups(t, "hit"), 0)
            self.assertEqual(t.metric("tether_http_requests_total", default=0.0, code="400"),
                             0.0, "no poll was refused (400 Invalid session)")

    def test_first_poll_through_the_other_tether_right_after_the_handshake(self):
        # The sid's pin must be in Redis before the client can use the sid: tether A pins
        # it while forwarding the handshake answer, tether B looks it up at once.
        failures = []
        for n in range(30):
            a, b = (self.ports[0], self.ports[1]) if n % 2 else (self.ports[1], self.ports[0])
            p = Poller([a, b, b])
            p.handshake()
            r = p.post("40")
            g = p.get()
            if r.status != 200 or g.status != 200:
                failures.append((n, r.status, r.body[:80], g.status, g.body[:80]))
        self.assertEqual(failures, [])
        for t in self.tethers:
            self.assertEqual(lookups(t, "miss"), 0.0, "every sid was found in the store")
        stored = sum(t.metric("tether_affinity_pin_confirmations_total", result="stored")
                     for t in self.tethers)
        self.assertGreaterEqual(stored, 30, "every handshake answer waited for its pin")

    def test_socketio_client_polls_then_upgrades_through_each_tether(self):
        import socketio  # python3-socketio

        async def session(port, tag):
            c = socketio.AsyncClient(reconnection=False)
            hellos = []
            c.on("hello", lambda data: hellos.append(data))
            await c.connect("http://127.0.0.1:%d" % port, transports=["polling", "websocket"],
                            socketio_path="/ws/socket.io", wait_timeout=5)
            try:
                deadline = time.monotonic() + 10
                while c.transport() != "websocket" and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                transport = c.transport()
                results = []
                for i in range(10):
                    results.append(await c.call("echo", {"tag": tag, "i": i}, timeout=5))
                who = await c.call("whoami", timeout=5)
                return transport, results, who, hellos
            finally:
                await c.disconnect()

        async def both():
            return await asyncio.gather(session(self.ports[0], "A"), session(self.ports[1], "B"))

        out = wsutil.arun(both(), 60)
        for (transport, results, who, hellos), tag in zip(out, "AB"):
            self.assertEqual(transport, "websocket", "the client upgraded")
            self.assertEqual(results, [{"tag": tag, "i": i} for i in range(10)])
            self.assertTrue(hellos and hellos[0]["name"] == who["name"], (hellos, who))
        for t in self.tethers:
            self.assertGreaterEqual(t.metric("tether_websocket_upgrades_total", default=0.0,
                                             result="101"), 1.0)
            self.assertEqual(t.metric("tether_http_requests_total", default=0.0, code="400"),
                             0.0)

    def test_upgrade_through_the_other_tether_than_the_handshake(self):
        a, b = self.ports
        p = Poller([a, b])
        sid = p.handshake()                      # on tether A
        hello = p.connect_namespace()            # POST on B, GET on A
        # The WebSocket upgrade with the sid, through tether B.
        ws = self.raw_client(b)
        ws.send(wsutil.upgrade_head("127.0.0.1:%d" % b, eio_path(sid, "websocket")))
        head = ws.recv_until(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head[:300])
        ws.send(wsutil.frame(wsutil.OP_TEXT, "2probe"))
        f = wsutil.recv_frame(ws)
        self.assertIsNotNone(f)
        self.assertEqual(f.payload, b"3probe")
        ws.send(wsutil.frame(wsutil.OP_TEXT, "5"))
        ws.send(wsutil.frame(wsutil.OP_TEXT, '421["whoami"]'))
        who = None
        for _ in range(10):
            f = wsutil.recv_frame(ws)
            self.assertIsNotNone(f, "no answer on the upgraded socket")
            if f.payload.startswith(b"431"):
                who = json.loads(f.payload[3:])[0]
                break
        self.assertIsNotNone(who)
        self.assertEqual(who["name"], hello)
        ws.send(wsutil.frame(wsutil.OP_TEXT, '422["echo","over B"]'))
        for _ in range(10):
            f = wsutil.recv_frame(ws)
            self.assertIsNotNone(f)
            if f.payload.startswith(b"432"):
                self.assertEqual(json.loads(f.payload[3:]), ["over B"])
                break
        ws.send(wsutil.frame(wsutil.OP_CLOSE, wsutil.close_payload(1000)))
        self.assertEqual(self.tethers[1].metric("tether_websocket_upgrades_total", default=0.0,
                                                result="101"), 1.0)
        self.assertIsNone(self.tethers[1].metric("tether_websocket_upgrades_total",
                                                 result="403"))

    def test_a_users_socket_and_requests_share_the_instance_of_their_jwt(self):
        # The handshake has no sid yet: the user's JWT places it (second key of the route).
        for u in range(4):
            headers = {"Cookie": user_cookie("user-%d" % u)}
            seen = set()
            for port in self.ports * 2:
                p = Poller([port], headers)
                p.handshake()
                seen.add(p.connect_namespace())
            self.assertEqual(len(seen), 1, "user-%d on %r" % (u, seen))
            pinned = self.redis_pin(user_key("user-%d" % u))
            self.assertEqual("socketio_app[%s]" % seen.pop(), self.by_address[pinned].name)


# ---------------------------------------------------------------------------------------


class UserAffinity(TwoTethersMixin, E2ETestCase):

    def setUp(self):
        self.redis = self.start_redis()
        self.ups = [self.start_http_upstream(name=n) for n in ("up-a", "up-b", "up-c")]
        self.by_name = {u.name.split("[")[1].rstrip("]"): u for u in self.ups}

    def names_for(self, user, n=6, ports=None, path="/id"):
        out = []
        ports = ports or self.ports
        for i in range(n):
            r = request(ports[i % len(ports)], path, headers={"Cookie": user_cookie(user)})
            self.assertEqual(r.status, 200, r)
            out.append(r.header("X-Upstream-Name"))
        return out

    def test_one_user_lands_on_one_instance_through_both_tethers(self):
        self.start_two_tethers(self.ups)
        where = {}
        for u in range(15):
            names = self.names_for("user-%d" % u)
            self.assertEqual(len(set(names)), 1, "user-%d went to %r" % (u, names))
            where["user-%d" % u] = names[0]
        spread = collections.Counter(where.values())
        self.assertGreaterEqual(len(spread), 2, "users spread over instances: %r" % spread)
        # The Socket.IO route sees the same user key: same instance.
        for u in range(5):
            user = "user-%d" % u
            r = request(self.ports[u % 2], eio_path(), headers={"Cookie": user_cookie(user)})
            self.assertEqual(r.header("X-Upstream-Name"), where[user])
            self.assertEqual(self.by_name[where[user]].address, self.redis_pin(user_key(user)))

    def test_jwt_in_authorization_header_and_numeric_claims(self):
        self.start_two_tethers(self.ups, keys=["jwt:header:Authorization:id"])
        for u in range(6):
            tok = make_jwt({"id": 1000 + u})
            names = set()
            for i in range(4):
                r = request(self.ports[i % 2], "/id",
                            headers={"Authorization": ("Bearer " if i % 2 else "bearer ") + tok})
                self.assertEqual(r.status, 200)
                names.add(r.header("X-Upstream-Name"))
            self.assertEqual(len(names), 1, names)

    def test_inserted_cookie_is_set_once_and_sticks(self):
        self.start_two_tethers(self.ups, keys=["cookie:tether_affinity"],
                               extra_affinity={"cookie": {"insert": True, "max_age": "1h"}})
        homes = collections.Counter()
        for client in range(12):
            r = request(self.ports[client % 2], "/id")
            self.assertEqual(r.status, 200)
            cookies = r.header_all("Set-Cookie")
            self.assertEqual(len(cookies), 1, cookies)
            m = re.match(r"^tether_affinity=([0-9a-f]{32}); (.*)$", cookies[0])
            self.assertIsNotNone(m, cookies[0])
            attrs = {a.split("=")[0]: (a.split("=", 1) + [None])[1] for a in m.group(2).split("; ")}
            self.assertEqual(attrs.get("Path"), "/")
            self.assertEqual(attrs.get("Max-Age"), "3600")
            self.assertIn("HttpOnly", attrs)
            self.assertEqual(attrs.get("SameSite"), "Lax")
            self.assertNotIn("Secure", attrs, "plain HTTP listener")
            first = r.header("X-Upstream-Name")
            value = m.group(1)
            for i in range(6):
                r2 = request(self.ports[(client + i + 1) % 2], "/id",
                             headers={"Cookie": "other=1; tether_affinity=%s" % value})
                self.assertEqual(r2.status, 200)
                self.assertEqual(r2.header("X-Upstream-Name"), first,
                                 "client %d, request %d" % (client, i))
                self.assertEqual(r2.header_all("Set-Cookie"), [], "no new cookie when sent")
            self.assertEqual(self.redis_pin("cookie:tether_affinity=" + value),
                             self.by_name[first].address)
            homes[first] += 1
        self.assertGreaterEqual(len(homes), 2, "fresh clients spread: %r" % homes)

    def test_admin_affinity_says_where_and_why(self):
        self.start_two_tethers(self.ups)
        name = self.names_for("alice", 2)[0]
        address = self.by_name[name].address
        for t in self.tethers:
            r = t.admin_get("/admin/affinity?key=" + user_key("alice").replace("=", "%3D"))
            self.assertEqual(r.status, 200, r.body)
            j = json.loads(r.body)
            self.assertEqual(j["key"], user_key("alice"))
            self.assertEqual(j["store_key"], pin_store_key(user_key("alice")))
            self.assertEqual(j["store"], "redis")
            self.assertTrue(j["store_up"])
            self.assertEqual(j["pinned"]["backend"], address)
            self.assertEqual(j["pinned"]["from"], "redis")
            self.assertTrue(j["pinned"]["honoured"])
            self.assertEqual(j["pinned"]["backend_state"], "up")
            self.assertGreater(j["ttl_ms"], 3_500_000)
            self.assertIn("pinned", j["why"])
            # Also unencoded: the first '=' after key= belongs to the key.
            r = t.admin_get("/admin/affinity?key=" + user_key("alice"))
            self.assertEqual(json.loads(r.body)["pinned"]["backend"], address)
        j = json.loads(self.tethers[0].admin_get(
            "/admin/affinity?key=" + user_key("nobody")).body)
        self.assertIsNone(j["pinned"])
        self.assertIn("not pinned", j["why"])
        self.assertIn(j["hash_placement"], [u.address for u in self.ups])
        # Where hashing would put "nobody" is where nobody's first request goes.
        got = self.names_for("nobody", 1)[0]
        self.assertEqual(self.by_name[got].address, j["hash_placement"])
        r = self.tethers[0].admin_get("/admin/affinity")
        self.assertEqual(r.status, 400)
        self.assertIn(b"key", r.body)
        # A drained backend's pins are shown as not honoured.
        t = self.tethers[0]
        bid = [b for b in t.backends_state() if b["address"] == address][0]["id"]
        self.assertEqual(t.admin_post("/admin/backends/%s/drain" % bid).status, 200)
        j = json.loads(t.admin_get("/admin/affinity?key=" + user_key("alice")).body)
        self.assertFalse(j["pinned"]["honoured"])
        self.assertTrue(j["pinned"]["draining"])
        self.assertIn("re-pin", j["why"])

    # The client's address after trusted_proxies (SPEC "Affinity keys": client_ip).

    def clients_home(self, ip_list, xff_for=lambda ip: ip):
        homes = {}
        for ip in ip_list:
            names = set()
            for i in range(4):
                r = request(self.ports[i % 2], "/id", headers={"X-Forwarded-For": xff_for(ip)})
                self.assertEqual(r.status, 200, r)
                names.add(r.header("X-Upstream-Name"))
            self.assertEqual(len(names), 1, "%s went to %r" % (ip, names))
            homes[ip] = names.pop()
        return homes

    def test_client_ip_key_is_the_client_behind_trusted_proxies(self):
        self.start_two_tethers(self.ups, keys=["client_ip"], trusted_proxies=["127.0.0.0/8"])
        clients = ["203.0.113.%d" % n for n in range(1, 13)]
        homes = self.clients_home(clients)
        self.assertGreaterEqual(len(set(homes.values())), 2, "clients spread: %r" % homes)
        for ip in clients:
            self.assertEqual(self.redis_pin("client_ip=" + ip), self.by_name[homes[ip]].address)
        self.assertIsNone(self.redis_pin("client_ip=127.0.0.1"), "the proxy is not the client")
        # A value the client wrote itself, left of what the proxy saw, is not believed;
        # a trusted hop on the right is skipped.
        spoofed = self.clients_home(clients[:4], lambda ip: "6.6.6.6, %s, 127.0.0.9" % ip)
        self.assertEqual(spoofed, {ip: homes[ip] for ip in clients[:4]})
        self.assertIsNone(self.redis_pin("client_ip=6.6.6.6"))
        self.assertIsNone(self.redis_pin("client_ip=127.0.0.9"))

    def test_client_ip_key_ignores_x_forwarded_for_from_untrusted_peers(self):
        self.start_two_tethers(self.ups, keys=["client_ip"])
        homes = self.clients_home(["203.0.113.%d" % n for n in range(1, 7)])
        self.assertEqual(len(set(homes.values())), 1, "one client, 127.0.0.1: %r" % homes)
        self.assertEqual(self.redis_pin("client_ip=127.0.0.1"),
                         self.by_name[set(homes.values()).pop()].address)
        self.assertIsNone(self.redis_pin("client_ip=203.0.113.1"))

    def test_consistent_hash_hashes_the_client_behind_trusted_proxies(self):
        # No affinity keys at all: balance consistent_hash alone keeps a client on one
        # instance, and two tethers agree without a store.
        self.start_two_tethers(self.ups, keys=[], sio_keys=[], balance="consistent_hash",
                               trusted_proxies=["127.0.0.0/8"])
        homes = self.clients_home(["198.51.100.%d" % n for n in range(1, 13)])
        self.assertGreaterEqual(len(set(homes.values())), 2, "clients spread: %r" % homes)
        self.assertEqual(lookups(self.tethers[0], "miss") + lookups(self.tethers[0], "hit"), 0.0,
                         "no affinity lookups without keys")

    def test_consistent_hash_without_trusted_proxies_hashes_the_peer(self):
        self.start_two_tethers(self.ups, keys=[], sio_keys=[], balance="consistent_hash")
        homes = self.clients_home(["198.51.100.%d" % n for n in range(1, 7)])
        self.assertEqual(len(set(homes.values())), 1, "every request comes from 127.0.0.1: %r" % homes)

    def kill_busiest(self, where):
        """SIGKILLs the instance with the most users; returns its name."""
        victim = collections.Counter(where.values()).most_common(1)[0][0]
        self.by_name[victim].kill()
        return victim

    def test_killed_instance_users_move_without_errors_and_stay(self):
        self.start_two_tethers(self.ups)
        users = ["user-%d" % u for u in range(12)]
        where = {u: self.names_for(u, 2)[0] for u in users}
        victim = self.kill_busiest(where)
        moved = [u for u in users if where[u] == victim]
        failures, after = [], collections.defaultdict(list)
        deadline = time.monotonic() + 20
        for rnd in range(8):
            for i, u in enumerate(users):
                if time.monotonic() > deadline:
                    break
                try:
                    r = request(self.ports[(rnd + i) % 2], "/id",
                                headers={"Cookie": user_cookie(u)})
                except OSError as e:
                    failures.append((u, repr(e)))
                    continue
                if r.status != 200:
                    failures.append((u, r.status, r.body[:100]))
                else:
                    after[u].append(r.header("X-Upstream-Name"))
        self.assertEqual(failures, [], "idempotent GETs are retried elsewhere")
        for u in users:
            if u in moved:
                self.assertNotIn(victim, after[u])
                self.assertEqual(len(set(after[u])), 1, "%s moved once and stayed: %r"
                                 % (u, after[u]))
            else:
                self.assertEqual(set(after[u]), {where[u]}, "%s unaffected" % u)
        repins = sum(lookups(t, "repin") for t in self.tethers)
        self.assertGreaterEqual(repins, 1.0)
        for u in moved:
            self.assertEqual(self.redis_pin(user_key(u)), self.by_name[after[u][0]].address)

    def test_strict_answers_503_when_the_pinned_instance_is_down(self):
        self.start_two_tethers(self.ups, extra_affinity={"on_target_down": "strict"})
        users = ["user-%d" % u for u in range(9)]
        where = {u: self.names_for(u, 2)[0] for u in users}
        victim = self.kill_busiest(where)
        victim_addr = self.by_name[victim].address
        for t in self.tethers:
            self.wait_until(lambda t=t: self._state_of(t, victim_addr) == "down", 5,
                            msg="victim seen down")
        for i, u in enumerate(users):
            r = request(self.ports[i % 2], "/id", headers={"Cookie": user_cookie(u)})
            if where[u] == victim:
                self.assertEqual(r.status, 503, r)
            else:
                self.assertEqual((r.status, r.header("X-Upstream-Name")), (200, where[u]))
        # strict never re-pins: the store still names the dead instance.
        for u in users:
            if where[u] == victim:
                self.assertEqual(self.redis_pin(user_key(u)), victim_addr)
        self.assertEqual(sum(lookups(t, "repin") for t in self.tethers), 0.0)

    def test_strict_does_not_redispatch_on_connect_failure(self):
        # Before the health checks notice, a connect failure to the pinned instance must not
        # move the user either (strict = no redispatch), unlike retries without affinity.
        self.start_two_tethers(self.ups, extra_affinity={"on_target_down": "strict"},
                               health_interval="30s")
        users = ["user-%d" % u for u in range(9)]
        where = {u: self.names_for(u, 2)[0] for u in users}
        victim = self.kill_busiest(where)
        for i, u in enumerate(users):
            r = request(self.ports[i % 2], "/id", headers={"Cookie": user_cookie(u)})
            if where[u] == victim:
                self.assertIn(r.status, (502, 503), "no redispatch: %r" % r)
                self.assertEqual(self.redis_pin(user_key(u)), self.by_name[victim].address)
            else:
                self.assertEqual((r.status, r.header("X-Upstream-Name")), (200, where[u]))

    @staticmethod
    def _state_of(t, address):
        for b in t.backends_state():
            if b["address"] == address:
                return b["state"]
        return None


# ---------------------------------------------------------------------------------------


class HostileAffinityInput(TwoTethersMixin, E2ETestCase):
    """Whatever a client sends in the places keys come from, the request is served."""

    def setUp(self):
        self.redis = self.start_redis()
        self.ups = [self.start_http_upstream(name=n) for n in ("up-a", "up-b")]
        self.start_two_tethers(self.ups, keys=["jwt:cookie:token:id", "cookie:tether_affinity",
                                               "header:X-User", "query:u"],
                               extra_affinity={"cookie": {"insert": True}})

    def assert_served(self, path, headers=None, raw=None):
        for port in self.ports:
            if raw is not None:
                with RawClient(port) as c:
                    c.send(raw(port))
                    r = c.recv_response(5)
                self.assertIsNotNone(r, "no answer to %r" % raw(port)[:200])
                self.assertEqual(r.status, 200, (path, r.status, r.body[:200]))
            else:
                r = request(port, path, headers=headers)
                self.assertEqual(r.status, 200, (path, r.status, r.body[:200]))

    def tearDown(self):
        for t in self.tethers:
            self.assertTrue(t.running, "tether died:\n" + t.tail(30))
            self.assertEqual(t.admin_get("/healthz").status, 200)
            r = request(t.proxy_port, "/id", headers={"Cookie": user_cookie("after")})
            self.assertEqual(r.status, 200)

    def test_huge_cookies(self):
        big = "x" * 30_000
        jwt_big = make_jwt({"id": "u", "pad": big})
        for cookie in ("tether_affinity=" + big,
                       "token=" + jwt_big,
                       "token=" + jwt_big[:15000] + "; tether_affinity=" + big[:15000],
                       "; ".join("c%d=%s" % (i, "v" * 20) for i in range(1200)),
                       "a=" + "=" * 30_000,
                       ";" * 30_000):
            self.assertGreater(len(cookie), 14_000)
            self.assert_served("/id", {"Cookie": cookie})
            self.assert_served(eio_path(), {"Cookie": cookie})
        # Several 10 KB Cookie headers in one request.
        self.assert_served("/id", raw=lambda port: (
            "GET /id HTTP/1.1\r\nHost: x\r\n" + "".join(
                "Cookie: tether_affinity=%s\r\n" % ("%d" % i * 10_000)[:10_000]
                for i in range(3)) + "Connection: close\r\n\r\n").encode())

    def test_broken_jwts(self):
        payloads = [
            "", ".", "..", "...", "a.b", "a.b.c.d", "!!!.@@@.###",
            b64url('{"alg":"none"}') + ".",
            b64url('{"alg":"none"}') + "." + b64url("not json") + ".s",
            b64url('{"alg":"none"}') + "." + b64url('["id","array"]') + ".s",
            b64url('{"alg":"none"}') + "." + b64url('{"id": null}') + ".s",
            b64url('{"alg":"none"}') + "." + b64url('{"id": {"nested": 1}}') + ".s",
            b64url('{"alg":"none"}') + "." + b64url('{"id": "unterminated') + ".s",
            b64url('{"alg":"none"}') + "." + b64url('{"id": "\\ud800\\u0000"}') + ".s",
            b64url('{"alg":"none"}') + "." + b64url("{" * 5000) + ".s",
            b64url('{"alg":"none"}') + "." + b64url('{"id":' + "[" * 3000 + "]" * 3000 + '}') + ".s",
            b64url('{"alg":"none"}') + "." + "%%%%" + ".s",
            b64url('{"alg":"none"}') + "." + b64url('{"id":"u"}') + "====.s",
            "Bearer " + make_jwt({"id": "u"}),
            make_jwt({"id": "x" * 5000}),
            make_jwt({"id": 1e400}),
            make_jwt({"id": -0.0}),
            make_jwt({"id": ""}),
        ]
        for tok in payloads:
            self.assert_served("/id", {"Cookie": "token=" + tok})
            self.assert_served("/id", {"Cookie": 'token="%s"' % tok})
        # Non-UTF-8 bytes (obs-text, which HTTP allows in field values) in a token cookie.
        self.assert_served("/id", raw=lambda port: (
            b"GET /id HTTP/1.1\r\nHost: x\r\nCookie: token=\xff\xfe.\x80\x81.\xf0\x9f; "
            b"tether_affinity=\xc3\x28\r\nConnection: close\r\n\r\n"))

    def test_odd_sids_and_queries(self):
        for q in ("EIO=4&transport=polling&sid=a&sid=b",
                  "EIO=4&transport=polling&sid=&sid=&sid=",
                  "EIO=4&EIO=3&transport=polling&transport=websocket&sid=x",
                  "transport=polling&sid=no-eio",
                  "sid=only",
                  "EIO=4&sid=" + "s" * 6000,
                  "EIO=4&transport=polling&sid=%00%ff%zz",
                  "EIO&sid",
                  "EIO=4&transport=polling&" + "&".join("sid=%d" % i for i in range(2000)),
                  "&&&&==&=&",
                  "u=" + "q" * 5000):
            self.assert_served(SIO_PATH + "?" + q)
        # A fragment is never sent in a request target (RFC 9112 §3.2): 400.
        for port in self.ports:
            r = request(port, SIO_PATH + "?EIO=4&transport=polling#sid=frag")
            self.assertEqual(r.status, 400, r.body[:200])
        self.assert_served("/id", {"X-User": " " * 100})
        self.assert_served("/id", {"X-User": "\t"})

    def test_engineio_handshake_answers_that_are_not_handshakes(self):
        # http_upstream answers the handshake path with an HTML page: nothing to learn,
        # the request is still served and nothing is pinned under a sid.
        before = len(redis_client(self.redis.port).keys("tether:pin:*"))
        for port in self.ports:
            r = request(port, eio_path())
            self.assertEqual(r.status, 200)
            self.assertIn(b"<html>", r.body)
        after = redis_client(self.redis.port).keys("tether:pin:*")
        # Only the inserted cookies were pinned (one per request).
        self.assertEqual(len(after) - before, len(self.ports))


if __name__ == "__main__":
    unittest.main()
