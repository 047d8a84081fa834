"""Socket.IO (python-socketio 5 on uvicorn, Debian packages) through tether.

Three instances of apps/socketio_app.py (shaped like Open WebUI: Engine.IO v4 at
/ws/socket.io/) behind one tether; clients are python-socketio AsyncClients on the
websocket transport, as Open WebUI's browser client is by default.

Run: cd tests/e2e && TETHER_BIN=... /usr/bin/python3 -m unittest -v test_socketio
"""

import asyncio
import collections
import json
import unittest

from harness import E2ETestCase, http_get, require_program, wait_until
from wsutil import arun

try:
    import socketio  # python3-socketio
    import aiohttp  # noqa: F401 - the AsyncClient's websocket transport needs it
except ImportError:  # pragma: no cover - reported as a skip
    socketio = None

SIO_PATH = "/ws/socket.io"


class SocketIOWebsocket(E2ETestCase):
    def setUp(self):
        if socketio is None:
            self.skipTest("python3-socketio / python3-aiohttp not importable")
        require_program("uvicorn")
        self.apps = [self.start_socketio_app(name=n) for n in ("a", "b", "c")]
        self.t = self.start_tether(
            backends=[a.url for a in self.apps],
            config={"health": {"interval": "200ms", "timeout": "1s", "rise": 1, "fall": 2},
                    "balance": "least_conn"})
        wait_until(lambda: all(x["state"] == "up" for x in self.t.backends_state()), 10,
                   msg="socket.io instances up")

    async def client_session(self, i, results, hold):
        sio = socketio.AsyncClient(reconnection=False)
        hello = asyncio.get_running_loop().create_future()

        @sio.on("hello")
        async def on_hello(data):
            if not hello.done():
                hello.set_result(data)

        await sio.connect(self.t.url(""), transports=["websocket"], socketio_path=SIO_PATH,
                          wait_timeout=10)
        try:
            self.assertEqual(sio.transport(), "websocket")
            greeting = await asyncio.wait_for(hello, 5)
            payload = {"i": i, "text": "héllo %d" % i, "blob": "x" * (i * 100)}
            echoed = await sio.call("echo", payload, timeout=5)
            me = await sio.call("whoami", timeout=5)
            results.append({"i": i, "hello": greeting, "echo": echoed, "whoami": me,
                            "sent": payload})
            await hold.wait()
        finally:
            await sio.disconnect()

    def test_websocket_clients_connect_echo_whoami_spread_over_three_instances(self):
        n = 12

        async def go():
            results, hold = [], asyncio.Event()
            tasks = []
            for i in range(n):
                tasks.append(asyncio.create_task(self.client_session(i, results, hold)))
                # Connect one by one so least_conn sees every open tunnel.
                for _ in range(200):
                    if len(results) > i or tasks[-1].done():
                        break
                    await asyncio.sleep(0.025)
            active = self.t.metric("tether_websocket_connections_active")
            stats = [json.loads(http_get(a.url + "/stats").body) for a in self.apps]
            hold.set()
            await asyncio.gather(*tasks)
            return results, active, stats

        results, active, stats = arun(go(), timeout=90)
        self.assertEqual(len(results), n)
        self.assertEqual(active, float(n))
        for r in results:
            self.assertEqual(r["echo"], r["sent"])
            self.assertEqual(r["hello"]["name"], r["whoami"]["name"])
            self.assertEqual(r["hello"]["sid"], r["whoami"]["sid"])
        per_instance = collections.Counter(r["whoami"]["name"] for r in results)
        self.assertEqual(set(per_instance), {"a", "b", "c"}, per_instance)
        # least_conn over held tunnels: an even spread.
        self.assertLessEqual(max(per_instance.values()) - min(per_instance.values()), 1,
                             per_instance)
        self.assertEqual(sorted(s["connected"] for s in stats),
                         sorted(per_instance.values()))
        wait_until(lambda: self.t.metric("tether_websocket_connections_active") == 0.0, 10,
                   msg="all tunnels closed")
        self.assertEqual(self.t.metric("tether_websocket_upgrades_total", result="101"),
                         float(n))
        # Each client's echo and whoami calls are two messages up (plus the Engine.IO
        # and Socket.IO handshakes); at least 2n messages crossed each way.
        self.assertGreaterEqual(self.t.metric("tether_websocket_messages_total",
                                              direction="upstream"), 2 * n)
        self.assertGreaterEqual(self.t.metric("tether_websocket_messages_total",
                                              direction="downstream"), 2 * n)

    def test_without_upgrade_headers_the_app_answers_400_through_tether(self):
        # Open WebUI's own check: a GET for the websocket transport without Upgrade.
        r = http_get(self.t.url(SIO_PATH + "/?EIO=4&transport=websocket"))
        self.assertEqual(r.status, 400)

    def test_instance_killed_clients_reconnect_to_the_others(self):
        # A dead instance: its sockets end (abnormal closure), new clients land on
        # the remaining two at once.
        async def connect_one():
            sio = socketio.AsyncClient(reconnection=False)
            await sio.connect(self.t.url(""), transports=["websocket"],
                              socketio_path=SIO_PATH, wait_timeout=10)
            return sio, (await sio.call("whoami", timeout=5))["name"]

        async def go():
            first = [await connect_one() for _ in range(3)]
            names = {name for _, name in first}
            victim = self.apps[0]                 # "a"
            on_victim = [sio for sio, name in first if name == "a"]
            victim.kill()
            # Its client sees the socket end (tether passes the backend's end on).
            for _ in range(100):
                if not any(sio.connected for sio in on_victim):
                    break
                await asyncio.sleep(0.05)
            dropped = not any(sio.connected for sio in on_victim)
            # Passive detection or health checks take the instance out.
            await asyncio.sleep(0.1)
            for _ in range(100):
                if all(x["state"] != "up" for x in self.t.backends_state()
                       if x["url"] == victim.url):
                    break
                await asyncio.sleep(0.05)
            later = []
            for _ in range(4):
                sio, name = await connect_one()
                later.append(name)
                await sio.disconnect()
            for sio, _ in first:
                await sio.disconnect()
            return names, later, dropped

        names, later, dropped = arun(go(), timeout=60)
        self.assertEqual(names, {"a", "b", "c"})
        self.assertTrue(dropped, "the client of the killed instance still looks connected")
        self.assertGreaterEqual(self.t.metric("tether_websocket_closes_total",
                                              backend="127.0.0.1:%d" % self.apps[0].port,
                                              by="backend") or 0, 1.0)
        self.assertNotIn("a", later)
        self.assertEqual(len(later), 4)


if __name__ == "__main__":
    unittest.main()
