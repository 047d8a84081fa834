"""The access log end to end (README, "Access log"): its own stream, independent of
log.level; stdout or access_log.path; buffered per worker and flushed when full, every
access_log.flush and at exit; a full destination blocks instead of dropping; SIGUSR1
reopens the file; every field present and typed. And POST /admin/log?level=.
"""

import fcntl
import http.client
import json
import os
import re
import select
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (E2ETestCase, free_port, http_get, http_request, require_program, run_tether,
                     wait_until)

FAST_HEALTH = {"interval": "200ms", "timeout": "1s", "rise": 1}
TOKEN = "access-log-admin-token"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


def read_lines(path):
    """Complete lines of a file (a trailing partial line is returned too: the tests
    check that there is none)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    return data.decode("utf-8", "replace").splitlines(keepends=True)


def records_of(path):
    return [json.loads(line) for line in read_lines(path)]


def wait_ready(t, timeout=10.0):
    wait_until(lambda: t.admin_get("/readyz").status == 200, timeout, msg="/readyz 200")


class AccessLogBase(E2ETestCase):
    def setUp(self):
        self.up = self.start_http_upstream(name="a")
        self.dir = tempfile.mkdtemp(prefix="tether-access-")

    def tether(self, access_log=None, config=None, **kw):
        cfg = {"health": dict(FAST_HEALTH)}
        if access_log is not None:
            cfg["access_log"] = access_log
        cfg.update(config or {})
        t = self.start_tether(backends=[self.up.url], config=cfg, **kw)
        wait_ready(t)
        return t

    def get(self, t, path="/id", rid=None, timeout=10.0):
        headers = {"X-Request-Id": rid} if rid else {}
        return http_get(t.url(path), headers=headers, timeout=timeout)

    def assert_no_access_on_stderr(self, t):
        on_stderr = [line for line in list(t.stderr.lines) if '"msg":"access"' in line]
        self.assertEqual(on_stderr, [], "access lines on stderr")


class Stream(AccessLogBase):
    def test_lines_appear_with_log_level_warn(self):
        # The measured bug of issue 15: access lines went through the application
        # logger, so --log-level warn wrote none.
        # At warn tether logs no "listening" line to learn its ports from: fixed ones.
        port, admin = free_port(), free_port()
        t = self.start_tether(backends=[self.up.url], config={"health": FAST_HEALTH},
                              listen=["127.0.0.1:%d" % port], admin="127.0.0.1:%d" % admin,
                              args=["--log-level", "warn"], wait=None)
        wait_until(lambda: http_get("http://127.0.0.1:%d/readyz" % admin).status == 200, 10,
                   msg="/readyz 200")
        r = http_get("http://127.0.0.1:%d/id" % port, headers={"X-Request-Id": "warn-1"})
        self.assertEqual(r.status, 200)
        rec = t.stdout.wait_for(lambda r: r.get("request_id") == "warn-1", 5, "access line")
        self.assertEqual((rec["msg"], rec["status"]), ("access", 200))
        self.assert_no_access_on_stderr(t)
        # And the application log did obey the level: nothing below warn.
        levels = {r.get("level") for r in list(t.stderr.records) if "level" in r}
        self.assertLessEqual(levels, {"warn", "error"}, levels)

    def test_to_a_file_and_not_to_stdout(self):
        path = os.path.join(self.dir, "access.log")
        t = self.tether({"path": path, "flush": "100ms"})
        for i in range(3):
            self.assertEqual(self.get(t, rid="file-%d" % i).status, 200)
        wait_until(lambda: len(read_lines(path)) == 3, 5, msg="3 lines in the file")
        self.assertEqual([r["request_id"] for r in records_of(path)],
                         ["file-0", "file-1", "file-2"])
        self.assertEqual(t.stop(), 0)
        self.assertEqual(t.stdout.lines, [], "access lines on stdout with access_log.path set")
        self.assert_no_access_on_stderr(t)

    def test_text_format(self):
        path = os.path.join(self.dir, "access.log")
        t = self.tether({"path": path, "flush": "50ms", "format": "text"})
        self.assertEqual(self.get(t, rid="text-1").status, 200)
        wait_until(lambda: read_lines(path), 5, msg="a text line")
        line = read_lines(path)[0]
        self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z access ")
        self.assertIn(" request_id=text-1 ", line)
        self.assertIn(" status=200 ", line)
        self.assertIn(" protocol=HTTP/1.1 ", line)
        self.assertRegex(line, r" duration=\d+\.\d{6} ")
        self.assertTrue(line.endswith(" upstream_reused=false\n")
                        or line.endswith(" upstream_reused=true\n"), line)

    def test_disabled_writes_nothing(self):
        path = os.path.join(self.dir, "access.log")
        t = self.tether({"enabled": False, "path": path, "flush": "50ms"})
        self.assertEqual(self.get(t).status, 200)
        self.assertEqual(t.stop(), 0)
        self.assertFalse(os.path.exists(path))
        self.assertEqual(t.stdout.lines, [])


class Fields(AccessLogBase):
    def test_fields_present_and_typed(self):
        t = self.tether()
        # Two requests on one downstream connection: the first opens the upstream
        # connection, the second gets it from the pool.
        conn = http.client.HTTPConnection("127.0.0.1", t.proxy_port, timeout=10)
        self.addCleanup(conn.close)
        for rid in ("typed-1", "typed-2"):
            conn.request("GET", "/sleep/30?x=1", headers={"X-Request-Id": rid})
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        first = t.wait_log(msg="access", request_id="typed-1")
        second = t.wait_log(msg="access", request_id="typed-2")
        types = {"time": str, "msg": str, "request_id": str, "client": str, "method": str,
                 "path": str, "protocol": str, "tls": str, "status": int, "backend": str,
                 "bytes_in": int, "bytes_out": int, "duration": (int, float),
                 "ttfb": (int, float), "upstream_connect": (int, float),
                 "upstream_reused": bool}
        for rec in (first, second):
            self.assertEqual(set(rec), set(types), rec)
            for k, ty in types.items():
                self.assertIsInstance(rec[k], ty, "%s: %r" % (k, rec[k]))
                if ty in (int, (int, float)):
                    self.assertNotIsInstance(rec[k], bool, k)
            self.assertEqual((rec["method"], rec["path"], rec["protocol"], rec["tls"],
                              rec["status"], rec["backend"]),
                             ("GET", "/sleep/30?x=1", "HTTP/1.1", "-", 200, self.up.address))
            # The backend waited 30 ms before its first byte.
            self.assertGreaterEqual(rec["ttfb"], 0.03, rec)
            self.assertGreaterEqual(rec["duration"], rec["ttfb"], rec)
            self.assertLess(rec["duration"], 5, rec)
        self.assertEqual(first["upstream_reused"], False, first)
        self.assertGreater(first["upstream_connect"], 0, first)
        self.assertLess(first["upstream_connect"], first["ttfb"], first)
        self.assertEqual((second["upstream_reused"], second["upstream_connect"]), (True, 0),
                         second)
        # Microseconds: six decimals in the line as written.
        raw = [line for line in t.stdout.lines if '"typed-1"' in line][0]
        self.assertRegex(raw, r'"duration":\d+\.\d{6}[,}]')
        self.assertRegex(raw, r'"ttfb":\d+\.\d{6}[,}]')
        self.assertRegex(raw, r'"upstream_connect":\d+\.\d{6}[,}]')

    def test_http10_and_answers_of_tethers_own(self):
        t = self.tether()
        c = self.raw_client(t.proxy_port)
        c.send(b"GET /id HTTP/1.0\r\nX-Request-Id: ten-1\r\n\r\n")
        self.assertEqual(c.recv_response(timeout=5).status, 200)
        rec = t.wait_log(msg="access", request_id="ten-1")
        self.assertEqual(rec["protocol"], "HTTP/1.0")
        # No backend: tether's own 503; nothing measured upstream.
        t2 = self.start_tether(backends=["http://127.0.0.1:9"], config={"health": FAST_HEALTH})
        r = http_get(t2.url("/x"), headers={"X-Request-Id": "none-1"})
        self.assertEqual(r.status, 503)
        rec = t2.wait_log(msg="access", request_id="none-1")
        self.assertEqual((rec["status"], rec["backend"], rec["ttfb"], rec["upstream_connect"],
                          rec["upstream_reused"]), (503, "-", -1, -1, False), rec)


class Flushing(AccessLogBase):
    def test_line_appears_within_the_flush_interval_without_more_traffic(self):
        for flush, margin in (("1s", 1.0), ("300ms", 0.7)):
            with self.subTest(flush=flush):
                path = os.path.join(self.dir, "flush-%s.log" % flush)
                t = self.tether({"path": path, "flush": flush})
                seconds = 1.0 if flush == "1s" else 0.3
                self.assertEqual(self.get(t, rid="flush-" + flush).status, 200)
                answered = time.monotonic()
                wait_until(lambda: read_lines(path), seconds + margin, interval=0.01,
                           msg="the line within %s + %.1fs" % (flush, margin))
                self.assertLessEqual(time.monotonic() - answered, seconds + margin)
                t.stop()

    def test_default_flush_on_stdout(self):
        t = self.tether()
        self.assertEqual(self.get(t, rid="stdout-flush").status, 200)
        t.stdout.wait_for(lambda r: r.get("request_id") == "stdout-flush", 1.0 + 1.0,
                          "the line within the default 1s flush + 1s")

    def test_lines_are_buffered_then_written_at_exit(self):
        path = os.path.join(self.dir, "access.log")
        t = self.tether({"path": path, "flush": "1h"})
        for i in range(5):
            self.assertEqual(self.get(t, rid="exit-%d" % i).status, 200)
        # Answered, and still in the worker's buffer: no write per line.
        self.assertEqual(read_lines(path), [])
        self.assertEqual(t.stop(), 0)
        self.assertEqual([r["request_id"] for r in records_of(path)],
                         ["exit-%d" % i for i in range(5)])

    def test_a_full_buffer_is_written_at_once(self):
        path = os.path.join(self.dir, "access.log")
        t = self.tether({"path": path, "flush": "1h", "buffer": "1KiB"})
        n = 40
        for i in range(n):
            self.assertEqual(self.get(t, rid="full-%d" % i).status, 200)
        # A line is some 400 bytes: at most 3 wait in a 1 KiB buffer.
        lines = wait_until(lambda: len(read_lines(path)) >= n - 3 and read_lines(path), 5,
                           msg="the full buffers written")
        for line in lines:
            self.assertTrue(line.endswith("\n"), "a partial line: %r" % line)
        self.assertEqual(t.stop(), 0)
        self.assertEqual([r["request_id"] for r in records_of(path)],
                         ["full-%d" % i for i in range(n)])


class Backpressure(AccessLogBase):
    def test_a_stalled_destination_blocks_and_loses_no_line(self):
        fifo = os.path.join(self.dir, "access.fifo")
        os.mkfifo(fifo)
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.addCleanup(os.close, reader)
        try:
            fcntl.fcntl(reader, F_SETPIPE_SZ, 4096)  # fills after some ten lines
        except OSError:
            pass
        t = self.tether({"path": fifo, "flush": "20ms", "buffer": "1KiB"})
        n = 300
        done = []
        errors = []

        def client():
            conn = http.client.HTTPConnection("127.0.0.1", t.proxy_port, timeout=60)
            try:
                for i in range(n):
                    conn.request("GET", "/id", headers={"X-Request-Id": "bp-%d" % i})
                    r = conn.getresponse()
                    r.read()
                    done.append(r.status)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
            finally:
                conn.close()

        th = threading.Thread(target=client, daemon=True)
        th.start()

        # Nobody reads the pipe: tether's worker waits in write(2), so the client stalls
        # well before its 300 requests (the event: no progress for 0.5 s).
        last = [-1, time.monotonic()]

        def stalled():
            if len(done) != last[0]:
                last[0], last[1] = len(done), time.monotonic()
                return False
            return time.monotonic() - last[1] >= 0.5

        wait_until(stalled, 20, msg="the client to stall on the full pipe")
        self.assertLess(len(done), n, "the client never stalled: lines dropped?")

        # Read: the worker carries on, and every line arrives, whole and once.
        data = b""
        deadline = time.monotonic() + 30
        while data.count(b"\n") < n and time.monotonic() < deadline:
            ready, _, _ = select.select([reader], [], [], 0.2)
            if ready:
                try:
                    data += os.read(reader, 65536)
                except BlockingIOError:
                    pass
        th.join(30)
        self.assertEqual(errors, [])
        self.assertEqual(len(done), n)
        self.assertTrue(data.endswith(b"\n"))
        ids = [json.loads(line)["request_id"] for line in data.decode().splitlines()]
        self.assertEqual(ids, ["bp-%d" % i for i in range(n)])
        # Nothing was counted as lost.
        self.assertEqual([r for r in t.logs if r.get("msg") == "access log write failed"], [])


class NoLoss(AccessLogBase):
    def test_no_line_lost_on_sigterm_under_load(self):
        # Two workers, lines buffered for the default 1 s: the SIGTERM comes while
        # each worker holds lines no timer has written yet.
        t = self.tether(config={"workers": 2, "timeouts": {"shutdown_grace": "10s"}})
        answered = []
        lock = threading.Lock()
        stop = threading.Event()

        def client(k):
            i = 0
            while not stop.is_set():
                conn = http.client.HTTPConnection("127.0.0.1", t.proxy_port, timeout=10)
                try:
                    for _ in range(50):
                        rid = "load-%d-%d" % (k, i)
                        i += 1
                        conn.request("GET", "/sleep/2", headers={"X-Request-Id": rid})
                        r = conn.getresponse()
                        r.read()
                        with lock:
                            answered.append(rid)
                        if r.getheader("Connection", "").lower() == "close":
                            break
                except (OSError, http.client.HTTPException):
                    # Refused or closed once tether stops: that request was not answered.
                    if t.proxy_port and not t.running:
                        return
                finally:
                    conn.close()
                if not t.running:
                    return

        threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(6)]
        for th in threads:
            th.start()
        wait_until(lambda: len(answered) >= 300, 30, msg="300 requests answered")
        t.signal(signal.SIGTERM)
        self.assertEqual(t.wait_exit(20), 0)
        stop.set()
        for th in threads:
            th.join(10)
        logged = [r["request_id"] for r in t.stdout.records if r.get("msg") == "access"]
        self.assertEqual(len(logged), len(set(logged)), "a line written twice")
        self.assertEqual(sorted(logged), sorted(answered),
                         "requests answered: %d, lines: %d" % (len(answered), len(logged)))


class Reopen(AccessLogBase):
    def test_sigusr1_reopens_after_a_rename(self):
        path = os.path.join(self.dir, "access.log")
        t = self.tether({"path": path, "flush": "50ms"})
        for i in range(5):
            self.assertEqual(self.get(t, rid="old-%d" % i).status, 200)
        wait_until(lambda: len(read_lines(path)) == 5, 5, msg="5 lines")
        os.rename(path, path + ".1")  # what logrotate does, then its postrotate
        mark = len(t.logs)
        t.signal(signal.SIGUSR1)
        t.wait_log(msg="access log reopened", path=path, start=mark)
        for i in range(3):
            self.assertEqual(self.get(t, rid="new-%d" % i).status, 200)
        wait_until(lambda: len(read_lines(path)) == 3, 5, msg="3 lines in the new file")
        self.assertEqual(t.stop(), 0)
        old = read_lines(path + ".1")
        self.assertTrue(all(line.endswith("\n") for line in old), old)
        self.assertEqual([json.loads(x)["request_id"] for x in old],
                         ["old-%d" % i for i in range(5)])
        self.assertEqual([r["request_id"] for r in records_of(path)],
                         ["new-%d" % i for i in range(3)])

    def test_packaged_logrotate_rotates_without_losing_a_line(self):
        logrotate = require_program("logrotate")
        logs = os.path.join(self.dir, "log")
        os.mkdir(logs)
        path = os.path.join(logs, "access.log")
        t = self.tether({"path": path, "flush": "50ms"})
        # packaging/logrotate as shipped, but for this directory and this process.
        with open(os.path.join(REPO, "packaging", "logrotate")) as f:
            text = f.read()
        self.assertIn("/var/log/tether/*.log", text)
        self.assertIn("--signal=USR1", text)
        text = text.replace("/var/log/tether", logs)
        text = re.sub(r"systemctl kill [^\n]*", "kill -USR1 %d" % t.proc.pid, text)
        conf = os.path.join(self.dir, "logrotate.conf")
        with open(conf, "w") as f:
            f.write(text)
        for i in range(10):
            self.assertEqual(self.get(t, rid="before-%d" % i).status, 200)
        wait_until(lambda: len(read_lines(path)) == 10, 5, msg="10 lines")
        mark = len(t.logs)
        r = subprocess.run([logrotate, "-f", "-s", os.path.join(self.dir, "state"), conf],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        t.wait_log(msg="access log reopened", start=mark)
        for i in range(10):
            self.assertEqual(self.get(t, rid="after-%d" % i).status, 200)
        self.assertEqual(t.stop(), 0)
        rotated = read_lines(path + ".1")  # delaycompress: the newest stays plain
        self.assertEqual([json.loads(x)["request_id"] for x in rotated],
                         ["before-%d" % i for i in range(10)])
        self.assertEqual([r["request_id"] for r in records_of(path)],
                         ["after-%d" % i for i in range(10)])

    def test_a_failed_reopen_keeps_the_old_file(self):
        logs = os.path.join(self.dir, "logs")
        os.mkdir(logs)
        path = os.path.join(logs, "access.log")
        t = self.tether({"path": path, "flush": "50ms"})
        os.rename(logs, logs + ".old")  # the directory is gone: the reopen cannot succeed
        mark = len(t.logs)
        t.signal(signal.SIGUSR1)
        rec = t.wait_log(msg="access log reopen failed: the old file stays", start=mark)
        self.assertIn("No such file or directory", rec["error"])
        self.assertEqual(self.get(t, rid="kept-1").status, 200)
        kept = os.path.join(logs + ".old", "access.log")
        wait_until(lambda: read_lines(kept), 5, msg="the line in the old file")
        self.assertEqual(records_of(kept)[0]["request_id"], "kept-1")

    def test_sigusr1_with_stdout_changes_nothing(self):
        t = self.tether()
        mark = len(t.logs)
        t.signal(signal.SIGUSR1)
        t.wait_log(msg="access log reopen: nothing to do", start=mark)
        self.assertEqual(self.get(t, rid="still-1").status, 200)
        t.wait_log(msg="access", request_id="still-1", start=mark)

    def test_reload_to_another_path(self):
        first = os.path.join(self.dir, "first.log")
        second = os.path.join(self.dir, "second.log")
        cfg = {"health": FAST_HEALTH, "access_log": {"path": first, "flush": "50ms"}}
        t = self.start_tether(backends=[self.up.url], config=cfg)
        wait_ready(t)
        self.assertEqual(self.get(t, rid="r-1").status, 200)
        wait_until(lambda: read_lines(first), 5, msg="a line in first.log")
        bad = dict(cfg, access_log={"path": os.path.join(self.dir, "no", "such.log")})
        rec = t.reload(bad)
        self.assertEqual(rec["msg"], "reload refused")
        self.assertIn("access_log.path: cannot open", rec["error"])
        rec = t.reload(dict(cfg, access_log={"path": second, "flush": "50ms"}))
        self.assertEqual(rec["msg"], "reloaded")
        self.assertEqual(self.get(t, rid="r-2").status, 200)
        wait_until(lambda: read_lines(second), 5, msg="a line in second.log")
        self.assertEqual([r["request_id"] for r in records_of(first)], ["r-1"])
        self.assertEqual([r["request_id"] for r in records_of(second)], ["r-2"])


class Startup(AccessLogBase):
    def test_an_unopenable_path_is_refused(self):
        missing = os.path.join(self.dir, "no", "such", "access.log")
        cfg = {"access_log": {"path": missing}}
        r = run_tether(["--check-config"], config=cfg)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn('access_log.path: cannot open "%s": No such file or directory' % missing,
                      r.stderr)
        r = run_tether(["-l", "127.0.0.1:0", "--admin", "127.0.0.1:0"], config=cfg)
        self.assertEqual(r.returncode, 3, r)
        self.assertIn("access_log.path: cannot open", r.stderr)
        self.assertFalse(os.path.exists(os.path.dirname(missing)))

    def test_bad_values_are_configuration_errors(self):
        r = run_tether(["--check-config"], config={"access_log": {
            "flush": "soon", "buffer": "10", "path": self.dir + "/", "rotate": True}})
        self.assertEqual(r.returncode, 1, r)
        for text in ('access_log.flush: "soon" is not a duration',
                     "access_log.buffer: must be at least 1024 bytes",
                     "names a directory, not a file",
                     "access_log.rotate: unknown key"):
            self.assertIn(text, r.stderr)


class AdminLogLevel(AccessLogBase):
    def setUp(self):
        super().setUp()
        self.token_path = os.path.join(self.dir, "token")
        with open(self.token_path, "w") as f:
            f.write(TOKEN + "\n")

    def post(self, t, query, token=TOKEN):
        headers = {"Authorization": "Bearer " + token} if token else {}
        return http_request(t.admin_url("/admin/log" + query), method="POST", body=b"",
                            headers=headers)

    def bad_request(self, t, rid):
        c = self.raw_client(t.proxy_port)
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nContent-Length: 1\r\n"
               b"Content-Length: 2\r\n\r\nab" % rid.encode())
        self.assertEqual(c.recv_response(timeout=5).status, 400)

    def test_level_changes_at_runtime_with_the_token(self):
        # The level from the file (the harness passes no --log-level here).
        t = self.tether(config={"admin": {"token_file": self.token_path},
                                "log": {"level": "info"}}, log_level=None)
        self.assertEqual(json.loads(t.admin_get("/admin/log").body), {"level": "info"})
        # Refused without the token, or with a wrong one; the level stays.
        self.assertEqual(self.post(t, "?level=debug", token=None).status, 401)
        self.assertEqual(self.post(t, "?level=debug", token="wrong").status, 403)
        self.assertEqual(json.loads(t.admin_get("/admin/log").body), {"level": "info"})
        mark = len(t.logs)
        self.bad_request(t, "before")
        t.wait_log(lambda r: r.get("status") == 400, msg="access", start=mark)
        self.assertEqual(t.find_logs("bad request"), [], "a debug line at info")

        mark = len(t.logs)
        r = self.post(t, "?level=debug")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(json.loads(r.body), {"level": "debug", "previous": "info"})
        rec = t.wait_log(msg="log level changed", start=mark)
        self.assertEqual((rec["level"], rec["from"], rec["to"], rec["by"]),
                         ("warn", "info", "debug", "admin"))
        self.assertEqual(json.loads(t.admin_get("/admin/log").body), {"level": "debug"})
        self.bad_request(t, "after")
        t.wait_log(msg="bad request", level="debug", start=mark)

        for query in ("?level=verbose", "", "?level=DEBUG"):
            with self.subTest(query=query):
                r = self.post(t, query)
                self.assertEqual(r.status, 400)
                self.assertIn("level: expected", json.loads(r.body)["error"])
        self.assertEqual(json.loads(t.admin_get("/admin/log").body), {"level": "debug"})
        # warn hides info lines; a reload applies the configured level again.
        self.assertEqual(self.post(t, "?level=warn").status, 200)
        mark = len(t.logs)
        self.assertEqual(t.admin_post("/admin/backends/0/enable", token=TOKEN).status, 200)
        self.assertEqual(self.post(t, "?level=info").status, 200)
        t.wait_log(msg="log level changed", to="info", start=mark)
        self.assertEqual(t.find_logs("backend enabled"), [], "an info line at warn")
        self.assertEqual(self.post(t, "?level=error").status, 200)
        t.reload()
        self.assertEqual(json.loads(t.admin_get("/admin/log").body), {"level": "info"})

    def test_loopback_admin_without_a_token(self):
        t = self.tether()
        r = self.post(t, "?level=error", token=None)
        self.assertEqual((r.status, json.loads(r.body)["level"]), (200, "error"))
        self.assertEqual(http_request(t.admin_url("/admin/log?level=info"), method="PUT",
                                      body=b"").status, 405)


if __name__ == "__main__":
    unittest.main()
