"""End-to-end test harness: the built `tether` binary against real programs.

Standard library only (plus what the apps in apps/ import). Typical use:

    import unittest
    from harness import E2ETestCase, http_get

    class Basics(E2ETestCase):
        def test_proxies_to_backend(self):
            up = self.start_http_upstream(name="a")            # tests/e2e/apps/http_upstream.py
            t = self.start_tether(backends=[up.url],
                                  config={"health": {"interval": "200ms"}})
            r = http_get(t.url("/id"))
            self.assertEqual((r.status, r.body), (200, b"a"))
            self.assertEqual(t.stop(), 0)                        # SIGTERM; exit code

Everything started through E2ETestCase is stopped by addCleanup (and, as a last
resort, at interpreter exit); when a test fails, the tail of tether's log is
printed to stderr.

API summary
  Environment    TETHER_BIN (default /work/main/build/proxy/tether), CI=true (missing
                 programs fail instead of skip), TETHER_E2E_VERBOSE=1 (echo tether's stderr),
                 TETHER_SANITIZED=1 (TETHER_BIN is an ASan/UBSan build: each tether is
                 stopped with SIGTERM for the leak check, and a sanitizer report in its
                 stderr, or exit code SANITIZER_EXIT, fails the test that ran it).
  require_program(name)          path of name on PATH; SkipTest, or failure when CI=true.
  wait_until(pred, timeout, interval=0.02, msg)   polls pred until truthy; returns its value.
  Tether(args, config, backends, listen, admin, env, wait)   .start() / .stop(sig) -> exit code
      .proxy_port(s) .admin_port .url(path) .admin_url(path) .logs (parsed JSON dicts)
      .wait_log(msg=..., timeout, **fields) .access_logs() .reload(config) .signal(sig)
      (.logs holds stderr's records and, merged in, the access log's from stdout)
      .wait_exit(timeout) .metrics() .metric(name, **labels) .backends_state() .returncode
      .admin_get(path) .admin_post(path, token) .write_config(cfg) .kill() .tail(n)
  run_tether(args, config, timeout) -> Completed(returncode, stdout, stderr)  (--check-config...)
  AppProcess(argv)  any program printing "PORT <n>" (or uvicorn's "running on" line) first
      .port .url .address .stop() .output()
  start_http_upstream / start_sse_app / start_socketio_app / start_ws_echo / start_redis
                 (module functions return an AppProcess; E2ETestCase methods also register
                 the cleanup)
  ScriptedUpstream(handler)      an in-process HTTP/1.1 server; handler(req) -> (status,
                 headers, body) or None after writing raw bytes with req.write(); .requests
  RawClient(port)                raw socket: .send(bytes) .recv_until(b"\\r\\n\\r\\n") .recv_all()
                 .shutdown_write() .close(); raw_request(port, data) -> bytes until close/timeout
  parse_responses(data)          bytes -> [RawResponse(status, reason, headers, body)], for
                 pipelining and smuggling checks
  http_get / http_request(url, method, body, headers, timeout) -> HttpResult(status, headers, body)
  free_port()                    a port that was free a moment ago (for redis-server, which
                 cannot bind port 0)
"""

import atexit
import collections
import http.server
import json
import os
import re
import shutil
import signal
from signal import SIGHUP, SIGKILL, SIGTERM
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
APPS_DIR = os.path.join(HERE, "apps")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
DEFAULT_TETHER_BIN = "/work/main/build/proxy/tether"
START_TIMEOUT = float(os.environ.get("TETHER_E2E_START_TIMEOUT", "15"))


def tether_bin():
    return os.environ.get("TETHER_BIN", DEFAULT_TETHER_BIN)


def in_ci():
    return os.environ.get("CI", "").lower() == "true"


# Under TETHER_SANITIZED, tests/run.sh sets ASAN_OPTIONS, LSAN_OPTIONS and UBSAN_OPTIONS
# so that a sanitized tether exits with this code on an error or a leak.
SANITIZER_EXIT = 86
_SANITIZER_REPORT = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:")


def sanitized():
    return bool(os.environ.get("TETHER_SANITIZED"))


def sanitizer_report(lines, returncode):
    """The sanitizer report in a tether's stderr lines (from its first line), or None."""
    for i, line in enumerate(lines):
        if _SANITIZER_REPORT.search(line):
            return "\n".join(lines[i:i + 60])
    if returncode == SANITIZER_EXIT:
        return "exit code %d (a sanitizer error or leak); stderr tail:\n%s" % (
            returncode, "\n".join(lines[-30:]))
    return None


def require_program(name):
    """Returns the path of `name`. Missing: the test is skipped, or fails under CI=true."""
    path = shutil.which(name)
    if path is None and name == "uvicorn":
        # Debian's python3-uvicorn without the /usr/bin/uvicorn entry point still serves.
        probe = subprocess.run([PYTHON, "-c", "import uvicorn"], capture_output=True)
        if probe.returncode == 0:
            return PYTHON
    if path is None:
        msg = "required program %r not found on PATH" % name
        if in_ci():
            raise AssertionError(msg + " (CI=true: missing programs fail; "
                                 "run packaging/install-deps.sh)")
        raise unittest.SkipTest(msg)
    return path


def require_tether():
    """Skips (fails under CI) when the tether binary is not built."""
    b = tether_bin()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        msg = "tether binary not found at %s (set TETHER_BIN)" % b
        if in_ci():
            raise AssertionError(msg)
        raise unittest.SkipTest(msg)
    return b


def wait_until(predicate, timeout=5.0, interval=0.02, msg=None):
    """Polls predicate() every `interval` s until it returns a truthy value, which is
    returned. Exceptions from predicate count as "not yet" (the last one is reported).
    Raises AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - "not yet"
            last_exc = e
        if time.monotonic() >= deadline:
            text = msg or getattr(predicate, "__name__", "condition")
            if last_exc is not None:
                text += " (last error: %r)" % (last_exc,)
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, text))
        time.sleep(interval)


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------------------
# Process bookkeeping: whatever is started is killed at exit even if a cleanup was missed.

_live = set()
_live_lock = threading.Lock()


def _register(proc):
    with _live_lock:
        _live.add(proc)


def _unregister(proc):
    with _live_lock:
        _live.discard(proc)


def _kill_tree(proc, sig=SIGKILL):
    """Signals the process group we created for proc (start_new_session=True)."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def _close_pipes(proc):
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            try:
                f.close()
            except OSError:
                pass


@atexit.register
def _kill_all():
    with _live_lock:
        procs = list(_live)
    for p in procs:
        _kill_tree(p)
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


# --------------------------------------------------------------------------------------
# Line readers


class LineCollector:
    """Reads a stream line by line in a daemon thread; lets callers wait for a line.
    With `also` (another LineCollector), parsed records are appended to its records too,
    in arrival order, so that one list holds both streams."""

    def __init__(self, stream, name, parse_json=False, echo=False, tee_path=None, also=None):
        self.lines = []          # raw text lines
        self.records = []        # parsed JSON objects (parse_json), in order
        self.closed = False
        self._cond = threading.Condition()
        self._parse = parse_json
        self._echo = echo
        self._name = name
        self._tee = open(tee_path, "w") if tee_path else None
        self._also = also
        self._thread = threading.Thread(target=self._run, args=(stream,), daemon=True,
                                        name="reader-" + name)
        self._thread.start()

    def _run(self, stream):
        try:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                rec = None
                if self._parse:
                    try:
                        rec = json.loads(line)
                        if not isinstance(rec, dict):
                            rec = None
                    except ValueError:
                        rec = None
                if self._echo:
                    sys.stderr.write("[%s] %s\n" % (self._name, line))
                if self._tee:
                    self._tee.write(line + "\n")
                    self._tee.flush()
                with self._cond:
                    self.lines.append(line)
                    if rec is not None:
                        self.records.append(rec)
                    self._cond.notify_all()
                if rec is not None and self._also is not None:
                    with self._also._cond:
                        self._also.records.append(rec)
                        self._also._cond.notify_all()
        except (ValueError, OSError):
            pass
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()
            if self._tee:
                self._tee.close()

    def wait_for(self, pred, timeout, what="line", start=0, on_records=None):
        """Waits until pred(item) holds for an item at index >= start; returns the item.
        Items are records when parsing JSON (on_records default) else lines."""
        use_records = self._parse if on_records is None else on_records
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                items = self.records if use_records else self.lines
                while i < len(items):
                    if pred(items[i]):
                        return items[i]
                    i += 1
                if self.closed:
                    raise AssertionError("%s: stream closed before %s" % (self._name, what))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%s: timed out after %.1fs waiting for %s"
                                         % (self._name, timeout, what))
                self._cond.wait(left)

    def join(self, timeout=2.0):
        self._thread.join(timeout)


# --------------------------------------------------------------------------------------
# tether


class Completed:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr

    def __repr__(self):
        return "Completed(rc=%r, stdout=%r, stderr=%r)" % (self.returncode, self.stdout[-500:],
                                                           self.stderr[-2000:])


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    """Minimal YAML writer for dicts/lists/scalars (JSON flow style is valid YAML too,
    but block style reads better in failure output)."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return pad + "{}\n"
        out = []
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(v, indent + 1)))
            else:
                out.append("%s%s: %s\n" % (pad, k, "{}" if v == {} else "[]" if v == []
                                             else _yaml_scalar(v)))
        return "".join(out)
    if isinstance(obj, list):
        if not obj:
            return pad + "[]\n"
        out = []
        for v in obj:
            if isinstance(v, (dict, list)) and v:
                body = to_yaml(v, indent + 1)
                out.append("%s- %s" % (pad, body.lstrip()))
            else:
                out.append("%s- %s\n" % (pad, _yaml_scalar(v)))
        return "".join(out)
    return pad + _yaml_scalar(obj) + "\n"


def _config_text(config):
    if config is None:
        return None
    if isinstance(config, str):
        return config
    return to_yaml(config)


def run_tether(args=(), config=None, timeout=20, env=None, binary=None):
    """Runs tether to completion (e.g. --version, --check-config, a bad command line).
    `config` (dict or YAML text) is written to a temp file and passed with -c."""
    binary = binary or require_tether()
    tmp = tempfile.mkdtemp(prefix="tether-run-")
    try:
        argv = [binary]
        text = _config_text(config)
        if text is not None:
            path = os.path.join(tmp, "tether.yaml")
            with open(path, "w") as f:
                f.write(text)
            argv += ["-c", path]
        argv += list(args)
        full_env = dict(os.environ)
        full_env.update(env or {})
        p = subprocess.run(argv, capture_output=True, timeout=timeout, env=full_env,
                           stdin=subprocess.DEVNULL)
        if sanitized():
            report = sanitizer_report(p.stderr.decode("utf-8", "replace").splitlines(),
                                      p.returncode)
            if report:
                raise AssertionError("sanitizer report from %s:\n%s" % (argv, report))
        return Completed(p.returncode, p.stdout.decode("utf-8", "replace"),
                         p.stderr.decode("utf-8", "replace"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Tether:
    """One tether process started with --log-format json.

    args      extra command-line arguments (list)
    config    dict (written as YAML) or YAML text, passed with -c; None: no file
    backends  list of backend URLs, each passed as -b
    listen    list of proxy addresses (default ["127.0.0.1:0"]); [] passes no -l
    admin     admin address (default "127.0.0.1:0"); None passes no --admin
    env       extra environment variables
    wait      "started" (default), "listening" (first listener) or None
    """

    def __init__(self, args=(), config=None, backends=(), listen=("127.0.0.1:0",),
                 admin="127.0.0.1:0", env=None, wait="started", binary=None,
                 log_level="debug", start_timeout=START_TIMEOUT):
        self.binary = binary or tether_bin()
        self.workdir = tempfile.mkdtemp(prefix="tether-e2e-")
        self.config_path = os.path.join(self.workdir, "tether.yaml")
        self.extra_args = list(args)
        self.config = config
        self.backends = list(backends)
        self.listen = list(listen)
        self.admin = admin
        self.env = dict(env or {})
        self.wait = wait
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.proc = None
        self.stderr = None
        self.stdout = None
        self.returncode = None

    # ---- lifecycle ---------------------------------------------------------
    def argv(self):
        argv = [self.binary]
        if self.config is not None:
            self.write_config(self.config)
            argv += ["-c", self.config_path]
        for a in self.listen:
            argv += ["-l", a]
        if self.admin is not None:
            argv += ["--admin", self.admin]
        for b in self.backends:
            argv += ["-b", b]
        argv += ["--log-format", "json"]
        if self.log_level and "--log-level" not in self.extra_args:
            argv += ["--log-level", self.log_level]
        return argv + self.extra_args

    def write_config(self, config):
        """(Re)writes the config file (dict or YAML text); use reload() to apply it."""
        self.config = config
        with open(self.config_path, "w") as f:
            f.write(_config_text(config))

    def start(self):
        require_tether()
        env = dict(os.environ)
        env.update(self.env)
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     cwd=self.workdir, start_new_session=True)
        _register(self.proc)
        verbose = os.environ.get("TETHER_E2E_VERBOSE") == "1"
        self.stderr = LineCollector(self.proc.stderr, "tether.stderr", parse_json=True,
                                    echo=verbose,
                                    tee_path=os.path.join(self.workdir, "stderr.log"))
        # The access log is on stdout (access_log.path unset): its JSON lines join the
        # records of stderr, so that .logs, wait_log(msg="access") and access_logs() see
        # both streams in arrival order; .stdout.records holds the access lines alone.
        self.stdout = LineCollector(self.proc.stdout, "tether.stdout", parse_json=True,
                                    echo=verbose, also=self.stderr)
        if self.wait == "started":
            self.wait_log(msg="started", timeout=self.start_timeout)
        elif self.wait == "listening":
            self.wait_log(msg="listening", timeout=self.start_timeout)
        return self

    def signal(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def reload(self, config=None, wait=True, timeout=5.0):
        """Optionally rewrites the config, then sends SIGHUP. With wait, returns the first
        log record after the signal whose msg mentions reload (whatever its outcome)."""
        if config is not None:
            self.write_config(config)
        mark = len(self.logs)
        self.signal(SIGHUP)
        if not wait:
            return None
        return self.wait_log(lambda r: "reload" in str(r.get("msg", "")).lower(),
                             timeout=timeout, start=mark)

    def wait_exit(self, timeout=10.0):
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("tether did not exit within %.1fs" % timeout)
        self.stderr.join()
        self.stdout.join()
        _close_pipes(self.proc)
        _unregister(self.proc)
        return self.returncode

    def stop(self, sig=SIGTERM, timeout=10.0):
        """Sends sig and waits for exit; returns the exit code (negative: killed by a
        signal). If tether does not exit in time it is killed and AssertionError raised."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.wait_exit(timeout)
        except AssertionError:
            self.kill()
            raise

    def kill(self):
        if self.proc is None:
            return
        _kill_tree(self.proc)
        try:
            self.returncode = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if self.stderr:
            self.stderr.join()
            self.stdout.join()
        _close_pipes(self.proc)
        _unregister(self.proc)

    def cleanup(self):
        if sanitized() and self.running:
            # Leaks are reported at exit: stop it (a second signal stops at once).
            self.signal(SIGTERM)
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.signal(SIGTERM)
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        self.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)
        if sanitized() and not getattr(self, "_sanitizer_checked", False):
            self._sanitizer_checked = True
            report = sanitizer_report(list(self.log_lines), self.returncode)
            if report:
                raise AssertionError("sanitizer report from tether:\n" + report)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # ---- logs --------------------------------------------------------------
    @property
    def logs(self):
        """Parsed JSON log records so far (a live list: do not mutate)."""
        return self.stderr.records if self.stderr else []

    @property
    def log_lines(self):
        return self.stderr.lines if self.stderr else []

    def wait_log(self, pred=None, timeout=5.0, start=0, msg=None, **fields):
        """Waits for a log record matching: pred(record) if given, record["msg"] == msg if
        given, and record[k] == v for every k=v. `start` skips earlier records (use
        len(t.logs) taken before an action). Returns the record."""
        def match(r):
            if msg is not None and r.get("msg") != msg:
                return False
            if any(r.get(k) != v for k, v in fields.items()):
                return False
            return pred(r) if pred else True
        what = "log record msg=%r %r" % (msg, fields)
        try:
            return self.stderr.wait_for(match, timeout, what, start=start)
        except AssertionError as e:
            raise AssertionError("%s\n--- tether stderr (tail) ---\n%s"
                                 % (e, self.tail())) from None

    def find_logs(self, msg=None, **fields):
        return [r for r in list(self.logs) if (msg is None or r.get("msg") == msg)
                and all(r.get(k) == v for k, v in fields.items())]

    def access_logs(self, **fields):
        """Access lines so far (stdout, merged into .logs; see start())."""
        return self.find_logs("access", **fields)

    def tail(self, n=60):
        return "\n".join(self.log_lines[-n:])

    # ---- addresses -----------------------------------------------------------
    def _listening(self, kind):
        out = []
        for r in self.find_logs("listening"):
            if r.get("kind") == kind:
                out.append(r.get("address"))
        return out

    @staticmethod
    def _port_of(address):
        return int(str(address).rsplit(":", 1)[1])

    @property
    def proxy_addresses(self):
        return self._listening("proxy")

    @property
    def proxy_ports(self):
        return [self._port_of(a) for a in self.proxy_addresses]

    @property
    def proxy_port(self):
        ports = self.proxy_ports
        if not ports:
            raise AssertionError("tether logged no proxy listener\n" + self.tail())
        return ports[0]

    @property
    def admin_port(self):
        addrs = self._listening("admin")
        if not addrs:
            raise AssertionError("tether logged no admin listener\n" + self.tail())
        return self._port_of(addrs[0])

    def url(self, path="/", scheme="http"):
        return "%s://127.0.0.1:%d%s" % (scheme, self.proxy_port, path)

    def ws_url(self, path="/"):
        return "ws://127.0.0.1:%d%s" % (self.proxy_port, path)

    def admin_url(self, path="/"):
        return "http://127.0.0.1:%d%s" % (self.admin_port, path)

    # ---- admin helpers ---------------------------------------------------------
    def admin_get(self, path, timeout=5.0):
        return http_request(self.admin_url(path), timeout=timeout)

    def admin_post(self, path, token=None, timeout=5.0):
        headers = {"Authorization": "Bearer " + token} if token else {}
        return http_request(self.admin_url(path), method="POST", body=b"", headers=headers,
                            timeout=timeout)

    def backends_state(self):
        """GET /admin/backends, parsed JSON."""
        r = self.admin_get("/admin/backends")
        if r.status != 200:
            raise AssertionError("/admin/backends answered %d: %r" % (r.status, r.body[:300]))
        return json.loads(r.body)

    def metrics_text(self):
        r = self.admin_get("/metrics")
        if r.status != 200:
            raise AssertionError("/metrics answered %d" % r.status)
        return r.body.decode()

    def metrics(self):
        """{(name, frozenset(labels.items())): value} from /metrics."""
        return parse_prometheus(self.metrics_text())

    def metric(self, name, default=None, **labels):
        """Sum of the samples of `name` whose labels include `labels` (None: none match)."""
        total, found = 0.0, False
        for (n, lbl), v in self.metrics().items():
            if n == name and all(dict(lbl).get(k) == str(v2) for k, v2 in labels.items()):
                total += v
                found = True
        return total if found else default


_PROM_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_PROM_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _PROM_LINE.match(line.strip())
        if not m:
            continue
        labels = {k: bytes(v, "utf-8").decode("unicode_escape")
                  for k, v in _PROM_LABEL.findall(m.group(3) or "")}
        try:
            value = float(m.group(4))
        except ValueError:
            continue
        out[(m.group(1), frozenset(labels.items()))] = value
    return out


# --------------------------------------------------------------------------------------
# Subprocess apps that print their port


_UVICORN_PORT = re.compile(r"running on https?://[^\s:]+:(\d+)", re.I)


class AppProcess:
    """A program that announces its port as "PORT <n>" on stdout (or uvicorn's
    "Uvicorn running on http://host:<n>" on stderr). Both streams are collected."""

    def __init__(self, argv, name=None, cwd=APPS_DIR, env=None, host="127.0.0.1",
                 start_timeout=START_TIMEOUT, port=None):
        self.argv = list(argv)
        self.name = name or os.path.basename(self.argv[1] if len(self.argv) > 1 else argv[0])
        self.host = host
        self.port = port
        full_env = dict(os.environ)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        full_env.update(env or {})
        self.proc = subprocess.Popen(self.argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        _register(self.proc)
        verbose = os.environ.get("TETHER_E2E_VERBOSE") == "1"
        self.out = LineCollector(self.proc.stdout, self.name + ".stdout", echo=verbose)
        self.err = LineCollector(self.proc.stderr, self.name + ".stderr", echo=verbose)
        if self.port is None:
            self.port = self._wait_port(start_timeout)

    def _wait_port(self, timeout):
        found = {}

        def from_stdout(line):
            m = re.match(r"^PORT (\d+)$", line.strip())
            if m:
                found["port"] = int(m.group(1))
            return bool(m)

        def from_stderr(line):
            m = _UVICORN_PORT.search(line)
            if m:
                found["port"] = int(m.group(1))
            return bool(m)

        # Wait on both streams: whichever announces first.
        deadline = time.monotonic() + timeout
        while "port" not in found:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                break
            for coll, pred in ((self.out, from_stdout), (self.err, from_stderr)):
                try:
                    coll.wait_for(pred, min(0.05, left), "port", on_records=False)
                    break
                except AssertionError:
                    pass
        if "port" not in found:
            self.stop()
            raise AssertionError("%s did not announce its port within %.1fs (rc=%r)\n"
                                 "stdout: %s\nstderr: %s" % (
                                     self.name, timeout, self.proc.returncode,
                                     "\n".join(self.out.lines[-20:]),
                                     "\n".join(self.err.lines[-20:])))
        return found["port"]

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    def output(self):
        return "stdout:\n%s\nstderr:\n%s" % ("\n".join(self.out.lines), "\n".join(self.err.lines))

    @property
    def running(self):
        return self.proc.poll() is None

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig=SIGTERM, timeout=5.0):
        """Stops the app (sig, then SIGKILL after timeout); returns its exit code."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_tree(self.proc)
                self.proc.wait(timeout=5)
        self.out.join()
        self.err.join()
        _close_pipes(self.proc)
        _unregister(self.proc)
        return self.proc.returncode

    def kill(self):
        """SIGKILL: the backend dies without closing anything gracefully."""
        return self.stop(SIGKILL)


def start_http_upstream(name="upstream", port=0, health_status=None, ready_status=None,
                        extra_args=()):
    argv = [PYTHON, os.path.join(APPS_DIR, "http_upstream.py"), "--port", str(port),
            "--name", name]
    if health_status is not None:
        argv += ["--health-status", str(health_status)]
    if ready_status is not None:
        argv += ["--ready-status", str(ready_status)]
    return AppProcess(argv + list(extra_args), name="http_upstream[%s]" % name)


def start_sse_app(name="sse"):
    require_program("uvicorn")
    return AppProcess([PYTHON, os.path.join(APPS_DIR, "sse_app.py"), "--name", name],
                      name="sse_app[%s]" % name)


def start_socketio_app(name="sio", redis_url=None, cors_origins=()):
    require_program("uvicorn")
    argv = [PYTHON, os.path.join(APPS_DIR, "socketio_app.py"), "--name", name]
    if redis_url:
        argv += ["--redis", redis_url]
    for o in cors_origins:
        argv += ["--cors-origin", o]
    return AppProcess(argv, name="socketio_app[%s]" % name)


def start_ws_echo(name="ws", close_code=None, ping_interval=None):
    argv = [PYTHON, os.path.join(APPS_DIR, "ws_echo.py"), "--name", name]
    if close_code:
        argv += ["--close-code", str(close_code)]
    if ping_interval:
        argv += ["--ping-interval", str(ping_interval)]
    return AppProcess(argv, name="ws_echo[%s]" % name)


def start_redis(password=None, attempts=5):
    """redis-server on a free loopback port (it cannot bind port 0), no persistence.
    Returns an AppProcess with .port and .redis_url."""
    binary = require_program("redis-server")
    last = None
    for _ in range(attempts):
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice"]
        if password:
            argv += ["--requirepass", password]
        app = AppProcess(argv, name="redis-server", cwd=tempfile.gettempdir(), port=port)
        try:
            app.out.wait_for(lambda line: "Ready to accept connections" in line,
                             START_TIMEOUT, "redis ready", on_records=False)
        except AssertionError as e:
            last = e
            app.stop()
            continue
        auth = (":%s@" % password) if password else ""
        app.redis_url = "redis://%s127.0.0.1:%d/0" % (auth, port)
        return app
    raise AssertionError("redis-server did not start: %s" % last)


# --------------------------------------------------------------------------------------
# In-process scripted upstream


class ScriptedRequest:
    def __init__(self, handler, body):
        self.method = handler.command
        self.path = handler.path
        self.version = handler.request_version
        self.headers = handler.headers          # email.message.Message: .get(), .get_all()
        self.header_list = list(handler.headers.items())
        self.body = body
        self.client = handler.client_address
        self._h = handler

    def write(self, data):
        """Writes raw bytes on the connection (for malformed or hand-made responses)."""
        self._h.wfile.write(data)
        self._h.wfile.flush()

    def close(self):
        self._h.close_connection = True


class ScriptedUpstream:
    """A threaded HTTP/1.1 server in this process. handler(req) returns
    (status, headers_dict_or_list, body_bytes), or None after writing raw bytes itself
    with req.write(). Default handler: 200 "ok". Every request is recorded in .requests.

        up = ScriptedUpstream(lambda req: (503, {}, b"busy"))
        self.addCleanup(up.stop)
    """

    def __init__(self, handler=None, host="127.0.0.1", name="scripted"):
        self.handler = handler or (lambda req: (200, {}, b"ok"))
        self.requests = []
        self.connections = 0
        self.name = name
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def setup(self):
                super().setup()
                outer.connections += 1

            def _read_body(self):
                if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                    parts = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return b"".join(parts)
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                n = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(n) if n else b""

            def _any(self):
                req = ScriptedRequest(self, self._read_body())
                outer.requests.append(req)
                res = outer.handler(req)
                if res is None:
                    return
                status, headers, body = res
                items = headers.items() if isinstance(headers, dict) else headers
                self.send_response(status)
                names = set()
                for k, v in items:
                    names.add(k.lower())
                    self.send_header(k, v)
                if "content-length" not in names and "transfer-encoding" not in names \
                        and status not in (204, 304) and status >= 200:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD" and body:
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _any

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server((host, 0), H)
        self.port = self.server.server_address[1]
        self.host = host
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={
            "poll_interval": 0.05}, daemon=True, name="scripted-upstream")
        self.thread.start()

    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# --------------------------------------------------------------------------------------
# HTTP clients

HttpResult = collections.namedtuple("HttpResult", "status headers body")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


_opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))


def http_request(url, method="GET", body=None, headers=None, timeout=10.0):
    """One request (new connection, no proxies, no redirects). Non-2xx statuses are
    returned, not raised. headers of the result: an email.message.Message (.get())."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with _opener.open(req, timeout=timeout) as r:
            return HttpResult(r.status, r.headers, r.read())
    except urllib.error.HTTPError as e:
        return HttpResult(e.code, e.headers, e.read())


def http_get(url, headers=None, timeout=10.0):
    return http_request(url, headers=headers, timeout=timeout)


class RawClient:
    """A raw TCP client for hand-written requests (smuggling, slowloris, pipelining)."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buffer = b""
        self.eof = False

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)
        return self

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def _recv_some(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            self.eof = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def recv_until(self, marker, timeout=None):
        """Reads until `marker` (bytes) is in the buffer, EOF or timeout; returns the
        buffer up to and including the marker (consumed), or everything read so far."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while marker not in self.buffer and not self.eof:
            if not self._recv_some(deadline):
                break
        if marker in self.buffer:
            i = self.buffer.index(marker) + len(marker)
            out, self.buffer = self.buffer[:i], self.buffer[i:]
            return out
        out, self.buffer = self.buffer, b""
        return out

    def recv_response(self, timeout=None):
        """Reads one whole HTTP/1.x response (Content-Length, chunked or until close)
        and returns it parsed (RawResponse), or None if nothing complete arrived."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            parsed, used = _parse_one(self.buffer, self.eof)
            if parsed is not None:
                self.buffer = self.buffer[used:]
                return parsed
            if self.eof or not self._recv_some(deadline):
                if self.eof:
                    parsed, used = _parse_one(self.buffer, True)
                    if parsed is not None:
                        self.buffer = self.buffer[used:]
                    return parsed
                return None

    def recv_all(self, timeout=None):
        """Reads until the peer closes or `timeout` passes; returns everything unread."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof and self._recv_some(deadline):
            pass
        out, self.buffer = self.buffer, b""
        return out

    def is_closed(self, timeout=1.0):
        """True if the peer closes (EOF or reset) within timeout."""
        deadline = time.monotonic() + timeout
        while not self.eof and self._recv_some(deadline):
            pass
        return self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def raw_request(port, data, timeout=3.0, host="127.0.0.1", half_close=False):
    """Sends `data` on a fresh connection and returns all bytes received until the
    peer closes or `timeout` passes."""
    with RawClient(port, host, timeout) as c:
        c.send(data)
        if half_close:
            c.shutdown_write()
        return c.recv_all(timeout)


RawResponse = collections.namedtuple("RawResponse", "version status reason headers body")


def _parse_one(data, eof):
    """Parses one response at the start of data. Returns (RawResponse, bytes used) or
    (None, 0) when incomplete. headers: list of (name, value) in order."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None, 0
    head = data[:end].decode("latin-1").split("\r\n")
    m = re.match(r"^(HTTP/\d\.\d) (\d{3})(?: (.*))?$", head[0])
    if not m:
        raise ValueError("not an HTTP response: %r" % head[0][:100])
    status = int(m.group(2))
    headers = []
    for line in head[1:]:
        k, _, v = line.partition(":")
        headers.append((k.strip(), v.strip()))
    hmap = {k.lower(): v for k, v in headers}
    pos = end + 4
    if 100 <= status < 200 or status in (204, 304):
        return RawResponse(m.group(1), status, m.group(3) or "", headers, b""), pos
    if "chunked" in hmap.get("transfer-encoding", "").lower():
        body = b""
        while True:
            le = data.find(b"\r\n", pos)
            if le < 0:
                return None, 0
            size = int(data[pos:le].split(b";")[0].strip() or b"0", 16)
            pos = le + 2
            if size == 0:
                te = data.find(b"\r\n\r\n", pos - 2)
                if te < 0:
                    return None, 0
                return RawResponse(m.group(1), status, m.group(3) or "", headers, body), te + 4
            if len(data) < pos + size + 2:
                return None, 0
            body += data[pos:pos + size]
            pos += size + 2
    if "content-length" in hmap:
        n = int(hmap["content-length"])
        if len(data) < pos + n:
            return None, 0
        return RawResponse(m.group(1), status, m.group(3) or "", headers, data[pos:pos + n]), \
            pos + n
    if eof:
        return RawResponse(m.group(1), status, m.group(3) or "", headers, data[pos:]), len(data)
    return None, 0


def parse_responses(data, head_request=False):
    """Splits bytes received on one connection into complete responses (in order).
    A trailing incomplete response is ignored. Responses to HEAD need head_request=True
    (then bodies are never read)."""
    out = []
    while data:
        if head_request:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                break
            r, used = _parse_one(data[:end + 4], False)
            if r is None:
                break
            r = r._replace(body=b"")
            used = end + 4
        else:
            r, used = _parse_one(data, True)
        if r is None:
            break
        out.append(r)
        data = data[used:]
    return out


def header(resp, name):
    """First value of header `name` in a RawResponse (case-insensitive), or None."""
    for k, v in resp.headers:
        if k.lower() == name.lower():
            return v
    return None


# --------------------------------------------------------------------------------------
# TestCase base


class E2ETestCase(unittest.TestCase):
    """unittest.TestCase whose start_* helpers register cleanups, and that prints
    tether's log tail when a test fails."""

    def _started(self, obj, cleanup):
        self.addCleanup(cleanup)
        return obj

    def start_tether(self, *args, **kwargs):
        """Same arguments as Tether(...); returns the started Tether."""
        t = Tether(*args, **kwargs)
        self.addCleanup(self._tether_cleanup, t)
        return t.start()

    def _tether_cleanup(self, t):
        failed = self._failed_so_far()
        if failed and t.stderr is not None:
            sys.stderr.write("\n--- tether log tail (%s) ---\n%s\n--- end ---\n"
                             % (self.id(), t.tail(80)))
        t.cleanup()

    def _failed_so_far(self):
        # Cleanups run inside their own executor, so _outcome.success says nothing here:
        # look for this test among the result's failures and errors instead.
        result = getattr(getattr(self, "_outcome", None), "result", None)
        for attr in ("failures", "errors", "unexpectedSuccesses"):
            for entry in getattr(result, attr, None) or ():
                test = entry[0] if isinstance(entry, tuple) else entry
                if test is self or getattr(test, "test_case", None) is self:
                    return True
        return False

    def start_app(self, argv, **kwargs):
        app = AppProcess(argv, **kwargs)
        return self._started(app, app.stop)

    def start_http_upstream(self, *a, **k):
        app = start_http_upstream(*a, **k)
        return self._started(app, app.stop)

    def start_sse_app(self, *a, **k):
        app = start_sse_app(*a, **k)
        return self._started(app, app.stop)

    def start_socketio_app(self, *a, **k):
        app = start_socketio_app(*a, **k)
        return self._started(app, app.stop)

    def start_ws_echo(self, *a, **k):
        app = start_ws_echo(*a, **k)
        return self._started(app, app.stop)

    def start_redis(self, *a, **k):
        app = start_redis(*a, **k)
        return self._started(app, app.stop)

    def scripted_upstream(self, handler=None, **k):
        up = ScriptedUpstream(handler, **k)
        return self._started(up, up.stop)

    def raw_client(self, port, **k):
        c = RawClient(port, **k)
        return self._started(c, c.close)

    def wait_until(self, predicate, timeout=5.0, interval=0.02, msg=None):
        return wait_until(predicate, timeout, interval, msg)
