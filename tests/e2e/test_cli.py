"""The command line, the configuration file, the environment and exit codes, run
against the real binary: --version, --check-config, bad flags, address in use,
TETHER_* precedence, ${VAR} expansion, the admin token rule, SIGTERM."""

import os
import re
import signal
import socket
import tempfile
import threading
import unittest

from harness import E2ETestCase, run_tether, wait_until
from test_http_core import FAST_HEALTH, curl_status, wait_ready


class Basics(E2ETestCase):
    def test_version(self):
        r = run_tether(["--version"])
        self.assertEqual(r.returncode, 0, r)
        self.assertRegex(r.stdout.strip(), r"^tether \d+\.\d+\.\d+")

    def test_unknown_flag_is_exit_2(self):
        r = run_tether(["--no-such-flag"])
        self.assertEqual(r.returncode, 2, r)
        self.assertIn("--no-such-flag", r.stderr)
        r = run_tether(["-c"])  # missing argument
        self.assertEqual(r.returncode, 2, r)


class CheckConfig(E2ETestCase):
    def test_good_file_exits_0(self):
        r = run_tether(["--check-config"], config={
            "listeners": [{"address": "127.0.0.1:0"}],
            "backends": [{"url": "http://127.0.0.1:8080", "weight": 50}],
            "balance": "round_robin",
            "health": {"path": "/health", "interval": "5s", "expect_status": "200-299"},
            "timeouts": {"connect": "250ms", "upstream_first_byte": "30m"},
            "limits": {"max_request_header_bytes": "64KiB", "max_request_body_bytes": "100MiB"},
            "trusted_proxies": ["127.0.0.0/8", "10.0.0.0/8"],
            "access_log": {"enabled": True, "format": "json"}})
        self.assertEqual(r.returncode, 0, r)

    def test_bad_file_exits_1_with_every_error_and_its_path(self):
        r = run_tether(["--check-config"], config="""
backends:
  - url: "http://127.0.0.1:8080"
  - url: "http://app"
timeouts:
  connect: soon
limits:
  max_request_header_bytes: lots
balance: fastest
trusted_proxies: ["300.0.0.0/8"]
no_such_key: 1
""")
        self.assertEqual(r.returncode, 1, r)
        out = r.stderr + r.stdout
        for path in ("backends[1].url", "timeouts.connect", "limits.max_request_header_bytes",
                     "balance", "trusted_proxies", "no_such_key"):
            self.assertRegex(out, r"(?m)^.*\b%s\b.*:" % re.escape(path),
                             "no error for %s in:\n%s" % (path, out))
        self.assertNotIn("backends[0]", out)

    def test_bad_yaml_exits_1(self):
        r = run_tether(["--check-config"], config="backends: [\n  - url: :\n")
        self.assertEqual(r.returncode, 1, r)
        self.assertTrue(r.stderr.strip(), "no reason given")

    def test_non_loopback_admin_without_token_is_refused(self):
        r = run_tether(["-b", "http://127.0.0.1:8080", "-l", "127.0.0.1:0",
                        "--admin", "0.0.0.0:0"], timeout=10)
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("admin", r.stderr)
        self.assertIn("token", r.stderr)
        # With a token file the same address is acceptable (checked, not bound).
        with tempfile.NamedTemporaryFile("w", suffix=".token", delete=False) as f:
            f.write("s3cret\n")
        self.addCleanup(os.unlink, f.name)
        r = run_tether(["--check-config", "-b", "http://127.0.0.1:8080"], config={
            "admin": {"address": "0.0.0.0:9901", "token_file": f.name}})
        self.assertEqual(r.returncode, 0, r)


class AddressInUse(E2ETestCase):
    def busy_port(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        self.addCleanup(s.close)
        return s.getsockname()[1]

    def test_proxy_address_in_use_is_exit_3(self):
        port = self.busy_port()
        r = run_tether(["-l", "127.0.0.1:%d" % port, "--admin", "127.0.0.1:0",
                        "-b", "http://127.0.0.1:8080"], timeout=15)
        self.assertEqual(r.returncode, 3, r)
        self.assertIn(str(port), r.stderr)

    def test_admin_address_in_use_is_exit_3(self):
        port = self.busy_port()
        r = run_tether(["-l", "127.0.0.1:0", "--admin", "127.0.0.1:%d" % port,
                        "-b", "http://127.0.0.1:8080"], timeout=15)
        self.assertEqual(r.returncode, 3, r)


class EnvironmentAndPrecedence(E2ETestCase):
    def ids(self, t, n=4):
        return {curl_status(t.url("/id"))[1] for _ in range(n)}

    def test_flag_over_env_over_file(self):
        a = self.start_http_upstream(name="file")
        b = self.start_http_upstream(name="env")
        c = self.start_http_upstream(name="flag")
        cfg = {"backends": [{"url": a.url}], "health": dict(FAST_HEALTH)}
        t = self.start_tether(config=cfg)
        wait_ready(t)
        self.assertEqual(self.ids(t), {b"file"})
        t = self.start_tether(config=cfg, env={"TETHER_BACKENDS": b.url})
        wait_ready(t)
        self.assertEqual(self.ids(t), {b"env"})
        t = self.start_tether(config=cfg, env={"TETHER_BACKENDS": b.url}, backends=[c.url])
        wait_ready(t)
        self.assertEqual(self.ids(t), {b"flag"})

    def test_tether_backends_is_comma_separated(self):
        a = self.start_http_upstream(name="a")
        b = self.start_http_upstream(name="b")
        t = self.start_tether(config={"health": dict(FAST_HEALTH), "balance": "round_robin"},
                              env={"TETHER_BACKENDS": "%s,%s" % (a.url, b.url)})
        wait_until(lambda: len(t.backends_state()["backends"]
                               if isinstance(t.backends_state(), dict)
                               else t.backends_state()) == 2, 5)
        wait_until(lambda: self.ids(t, 6) == {b"a", b"b"}, 10, msg="both backends serve")

    def test_listen_admin_and_config_from_env(self):
        a = self.start_http_upstream(name="a")
        tmp = tempfile.mkdtemp(prefix="tether-env-")
        path = os.path.join(tmp, "conf.yaml")
        with open(path, "w") as f:
            f.write('backends:\n  - url: "%s"\nhealth:\n  interval: 200ms\n  rise: 1\n' % a.url)
        self.addCleanup(lambda: (os.unlink(path), os.rmdir(tmp)))
        t = self.start_tether(listen=[], admin=None, env={
            "TETHER_CONFIG": path, "TETHER_LISTEN": "127.0.0.1:0",
            "TETHER_ADMIN": "127.0.0.1:0"})
        wait_ready(t)
        self.assertTrue(t.proxy_addresses[0].startswith("127.0.0.1:"))
        self.assertEqual(curl_status(t.url("/id")), (200, b"a"))

    def test_variables_expand_in_the_file(self):
        a = self.start_http_upstream(name="a")
        t = self.start_tether(config="""
backends:
  - url: "${E2E_BACKEND_URL}"
health:
  path: "${E2E_UNSET_HEALTH_PATH:-/health}"
  interval: ${E2E_INTERVAL:-5s}
  rise: 1
""", env={"E2E_BACKEND_URL": a.url, "E2E_INTERVAL": "200ms"})
        wait_ready(t)
        self.assertEqual(curl_status(t.url("/id")), (200, b"a"))
        st = t.backends_state()
        st = st["backends"] if isinstance(st, dict) else st
        self.assertEqual(st[0]["url"], a.url)
        # A variable that expands to nothing leaves an invalid file, reported at its path.
        r = run_tether(["--check-config"], config='backends:\n  - url: "${E2E_NOT_SET_AT_ALL}"\n',
                       env={"E2E_NOT_SET_AT_ALL": ""})
        self.assertEqual(r.returncode, 1, r)
        self.assertIn("backends[0].url", r.stderr)


class Shutdown(E2ETestCase):
    def test_sigterm_exits_0(self):
        a = self.start_http_upstream(name="a")
        t = self.start_tether(backends=[a.url], config={"health": dict(FAST_HEALTH)})
        wait_ready(t)
        self.assertEqual(t.stop(signal.SIGTERM), 0)

    def test_sigint_exits_0(self):
        t = self.start_tether(backends=["http://127.0.0.1:1"])
        self.assertEqual(t.stop(signal.SIGINT), 0)

    def test_sigterm_lets_a_request_in_flight_finish(self):
        a = self.start_http_upstream(name="a")
        t = self.start_tether(backends=[a.url], config={"health": dict(FAST_HEALTH),
                                                        "timeouts": {"shutdown_grace": "10s"}})
        wait_ready(t)
        result = {}
        th = threading.Thread(target=lambda: result.update(r=curl_status(t.url("/sleep/800"))))
        th.start()
        wait_until(lambda: (t.metric("tether_downstream_connections_active") or 0) >= 1, 5)
        t.signal(signal.SIGTERM)
        self.assertEqual(t.wait_exit(10), 0)
        th.join(10)
        self.assertEqual(result.get("r"), (200, b"slept 800\n"))


if __name__ == "__main__":
    unittest.main()
