"""TLS termination on listeners, end to end: HTTPS through tether to plain HTTP
backends, certificate choice by SNI (exact and one-label wildcards, the first
certificate as default), ALPN, keep-alive and pipelining inside one TLS
connection, big bodies both ways, event streams, WebSocket over TLS and its
1001 on SIGTERM, clear-text and garbage bytes on a TLS port, the handshake
timeout, start-up errors, certificate reload and the Secure affinity cookie.

Certificates are made at test time with the openssl CLI: one CA per run, leaf
certificates with subjectAltName DNS names under .test. Clients are Python's ssl
module (verifying against that CA, SNI with server_hostname=), http.client, raw
sockets wrapped in TLS, and curl with --cacert and --resolve.

Run: cd tests/e2e && TETHER_BIN=... python3 -m unittest -v test_tls
"""

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest
from signal import SIGTERM

from harness import (E2ETestCase, RawClient, http_get, parse_responses, require_program,
                     run_tether, wait_until)
from test_http_core import (FAST_HEALTH, RssSampler, app_requests, big_pattern_sha, curl,
                            echo_headers, hget, read_stream_lines, wait_ready, with_health)
from wsutil import (OP_BINARY, OP_CLOSE, OP_TEXT, accept_for, close_payload, frame, new_key,
                    recv_frame, upgrade_head)

MiB = 1 << 20
HANDSHAKES = "tether_tls_handshakes_total"
RELOADS = "tether_config_reloads_total"


def cert_path(listener, index):
    """The dotted configuration path of one certificate entry."""
    return "listeners[%d].tls.certificates[%d]" % (listener, index)


# ---------------------------------------------------------------------------------------
# Certificates, made once per run with the openssl CLI

_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""

_LEAF_CNF = """\
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
subjectAltName = %s
"""


class Certs:
    """A CA and leaf certificates signed by it, in a temporary directory.

    Leaves (name: subjectAltName DNS names, key type):
      a   a.test     EC P-256   the default (first) certificate in most tests
      b   *.b.test   EC P-256   a wildcard
      c   c.test     RSA 2048
      a2  a.test     EC P-256   another certificate for a.test (reload)
    """

    LEAVES = {"a": (["a.test"], "ec"), "b": (["*.b.test"], "ec"), "c": (["c.test"], "rsa"),
              "a2": (["a.test"], "ec")}

    def __init__(self):
        self.openssl = require_program("openssl")
        self.dir = tempfile.mkdtemp(prefix="tether-tls-certs-")
        self.cnf = os.path.join(self.dir, "openssl.cnf")
        with open(self.cnf, "w") as f:
            f.write(_CNF)
        self.ca = os.path.join(self.dir, "ca.pem")
        self.ca_key = os.path.join(self.dir, "ca.key")
        self._run("req", "-x509", "-config", self.cnf, "-extensions", "ca",
                  *self._newkey("ec"), "-nodes", "-keyout", self.ca_key, "-out", self.ca,
                  "-days", "30", "-subj", "/CN=tether e2e test CA")
        for i, (name, (names, kind)) in enumerate(sorted(self.LEAVES.items())):
            self._leaf(name, names, kind, serial=0x7E7E0000 + i)

    @staticmethod
    def _newkey(kind):
        if kind == "rsa":
            return ["-newkey", "rsa:2048"]
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]

    def _run(self, *args):
        # A private config file: the host's openssl.cnf cannot add or clash with extensions.
        p = subprocess.run([self.openssl, *args], capture_output=True, timeout=60,
                           cwd=self.dir, env=dict(os.environ, OPENSSL_CONF=self.cnf))
        if p.returncode != 0:
            raise AssertionError("openssl %s failed (%d): %s" % (
                " ".join(args[:3]), p.returncode, p.stderr.decode("utf-8", "replace")))

    def _leaf(self, name, dns_names, kind, serial):
        key, csr, pem = (os.path.join(self.dir, name + ext) for ext in (".key", ".csr", ".pem"))
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write(_LEAF_CNF % ", ".join("DNS:" + n for n in dns_names))
        self._run("req", "-new", "-config", self.cnf, *self._newkey(kind), "-nodes",
                  "-keyout", key, "-out", csr, "-subj", "/CN=" + dns_names[0])
        self._run("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                  "-set_serial", str(serial), "-days", "30", "-extfile", ext,
                  "-extensions", "leaf", "-out", pem)

    def cert(self, name):
        return os.path.join(self.dir, name + ".pem")

    def key(self, name):
        return os.path.join(self.dir, name + ".key")

    def pair(self, name):
        return self.cert(name), self.key(name)

    def der(self, name):
        with open(self.cert(name)) as f:
            return ssl.PEM_cert_to_DER_cert(f.read())

    def name_of(self, der):
        """Which leaf a DER certificate is (for readable failures)."""
        for n in self.LEAVES:
            if self.der(n) == der:
                return n
        return "unknown certificate"

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


CERTS = None


def setUpModule():
    global CERTS
    CERTS = Certs()


def tearDownModule():
    global CERTS
    if CERTS is not None:
        CERTS.cleanup()
        CERTS = None  # a module that imports this one may run after: it makes its own


# ---------------------------------------------------------------------------------------
# Clients


def client_ctx(alpn=None, check_hostname=True, version=None):
    """A client context trusting only the test CA. check_hostname=False still verifies
    the chain (for SNI names no certificate covers); version pins one TLS version."""
    ctx = ssl.create_default_context(cafile=CERTS.ca)
    if not check_hostname:
        ctx.check_hostname = False
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


class TlsClient(RawClient):
    """harness.RawClient over TLS: the same .send/.recv_response/.recv_until/.is_closed,
    so wsutil.recv_frame works on it too. sni=None sends no server name."""

    def __init__(self, port, sni="a.test", ctx=None, timeout=5.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ctx is None:
            ctx = client_ctx(check_hostname=sni is not None)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise
        self.timeout = timeout
        self.buffer = b""
        self.eof = False

    def _recv_some(self, deadline):
        try:
            return super()._recv_some(deadline)
        except ssl.SSLError:  # an alert or a broken record: the connection is over
            self.eof = True
            return False

    @property
    def der(self):
        return self.sock.getpeercert(binary_form=True)


class HttpsConnection(http.client.HTTPSConnection):
    """http.client over TLS to 127.0.0.1:port with `sni` as server name, certificate
    name and Host. Unlike the base class it never reconnects silently: tests compare
    .sock before and after to prove one TLS connection carried everything."""

    def __init__(self, port, sni="a.test", ctx=None, timeout=15.0):
        super().__init__(sni, port, timeout=timeout, context=ctx or client_ctx())
        self.tether_port = port
        self.connects = 0

    def connect(self):
        raw = socket.create_connection(("127.0.0.1", self.tether_port), self.timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)
        self.connects += 1

    def fetch(self, method, path, body=None, headers=None, **kw):
        """One request on this connection; returns (response, body bytes)."""
        self.request(method, path, body=body, headers=headers or {}, **kw)
        r = self.getresponse()
        return r, r.read()


def client_hello(sni="a.test"):
    """The bytes of a real ClientHello (TLS records), made with a memory BIO."""
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = out.read()
    assert hello[:1] == b"\x16" and len(hello) > 100, hello[:20]
    return hello


def curl_https(port, path, *args, host="a.test", timeout=60):
    """curl to https://host:port/path, host resolved to 127.0.0.1, trusting the test CA."""
    return curl("--cacert", CERTS.ca, "--resolve", "%s:%d:127.0.0.1" % (host, port),
                *args, "https://%s:%d%s" % (host, port, path), timeout=timeout)


def all_text(completed):
    """stdout + stderr of a run_tether, plus every string inside its JSON log lines
    decoded (a JSON writer may escape "/" in file names)."""
    parts = [completed.stdout, completed.stderr]

    def strings(v):
        if isinstance(v, str):
            parts.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                strings(x)
        elif isinstance(v, list):
            for x in v:
                strings(x)

    for line in (completed.stdout + "\n" + completed.stderr).splitlines():
        try:
            strings(json.loads(line))
        except ValueError:
            pass
    return "\n".join(parts)


def write_file(path, data):
    """Replaces a file atomically (a reload never sees half of it)."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.replace(tmp, path)


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# ---------------------------------------------------------------------------------------


class TlsTestCase(E2ETestCase):
    def tls_listener(self, names=("a",), files=None, address="127.0.0.1:0"):
        """A listener entry; files: [(cert, key)] paths instead of named leaves."""
        pairs = list(files) if files is not None else [CERTS.pair(n) for n in names]
        return {"address": address,
                "tls": {"certificates": [{"cert": c, "key": k} for c, k in pairs]}}

    def start_tls(self, upstreams, names=("a",), files=None, config=None, extra_listeners=(),
                  ready=True):
        """tether with one TLS listener (plus extra_listeners) in front of upstreams."""
        cfg = {"listeners": [self.tls_listener(names, files)] + list(extra_listeners),
               "health": dict(FAST_HEALTH)}
        cfg.update(config or {})
        t = self.start_tether(backends=[u.url for u in upstreams], config=cfg, listen=[])
        if ready:
            wait_ready(t)
        return t

    def tls_client(self, port, **kw):
        c = TlsClient(port, **kw)
        self.addCleanup(c.close)
        return c

    def https(self, port, **kw):
        conn = HttpsConnection(port, **kw)
        self.addCleanup(conn.close)
        return conn

    def peer_der(self, port, sni="a.test", ctx=None):
        with TlsClient(port, sni=sni, ctx=ctx) as c:
            return c.der

    def assert_served(self, port, sni, name, ctx=None):
        der = self.peer_der(port, sni, ctx)
        self.assertEqual(CERTS.name_of(der), name, "certificate served for SNI %r" % (sni,))
        self.assertEqual(der, CERTS.der(name))

    def get_over(self, c, path="/id", host="a.test"):
        """A GET on an open TlsClient/RawClient; returns the parsed response."""
        c.send(b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path.encode(), host.encode()))
        r = c.recv_response(timeout=5)
        self.assertIsNotNone(r, "no response to GET %s" % path)
        return r

    def counter(self, t, name, **labels):
        return t.metric(name, **labels) or 0.0

    def wait_counter(self, t, name, value, timeout=5.0, **labels):
        try:
            wait_until(lambda: self.counter(t, name, **labels) == value, timeout,
                       msg="%s%r == %r" % (name, labels, value))
        except AssertionError as e:
            raise AssertionError("%s; it is %r" % (e, self.counter(t, name, **labels))) from None


# ---------------------------------------------------------------------------------------
# HTTPS through tether


class Https(TlsTestCase):
    def test_get_over_tls_reaches_the_backend_with_x_forwarded_proto_https(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        conn = self.https(t.proxy_port)
        r, body = conn.fetch("GET", "/id")
        self.assertEqual((r.status, body), (200, b"a"))
        self.assertEqual(r.getheader("X-Upstream-Name"), "a")
        # A client's own X-Forwarded-Proto is not trusted: the backend learns the truth.
        r, body = conn.fetch("GET", "/echo?q=1", headers={"X-Forwarded-Proto": "http"})
        self.assertEqual(r.status, 200, body)
        e = json.loads(body)
        hs = echo_headers(body)
        self.assertEqual((e["method"], e["query"]), ("GET", "q=1"))
        self.assertEqual(hget(hs, "X-Forwarded-Proto"), ["https"])
        self.assertEqual(hget(hs, "Host"), ["a.test:%d" % t.proxy_port])
        self.assertEqual(hget(hs, "X-Forwarded-Host"), ["a.test:%d" % t.proxy_port])
        self.assertEqual(hget(hs, "X-Forwarded-For"), ["127.0.0.1"])

    def test_curl_verifies_the_certificate_and_fetches(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        r = curl_https(t.proxy_port, "/echo", "-D", "-")
        self.assertEqual(r.returncode, 0, r.stderr)
        head, _, body = r.stdout.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/2 200"), head[:200])  # curl prefers h2
        self.assertEqual(hget(echo_headers(body), "X-Forwarded-Proto"), ["https"])
        # Counter-check: without the test CA, curl refuses the certificate (exit 60).
        r = curl("--resolve", "a.test:%d:127.0.0.1" % t.proxy_port,
                 "https://a.test:%d/id" % t.proxy_port)
        self.assertEqual(r.returncode, 60, r.stderr)

    def test_plain_listener_beside_a_tls_listener_says_http(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up], extra_listeners=[{"address": "127.0.0.1:0"}])
        ports = t.proxy_ports
        self.assertEqual(len(ports), 2, t.proxy_addresses)
        tls_port, plain_port = ports  # logged in configuration order
        r = http_get("http://127.0.0.1:%d/echo" % plain_port)
        self.assertEqual(r.status, 200)
        self.assertEqual(hget(echo_headers(r.body), "X-Forwarded-Proto"), ["http"])
        r, body = self.https(tls_port).fetch("GET", "/echo")
        self.assertEqual(r.status, 200)
        self.assertEqual(hget(echo_headers(body), "X-Forwarded-Proto"), ["https"])

    def test_tls_1_2_and_tls_1_3_both_work(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        for version, name in ((ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                              (ssl.TLSVersion.TLSv1_3, "TLSv1.3")):
            c = self.tls_client(t.proxy_port, ctx=client_ctx(version=version))
            self.assertEqual(c.sock.version(), name)
            r = self.get_over(c)
            self.assertEqual((r.status, r.body), (200, b"a"), name)

    def test_client_hello_arriving_in_small_pieces(self):
        # A ClientHello split inside its record header: tether must not decide
        # "TLS or clear text" or start the handshake on a partial first read.
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        raw = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=5)
        self.addCleanup(raw.close)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = client_ctx().wrap_bio(inc, out, server_hostname="a.test")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        for piece in (hello[:1], hello[1:3], hello[3:5], hello[5:40], hello[40:]):
            raw.sendall(piece)
            time.sleep(0.03)  # the stimulus: separate segments, read apart
        deadline = time.monotonic() + 5
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                pending = out.read()
                if pending:
                    raw.sendall(pending)
                self.assertLess(time.monotonic(), deadline, "handshake did not finish")
                data = raw.recv(65536)
                self.assertTrue(data, "tether closed during the handshake")
                inc.write(data)
        self.assertEqual(obj.getpeercert(binary_form=True), CERTS.der("a"))
        obj.write(b"GET /id HTTP/1.1\r\nHost: a.test\r\n\r\n")
        raw.sendall(out.read())
        got = b""
        while not parse_responses(got):
            self.assertLess(time.monotonic(), deadline, "no response: %r" % got[:200])
            try:
                got += obj.read(65536)
                continue
            except ssl.SSLWantReadError:
                pending = out.read()
                if pending:
                    raw.sendall(pending)
            data = raw.recv(65536)
            self.assertTrue(data, "tether closed before answering")
            inc.write(data)
        r = parse_responses(got)[0]
        self.assertEqual((r.status, r.body), (200, b"a"))


# ---------------------------------------------------------------------------------------
# SNI


class Ciphers(TlsTestCase):
    """Issue 12, item 17: TLS 1.2 offers ECDHE with AES-GCM or ChaCha20-Poly1305 only, in
    the server's order; TLS 1.3 keeps OpenSSL's defaults."""

    REFUSED = {
        "CBC": "ECDHE-ECDSA-AES128-SHA256:ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:"
               "ECDHE-RSA-AES256-SHA384",
        "CBC with SHA-1": "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA:"
                          "ECDHE-RSA-AES256-SHA",
        "RSA key exchange": "AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-SHA:AES256-SHA256",
    }

    def tls12_ctx(self, ciphers):
        ctx = client_ctx(version=ssl.TLSVersion.TLSv1_2)
        ctx.set_ciphers(ciphers + ":@SECLEVEL=0")  # let the client offer old suites
        return ctx

    def test_cbc_and_rsa_key_exchange_clients_are_refused(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up], names=("a", "c"))  # an EC and an RSA certificate
        refused = 0
        for what, ciphers in sorted(self.REFUSED.items()):
            for sni in ("a.test", "c.test"):
                with self.subTest(what=what, sni=sni):
                    with self.assertRaises((ssl.SSLError, ConnectionError)):
                        self.tls_client(t.proxy_port, sni=sni, ctx=self.tls12_ctx(ciphers))
                    refused += 1
        self.wait_counter(t, HANDSHAKES, refused, result="error")
        # The listener still serves a modern client.
        r, body = self.https(t.proxy_port).fetch("GET", "/id")
        self.assertEqual((r.status, body), (200, b"a"))

    def test_gcm_and_chacha_clients_work(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up], names=("a", "c"))
        for sni, kx in (("a.test", "ECDHE-ECDSA"), ("c.test", "ECDHE-RSA")):
            for suite in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305"):
                name = kx + "-" + suite
                with self.subTest(cipher=name):
                    c = self.tls_client(t.proxy_port, sni=sni, ctx=self.tls12_ctx(name))
                    self.assertEqual(c.sock.version(), "TLSv1.2")
                    self.assertEqual(c.sock.cipher()[0], name)
                    r = self.get_over(c, host=sni)
                    self.assertEqual((r.status, r.body), (200, b"a"))

    def test_the_servers_order_wins_on_tls_1_2(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        # The client prefers CBC, then ChaCha20; tether's list puts AES-128-GCM first.
        c = self.tls_client(t.proxy_port, ctx=self.tls12_ctx(
            "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"))
        self.assertEqual(c.sock.cipher()[0], "ECDHE-ECDSA-AES128-GCM-SHA256")

    def test_tls_1_3_uses_an_aead_suite(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        c = self.tls_client(t.proxy_port, ctx=client_ctx(version=ssl.TLSVersion.TLSv1_3))
        self.assertIn(c.sock.cipher()[0], ("TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256",
                                           "TLS_CHACHA20_POLY1305_SHA256"))
        self.assertEqual(self.get_over(c).status, 200)


class Sni(TlsTestCase):
    def test_sni_picks_the_certificate_whose_names_match(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up], names=("a", "b", "c"))
        # The default context verifies the chain and the name: the handshake itself
        # proves the certificate covers the SNI; the DER says which one it was.
        for sni, name in (("a.test", "a"), ("x.b.test", "b"), ("other.b.test", "b"),
                          ("c.test", "c")):
            self.assert_served(t.proxy_port, sni, name)
        # Requests flow whichever certificate was chosen.
        for sni in ("x.b.test", "c.test"):
            c = self.tls_client(t.proxy_port, sni=sni)
            r = self.get_over(c, host=sni)
            self.assertEqual((r.status, r.body), (200, b"a"), sni)

    def test_wildcard_covers_exactly_one_label(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up], names=("a", "b"))
        chain_only = client_ctx(check_hostname=False)
        self.assert_served(t.proxy_port, "x.b.test", "b", chain_only)
        # *.b.test covers neither b.test itself nor two labels: the default answers.
        self.assert_served(t.proxy_port, "b.test", "a", chain_only)
        self.assert_served(t.proxy_port, "y.x.b.test", "a", chain_only)
        self.assert_served(t.proxy_port, "xb.test", "a", chain_only)

    def test_unknown_or_missing_sni_gets_the_first_certificate(self):
        up = self.start_http_upstream(name="a")
        chain_only = client_ctx(check_hostname=False)
        t = self.start_tls([up], names=("a", "b", "c"))
        self.assert_served(t.proxy_port, "unknown.test", "a", chain_only)
        self.assert_served(t.proxy_port, None, "a", chain_only)
        # "First" means the list's order, not a favourite name: c first, c the default.
        t2 = self.start_tls([up], names=("c", "a"))
        self.assert_served(t2.proxy_port, None, "c", chain_only)
        self.assert_served(t2.proxy_port, "unknown.test", "c", chain_only)
        self.assert_served(t2.proxy_port, "a.test", "a")
        c = self.tls_client(t2.proxy_port, sni=None, ctx=chain_only)
        r = self.get_over(c, host="127.0.0.1")
        self.assertEqual((r.status, r.body), (200, b"a"))


# ---------------------------------------------------------------------------------------
# ALPN


class Alpn(TlsTestCase):
    def test_h2_is_preferred_and_http_1_1_still_works(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        for offer, want in ((["h2", "http/1.1"], "h2"), (["http/1.1", "h2"], "h2"),
                            (["http/1.1"], "http/1.1"), (None, None)):
            c = self.tls_client(t.proxy_port, ctx=client_ctx(alpn=offer))
            self.assertEqual(c.sock.selected_alpn_protocol(), want, offer)
            if want == "h2":
                continue  # test_http2.py speaks it
            r = self.get_over(c)
            self.assertEqual((r.version, r.status, r.body), ("HTTP/1.1", 200, b"a"), offer)
            r = self.get_over(c, "/echo")
            self.assertEqual(json.loads(r.body)["method"], "GET", offer)

    def test_curl_http2_gets_h2_unless_the_listener_offers_only_http_1_1(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        r = curl_https(t.proxy_port, "/id", "--http2", "-w", "\n%{http_code} %{http_version}")
        self.assertEqual(r.returncode, 0, r.stderr)
        body, _, tail = r.stdout.rpartition(b"\n")
        self.assertEqual((body, tail), (b"a", b"200 2"))
        listener = self.tls_listener()
        listener["tls"]["alpn"] = ["http/1.1"]
        t2 = self.start_tether(backends=[up.url], listen=[],
                               config={"listeners": [listener], "health": dict(FAST_HEALTH)})
        wait_ready(t2)
        r = curl_https(t2.proxy_port, "/id", "--http2", "-w", "\n%{http_code} %{http_version}")
        self.assertEqual(r.returncode, 0, r.stderr)
        body, _, tail = r.stdout.rpartition(b"\n")
        self.assertEqual((body, tail), (b"a", b"200 1.1"))


# ---------------------------------------------------------------------------------------
# Keep-alive and pipelining inside TLS


class KeepAlive(TlsTestCase):
    def test_several_requests_share_one_tls_connection(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        ok0 = self.counter(t, HANDSHAKES, result="ok")
        conn = self.https(t.proxy_port)
        conn.connect()
        sock = conn.sock
        steps = [("GET", "/echo?i=1", None, 200), ("POST", "/echo?i=2", b"hello", 200),
                 ("GET", "/status/404", None, 404), ("GET", "/chunked?n=3&delay_ms=10", None, 200),
                 ("HEAD", "/big?bytes=1000", None, 200), ("GET", "/echo?i=6", None, 200)]
        for method, path, body, status in steps:
            r, data = conn.fetch(method, path, body=body)
            self.assertEqual(r.status, status, (method, path, data[:200]))
            self.assertIs(conn.sock, sock, "tether closed the TLS connection after %s %s"
                          % (method, path))
            if path.startswith("/echo"):
                e = json.loads(data)
                self.assertEqual((e["method"], e["query"]), (method, path.split("?")[1]))
                self.assertEqual(e["body_length"], len(body or b""))
            if path.startswith("/chunked"):
                self.assertIn(b"chunk 2", data)
            if method == "HEAD":
                self.assertEqual((data, r.getheader("Content-Length")), (b"", "1000"))
        self.assertEqual(conn.connects, 1)
        self.wait_counter(t, HANDSHAKES, ok0 + 1, result="ok")

    def test_two_pipelined_requests_in_one_write_are_answered_in_order(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        c = self.tls_client(t.proxy_port)
        c.send(b"GET /echo?i=1 HTTP/1.1\r\nHost: a.test\r\n\r\n"
               b"POST /echo?i=2 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\n\r\nhello")
        got = [c.recv_response(timeout=5) for _ in range(2)]
        self.assertNotIn(None, got, got)
        self.assertEqual([r.status for r in got], [200, 200])
        e1, e2 = (json.loads(r.body) for r in got)
        self.assertEqual((e1["query"], e2["query"]), ("i=1", "i=2"))
        self.assertEqual((e2["method"], e2["body_length"], e2["body_sha256"]),
                         ("POST", 5, hashlib.sha256(b"hello").hexdigest()))
        self.assertFalse(c.is_closed(0.2), "tether closed a keep-alive TLS connection")
        r = self.get_over(c)
        self.assertEqual((r.status, r.body), (200, b"a"))

    def test_pipeline_spanning_several_tls_records(self):
        # 40 requests of ~1 KiB in one write: more than two 16 KiB TLS records, so
        # request heads straddle record boundaries.
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        c = self.tls_client(t.proxy_port)
        n = 40
        c.send(b"".join(b"GET /echo?i=%d HTTP/1.1\r\nHost: a.test\r\nX-Pad: %s\r\n\r\n"
                        % (i, b"p" * (1000 + i)) for i in range(n)))
        got = []
        for _ in range(n):
            r = c.recv_response(timeout=10)
            self.assertIsNotNone(r, "only %d of %d responses arrived" % (len(got), n))
            got.append(r)
        self.assertEqual([json.loads(r.body)["query"] for r in got],
                         ["i=%d" % i for i in range(n)])
        self.assertEqual([hget(echo_headers(r.body), "X-Pad")[0] for r in got],
                         ["p" * (1000 + i) for i in range(n)])


    def test_http_1_0_over_tls_ends_with_close(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        c = self.tls_client(t.proxy_port)
        c.send(b"GET /chunked?n=3&delay_ms=10&size=8 HTTP/1.0\r\nHost: a.test\r\n\r\n")
        data = c.recv_all(timeout=5)
        self.assertTrue(c.eof, "an HTTP/1.0 response without keep-alive must end with close")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1."), head[:100])
        self.assertNotIn(b"transfer-encoding: chunked", head.lower())
        self.assertEqual(body, b"chunk 0 chunk 1 chunk 2 ")

    def test_sigterm_lets_a_tls_request_finish_and_closes_idle_ones(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        idle = self.tls_client(t.proxy_port)
        self.assertEqual(self.get_over(idle).status, 200)
        busy = self.tls_client(t.proxy_port, timeout=10)
        busy.send(b"GET /sleep/800 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        wait_until(lambda: json.loads(http_get(up.url + "/stats").body)["paths"]
                   .get("/sleep/800") == 1, 5, msg="the slow request reached the backend")
        t.signal(SIGTERM)
        r = busy.recv_response(timeout=10)
        self.assertIsNotNone(r, "the in-flight TLS request was cut off by SIGTERM")
        self.assertEqual((r.status, r.body), (200, b"slept 800\n"))
        self.assertTrue(idle.is_closed(5), "the idle TLS connection was not closed")
        self.assertTrue(busy.is_closed(5), "the finished TLS connection was not closed")
        self.assertEqual(t.wait_exit(timeout=10), 0)

    def test_50_concurrent_tls_clients(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up], names=("a", "b"))
        ok0 = self.counter(t, HANDSHAKES, result="ok")
        n = 50
        results = [None] * n

        def client(i):
            sni = "a.test" if i % 2 else "n%d.b.test" % i
            conn = HttpsConnection(t.proxy_port, sni=sni, timeout=20)
            try:
                out = []
                for j in range(3):
                    r, body = conn.fetch("GET", "/echo?c=%d&j=%d" % (i, j))
                    out.append((r.status, json.loads(body)["query"]))
                results[i] = (out, conn.connects)
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = repr(e)
            finally:
                conn.close()

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        want = [([(200, "c=%d&j=%d" % (i, j)) for j in range(3)], 1) for i in range(n)]
        self.assertEqual(results, want)
        self.wait_counter(t, HANDSHAKES, ok0 + n, result="ok")
        self.wait_counter(t, "tether_downstream_connections_active", 0)


# ---------------------------------------------------------------------------------------
# Bodies


class Bodies(TlsTestCase):
    def test_64_mib_upload_with_content_length_and_chunked(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        base = os.urandom(MiB)
        n = 64

        def blocks():
            for i in range(n):
                yield base[i:] + base[:i]

        h = hashlib.sha256()
        for b in blocks():
            h.update(b)
        want = (n * MiB, h.hexdigest())
        conn = self.https(t.proxy_port, timeout=120)
        r, body = conn.fetch("POST", "/echo", body=blocks(),
                             headers={"Content-Length": str(n * MiB),
                                      "Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 200, body[:300])
        e = json.loads(body)
        self.assertEqual((e["body_length"], e["body_sha256"]), want, "Content-Length")
        self.assertEqual(hget(echo_headers(body), "Content-Length"), [str(n * MiB)])
        r, body = conn.fetch("POST", "/echo", body=blocks(), encode_chunked=True,
                             headers={"Transfer-Encoding": "chunked",
                                      "Content-Type": "application/octet-stream"})
        self.assertEqual(r.status, 200, body[:300])
        e = json.loads(body)
        self.assertEqual((e["body_length"], e["body_sha256"]), want, "chunked")
        self.assertEqual(hget(echo_headers(body), "Transfer-Encoding"), ["chunked"])
        self.assertEqual(conn.connects, 1)

    def test_large_download_with_content_length_and_chunked(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        total = 8 * MiB + 3
        want = (total, big_pattern_sha(total))
        conn = self.https(t.proxy_port, timeout=60)
        for q in ("", "&chunked=1"):
            conn.request("GET", "/big?bytes=%d%s" % (total, q))
            r = conn.getresponse()
            self.assertEqual(r.status, 200, q)
            h, got = hashlib.sha256(), 0
            for _ in range(total // 65536 + 100):
                b = r.read(65536)
                if not b:
                    break
                h.update(b)
                got += len(b)
            self.assertEqual((got, h.hexdigest()), want, q)
            if q:
                self.assertEqual(r.getheader("Transfer-Encoding"), "chunked")
            else:
                self.assertEqual(r.getheader("Content-Length"), str(total))
        self.assertEqual(conn.connects, 1)
        # And with curl.
        r = curl_https(t.proxy_port, "/big?bytes=%d" % total, "-o", "-")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual((len(r.stdout), hashlib.sha256(r.stdout).hexdigest()), want)


    def test_expect_100_continue_over_tls(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        c = self.tls_client(t.proxy_port)
        c.send(b"POST /echo HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n"
               b"Content-Length: 5\r\n\r\n")
        interim = c.recv_until(b"\r\n\r\n", timeout=5)
        self.assertTrue(interim.startswith(b"HTTP/1.1 100"), interim)
        c.send(b"hello")
        r = c.recv_response(timeout=5)
        self.assertEqual(r.status if r else None, 200)
        e = json.loads(r.body)
        self.assertEqual((e["body_length"], e["body_sha256"]),
                         (5, hashlib.sha256(b"hello").hexdigest()))

    @unittest.skipIf(os.environ.get("TETHER_SANITIZED"),
                     "resident memory under ASan is not tether's")
    def test_slow_tls_reader_gets_backpressure_not_buffering(self):
        # Encryption must not turn into an unbounded buffer: while the client reads
        # nothing, tether stops reading the backend.
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        total = 128 * MiB
        raw = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=60)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        c = client_ctx().wrap_socket(raw, server_hostname="a.test")
        self.addCleanup(c.close)
        c.sendall(b"GET /big?bytes=%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % total)
        sampler = RssSampler(t.proc.pid)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:  # the stimulus: a client that reads nothing
            time.sleep(0.05)
        peak = sampler.stop()
        self.assertLess(peak, 64 * 1024, "tether buffered: RSS peaked at %d KiB" % peak)
        data = b""
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = c.recv(65536)
            self.assertTrue(chunk, "closed before the response head")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200"), head[:200])
        h, got = hashlib.sha256(rest), len(rest)
        deadline = time.monotonic() + 120
        while got < total and time.monotonic() < deadline:
            chunk = c.recv(MiB)
            if not chunk:
                break
            h.update(chunk)
            got += len(chunk)
        self.assertEqual((got, h.hexdigest()), (total, big_pattern_sha(total)))

    def test_client_vanishing_mid_download_frees_its_connection(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        for how in ("close", "reset"):
            c = TlsClient(t.proxy_port, timeout=10)
            c.send(b"GET /big?bytes=%d HTTP/1.1\r\nHost: a.test\r\n\r\n" % (64 * MiB))
            self.assertIn(b" 200 ", c.recv_until(b"\r\n\r\n"))
            deadline = time.monotonic() + 10
            while len(c.buffer) < MiB and c._recv_some(deadline):  # noqa: SLF001 - some body
                pass
            self.assertGreaterEqual(len(c.buffer), MiB, "the download did not start")
            if how == "reset":
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
            self.wait_counter(t, "tether_downstream_connections_active", 0, timeout=10)
        # And tether carries on.
        r, body = self.https(t.proxy_port).fetch("GET", "/id")
        self.assertEqual((r.status, body), (200, b"a"))


# ---------------------------------------------------------------------------------------
# Streaming


class Streaming(TlsTestCase):
    def test_sse_events_arrive_one_by_one_over_tls(self):
        app = self.start_sse_app(name="s")
        t = self.start_tls([app])
        exe = require_program("curl")
        port = t.proxy_port
        p = subprocess.Popen([exe, "-sS", "-N", "--noproxy", "*", "--cacert", CERTS.ca,
                              "--resolve", "a.test:%d:127.0.0.1" % port,
                              "https://a.test:%d/sse?n=7&interval_ms=300" % port],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.addCleanup(lambda: (p.poll() is None and p.kill(), p.wait(5),
                                 p.stdout.close(), p.stderr.close()))
        lines = read_stream_lines(p, time.monotonic() + 20,
                                  lambda l: l.startswith(b"data: [DONE]"))
        self.assertEqual(p.wait(10), 0, p.stderr.read()[-500:])
        events = [(at, json.loads(l[6:])) for at, l in lines if l.startswith(b"data: {")]
        self.assertEqual([e["i"] for _, e in events], list(range(7)))
        self.assertTrue(lines[-1][1].startswith(b"data: [DONE]"), lines[-1])
        arrivals = [at for at, _ in events]
        self.assertGreater(arrivals[-1] - arrivals[0], 0.3 * 6 * 0.6,
                           "events arrived bunched: %r"
                           % [round(a - arrivals[0], 3) for a in arrivals])
        for a, b in zip(arrivals, arrivals[1:]):
            self.assertGreater(b - a, 0.3 * 0.3, "two events arrived together")
        # Sent-to-arrived delay on one host's clock: TLS held no event back.
        wall_minus_mono = time.time() - time.monotonic()
        lags = [at + wall_minus_mono - e["t"] for at, e in events]
        self.assertLess(max(lags), 0.25, lags)


# ---------------------------------------------------------------------------------------
# WebSocket over TLS


class SecureWebSocket(TlsTestCase):
    def wss(self, t, path="/"):
        c = self.tls_client(t.proxy_port)
        key = new_key()
        c.send(upgrade_head("a.test:%d" % t.proxy_port, path, key))
        head = c.recv_until(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101"), head)
        self.assertIn(("Sec-WebSocket-Accept: " + accept_for(key)).encode(), head)
        return c

    def echo(self, c, opcode, payload, timeout=5.0):
        c.send(frame(opcode, payload))
        f = recv_frame(c, timeout)
        self.assertIsNotNone(f, "no echo of a %d-byte message" % len(payload))
        self.assertEqual((f.opcode, f.payload == payload, len(f.payload)),
                         (opcode, True, len(payload)))
        self.assertFalse(f.masked)

    def test_upgrade_and_echo_text_and_a_1_mib_binary_message(self):
        up = self.start_ws_echo()
        t = self.start_tls([up])
        c = self.wss(t, "/headers")
        f = recv_frame(c)
        self.assertIsNotNone(f, "no headers message from the backend")
        seen = {}
        for k, v in json.loads(f.payload):
            seen.setdefault(k.lower(), []).append(v)
        self.assertEqual(seen.get("x-forwarded-proto"), ["https"])
        self.echo(c, OP_TEXT, "héllo over TLS".encode())
        self.echo(c, OP_BINARY, os.urandom(MiB), timeout=30)
        self.echo(c, OP_TEXT, b"after the big one")
        c.send(frame(OP_CLOSE, close_payload(1000)))
        f = recv_frame(c)
        self.assertEqual((f.opcode, f.payload[:2]) if f else None,
                         (OP_CLOSE, struct.pack("!H", 1000)))
        self.assertTrue(c.is_closed(3), "the TLS connection stayed open after the close")

    def test_sigterm_sends_1001_over_tls_and_exits_0(self):
        up = self.start_ws_echo()
        t = self.start_tls([up])
        c = self.wss(t)
        self.echo(c, OP_TEXT, b"before")
        t.signal(SIGTERM)
        f = recv_frame(c, timeout=10)
        self.assertIsNotNone(f, "no close frame after SIGTERM")
        self.assertEqual(f.opcode, OP_CLOSE)
        self.assertEqual(struct.unpack("!H", f.payload[:2])[0], 1001)
        self.assertFalse(f.masked)
        c.send(frame(OP_CLOSE, close_payload(1001)))
        self.assertTrue(c.is_closed(5), "tether did not close after the close handshake")
        self.assertEqual(t.wait_exit(timeout=10), 0)


# ---------------------------------------------------------------------------------------
# What is not TLS


class ClientsThatVanish(TlsTestCase):
    """Clients that reset their connection around the last response: the close_notify
    tether writes then fails, which once freed the session inside its own call (a
    remote crash of any HTTPS listener, found by h2load --h1 ending its run)."""

    def test_resets_around_the_last_response_leave_tether_serving(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        ctx = client_ctx()
        linger = struct.pack("ii", 1, 0)  # close() sends RST
        deadline = time.monotonic() + 60
        for i in range(120):
            if time.monotonic() > deadline:
                break
            raw = socket.create_connection(("127.0.0.1", t.proxy_port), timeout=5)
            s = ctx.wrap_socket(raw, server_hostname="a.test")
            close = i % 2 == 0
            s.sendall(b"GET /id HTTP/1.1\r\nHost: a.test\r\n%s\r\n"
                      % (b"Connection: close\r\n" if close else b""))
            if i % 3:
                try:
                    s.recv(64)  # the response started: the reset lands around its end
                except OSError:
                    pass
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            s.close()
            if not t.running:
                break
        self.assertTrue(t.running, "tether died:\n" + t.tail(40))
        r = curl_https(t.proxy_port, "/id")
        self.assertEqual((r.returncode, r.stdout), (0, b"a"), r.stderr)


class NotTls(TlsTestCase):
    def setUp(self):
        self.up = self.scripted_upstream(with_health(lambda req: (200, {}, b"ok")))
        self.t = self.start_tls([self.up], config={"timeouts": {"request_header": "1s"},
                                                   "limits": {"max_request_header_bytes": "4KiB"}})
        # A keep-alive TLS connection opened before the bad input: it must carry on.
        self.bystander = self.tls_client(self.t.proxy_port)
        self.assert_bystander_ok()

    def assert_bystander_ok(self):
        r = self.get_over(self.bystander, "/bystander")
        self.assertEqual((r.status, r.body), (200, b"ok"), "the bystander TLS connection")

    def assert_fresh_tls_ok(self):
        with TlsClient(self.t.proxy_port) as c:
            r = self.get_over(c, "/fresh")
            self.assertEqual((r.status, r.body), (200, b"ok"))

    def paths_seen(self):
        return [q.path for q in app_requests(self.up)]

    def test_plain_http_request_gets_a_clear_text_400_mentioning_https(self):
        req = b"GET /plain HTTP/1.1\r\nHost: a.test\r\n\r\n"
        for pieces in ([req], [req[:1], req[1:]]):
            c = self.raw_client(self.t.proxy_port)
            for i, piece in enumerate(pieces):
                if i:
                    time.sleep(0.05)  # the stimulus: a first read of one byte
                c.send(piece)
            r = c.recv_response(timeout=5)
            self.assertIsNotNone(r, "no clear-text answer to plain HTTP (%d pieces)"
                                 % len(pieces))
            self.assertEqual((r.version, r.status, r.reason), ("HTTP/1.1", 400, "Bad Request"))
            self.assertIn(b"https", r.body.lower(), r.body)
            self.assertTrue(c.is_closed(3), "connection left open after the 400")
            self.assert_bystander_ok()
        self.assertNotIn("/plain", self.paths_seen())
        self.assert_fresh_tls_ok()

    def test_clear_text_400_is_access_logged_truthfully(self):
        mark = len(self.t.logs)
        start = time.monotonic()
        c = self.raw_client(self.t.proxy_port)
        c.send(b"GET /plain HTTP/1.1\r\nHost: a.test\r\nX-Request-Id: plain-1\r\n\r\n")
        r = c.recv_response(timeout=5)
        self.assertEqual(r.status if r else None, 400)
        elapsed = time.monotonic() - start
        rec = self.t.wait_log(lambda x: x.get("status") == 400, msg="access", start=mark)
        self.assertEqual(rec["tls"], "-", rec)  # no handshake: no TLS version
        self.assertGreaterEqual(rec["duration"], 0, rec)
        self.assertLessEqual(rec["duration"], elapsed + 0.5,
                             "a connection of %.3fs logged with duration %r: %r"
                             % (elapsed, rec["duration"], rec))
        # tether may not have parsed the request; then it must not invent one.
        self.assertIn(rec["method"], ("GET", "-"), rec)
        self.assertIn(rec["path"], ("/plain", "-"), rec)

    def test_garbage_is_closed_without_an_answer_and_counted(self):
        ok0 = self.counter(self.t, HANDSHAKES, result="ok")
        err0 = self.counter(self.t, HANDSHAKES, result="error")
        self.assertGreaterEqual(ok0, 1, "the bystander's handshake was not counted")
        garbage = [
            # A handshake record whose length is past the 16 KiB + 2048 a record may be.
            b"\x16\x03\x01\xff\xff" + os.urandom(59),
            # A well-framed record whose ClientHello is random bytes.
            b"\x16\x03\x01\x00\x3b\x01\x00\x00\x37" + os.urandom(55),
            # Neither TLS nor HTTP.
            b"\x00" * 64,
        ]
        for g in garbage:
            c = self.raw_client(self.t.proxy_port)
            c.send(g)
            data = c.recv_all(timeout=5)
            self.assertTrue(c.eof, "connection left open after %r" % g[:8])
            self.assertNotIn(b"HTTP/", data, "an HTTP answer to garbage %r" % g[:8])
            # Nothing, or a TLS alert record (content type 21).
            self.assertIn(data[:1], (b"", b"\x15"), (g[:8], data[:40]))
            self.assert_bystander_ok()
        self.assert_fresh_tls_ok()
        self.assertEqual(self.paths_seen(), ["/bystander"] * 4 + ["/fresh"])
        self.wait_counter(self.t, HANDSHAKES, err0 + len(garbage), result="error")
        self.wait_counter(self.t, HANDSHAKES, ok0 + 1, result="ok")
        # No connection left behind: only the bystander is open.
        self.wait_counter(self.t, "tether_downstream_connections_active", 1)

    def test_silent_and_half_hello_clients_are_closed_after_request_header(self):
        hello = client_hello()
        start = time.monotonic()
        silent = self.raw_client(self.t.proxy_port, timeout=10)
        half = self.raw_client(self.t.proxy_port, timeout=10)
        half.send(hello[:len(hello) // 2])
        for name, c in (("silent", silent), ("half ClientHello", half)):
            data = c.recv_all(timeout=max(0.1, start + 8 - time.monotonic()))
            took = time.monotonic() - start
            self.assertTrue(c.eof, "%s client still open after %.1fs" % (name, took))
            self.assertGreater(took, 0.8, "%s client closed before request_header (1s)" % name)
            self.assertLess(took, 4.0, "%s client closed %.1fs after connecting" % (name, took))
            if c is half:
                self.assertNotIn(b"HTTP/", data, "a clear-text answer to a TLS client")
        self.assert_bystander_ok()
        self.assert_fresh_tls_ok()
        self.wait_counter(self.t, "tether_downstream_connections_active", 1)


    def reject_over_tls(self, data, status, timeout=5.0):
        """Sends data inside a fresh TLS connection; asserts one `status` answer, inside
        TLS, then the close."""
        c = self.tls_client(self.t.proxy_port, timeout=timeout)
        c.send(data)
        r = c.recv_response(timeout=timeout)
        self.assertIsNotNone(r, "no answer inside TLS to %r" % data[:80])
        self.assertEqual(r.status, status, (data[:80], r))
        self.assertTrue(r.body, "an error answer should say what went wrong")
        self.assertTrue(c.is_closed(3), "connection left open after %d" % status)
        return r

    def test_tethers_own_error_answers_are_sent_inside_tls(self):
        self.reject_over_tls(b"GET /a b c HTTP/1.1\r\nHost: a.test\r\n\r\n", 400)
        self.reject_over_tls(b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1\r\n"
                             b"Content-Length: 2\r\n\r\nab", 400)
        self.reject_over_tls(b"GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: " + b"x" * 8000 +
                             b"\r\n\r\n", 431)
        start = time.monotonic()
        self.reject_over_tls(b"GET /slow HTTP/1.1\r\nHost: a.test\r\n", 408)
        self.assertGreater(time.monotonic() - start, 0.8)
        self.assertEqual(self.paths_seen(), ["/bystander"])
        self.assert_bystander_ok()


# ---------------------------------------------------------------------------------------
# Start-up errors


class StartupErrors(TlsTestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="tether-tls-bad-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def bad_file(self, name, data):
        path = os.path.join(self.dir, name)
        write_file(path, data)
        return path

    def run_with(self, pairs, args=()):
        cfg = {"listeners": [self.tls_listener(files=pairs)]}
        try:
            return run_tether(list(args) + ["--admin", "127.0.0.1:0",
                                            "-b", "http://127.0.0.1:9"],
                              config=cfg, timeout=15)
        except subprocess.TimeoutExpired:
            self.fail("tether started (ran 15 s) with certificates %r" % (pairs,))

    def assert_cannot_start(self, pairs, path, files, code=3, args=()):
        r = self.run_with(pairs, args)
        self.assertEqual(r.returncode, code, r)
        out = all_text(r)
        self.assertIn(path, out, r)
        self.assertTrue(any(f in out for f in files), "none of %r named in:\n%s" % (files, out))
        return r

    def test_missing_certificate_file_is_exit_3(self):
        missing = os.path.join(self.dir, "no-such.pem")
        self.assert_cannot_start([(missing, CERTS.key("a"))], cert_path(0, 0), [missing])
        missing_key = os.path.join(self.dir, "no-such.key")
        self.assert_cannot_start([(CERTS.cert("a"), missing_key)], cert_path(0, 0),
                                 [missing_key])

    def test_key_that_does_not_match_the_certificate_is_exit_3(self):
        self.assert_cannot_start([(CERTS.cert("a"), CERTS.key("b"))], cert_path(0, 0),
                                 [CERTS.cert("a"), CERTS.key("b")])

    def test_file_that_is_not_pem_is_exit_3(self):
        text = self.bad_file("text.pem", "this is not a certificate\n")
        self.assert_cannot_start([(text, CERTS.key("a"))], cert_path(0, 0), [text])
        der = self.bad_file("der.pem", CERTS.der("a"))  # a certificate, but DER
        self.assert_cannot_start([(der, CERTS.key("a"))], cert_path(0, 0), [der])
        key = self.bad_file("text.key", "not a key either\n")
        self.assert_cannot_start([(CERTS.cert("a"), key)], cert_path(0, 0), [key])

    def test_error_in_the_second_certificate_names_index_1(self):
        missing = os.path.join(self.dir, "second.pem")
        self.assert_cannot_start([CERTS.pair("a"), (missing, CERTS.key("b"))],
                                 cert_path(0, 1), [missing])

    def test_every_broken_certificate_is_reported(self):
        one, two, three = (os.path.join(self.dir, "missing-%d.pem" % i) for i in range(3))
        cfg = {"listeners": [self.tls_listener(files=[(one, CERTS.key("a")),
                                                      CERTS.pair("b"),
                                                      (two, CERTS.key("a"))]),
                             self.tls_listener(files=[(three, CERTS.key("a"))])]}
        r = run_tether(["--admin", "127.0.0.1:0", "-b", "http://127.0.0.1:9"], config=cfg,
                       timeout=15)
        self.assertEqual(r.returncode, 3, r)
        out = all_text(r)
        for path, f in ((cert_path(0, 0), one), (cert_path(0, 2), two), (cert_path(1, 0), three)):
            self.assertIn(path, out)
            self.assertIn(f, out)
        self.assertNotIn(cert_path(0, 1), out)

    def test_check_config_with_a_missing_certificate_exits_1(self):
        missing = os.path.join(self.dir, "no-such.pem")
        r = self.assert_cannot_start([(missing, CERTS.key("a"))], cert_path(0, 0), [missing],
                                     code=1, args=["--check-config"])
        self.assertTrue(r.stderr.strip() or r.stdout.strip())
        # Counter-check: the same file with real certificates passes.
        r = self.run_with([CERTS.pair("a"), CERTS.pair("b")], args=["--check-config"])
        self.assertEqual(r.returncode, 0, r)


# ---------------------------------------------------------------------------------------
# Reload


class Reload(TlsTestCase):
    def live_files(self, name="a"):
        """Copies leaf `name` to live.pem / live.key in a fresh directory."""
        d = tempfile.mkdtemp(prefix="tether-tls-live-")
        self.addCleanup(shutil.rmtree, d, True)
        cert, key = os.path.join(d, "live.pem"), os.path.join(d, "live.key")
        self.install(cert, key, name)
        return cert, key

    @staticmethod
    def install(cert, key, name):
        write_file(key, read_bytes(CERTS.key(name)))
        write_file(cert, read_bytes(CERTS.cert(name)))

    def reload(self, t, result):
        before = self.counter(t, RELOADS, result=result)
        mark = len(t.logs)
        t.reload()
        self.wait_counter(t, RELOADS, before + 1, result=result)
        return mark

    def wait_served(self, t, name):
        try:
            wait_until(lambda: self.peer_der(t.proxy_port) == CERTS.der(name), 5,
                       msg="new connections get certificate %s" % name)
        except AssertionError as e:
            raise AssertionError("%s; they get %s" % (
                e, CERTS.name_of(self.peer_der(t.proxy_port)))) from None

    def test_sighup_serves_a_rewritten_certificate_and_keeps_open_connections(self):
        up = self.start_http_upstream(name="a")
        cert, key = self.live_files("a")
        t = self.start_tls([up], files=[(cert, key)])
        old = self.https(t.proxy_port)
        old.connect()
        sock = old.sock
        self.assertEqual(sock.getpeercert(binary_form=True), CERTS.der("a"))
        r, body = old.fetch("GET", "/id")
        self.assertEqual((r.status, body), (200, b"a"))
        old_raw = self.tls_client(t.proxy_port)  # open, no request yet
        self.install(cert, key, "a2")
        self.reload(t, "ok")
        self.wait_served(t, "a2")
        # Connections from before the reload carry on, with the certificate they had.
        r, body = old.fetch("GET", "/id")
        self.assertEqual((r.status, body), (200, b"a"))
        self.assertIs(old.sock, sock, "the connection opened before the reload was closed")
        r = self.get_over(old_raw)
        self.assertEqual((r.status, r.body), (200, b"a"))
        self.assertEqual(old_raw.der, CERTS.der("a"))
        with TlsClient(t.proxy_port) as c:
            r = self.get_over(c)
            self.assertEqual((r.status, r.body, c.der == CERTS.der("a2")), (200, b"a", True))

    def test_sighup_with_a_broken_certificate_is_refused_and_the_old_one_served(self):
        up = self.start_http_upstream(name="a")
        cert, key = self.live_files("a")
        t = self.start_tls([up], files=[(cert, key)])
        kept = self.tls_client(t.proxy_port)
        self.assertEqual(self.get_over(kept).status, 200)
        broken = [
            ("not PEM", lambda: write_file(cert, b"-----BEGIN CERTIFICATE-----\n"
                                                 b"not base64 at all\n"
                                                 b"-----END CERTIFICATE-----\n")),
            ("key does not match", lambda: (self.install(cert, key, "a"),
                                            write_file(cert, read_bytes(CERTS.cert("a2"))))),
            ("missing", lambda: os.unlink(cert)),
        ]
        for what, breaks in broken:
            breaks()
            mark = self.reload(t, "invalid")
            t.wait_log(lambda r: cert_path(0, 0) in json.dumps(r), start=mark, timeout=2)
            self.assert_served(t.proxy_port, "a.test", "a")
            r = self.get_over(kept)
            self.assertEqual((r.status, r.body), (200, b"a"), what)
        # A good pair afterwards is taken: the refusals left nothing stuck.
        self.install(cert, key, "a2")
        self.reload(t, "ok")
        self.wait_served(t, "a2")


# ---------------------------------------------------------------------------------------
# Request id, access log, affinity cookie


class RequestIdentity(TlsTestCase):
    def test_x_request_id_and_access_log_over_tls(self):
        up = self.start_http_upstream(name="a")
        t = self.start_tls([up])
        mark = len(t.logs)
        conn = self.https(t.proxy_port)
        r, body = conn.fetch("GET", "/echo?rid=1", headers={"X-Request-Id": "rid-tls-1"})
        self.assertEqual(r.status, 200)
        self.assertEqual(r.getheader("X-Request-Id"), "rid-tls-1")
        self.assertEqual(hget(echo_headers(body), "X-Request-Id"), ["rid-tls-1"])
        rec = t.wait_log(msg="access", request_id="rid-tls-1", start=mark)
        self.assertEqual((rec["method"], rec["status"], rec["backend"]), ("GET", 200, up.address))
        self.assertIn(rec["tls"], ("TLSv1.2", "TLSv1.3"), rec)
        self.assertEqual(rec["protocol"], "HTTP/1.1", rec)
        self.assertTrue(rec["path"].startswith("/echo"), rec)
        self.assertTrue(str(rec["client"]).startswith("127.0.0.1"), rec)
        # Without one, tether makes one up, sends it on and returns it.
        r, body = conn.fetch("GET", "/echo")
        sent = hget(echo_headers(body), "X-Request-Id")
        self.assertEqual(len(sent), 1, body)
        self.assertGreaterEqual(len(sent[0]), 16)
        self.assertEqual(r.getheader("X-Request-Id"), sent[0])
        t.wait_log(msg="access", request_id=sent[0], start=mark)

    def test_inserted_affinity_cookie_is_secure_on_a_tls_listener(self):
        a = self.start_http_upstream(name="a")
        b = self.start_http_upstream(name="b")
        t = self.start_tls([a, b], extra_listeners=[{"address": "127.0.0.1:0"}], config={
            "affinity": {"keys": ["cookie:tether_affinity"], "cookie": {"insert": True}}})
        wait_until(lambda: all(x["state"] == "up" for x in t.backends_state()), 5,
                   msg="both backends up")
        tls_port, plain_port = t.proxy_ports

        def attrs_of(set_cookie):
            m = re.match(r"^tether_affinity=([^;]+); (.*)$", set_cookie)
            self.assertIsNotNone(m, set_cookie)
            return m.group(1), {x.split("=")[0]: (x.split("=", 1) + [None])[1]
                                for x in m.group(2).split("; ")}

        conn = self.https(tls_port)
        r, _ = conn.fetch("GET", "/id")
        self.assertEqual(r.status, 200)
        cookies = r.headers.get_all("Set-Cookie") or []
        self.assertEqual(len(cookies), 1, cookies)
        value, attrs = attrs_of(cookies[0])
        self.assertIn("Secure", attrs, cookies[0])
        self.assertIn("HttpOnly", attrs, cookies[0])
        self.assertEqual(attrs.get("Path"), "/")
        home = r.getheader("X-Upstream-Name")
        for i in range(4):
            r, body = conn.fetch("GET", "/id", headers={"Cookie": "tether_affinity=" + value})
            self.assertEqual((r.status, body.decode()), (200, home), "request %d" % i)
            self.assertEqual(r.headers.get_all("Set-Cookie"), None, "no new cookie when sent")
        # The plain listener of the same tether inserts the cookie without Secure.
        r = http_get("http://127.0.0.1:%d/id" % plain_port)
        cookies = r.headers.get_all("Set-Cookie") or []
        self.assertEqual(len(cookies), 1, cookies)
        self.assertNotIn("Secure", attrs_of(cookies[0])[1], cookies[0])


if __name__ == "__main__":
    unittest.main()
