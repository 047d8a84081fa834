"""WebSocket through tether: the upgrade, the tunnel, its metrics and its ends.

Real programs wherever users run them: python3-websockets 10.4 as client and as
backend (apps/ws_echo.py). Hand-made frames on raw sockets (wsutil.RawWsBackend,
harness.RawClient) only where a test needs bytes websockets will not produce on
purpose: frames glued to the upgrade, half-closes, refused upgrades.

Run: cd tests/e2e && TETHER_BIN=... /usr/bin/python3 -m unittest -v test_websocket
"""

import asyncio
import json
import os
import socket
import threading
import time
import unittest
from signal import SIGTERM

import websockets

from harness import E2ETestCase, header, wait_until
from wsutil import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWsBackend,
                    accept_for, arun, close_payload, frame, new_key, read_and_answer_close,
                    read_frames_from_socket, recv_frame, rss_kib, until_closed, upgrade_head, ws_connect)

FAST_HEALTH = {"health": {"interval": "200ms", "timeout": "1s", "rise": 1, "fall": 2}}


def cfg(**sections):
    """FAST_HEALTH plus the given top-level sections."""
    out = dict(FAST_HEALTH)
    out.update(sections)
    return out


def backend_label(app):
    return "127.0.0.1:%d" % app.port


class WsTestCase(E2ETestCase):
    def tether(self, backends, config=None, **kw):
        """Starts tether and waits until every backend passed its first health check."""
        t = self.start_tether(backends=[b.url for b in backends], config=config or cfg(), **kw)
        wait_until(lambda: all(x["state"] == "up" for x in t.backends_state()), 5,
                   msg="backends up")
        return t

    def echo_setup(self, config=None, **echo_kw):
        up = self.start_ws_echo(**echo_kw)
        return up, self.tether([up], config)

    def raw_backend(self, *a, **k):
        b = RawWsBackend(*a, **k)
        self.addCleanup(b.stop)
        return b

    def raw_upgrade(self, t, path="/", extra=(), glued=b""):
        """Upgrades a raw connection through tether; returns (client, response)."""
        c = self.raw_client(t.proxy_port)
        key = new_key()
        c.send(upgrade_head("127.0.0.1:%d" % t.proxy_port, path, key, extra) + glued)
        head = c.recv_until(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        self.assertIn(("Sec-WebSocket-Accept: " + accept_for(key)).encode(), head)
        return c, head

    def wait_metric(self, t, name, value, timeout=5.0, **labels):
        return wait_until(lambda: t.metric(name, **labels) == value, timeout,
                          msg="%s%r == %r (now %r)" % (name, labels, value,
                                                       t.metric(name, **labels)))


# ---------------------------------------------------------------------------------------
# The upgrade


class Upgrade(WsTestCase):
    def test_forwards_websocket_headers_origin_cookies_and_subprotocols(self):
        up, t = self.echo_setup()

        async def go():
            async with ws_connect(t.ws_url("/headers?x=1"), origin="https://chat.example.com",
                                  subprotocols=["chat.v2", "chat.v1"],
                                  extra_headers={"Cookie": "token=abc; tether_affinity=z",
                                                 "X-Custom": "kept"}) as ws:
                seen = json.loads(await ws.recv())
                await ws.send("after")
                return seen, await ws.recv()

        seen, echoed = arun(go())
        self.assertEqual(echoed, "after")
        h = {}
        for k, v in seen:
            h.setdefault(k.lower(), []).append(v)
        self.assertEqual(h["origin"], ["https://chat.example.com"])
        self.assertEqual(h["cookie"], ["token=abc; tether_affinity=z"])
        self.assertEqual(h["sec-websocket-protocol"], ["chat.v2, chat.v1"])
        self.assertEqual(h["sec-websocket-version"], ["13"])
        self.assertEqual(len(h["sec-websocket-key"]), 1)
        self.assertEqual(h["x-custom"], ["kept"])
        self.assertEqual(h["upgrade"], ["websocket"])
        self.assertIn("upgrade", h["connection"][0].lower())
        self.assertEqual(h["host"], ["127.0.0.1:%d" % t.proxy_port])

    def test_subprotocol_chosen_by_backend_reaches_client(self):
        b = self.raw_backend(lambda conn, rest: time.sleep(0.2),
                             extra_headers=b"Sec-WebSocket-Protocol: chat.v1\r\n")
        t = self.tether([b])
        c, head = self.raw_upgrade(t, "/", extra=[("Sec-WebSocket-Protocol", "chat.v2, chat.v1")])
        self.assertIn(b"Sec-WebSocket-Protocol: chat.v1\r\n", head)
        self.assertIn("Sec-WebSocket-Protocol: chat.v2, chat.v1", b.heads[0])

    def _refused_then_http(self, status, reason):
        body = b'{"detail":"refused"}'
        refusal = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n" % (status, reason, len(body)) + body)

        def script(conn, rest):
            # The same upstream connection may carry the next request: answer it.
            buf = rest
            conn.settimeout(3)
            try:
                while b"\r\n\r\n" not in buf:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buf += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain")
            except socket.timeout:
                pass

        b = self.raw_backend(script, refuse=refusal)
        # A second backend connection for the next request lands in _serve without
        # Upgrade: answered 200 {"status": true}.
        t = self.tether([b])
        c = self.raw_client(t.proxy_port)
        c.send(upgrade_head("127.0.0.1:%d" % t.proxy_port, "/ws/socket.io/?EIO=4"))
        r = c.recv_response()
        self.assertIsNotNone(r, "no answer to the refused upgrade")
        self.assertEqual(r.status, status)
        self.assertEqual(r.body, body)
        self.assertNotEqual((header(r, "Upgrade") or "").lower(), "websocket")
        # The connection stays HTTP: a plain request on the same socket is answered.
        c.send(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
        r2 = c.recv_response()
        self.assertIsNotNone(r2, "the connection did not stay HTTP after a refused upgrade")
        self.assertEqual(r2.status, 200)
        self.assertIn(r2.body, (b"again", b'{"status": true}\n'))
        self.assertIn(t.metric("tether_websocket_upgrades_total", result="101"), (None, 0.0))
        self.assertIn(t.metric("tether_websocket_connections_active"), (None, 0.0))
        return t

    def test_refused_upgrade_403_is_relayed_and_connection_stays_http(self):
        self._refused_then_http(403, b"Forbidden")

    def test_refused_upgrade_400_is_relayed_and_connection_stays_http(self):
        self._refused_then_http(400, b"Bad Request")

    # BUG (proxy/session.cc): a refused upgrade is never counted. SPEC: the metric
    # tether_websocket_upgrades_total has result="101" or the refusing status.
    def test_refused_upgrade_is_counted_with_its_status(self):
        t = self._refused_then_http(403, b"Forbidden")
        self.wait_metric(t, "tether_websocket_upgrades_total", 1.0, timeout=1.0,
                         result="403")

    def test_ws_echo_426_for_plain_get_is_relayed(self):
        up, t = self.echo_setup()
        c = self.raw_client(t.proxy_port)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        r = c.recv_response()
        self.assertEqual(r.status, 426)

    def test_frame_glued_to_upgrade_request_is_not_lost(self):
        up, t = self.echo_setup()
        first = frame(OP_TEXT, "glued to the request")
        second = frame(OP_BINARY, b"\x00\x01\x02")
        c, head = self.raw_upgrade(t, "/", glued=first + second)
        f1, f2 = recv_frame(c), recv_frame(c)
        self.assertEqual((f1.opcode, f1.payload), (OP_TEXT, b"glued to the request"))
        self.assertEqual((f2.opcode, f2.payload), (OP_BINARY, b"\x00\x01\x02"))

    def test_frame_in_same_segment_as_101_is_not_lost(self):
        hello = frame(OP_TEXT, "hello from the backend", mask=False)
        got = []

        def script(conn, rest):
            fs, _ = read_frames_from_socket(conn, rest, 1)
            got.extend(fs)
            if fs:
                conn.sendall(frame(OP_TEXT, b"echo:" + fs[0].payload, mask=False))
            time.sleep(0.3)

        b = self.raw_backend(script, first_bytes=hello)
        t = self.tether([b])
        c, head = self.raw_upgrade(t, "/")
        f = recv_frame(c)
        self.assertIsNotNone(f, "the frame sent with the 101 was lost")
        self.assertEqual((f.opcode, f.payload), (OP_TEXT, b"hello from the backend"))
        c.send(frame(OP_TEXT, "x"))
        f = recv_frame(c)
        self.assertEqual(f.payload if f else None, b"echo:x")

    def test_both_glued_directions_at_once(self):
        hello = frame(OP_TEXT, "server-first", mask=False)
        got = []

        def script(conn, rest):
            fs, _ = read_frames_from_socket(conn, rest, 1)
            got.extend(fs)
            time.sleep(0.3)

        b = self.raw_backend(script, first_bytes=hello)
        t = self.tether([b])
        c, head = self.raw_upgrade(t, "/", glued=frame(OP_TEXT, "client-first"))
        f = recv_frame(c)
        self.assertEqual(f.payload if f else None, b"server-first")
        wait_until(lambda: got, 3, msg="backend got the glued client frame")
        self.assertEqual(got[0].payload, b"client-first")


# ---------------------------------------------------------------------------------------
# Echo


class Echo(WsTestCase):
    SIZES = [0, 1, 125, 126, 127, 65535, 65536, 65537, 1 << 20, 16 << 20]

    def test_echo_text_and_binary_from_0_bytes_to_16_mib(self):
        up, t = self.echo_setup()

        async def go():
            async with ws_connect(t.ws_url("/")) as ws:
                for n in self.SIZES:
                    data = os.urandom(n)
                    await ws.send(data)
                    self.assertEqual(await ws.recv(), data, "binary %d bytes" % n)
                    text = ("é" * (n // 2))[: max(0, n // 2)]
                    await ws.send(text)
                    self.assertEqual(await ws.recv(), text, "text %d chars" % len(text))

        arun(go(), timeout=120)

    def test_fragmented_message_from_raw_frames_with_ping_in_between(self):
        up, t = self.echo_setup()
        c, _ = self.raw_upgrade(t, "/")
        c.send(frame(OP_TEXT, "Hel", fin=False))
        c.send(frame(OP_PING, "p1"))                  # control frames may interleave
        c.send(frame(OP_CONT, "lo ", fin=False) + frame(OP_CONT, "world", fin=True))
        f = recv_frame(c)
        self.assertEqual((f.opcode, f.payload), (OP_PONG, b"p1"))
        f = recv_frame(c)
        self.assertEqual((f.fin, f.opcode, f.payload), (True, OP_TEXT, b"Hello world"))
        # Binary, fragments split byte by byte across writes.
        data = frame(OP_BINARY, b"\x01" * 300, fin=False) + frame(OP_CONT, b"\x02" * 70000)
        for i in range(0, len(data), 997):
            c.send(data[i:i + 997])
        f = recv_frame(c)
        self.assertEqual((f.opcode, f.payload), (OP_BINARY, b"\x01" * 300 + b"\x02" * 70000))

    def test_fragmented_message_from_websockets_iterable(self):
        up, t = self.echo_setup()

        async def go():
            async with ws_connect(t.ws_url("/")) as ws:
                await ws.send(["frag", "mented ", "text"])
                self.assertEqual(await ws.recv(), "fragmented text")
                await ws.send([b"\x00" * 10, b"\x01" * 100000, b""])
                self.assertEqual(await ws.recv(), b"\x00" * 10 + b"\x01" * 100000)

        arun(go())

    def test_ping_from_client_gets_pong_through_tether(self):
        up, t = self.echo_setup()

        async def go():
            async with ws_connect(t.ws_url("/")) as ws:
                for i in range(3):
                    waiter = await ws.ping(b"ping-%d" % i)
                    await asyncio.wait_for(waiter, 3)
                await ws.send("still works")
                return await ws.recv()

        self.assertEqual(arun(go()), "still works")

    def test_ping_from_backend_gets_pong_from_client(self):
        up, t = self.echo_setup(ping_interval=0.2)
        c, _ = self.raw_upgrade(t, "/")
        f = recv_frame(c, timeout=3)
        self.assertIsNotNone(f, "no ping from the backend")
        self.assertEqual(f.opcode, OP_PING)
        c.send(frame(OP_PONG, f.payload))
        # Answered pings keep the backend happy (its ping_timeout is 0.2 s too).
        f = recv_frame(c, timeout=3)
        self.assertEqual(f.opcode if f else None, OP_PING)
        c.send(frame(OP_PONG, f.payload) + frame(OP_TEXT, "x"))
        for _ in range(5):
            f = recv_frame(c, timeout=3)
            if f is None or f.opcode != OP_PING:
                break
            c.send(frame(OP_PONG, f.payload))
        self.assertEqual((f.opcode, f.payload) if f else None, (OP_TEXT, b"x"))

    def test_client_close_code_reaches_backend(self):
        up, t = self.echo_setup()
        # Raw: the backend (websockets) echoes the close frame it received, reason
        # included; tether never sees the reason, so an echo proves delivery.
        c, _ = self.raw_upgrade(t, "/")
        c.send(frame(OP_CLOSE, close_payload(4001, "client-bye")))
        f = recv_frame(c)
        self.assertEqual((f.opcode, f.payload), (OP_CLOSE, close_payload(4001, "client-bye")))
        self.assertTrue(c.is_closed(3), "tunnel not closed after the close handshake")
        c.close()   # tether passed the backend's FIN on; the tunnel ends with ours
        self.wait_metric(t, "tether_websocket_closes_total", 1.0, code="4001", by="client")

        async def go():
            async with ws_connect(t.ws_url("/")) as ws:
                await ws.send("x")
                await ws.recv()
                await ws.close(4002, "again")
                return ws.close_code, ws.close_reason

        self.assertEqual(arun(go()), (4002, "again"))
        self.wait_metric(t, "tether_websocket_closes_total", 1.0, code="4002", by="client")

    def test_backend_close_code_reaches_client(self):
        up, t = self.echo_setup()

        async def go(path, send=None):
            async with ws_connect(t.ws_url(path)) as ws:
                if send:
                    await ws.send(send)
                rcvd = await until_closed(ws)
                return rcvd.code if rcvd else None, rcvd.reason if rcvd else None

        self.assertEqual(arun(go("/close/4002")), (4002, "bye"))
        self.assertEqual(arun(go("/", "close:4003")), (4003, "asked"))
        self.assertEqual(arun(go("/?close=1011", "one")), (1011, "bye"))
        self.wait_metric(t, "tether_websocket_closes_total", 1.0, code="4002", by="backend")
        self.wait_metric(t, "tether_websocket_closes_total", 1.0, code="4003", by="backend")
        self.wait_metric(t, "tether_websocket_closes_total", 1.0, code="1011", by="backend")

    def test_200_concurrent_sockets_each_echo(self):
        up, t = self.echo_setup()
        n, rounds = 200, 5

        async def one(i, ready, go_event):
            async with ws_connect(t.ws_url("/"), open_timeout=20) as ws:
                ready.append(i)
                await go_event.wait()
                for r in range(rounds):
                    msg = "sock %d round %d" % (i, r)
                    await ws.send(msg)
                    if await ws.recv() != msg:
                        return False
                return True

        async def go():
            ready, go_event = [], asyncio.Event()
            sem = asyncio.Semaphore(50)    # bounded connect burst on 2 cores

            async def gated(i):
                async with sem:
                    pass
                return await one(i, ready, go_event)

            tasks = [asyncio.create_task(gated(i)) for i in range(n)]
            for _ in range(600):
                if len(ready) == n or any(tk.done() for tk in tasks):
                    break
                await asyncio.sleep(0.05)
            active = t.metric("tether_websocket_connections_active")
            go_event.set()
            return active, await asyncio.gather(*tasks)

        active, results = arun(go(), timeout=90)
        self.assertEqual(active, float(n))
        self.assertEqual(results.count(True), n)
        self.wait_metric(t, "tether_websocket_connections_active", 0.0, timeout=10)
        self.assertEqual(t.metric("tether_websocket_upgrades_total", result="101"), float(n))


# ---------------------------------------------------------------------------------------
# Half-close and idle


class HalfCloseAndIdle(WsTestCase):
    def test_client_half_close_lets_backend_finish(self):
        # Client sends a frame and shuts its write side; the backend sees EOF after
        # the frame and can still answer before closing.
        seen = []

        def script(conn, rest):
            fs, buf = read_frames_from_socket(conn, rest, 1)
            seen.extend(fs)
            more, _ = read_frames_from_socket(conn, buf, 1, timeout=3)
            seen.append("eof" if not more else "more")
            conn.sendall(frame(OP_TEXT, b"after your eof", mask=False))
            time.sleep(0.1)
            conn.shutdown(socket.SHUT_WR)

        b = self.raw_backend(script)
        t = self.tether([b])
        c, _ = self.raw_upgrade(t, "/")
        c.send(frame(OP_TEXT, "last words"))
        c.shutdown_write()
        f = recv_frame(c)
        self.assertEqual(f.payload if f else None, b"after your eof")
        self.assertTrue(c.is_closed(3))
        self.assertEqual([s if isinstance(s, str) else s.payload for s in seen],
                         [b"last words", "eof"])
        self.wait_metric(t, "tether_websocket_connections_active", 0.0)

    def test_backend_half_close_lets_client_finish(self):
        seen = []

        def script(conn, rest):
            conn.sendall(frame(OP_TEXT, b"bye soon", mask=False))
            conn.shutdown(socket.SHUT_WR)
            fs, _ = read_frames_from_socket(conn, rest, 1, timeout=3)
            seen.extend(fs)

        b = self.raw_backend(script)
        t = self.tether([b])
        c, _ = self.raw_upgrade(t, "/")
        f = recv_frame(c)
        self.assertEqual(f.payload if f else None, b"bye soon")
        self.assertTrue(c.is_closed(2), "the backend's FIN was not passed on")
        c.send(frame(OP_TEXT, "client still talks"))
        wait_until(lambda: seen, 3, msg="backend got the client's frame after its FIN")
        self.assertEqual(seen[0].payload, b"client still talks")
        c.shutdown_write()
        self.assertTrue(c.is_closed(3))
        self.wait_metric(t, "tether_websocket_connections_active", 0.0)

    def test_tunnel_idle_timeout_closes_idle_socket_keeps_pinging_one(self):
        up, t = self.echo_setup(cfg(timeouts={"tunnel_idle": "1s"}))

        async def idle():
            async with ws_connect(t.ws_url("/")) as ws:
                start = time.monotonic()
                try:
                    await asyncio.wait_for(ws.recv(), 5)
                except websockets.ConnectionClosed:
                    return time.monotonic() - start
                except asyncio.TimeoutError:
                    return None

        async def pinging():
            async with ws_connect(t.ws_url("/"), ping_interval=0.3, ping_timeout=2) as ws:
                await asyncio.sleep(2.5)
                await ws.send("alive")
                return await asyncio.wait_for(ws.recv(), 3)

        async def both():
            return await asyncio.gather(idle(), pinging())

        took, answer = arun(both(), timeout=20)
        self.assertIsNotNone(took, "an idle tunnel was not closed after tunnel_idle=1s")
        self.assertGreater(took, 0.8)
        self.assertLess(took, 3.0)
        self.assertEqual(answer, "alive")
        self.wait_metric(t, "tether_websocket_closes_total", 1.0, by="tether")


# ---------------------------------------------------------------------------------------
# Metrics


class Metrics(WsTestCase):
    def test_upgrade_active_messages_and_closes_are_exact(self):
        up, t = self.echo_setup()
        be = backend_label(up)

        async def go():
            async with ws_connect(t.ws_url("/")) as ws1, ws_connect(t.ws_url("/")) as ws2:
                await asyncio.sleep(0.1)
                active = t.metric("tether_websocket_connections_active", backend=be)
                for i in range(7):
                    await ws1.send("m%d" % i)
                    await ws1.recv()
                for i in range(3):
                    await ws2.send(b"b%d" % i)
                    await ws2.recv()
                await ws1.ping()
                await ws2.send(["frag", "ment"])      # one message in two frames
                await ws2.recv()
                await ws1.close(4005)
                return active

        active = arun(go())
        self.assertEqual(active, 2.0)
        self.wait_metric(t, "tether_websocket_connections_active", 0.0, backend=be)
        self.assertEqual(t.metric("tether_websocket_upgrades_total", backend=be, result="101"),
                         2.0)
        # 7 + 3 + 1 each way; pings, pongs and close frames are not messages.
        self.assertEqual(t.metric("tether_websocket_messages_total", backend=be,
                                  direction="upstream"), 11.0)
        self.assertEqual(t.metric("tether_websocket_messages_total", backend=be,
                                  direction="downstream"), 11.0)
        self.assertEqual(t.metric("tether_websocket_closes_total", backend=be, code="4005",
                                  by="client"), 1.0)
        self.assertEqual(t.metric("tether_websocket_closes_total", backend=be, code="1000",
                                  by="client"), 1.0)
        self.assertEqual(t.metric("tether_websocket_duration_seconds_count", backend=be), 2.0)

    def test_raw_fragmented_message_counts_once(self):
        up, t = self.echo_setup()
        c, _ = self.raw_upgrade(t, "/")
        c.send(frame(OP_TEXT, "a", fin=False) + frame(OP_PING, "") +
               frame(OP_CONT, "b", fin=False) + frame(OP_CONT, "c"))
        self.assertEqual(recv_frame(c).opcode, OP_PONG)
        self.assertEqual(recv_frame(c).payload, b"abc")
        self.wait_metric(t, "tether_websocket_messages_total", 1.0, direction="upstream")
        self.wait_metric(t, "tether_websocket_messages_total", 1.0, direction="downstream")
        c.close()
        # Gone without a close frame: counted with code "none" (or 1006) by the client.
        self.wait_metric(t, "tether_websocket_connections_active", 0.0)
        closes = {dict(l).get("code"): v for (n, l), v in t.metrics().items()
                  if n == "tether_websocket_closes_total" and dict(l).get("by") == "client"}
        self.assertEqual(sum(closes.values()), 1.0, closes)


# ---------------------------------------------------------------------------------------
# Shutdown and drain


class Shutdown(WsTestCase):
    def test_sigterm_closes_50_sockets_with_1001_and_exits_0(self):
        up, t = self.echo_setup()
        n = 50

        async def go():
            socks = []
            for i in range(n):
                socks.append(await ws_connect(t.ws_url("/"), close_timeout=10))
            for ws in socks[:5]:
                await ws.send("before")
                assert await ws.recv() == "before"
            start = time.monotonic()
            t.signal(SIGTERM)

            async def wait_close(ws):
                rcvd = await until_closed(ws)
                return (rcvd.code if rcvd else None), time.monotonic() - start

            return await asyncio.gather(*(wait_close(ws) for ws in socks))

        res = arun(go(), timeout=30)
        codes = [c for c, _ in res]
        self.assertEqual(codes, [1001] * n)
        rc = t.wait_exit(timeout=10)
        self.assertEqual(rc, 0)
        # Each close handshake completes promptly: tether closes the TCP connection
        # once the client answered its close frame (RFC 6455 7.1.1: the server closes
        # first), instead of waiting out timeouts.websocket_close.
        slowest = max(d for _, d in res)
        self.assertLess(slowest, 3.0, "close handshakes took %.1fs" % slowest)

    def test_sigterm_spreads_closes_over_websocket_close_spread(self):
        up, t = self.echo_setup(cfg(timeouts={"websocket_close_spread": "1s"}))
        n = 20

        async def go():
            socks = [await ws_connect(t.ws_url("/"), close_timeout=10) for _ in range(n)]
            start = time.monotonic()
            t.signal(SIGTERM)

            async def wait_close(ws):
                rcvd = await until_closed(ws)
                return (rcvd.code if rcvd else None), time.monotonic() - start

            return await asyncio.gather(*(wait_close(ws) for ws in socks))

        res = arun(go(), timeout=30)
        self.assertEqual([c for c, _ in res], [1001] * n)
        times = sorted(d for _, d in res)
        # Not all at once: the first and the last close are most of the window apart.
        self.assertGreater(times[-1] - times[0], 0.5, times)
        self.assertLess(times[-1], 3.0, times)
        self.assertEqual(t.wait_exit(timeout=10), 0)

    def test_backend_going_down_closes_its_sockets_with_1001(self):
        a = self.start_ws_echo(name="a")
        t = self.tether([a], cfg(health={"interval": "200ms", "fall": 1, "timeout": "500ms"}))

        async def go():
            ws = await ws_connect(t.ws_url("/"))
            await ws.send("x")
            assert await ws.recv() == "x"
            # The backend still carries the socket, but its health check now fails.
            await ws.send("health:503")
            assert await ws.recv() == "health:503"
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed as e:
                return e.rcvd.code if e.rcvd else None
            return "open"

        self.assertEqual(arun(go(), timeout=15), 1001)

    def test_sigterm_sends_masked_1001_to_the_backend_too(self):
        got = []

        def script(conn, rest):
            read_and_answer_close(conn, rest, 1, got)

        b = self.raw_backend(script)
        t = self.tether([b])
        c, _ = self.raw_upgrade(t, "/")
        t.signal(SIGTERM)
        f = recv_frame(c)
        self.assertEqual((f.opcode, f.payload) if f else None, (OP_CLOSE, close_payload(1001)))
        self.assertFalse(f.masked)
        c.send(frame(OP_CLOSE, close_payload(1001)))
        self.assertTrue(c.is_closed(3), "tether did not close after the close handshake")
        self.assertEqual(t.wait_exit(timeout=5), 0)
        self.assertEqual(len(got), 1, "no close frame reached the backend")
        self.assertEqual((got[0].opcode, got[0].payload), (OP_CLOSE, close_payload(1001)))
        self.assertTrue(got[0].masked, "tether's close frame to the backend must be masked")

    def test_a_client_frame_in_flight_at_sigterm_ends_before_the_1001_to_the_backend(self):
        # The backend has half of a client frame when the drain starts: the other half
        # is forwarded when it comes, and only then the masked 1001, between frames.
        payload = os.urandom(20000)
        whole = frame(OP_BINARY, payload)
        half = threading.Event()
        got = []

        def script(conn, rest):
            buf = rest
            conn.settimeout(8)
            while len(buf) < 1000:
                buf += conn.recv(65536)
            half.set()
            read_and_answer_close(conn, buf, 2, got)

        b = self.raw_backend(script)
        t = self.tether([b])
        c, _ = self.raw_upgrade(t, "/")
        c.send(whole[:5000])
        self.assertTrue(half.wait(5), "the first half did not reach the backend")
        t.signal(SIGTERM)
        f = recv_frame(c)
        self.assertEqual((f.opcode, f.payload) if f else None, (OP_CLOSE, close_payload(1001)))
        c.send(whole[5000:])
        c.send(frame(OP_CLOSE, close_payload(1001)))
        self.assertTrue(c.is_closed(5), "tether did not close after the close handshake")
        self.assertEqual(t.wait_exit(timeout=5), 0)
        self.assertEqual([(g.opcode, len(g.payload)) for g in got],
                         [(OP_BINARY, len(payload)), (OP_CLOSE, 2)])
        self.assertEqual(got[0].payload, payload, "the frame in flight arrived whole")
        self.assertEqual(got[1].payload, close_payload(1001))
        self.assertTrue(got[1].masked)

    def test_a_backend_frame_in_flight_at_sigterm_reaches_the_client_whole_then_the_1001(self):
        # The client has half of a backend frame when the drain starts: it gets the
        # rest, then tether's 1001, instead of a frame cut off by a closed connection.
        payload = os.urandom(20000)
        whole = frame(OP_BINARY, payload, mask=False)
        go = threading.Event()
        got = []

        def script(conn, rest):
            conn.sendall(whole[:5000])
            if not go.wait(8):
                return
            conn.sendall(whole[5000:])
            read_and_answer_close(conn, rest, 1, got)

        b = self.raw_backend(script)
        t = self.tether([b])
        c, _ = self.raw_upgrade(t, "/")
        while len(c.buffer) < 1000 and c._recv_some(time.monotonic() + 5):  # noqa: SLF001
            pass
        self.assertGreaterEqual(len(c.buffer), 1000, "the first half did not reach the client")
        t.signal(SIGTERM)
        t.wait_log(msg="stopping", timeout=5)
        # The worker marks the tunnel going away right after: the rest of the frame
        # comes behind that (sent sooner, the test is only weaker, never wrong).
        time.sleep(0.2)
        go.set()
        f = recv_frame(c)
        self.assertEqual((f.opcode, len(f.payload)) if f else None, (OP_BINARY, len(payload)))
        self.assertEqual(f.payload, payload)
        f = recv_frame(c)
        self.assertEqual((f.opcode, f.payload) if f else None, (OP_CLOSE, close_payload(1001)))
        c.send(frame(OP_CLOSE, close_payload(1001)))
        self.assertTrue(c.is_closed(5), "tether did not close after the close handshake")
        self.assertEqual(t.wait_exit(timeout=5), 0)
        self.assertEqual([(g.opcode, g.payload) for g in got], [(OP_CLOSE, close_payload(1001))])
        self.assertTrue(got[0].masked)

    def test_frames_that_never_end_still_end_the_drain_within_websocket_close(self):
        # Each peer starts a frame of 2^40 bytes and keeps feeding it: no 1001 can go
        # between frames, none is put inside one, and websocket_close ends it all.
        def endless_header(mask):
            head = bytes([0x80 | OP_BINARY, (0x80 if mask else 0) | 127]) + (1 << 40).to_bytes(8, "big")
            return head + (b"\x01\x02\x03\x04" if mask else b"")

        stop, flowing = threading.Event(), threading.Event()
        got = bytearray()

        def script(conn, rest):
            got.extend(rest)
            conn.sendall(endless_header(False))
            conn.settimeout(0.05)
            while not stop.is_set():
                try:
                    conn.sendall(b"y" * 4096)
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                got.extend(chunk)
                if len(got) > 20000:
                    flowing.set()

        b = self.raw_backend(script)
        self.addCleanup(stop.set)
        t = self.tether([b], config=cfg(timeouts={"websocket_close": "1s", "shutdown_grace": "10s"}))
        c, _ = self.raw_upgrade(t, "/")
        c.send(endless_header(True))

        def feed():
            for _ in range(20000):  # bounded: 80 MiB at most
                if stop.is_set():
                    return
                try:
                    c.send(b"x" * 4096)
                except OSError:
                    return
        threading.Thread(target=feed, daemon=True).start()
        self.assertTrue(flowing.wait(5), "both frames are flowing")
        t0 = time.monotonic()
        t.signal(SIGTERM)
        self.assertEqual(t.wait_exit(timeout=8), 0)
        self.assertLess(time.monotonic() - t0, 4.0)
        stop.set()
        self.assertEqual(bytes(got[:14]), endless_header(True))
        self.assertEqual(set(got[14:]) - {ord("x")}, set(), "only the client frame's bytes reached the backend")

    def test_admin_drain_with_deadline_sends_1001_to_that_backends_sockets(self):
        a = self.start_ws_echo(name="a")
        b = self.start_ws_echo(name="b")
        t = self.tether([a, b])
        id_a = {x["url"]: x["id"] for x in t.backends_state()}[a.url]

        async def go():
            socks = []
            for i in range(8):
                ws = await ws_connect(t.ws_url("/id"))
                socks.append((await ws.recv(), ws))
            names = sorted(name for name, _ in socks)
            r = t.admin_post("/admin/backends/%d/drain?deadline=500ms" % id_a)
            start = time.monotonic()

            async def watch(name, ws):
                try:
                    await asyncio.wait_for(ws.recv(), 2.5)
                    return name, "message", None
                except websockets.ConnectionClosed as e:
                    return name, (e.rcvd.code if e.rcvd else None), time.monotonic() - start
                except asyncio.TimeoutError:
                    try:
                        await ws.send("still here")
                        return name, await ws.recv(), None
                    except websockets.ConnectionClosed as e:
                        return name, ("late", e.rcvd.code if e.rcvd else None), None

            res = await asyncio.gather(*(watch(n_, ws) for n_, ws in socks))
            for _, ws in socks:
                await ws.close()
            return r, names, res

        r, names, res = arun(go(), timeout=30)
        self.assertEqual(r.status, 200, r.body)
        self.assertIn("a", names)
        self.assertIn("b", names)
        for name, outcome, when in res:
            if name == "a":
                self.assertEqual(outcome, 1001)
                self.assertGreaterEqual(when, 0.4)
                self.assertLess(when, 2.0)
            else:
                self.assertEqual(outcome, "still here")
        # New sockets go to b only.
        async def fresh():
            async with ws_connect(t.ws_url("/id")) as ws:
                return await ws.recv()
        self.assertEqual(arun(fresh()), "b")


# ---------------------------------------------------------------------------------------
# Limits and memory


class LimitsAndMemory(WsTestCase):
    def test_upgrade_past_per_backend_cap_gets_503(self):
        up, t = self.echo_setup(cfg(limits={"max_connections_per_backend": 2,
                                            "queue_timeout": "500ms"}))

        async def go():
            a = await ws_connect(t.ws_url("/"))
            b = await ws_connect(t.ws_url("/"))
            try:
                try:
                    c = await ws_connect(t.ws_url("/"))
                except websockets.InvalidStatusCode as e:
                    return e.status_code
                await c.close()
                return 101
            finally:
                await a.close()
                await b.close()

        self.assertEqual(arun(go()), 503)
        # Once a tunnel is gone there is room again.
        self.wait_metric(t, "tether_websocket_connections_active", 0.0)

        async def again():
            async with ws_connect(t.ws_url("/")) as ws:
                await ws.send("ok")
                return await ws.recv()
        self.assertEqual(arun(again()), "ok")

    def test_max_connections_counts_open_tunnels(self):
        up, t = self.echo_setup(cfg(limits={"max_connections": 2}))

        async def go():
            a = await ws_connect(t.ws_url("/"))
            b = await ws_connect(t.ws_url("/"))
            try:
                for ws in (a, b):  # both are tunnels now, not HTTP connections
                    await ws.send("up")
                    assert await ws.recv() == "up"
                try:
                    c = await ws_connect(t.ws_url("/"))
                except websockets.InvalidStatusCode as e:
                    refused = e.status_code
                else:
                    await c.close()
                    refused = 101
                # The open tunnels carry on.
                for ws in (a, b):
                    await ws.send("still")
                    assert await ws.recv() == "still"
                return refused
            finally:
                await a.close()
                await b.close()

        self.assertEqual(arun(go()), 503)
        # Once the tunnels are gone there is room again.
        self.wait_metric(t, "tether_websocket_connections_active", 0.0)

        async def again():
            async with ws_connect(t.ws_url("/")) as ws:
                await ws.send("ok")
                return await ws.recv()
        self.assertEqual(arun(again()), "ok")

    # SPEC: above max_connections_per_backend a request waits in a queue, up to queue_timeout.
    def test_upgrade_past_cap_waits_in_queue_for_a_free_slot(self):
        up, t = self.echo_setup(cfg(limits={"max_connections_per_backend": 1,
                                            "queue_timeout": "3s"}))

        async def go():
            first = await ws_connect(t.ws_url("/"))

            async def close_soon():
                await asyncio.sleep(0.5)
                await first.close()

            closer = asyncio.create_task(close_soon())
            try:
                async with ws_connect(t.ws_url("/"), open_timeout=5) as ws:
                    await ws.send("queued")
                    return await ws.recv()
            except websockets.InvalidStatusCode as e:
                return e.status_code
            finally:
                await closer

        self.assertEqual(arun(go()), "queued")

    @unittest.skipIf(os.environ.get("TETHER_SANITIZED"),
                     "resident memory under ASan is not tether's")
    def test_rss_per_idle_websocket_under_4_kib(self):
        up, t = self.echo_setup()
        n = 500
        pid = t.proc.pid

        async def go():
            # Warm up: pools, metric cells, allocator arenas.
            warm = [await ws_connect(t.ws_url("/")) for _ in range(20)]
            for ws in warm:
                await ws.send("w")
                await ws.recv()
            for ws in warm:
                await ws.close()
            await asyncio.sleep(0.3)
            before = rss_kib(pid)
            socks = []
            for i in range(n):
                ws = await ws_connect(t.ws_url("/"))
                socks.append(ws)
            for ws in socks[::50]:
                await ws.send("x")
                await ws.recv()
            await asyncio.sleep(0.3)
            active = t.metric("tether_websocket_connections_active")
            after = rss_kib(pid)
            for ws in socks:
                await ws.close()
            return before, after, active

        before, after, active = arun(go(), timeout=120)
        self.assertEqual(active, float(n))
        per_socket = (after - before) * 1024.0 / n
        sys_msg = "RSS %d KiB -> %d KiB: %.0f B per idle WebSocket" % (before, after, per_socket)
        print("\n" + sys_msg)
        self.assertLess(per_socket, 4096, sys_msg)


if __name__ == "__main__":
    unittest.main()
