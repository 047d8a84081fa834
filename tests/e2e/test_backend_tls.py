"""TLS to backends, end to end: tether in front of uvicorn serving HTTPS (the SSE
and Socket.IO apps with uvicorn's --ssl-* options), with certificates made by the
openssl CLI at test time: a test CA, a second CA nobody trusts, a leaf for
127.0.0.1 and backend.test, a leaf for another name, an expired leaf, and a client
certificate for a backend that requires one (mTLS, --ssl-cert-reqs 2).

Checked: requests and keep-alive reuse (one handshake for many requests, from
tether_upstream_tls_handshakes_total), resumption of the session on the next
connection, an event stream, a WebSocket upgrade, mTLS, each certificate failure
(answered 502/503, logged with the backend and OpenSSL's reason, counted in
tether_upstream_connect_errors_total) and health checks going down for it, and a
configuration whose CA or key cannot be read refused at start with its path.

Run: cd tests/e2e && TETHER_BIN=... python3 -m unittest -v test_backend_tls
"""

import hashlib
import http.client
import json
import os
import tempfile
import unittest

import test_tls

from harness import (APPS_DIR, PYTHON, E2ETestCase, RawClient, http_get, require_program,
                     run_tether, wait_until)
from wsutil import OP_TEXT, frame, recv_frame, upgrade_head

HANDSHAKES = "tether_upstream_tls_handshakes_total"
CONNECT_ERRORS = "tether_upstream_connect_errors_total"
FAST_HEALTH = {"interval": "200ms", "rise": 1, "fall": 1}

_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = @names
[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = clientAuth
[ca]
default_ca = test_ca
[test_ca]
dir = .
database = index.txt
new_certs_dir = .
serial = serial
default_md = sha256
policy = any
copy_extensions = none
[any]
commonName = supplied
"""


class Certs:
    """The certificates of one run, in a temporary directory (see the module's text)."""

    def __init__(self):
        self.openssl = require_program("openssl")
        self.dir = tempfile.mkdtemp(prefix="tether-backend-tls-")
        self.cnf = os.path.join(self.dir, "openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(_CNF)
        open(os.path.join(self.dir, "index.txt"), "w").close()
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("1000\n")
        self._ca("ca")
        self._ca("other_ca")
        self._leaf("good", "ca", ["IP:127.0.0.1", "DNS:backend.test"])
        self._leaf("wrong_name", "ca", ["DNS:other.test"])
        self._leaf("untrusted", "other_ca", ["IP:127.0.0.1"])
        # Valid once, for a month in 2020: openssl ca sets explicit dates.
        self._leaf("expired", "ca", ["IP:127.0.0.1"], dates=("20200101000000Z", "20200201000000Z"))
        self._leaf("client", "ca", None, ext="client")

    # openssl with the private config file, and the directory's removal: as test_tls's.
    _run = test_tls.Certs._run
    cleanup = test_tls.Certs.cleanup

    @staticmethod
    def _newkey():
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def _ca(self, name):
        self._run("req", "-x509", "-config", self.cnf, "-extensions", "ca_ext", *self._newkey(),
                  "-keyout", name + ".key", "-out", name + ".pem", "-days", "30",
                  "-subj", "/CN=tether backend test " + name)

    def _leaf(self, name, ca, sans, dates=None, ext="server"):
        self._run("req", "-new", "-config", self.cnf, *self._newkey(), "-keyout", name + ".key",
                  "-out", name + ".csr", "-subj", "/CN=" + name)
        extfile = os.path.join(self.dir, name + ".ext")
        with open(extfile, "w") as f:
            f.write(_CNF)
            if sans:
                f.write("[names]\n" + "".join("%s.%d = %s\n" % (s.split(":")[0], i, s.split(":", 1)[1])
                                              for i, s in enumerate(sans)))
        dates = dates or ("20200101000000Z", "20991231000000Z")
        self._run("ca", "-batch", "-config", self.cnf, "-cert", ca + ".pem", "-keyfile", ca + ".key",
                  "-in", name + ".csr", "-out", name + ".pem", "-startdate", dates[0],
                  "-enddate", dates[1], "-extfile", extfile, "-extensions", ext, "-notext")

    def path(self, name, ext="pem"):
        return os.path.join(self.dir, "%s.%s" % (name, ext))


CERTS = None


def setUpModule():
    global CERTS
    CERTS = Certs()
    unittest.addModuleCleanup(CERTS.cleanup)


def tls_app_argv(app, cert, mtls=False, port=0, name="b"):
    argv = [PYTHON, os.path.join(APPS_DIR, app), "--name", name, "--port", str(port),
            "--ssl-certfile", CERTS.path(cert), "--ssl-keyfile", CERTS.path(cert, "key")]
    if mtls:
        argv += ["--ssl-ca-certs", CERTS.path("ca"), "--ssl-cert-reqs", "2"]
    return argv


class BackendTls(E2ETestCase):
    def start_backend(self, cert="good", app="sse_app.py", **kw):
        require_program("uvicorn")
        return self.start_app(tls_app_argv(app, cert, **kw), name="%s[%s]" % (app, cert))

    def start_proxy(self, backend, tls=None, health=None):
        url = "https://127.0.0.1:%d" % backend.port
        entry = {"url": url}
        if tls is not None:
            entry["tls"] = tls
        config = {"backends": [entry], "health": health or FAST_HEALTH,
                  "backend_tls": {"ca": CERTS.path("ca")}}
        return self.start_tether(config=config)

    def wait_up(self, t):
        wait_until(lambda: t.admin_get("/readyz").status == 200, 10, msg="backend up over TLS")

    def test_requests_share_one_handshake_and_a_reconnect_resumes(self):
        b = self.start_backend()
        t = self.start_proxy(b)
        self.wait_up(t)
        conn = http.client.HTTPConnection("127.0.0.1", t.proxy_port, timeout=10)
        for _ in range(20):
            conn.request("GET", "/id")
            r = conn.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"b"))
        conn.close()
        for _ in range(5):
            self.assertEqual(http_get(t.url("/id")).status, 200)
        self.assertEqual(t.metric(HANDSHAKES, session="new"), 1)
        self.assertEqual(t.metric(HANDSHAKES, session="resumed"), 0)
        # uvicorn closes an idle keep-alive connection after 5 s; the pool drops it.
        wait_until(lambda: t.metric("tether_upstream_connections", state="idle") == 0, 15,
                   msg="the backend closed the pooled connection")
        self.assertEqual(http_get(t.url("/id")).status, 200)
        self.assertEqual(t.metric(HANDSHAKES, session="resumed"), 1)
        self.assertEqual(t.metric(HANDSHAKES, session="new"), 1)
        self.assertEqual(t.metric(CONNECT_ERRORS), 0)
        self.assertEqual(t.stop(), 0)

    def test_a_large_upload_reaches_the_tls_backend_whole(self):
        # 16 MiB is more than a socket takes at once: ciphertext writes queue behind
        # each other, and every byte must still arrive, in order.
        b = self.start_backend()
        t = self.start_proxy(b)
        self.wait_up(t)
        body = hashlib.sha256(b"seed").digest() * (16 * 1024 * 1024 // 32)
        conn = http.client.HTTPConnection("127.0.0.1", t.proxy_port, timeout=30)
        conn.request("POST", "/digest", body=body, headers={"Content-Type": "application/octet-stream"})
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.read()), {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})
        conn.close()
        self.assertEqual(t.stop(), 0)

    def test_event_stream_is_streamed(self):
        b = self.start_backend()
        t = self.start_proxy(b)
        self.wait_up(t)
        conn = http.client.HTTPConnection("127.0.0.1", t.proxy_port, timeout=10)
        conn.request("GET", "/sse?n=5&interval_ms=100")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("Content-Type").split(";")[0], "text/event-stream")
        first = r.readline()
        self.assertTrue(first.startswith(b"data: {\"i\": 0"), first)
        body = first + r.read()
        self.assertEqual(body.count(b"data: {\"i\""), 5)
        self.assertIn(b"data: [DONE]", body)
        conn.close()

    def test_websocket_upgrade_through_a_tls_backend(self):
        b = self.start_backend(app="socketio_app.py")
        t = self.start_proxy(b)
        self.wait_up(t)
        c = RawClient(t.proxy_port)
        c.send(upgrade_head("127.0.0.1", "/ws/socket.io/?EIO=4&transport=websocket"))
        head = c.recv_until(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        f = recv_frame(c)
        self.assertIsNotNone(f)
        self.assertEqual(f.opcode, OP_TEXT)
        self.assertTrue(f.payload.startswith(b"0{"), f.payload)  # Engine.IO open
        c.send(frame(OP_TEXT, b"40"))                              # Socket.IO connect
        # The connect's answer and the app's 'hello' event, in either order.
        got = [recv_frame(c) for _ in range(2)]
        payloads = [f.payload for f in got if f is not None]
        self.assertTrue(any(p.startswith(b"40{") for p in payloads), payloads)
        self.assertTrue(any(p.startswith(b'42["hello"') for p in payloads), payloads)
        c.close()
        self.assertEqual(t.metric("tether_websocket_upgrades_total", result="101"), 1)

    def test_mtls_backend_needs_the_client_certificate(self):
        b = self.start_backend(mtls=True)
        without = self.start_proxy(b)
        # TLS 1.3: the server refuses the missing certificate after the handshake.
        without.wait_log(msg="backend state", to="down", timeout=10)
        self.assertIn(http_get(without.url("/id")).status, (502, 503))
        with_cert = self.start_proxy(b, tls={"ca": CERTS.path("ca"), "cert": CERTS.path("client"),
                                             "key": CERTS.path("client", "key")})
        self.wait_up(with_cert)
        self.assertEqual(http_get(with_cert.url("/id")).status, 200)

    def check_refused_certificate(self, cert, why):
        """A backend whose certificate was fine when the check passed now presents
        `cert`: the request's connect fails with the reason logged and counted."""
        good = self.start_backend()
        port = good.port
        t = self.start_proxy(good, health={"interval": "1h", "rise": 1, "fall": 1})
        self.wait_up(t)
        good.stop()
        wait_until(lambda: t.metric("tether_upstream_connections", state="idle") == 0, 5)
        self.start_backend(cert, port=port)
        mark = len(t.logs)
        r = http_get(t.url("/id"))
        self.assertIn(r.status, (502, 503))
        rec = t.wait_log(msg="upstream TLS handshake failed", start=mark,
                         backend="127.0.0.1:%d" % port)
        self.assertIn(why, rec["error"])
        self.assertGreaterEqual(t.metric(CONNECT_ERRORS), 1)
        # The active check agrees once it runs: a fresh tether marks it down.
        t2 = self.start_proxy(good)
        rec = t2.wait_log(msg="backend state", to="down", timeout=10)
        self.assertIn(why, rec["reason"])

    def test_a_refused_certificate_is_retried_on_another_backend(self):
        a = self.start_backend(name="a")
        b = self.start_backend(name="b")
        config = {"backends": ["https://127.0.0.1:%d" % a.port, "https://127.0.0.1:%d" % b.port],
                  "health": {"interval": "1h", "rise": 1, "fall": 1},
                  "backend_tls": {"ca": CERTS.path("ca")}, "balance": "round_robin",
                  "passive": {"consecutive_failures": 2}}
        t = self.start_tether(config=config)
        wait_until(lambda: all(x["state"] == "up" for x in t.backends_state()), 10,
                   msg="both backends up")
        port = b.port
        b.stop()
        self.start_backend("expired", port=port, name="b")
        bodies = [http_get(t.url("/id")) for _ in range(6)]
        self.assertEqual([(r.status, r.body) for r in bodies], [(200, b"a")] * 6)
        label = "127.0.0.1:%d" % port
        self.assertGreaterEqual(t.metric(CONNECT_ERRORS, backend=label), 1)
        self.assertGreaterEqual(t.metric("tether_retries_total", backend=label), 1)
        # Passive ejection: two refused connects in a row take it out of rotation.
        self.assertEqual(t.metric("tether_backend_ejections_total", backend=label), 1)

    def test_untrusted_ca_is_a_connect_error(self):
        self.check_refused_certificate("untrusted", "unable to get local issuer certificate")

    def test_wrong_name_is_a_connect_error(self):
        self.check_refused_certificate("wrong_name", "IP address mismatch")

    def test_expired_certificate_is_a_connect_error(self):
        self.check_refused_certificate("expired", "certificate has expired")

    def test_server_name_names_the_certificate_to_expect(self):
        b = self.start_backend("wrong_name")
        t = self.start_proxy(b, tls={"ca": CERTS.path("ca"), "server_name": "other.test"})
        self.wait_up(t)
        self.assertEqual(http_get(t.url("/id")).status, 200)

    def test_unreadable_ca_or_mismatched_key_is_refused_at_start(self):
        missing = os.path.join(CERTS.dir, "missing.pem")
        r = run_tether(config={"backends": [{"url": "https://127.0.0.1:1",
                                             "tls": {"ca": missing}}]})
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertIn("backends[0].tls.ca: %s: cannot read" % missing, r.stderr)
        r = run_tether(config={"backend_tls": {"cert": CERTS.path("client"),
                                               "key": CERTS.path("good", "key")},
                               "backends": ["https://127.0.0.1:1", "https://127.0.0.1:2"]})
        self.assertEqual(r.returncode, 3, r.stderr)
        self.assertEqual(r.stderr.count("backend_tls.key: "), 1, r.stderr)
        self.assertIn("does not match the certificate", r.stderr)
        r = run_tether(args=["--check-config"],
                       config={"backends": [{"url": "https://127.0.0.1:1", "tls": {"ca": missing}}]})
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("backends[0].tls.ca", r.stderr)


if __name__ == "__main__":
    unittest.main()
