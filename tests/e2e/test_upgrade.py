"""Binary upgrade (SIGUSR2) and reloads that change listeners, under load.

tether runs from a copy of the binary in a temporary directory, so that the file at
the path it was started from can be swapped (for a broken one). The test process is
a child subreaper: the new tether, orphaned when the old one exits, becomes its child,
so that its exit code is read too.

The backend (MixedBackend below) answers GET /id with keep-alive, streams
text/event-stream on /sse, and echoes WebSocket text frames; clients are raw sockets.
"""

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import stat
import tempfile
import threading
import time
import unittest

from harness import E2ETestCase, SIGTERM, run_tether, tether_bin, wait_until
from wsutil import OP_CLOSE, OP_TEXT, RawWsBackend, _parse, accept_for, frame, new_key

PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 3


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise unittest.SkipTest("prctl(PR_SET_CHILD_SUBREAPER) failed")


def wait_pid(pid, timeout):
    """Exit code of our (adopted) child pid, or AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            # Not adopted (the old process is still its parent): no exit code to read.
            if not os.path.exists("/proc/%d" % pid):
                return None
        else:
            if done == pid:
                return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    raise AssertionError("pid %d did not exit within %.1fs" % (pid, timeout))


def read_head(sock, buf):
    """(head text, rest) once buf plus what sock sends holds a whole head; None on EOF."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            return None
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


class MixedBackend(RawWsBackend):
    """GET /id and /health: 200 with keep-alive. GET /sse?n=N&ms=M: N events M ms apart,
    chunked. An upgrade: 101, then every text frame is echoed; a close frame is answered
    and the connection closed. (RawWsBackend's socket and accept loop, its own _serve.)"""

    def _serve(self, c):
        c.settimeout(60)
        buf = b""
        try:
            while True:
                got = read_head(c, buf)
                if got is None:
                    return
                head, buf = got
                lines = head.split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip()
                           for l in lines[1:] if ":" in l}
                if headers.get("upgrade", "").lower() == "websocket":
                    c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                               % accept_for(headers["sec-websocket-key"])).encode())
                    self._echo(c, buf)
                    return
                if path.startswith("/sse"):
                    m = re.search(r"n=(\d+)&ms=(\d+)", path)
                    n, ms = int(m.group(1)), int(m.group(2))
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n")
                    for i in range(n):
                        ev = b"data: %d\n\n" % i
                        c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
                        time.sleep(ms / 1000.0)
                    c.sendall(b"0\r\n\r\n")
                else:
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            pass
        finally:
            c.close()

    @staticmethod
    def _echo(c, buf):
        while True:
            f, used = _parse(buf)
            if f is None:
                data = c.recv(65536)
                if not data:
                    return
                buf += data
                continue
            buf = buf[used:]
            if f.opcode == OP_TEXT:
                c.sendall(frame(OP_TEXT, f.payload, mask=False))
            elif f.opcode == OP_CLOSE:
                c.sendall(frame(OP_CLOSE, f.payload, mask=False))
                return


class Load:
    """Keep-alive clients (and clients with a new connection per request) sending GET /id
    until stopped. A keep-alive connection the server closed before any byte of the
    response is retried on a new one, as HTTP clients do for idempotent requests;
    anything else that goes wrong is a failure, a refused connect is counted apart."""

    def __init__(self, port, keepalive=4, fresh=2):
        self.port = port
        self.ok = 0
        self.retried = 0
        self.failed = []
        self.refused = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(True,), daemon=True)
                         for _ in range(keepalive)]
        self._threads += [threading.Thread(target=self._run, args=(False,), daemon=True)
                          for _ in range(fresh)]
        for t in self._threads:
            t.start()

    def _connect(self):
        try:
            return socket.create_connection(("127.0.0.1", self.port), timeout=10)
        except ConnectionRefusedError:
            with self._lock:
                self.refused += 1
            return None

    def _run(self, keepalive):
        sock, buf = None, b""
        while not self._stop.is_set():
            if sock is None:
                sock, buf = self._connect(), b""
                if sock is None:
                    time.sleep(0.01)
                    continue
                reused = False
            try:
                sock.sendall(b"GET /id HTTP/1.1\r\nHost: t\r\n\r\n")
                got = read_head(sock, buf)
                if got is None:
                    raise ConnectionResetError("EOF before the response")
                head, rest = got
                while len(rest) < 2:
                    data = sock.recv(4096)
                    if not data:
                        raise AssertionError("EOF inside the body")
                    rest += data
                if not head.startswith("HTTP/1.1 200") or rest[:2] != b"ok":
                    raise AssertionError("bad answer %r" % head[:200])
                with self._lock:
                    self.ok += 1
                buf = rest[2:]
                reused = True
                if not keepalive or "connection: close" in head.lower():
                    sock.close()
                    sock = None
            except (ConnectionResetError, BrokenPipeError) as e:
                # Closed before any response byte: only a reused keep-alive connection
                # may be closed that way (the server closed it idle).
                sock.close()
                sock = None
                with self._lock:
                    if reused and b"" == buf:
                        self.retried += 1
                    else:
                        self.failed.append(repr(e))
            except (OSError, AssertionError) as e:
                sock.close()
                sock = None
                with self._lock:
                    self.failed.append(repr(e))
        if sock is not None:
            sock.close()

    def count(self):
        with self._lock:
            return self.ok

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(15)


class SseStream:
    def __init__(self, port, n, ms):
        self.events = 0
        self.complete = False
        self.error = None
        self.started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(port, n, ms), daemon=True)
        self._thread.start()

    def _run(self, port, n, ms):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(b"GET /sse?n=%d&ms=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (n, ms))
            head, body = read_head(s, b"")
            assert head.startswith("HTTP/1.1 200"), head
            while not body.endswith(b"0\r\n\r\n"):
                data = s.recv(65536)
                if not data:
                    raise AssertionError("EOF after %d events" % body.count(b"data: "))
                body += data
                if b"data: 0" in body:
                    self.started.set()
            self.events = body.count(b"data: ")
            self.complete = True
            s.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)
        finally:
            self.started.set()

    def join(self, timeout):
        self._thread.join(timeout)


class RawWs:
    """A client WebSocket on a raw socket."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        key = new_key()
        self.sock.sendall(("GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % key).encode())
        head, self.buf = read_head(self.sock, b"")
        assert head.startswith("HTTP/1.1 101"), head

    def next_frame(self, timeout=10):
        self.sock.settimeout(timeout)
        while True:
            f, used = _parse(self.buf)
            if f is not None:
                self.buf = self.buf[used:]
                return f
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data

    def echo(self, text):
        self.sock.sendall(frame(OP_TEXT, text))
        f = self.next_frame()
        return f.payload.decode() if f is not None and f.opcode == OP_TEXT else f

    def close(self):
        self.sock.close()


def upgrade_state(t):
    return json.loads(t.admin_get("/admin/upgrade").body)


def write_script(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, stat.S_IRWXU)
    os.rename(tmp, path)  # as a package upgrade replaces a binary


class UpgradeBase(E2ETestCase):
    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix="tether-upgrade-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.binary = os.path.join(self.dir, "tether")
        shutil.copy2(tether_bin(), self.binary)
        self.backend = MixedBackend()
        self.backend.sock.listen(256)
        self.addCleanup(self.backend.stop)

    def config(self, **more):
        cfg = {"timeouts": {"shutdown_grace": "%ds" % GRACE_S, "websocket_close": "1s"},
               "health": {"interval": "200ms", "rise": 1, "fall": 1, "timeout": "500ms"}}
        cfg.update(more)
        return cfg

    def start(self, **kw):
        kw.setdefault("config", self.config())
        t = self.start_tether(binary=self.binary, backends=[self.backend.url], **kw)
        wait_until(lambda: t.admin_get("/readyz").status == 200, 10, msg="ready")
        return t

    def adopt(self, pid):
        """The new process outlives the old one: stop it (SIGTERM) at the end, and check
        that it exits 0."""
        def stop():
            try:
                os.kill(pid, SIGTERM)
            except ProcessLookupError:
                return
            try:
                code = wait_pid(pid, 20)
            except AssertionError:
                os.kill(pid, signal.SIGKILL)
                wait_pid(pid, 5)
                raise
            if code is not None:
                self.assertEqual(code, 0, "the new process's exit code")
        self.addCleanup(stop)

    def upgrade(self, t, sig=signal.SIGUSR2, config=None):
        """Sends sig (with config written first) and waits for the hand-over; returns
        the new pid."""
        mark = len(t.logs)
        if config is not None:
            t.write_config(config)
        t.signal(sig)
        rec = t.wait_log(msg="upgrade: new process ready, handing over", timeout=20, start=mark)
        pid = rec["pid"]
        self.adopt(pid)
        return pid, mark


class Upgrade(UpgradeBase):
    @classmethod
    def setUpClass(cls):
        become_subreaper()

    def test_upgrade_under_load_refuses_nothing_and_drains_the_old_process(self):
        t = self.start(config=self.config(workers=2))
        old_pid = t.proc.pid
        self.assertEqual(upgrade_state(t)["pid"], old_pid)
        load = Load(t.proxy_port)
        self.addCleanup(load.stop)
        wait_until(lambda: load.count() >= 50, 10, msg="load running")
        streams = [SseStream(t.proxy_port, n=20, ms=100) for _ in range(3)]  # 2 s each
        for s in streams:
            self.assertTrue(s.started.wait(5))
        old_ws = [RawWs(t.proxy_port) for _ in range(3)]
        for i, ws in enumerate(old_ws):
            self.assertEqual(ws.echo("before %d" % i), "before %d" % i)

        new_pid, mark = self.upgrade(t)
        handed_at = time.monotonic()
        self.assertNotEqual(new_pid, old_pid)
        # The admin socket went over too: the new process answers it, at the same port.
        wait_until(lambda: upgrade_state(t)["pid"] == new_pid, 5,
                   msg="admin answered by the new process")
        # Each old worker stops accepting on its own loop, a moment after the hand-over:
        # a connection accepted until then is the old one's (not lost: it drains).
        wait_until(lambda: len(t.find_logs("listeners closed")) >= 2, 10,
                   msg="the old workers' listeners closed")
        new_ws = RawWs(t.proxy_port)
        self.assertEqual(new_ws.echo("new"), "new")
        before = load.count()
        wait_until(lambda: load.count() >= before + 100, 10, msg="load after the hand-over")

        # The old process still carries its WebSockets, until its grace ends.
        for i, ws in enumerate(old_ws):
            self.assertEqual(ws.echo("during %d" % i), "during %d" % i)
        for s in streams:
            s.join(15)
            self.assertIsNone(s.error)
            self.assertTrue(s.complete)
            self.assertEqual(s.events, 20)
        for ws in old_ws:
            f = ws.next_frame(timeout=GRACE_S + 5)
            self.assertIsNotNone(f, "closed without a close frame")
            self.assertEqual((f.opcode, f.payload[:2]), (OP_CLOSE, b"\x03\xe9"))  # 1001
            ws.sock.sendall(frame(OP_CLOSE, f.payload[:2]))
            ws.close()
        self.assertGreaterEqual(time.monotonic() - handed_at, GRACE_S - 0.5)
        self.assertEqual(t.proc.wait(timeout=10), 0, "the old process's exit code")

        # The new process serves on: the WebSocket opened after the hand-over, the load.
        self.assertEqual(new_ws.echo("after"), "after")
        new_ws.close()
        before = load.count()
        wait_until(lambda: load.count() >= before + 100, 10, msg="load after the old exit")
        load.stop()
        self.assertEqual(load.failed, [])
        self.assertEqual(load.refused, 0)
        self.assertGreater(load.ok, 300)
        self.assertEqual(t.find_logs("upgrade failed: the running process keeps serving"), [])

    def test_rfc_8441_tunnels_run_until_the_grace_then_close_as_http_1_1_ones(self):
        # As the old process's HTTP/1.1 WebSockets: carried until shutdown_grace,
        # then a 1001, then websocket_close for the close handshake (the
        # client here never answers) before the stream ends.
        from h2util import H2Client, require_h2
        require_h2()
        t = self.start(config=self.config(http2={"websockets": True}))
        c = H2Client(t.proxy_port)
        self.addCleanup(c.close)
        sid = c.request("CONNECT", "/ws", headers=[(":protocol", "websocket"),
                                                   ("sec-websocket-version", "13")], end=False)
        r = c.responses[sid]
        self.assertTrue(c.until(lambda: r.status is not None or r.reset is not None, 10))
        self.assertEqual((r.status, r.reset), (200, None))
        have = [0]

        def next_frame(timeout):
            def parsed():
                return _parse(bytes(r.body[have[0]:]))[0] is not None
            c.until(lambda: parsed() or r.reset is not None, timeout)
            f, used = _parse(bytes(r.body[have[0]:]))
            self.assertIsNotNone(f, "a WebSocket frame (reset %r, closed %r)" % (r.reset, c.closed))
            have[0] += used
            return f

        c.send_data(sid, frame(OP_TEXT, "before"), end=False)
        self.assertEqual(next_frame(5).payload, b"before")
        new_pid, mark = self.upgrade(t)
        handed_at = time.monotonic()
        c.send_data(sid, frame(OP_TEXT, "during"), end=False)
        self.assertEqual(next_frame(5).payload, b"during")
        f = next_frame(GRACE_S + 5)
        self.assertEqual((f.opcode, f.payload[:2]), (OP_CLOSE, b"\x03\xe9"))  # 1001
        told_at = time.monotonic()
        self.assertGreaterEqual(told_at - handed_at, GRACE_S - 0.5)
        self.assertTrue(c.until(lambda: r.reset is not None or c.closed, 10), "the stream ends")
        self.assertGreater(time.monotonic() - told_at, 0.7)  # websocket_close: 1s
        self.assertIn(r.reset, (None, 0))
        self.assertEqual(t.proc.wait(timeout=10), 0, "the old process's exit code")

    def test_sighup_with_a_new_listener_and_workers_hands_over(self):
        cfg = self.config(listeners=[{"address": "127.0.0.1:0"}])
        t = self.start(config=cfg, listen=[])
        first = t.proxy_port
        load = Load(first, keepalive=2, fresh=1)
        self.addCleanup(load.stop)
        wait_until(lambda: load.count() >= 20, 10, msg="load running")
        cfg = self.config(workers=2, listeners=[{"address": "127.0.0.1:0"},
                                                {"address": "127.0.0.1:0"}])
        new_pid, mark = self.upgrade(t, signal.SIGHUP, config=cfg)
        t.wait_log(msg="reload: listeners, workers or the admin address changed: upgrading")
        ports = [t._port_of(r["address"]) for r in t.logs[mark:]
                 if r.get("msg") == "listening" and r.get("kind") == "proxy"]
        self.assertEqual(len(ports), 2, ports)
        self.assertEqual(ports[0], first)  # the same socket
        started = t.wait_log(msg="started", pid=new_pid, start=mark)
        self.assertEqual(started["workers"], 2)
        for port in ports:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /id HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            head, _ = read_head(s, b"")
            self.assertTrue(head.startswith("HTTP/1.1 200"), head)
            s.close()
        self.assertEqual(t.proc.wait(timeout=GRACE_S + 10), 0)
        # POST /admin/reload goes the same way, and says so.
        cfg["listeners"] = cfg["listeners"][:1]
        t.write_config(cfg)
        mark = len(t.logs)
        r = t.admin_post("/admin/reload")
        self.assertEqual(r.status, 202, r)
        body = json.loads(r.body)
        self.assertEqual((body["reloaded"], body["upgrading"]), (False, True))
        rec = t.wait_log(msg="upgrade: new process ready, handing over", timeout=20, start=mark)
        self.assertEqual(rec["pid"], body["pid"])
        self.adopt(rec["pid"])
        before = load.count()
        wait_until(lambda: load.count() >= before + 50, 10, msg="load after the old exit")
        load.stop()
        self.assertEqual((load.failed, load.refused), ([], 0))


class FailedUpgrade(UpgradeBase):
    def serves(self, t, n=20):
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=5)
            s.sendall(b"GET /id HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            head, _ = read_head(s, b"")
            self.assertTrue(head.startswith("HTTP/1.1 200"), head)
            s.close()

    def failed(self, t, mark, error_re):
        rec = t.wait_log(msg="upgrade failed: the running process keeps serving", timeout=15,
                         start=mark)
        self.assertRegex(rec["error"], error_re)
        return rec

    def test_a_broken_binary_or_configuration_leaves_the_old_process_serving(self):
        t = self.start(config=self.config(timeouts={"shutdown_grace": "3s", "upgrade": "1s"}))
        load = Load(t.proxy_port, keepalive=2, fresh=1)
        self.addCleanup(load.stop)
        ws = RawWs(t.proxy_port)
        self.assertEqual(ws.echo("a"), "a")
        real = self.binary + ".real"
        shutil.copy2(self.binary, real)

        # A binary that exits at once.
        write_script(self.binary, "#!/bin/sh\necho 'broken binary' >&2\nexit 1\n")
        mark = len(t.logs)
        t.signal(signal.SIGUSR2)
        self.failed(t, mark, "exited with status 1")
        self.assertEqual(t.metric("tether_upgrades_total", result="failed"), 1)

        # One that crashes.
        write_script(self.binary, "#!/bin/sh\nkill -SEGV $$\n")
        mark = len(t.logs)
        t.signal(signal.SIGUSR2)
        self.failed(t, mark, "killed by signal 11")

        # One that never reports ready: killed once timeouts.upgrade has passed.
        write_script(self.binary, "#!/bin/sh\nexec sleep 60\n")
        mark = len(t.logs)
        t.signal(signal.SIGUSR2)
        self.failed(t, mark, "not ready within 1000 ms")

        # The real binary, but the configuration no longer validates.
        os.rename(real, self.binary)
        t.write_config("listeners: 42\n")
        mark = len(t.logs)
        t.signal(signal.SIGUSR2)
        self.failed(t, mark, "exited with status 1")
        self.assertEqual(t.metric("tether_upgrades_total", result="failed"), 4)
        self.assertEqual(t.metric("tether_upgrades_total", result="ok"), 0)

        self.assertTrue(t.running)
        self.serves(t)
        self.assertEqual(ws.echo("b"), "b")
        ws.close()
        load.stop()
        self.assertEqual((load.failed, load.refused), ([], 0))
        self.assertEqual(upgrade_state(t)["state"], "idle")

    def test_a_second_sigusr2_during_an_upgrade_is_refused(self):
        t = self.start(config=self.config(timeouts={"upgrade": "2s"}))
        write_script(self.binary, "#!/bin/sh\nexec sleep 60\n")
        mark = len(t.logs)
        t.signal(signal.SIGUSR2)
        t.wait_log(msg="upgrade: new process started", start=mark)
        self.assertEqual(upgrade_state(t)["state"], "starting")
        t.signal(signal.SIGUSR2)
        t.wait_log(msg="upgrade refused: one is in progress", start=mark)
        t.signal(signal.SIGHUP)
        t.wait_log(msg="reload refused: an upgrade is in progress", start=mark)
        self.failed(t, mark, "not ready within 2000 ms")
        self.assertEqual(len(t.find_logs("upgrade: new process started")), 1)
        self.serves(t, 5)
        self.assertEqual(t.stop(), 0)


class HostileEnvironment(E2ETestCase):
    """The upgrade variables come from the environment: what does not hold is refused
    with its reason (exit 3), whatever the value."""

    def refused(self, env, reason):
        r = run_tether(["-l", "127.0.0.1:0", "--admin", "127.0.0.1:0", "-b",
                        "http://127.0.0.1:9", "--log-format", "json"], env=env)
        self.assertEqual(r.returncode, 3, r)
        self.assertIn("cannot start", r.stderr)
        self.assertIn(reason, r.stderr)

    def test_bad_upgrade_variables_stop_the_start(self):
        self.refused({"TETHER_UPGRADE_FDS": ""}, "TETHER_UPGRADE_FDS: empty")
        self.refused({"TETHER_UPGRADE_FDS": "proxy:127.0.0.1:0=1"}, "descriptor is a decimal")
        self.refused({"TETHER_UPGRADE_FDS": "proxy:127.0.0.1:0=77"}, "descriptor 77: Bad file")
        self.refused({"TETHER_UPGRADE_FDS": "proxy:127.0.0.1:0=2147483648"},
                     "descriptor is a decimal")
        self.refused({"TETHER_UPGRADE_FDS": "ssh:127.0.0.1:0=4"}, "kind is proxy or admin")
        self.refused({"TETHER_UPGRADE_READY_FD": "0"}, "TETHER_UPGRADE_READY_FD")
        self.refused({"TETHER_UPGRADE_READY_FD": "77"}, "TETHER_UPGRADE_READY_FD: descriptor 77")


if __name__ == "__main__":
    unittest.main()
