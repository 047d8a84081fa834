"""Regression tests for the hostile inputs of issue 12, one class per numbered item 1-13 of
the contract (/tmp/team/DECISIONS.md), with the exact reproducers of the issue.

Every test runs tether in front of a RawUpstream (rawupstream.py): a backend that records
the raw bytes of every upstream connection, parses them with a strict reference parser
and answers with scripted raw bytes. Assertions are on bytes: what the client received
(strictly parsed), what the backend received (strictly parsed, per connection), which
upstream connections tether closed or reused, and that tether is alive afterwards.

Run: cd tests/e2e && TETHER_BIN=... python3 -m unittest -v test_http_hostile
"""

import time
import unittest

from harness import E2ETestCase, run_tether, wait_until
import rawupstream as ru
from rawupstream import simple_response

HEALTH = {"interval": "1s", "rise": 1, "timeout": "1s"}
ANSWER_TIMEOUT = 5.0


def s(b):
    return b.decode("latin-1") if isinstance(b, (bytes, bytearray)) else b


class Hostile(E2ETestCase):
    """One tether in front of one RawUpstream. Subclasses set CONFIG (merged into the
    base configuration) and ROUTES {path: handler(req, conn) -> bytes | Reply}."""

    CONFIG = {}
    ROUTES = {}

    def config(self):
        cfg = {"health": dict(HEALTH), "timeouts": {"request_header": "2s"}}
        for k, v in self.CONFIG.items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = dict(cfg[k], **v)
            else:
                cfg[k] = v
        return cfg

    def setUp(self):
        self.routes = dict(self.ROUTES)
        self.up = ru.RawUpstream(self._handle)
        self.addCleanup(self.up.stop)
        cfg = self.config()
        rc = run_tether(["--check-config"], config=cfg)
        if rc.returncode != 0:
            self.fail("tether refuses the configuration this contract item needs: %s"
                      % (rc.stderr.strip() or rc.stdout.strip())[-400:])
        self.t = self.start_tether(backends=[self.up.url], config=cfg)
        wait_until(lambda: self.t.admin_get("/readyz").status == 200, 10, msg="/readyz 200")

    def _handle(self, req, conn):
        path = req.target.split(b"?")[0]
        h = self.routes.get(s(path))
        return h(req, conn) if h else ru.default_handler(req, conn)

    # -- client side ----------------------------------------------------------------
    def client(self, timeout=ANSWER_TIMEOUT):
        return self.raw_client(self.t.proxy_port, timeout=timeout)

    def read(self, c, methods, n, timeout=ANSWER_TIMEOUT):
        """Reads until n final responses (strictly parsed) or EOF/timeout; returns them.
        Fails when the bytes are not well-formed responses."""
        deadline = time.monotonic() + timeout
        while True:
            resps, _left, err = ru.parse_all_responses(c.buffer, methods, eof=c.eof)
            if err is not None:
                self.fail("the client received bytes that are not a well-formed HTTP/1.1 "
                          "response: %s\nbytes: %r" % (err.reason, bytes(c.buffer[:600])))
            finals = [r for r in resps if r.status >= 200 or r.status == 101]
            if len(finals) >= n or c.eof or not c._recv_some(deadline):
                finals = finals[:n]
                if finals:      # consume what was read, so the next read starts after it
                    c.buffer = c.buffer[finals[-1].end:]
                return finals

    @staticmethod
    def send_paced(c, data, piece=16384):
        """Sends data in pieces and stops as soon as an answer arrives (a proxy that
        refuses early closes the connection; writing on would only earn a reset that can
        destroy its answer). Each wait is a bounded poll for readability."""
        for i in range(0, len(data), piece):
            try:
                c.send(data[i:i + piece])
            except OSError:
                return
            if c._recv_some(time.monotonic() + 0.05) or c.eof:
                return

    def exchange(self, data, methods=(b"GET",), n=None, c=None, timeout=ANSWER_TIMEOUT,
                 paced=False):
        c = c or self.client(timeout)
        if paced:
            self.send_paced(c, data)
        else:
            c.send(data)
        n = len(methods) if n is None else n
        return self.read(c, list(methods), n, timeout), c

    def one(self, data, method=b"GET", c=None, timeout=ANSWER_TIMEOUT, paced=False):
        mark = self.up.mark()
        try:
            resps, c = self.exchange(data, [method], 1, c=c, timeout=timeout, paced=paced)
        except ConnectionRefusedError:
            self.fail("tether refuses connections: %s" % self.state())
        if not resps:
            reqs, touched, errors, _ = self.up.since(mark)
            self.fail("no answer within %.0fs to %r; %s; %s; the client got %r; the backend got "
                      "%d complete request(s) %s and %d partial byte(s)%s" % (
                          timeout, data[:100], self.state(),
                          "tether closed the connection without an answer" if c.eof
                          else "the connection is still open", bytes(c.buffer[:200]),
                          len(reqs), [r.brief() for r in reqs][:3],
                          sum(len(x.pending) for x in touched),
                          "; backend parse errors: %r" % [x.error.reason for x in errors]
                          if errors else ""))
        return resps[0], c

    def state(self):
        if self.t.running:
            return "tether is alive"
        return "tether DIED (exit %r)" % (self.t.proc.poll(),)

    # -- assertions -------------------------------------------------------------------
    def assert_refused(self, data, status, body_contains=None, what=None, paced=False):
        """tether answers `status` itself (X-Request-Id, Connection: close), closes the
        connection, the backend gets no complete request, any partial upstream request
        is on a connection tether closes, and tether still serves."""
        what = what or repr(data[:120])
        mark = self.up.mark()
        r, c = self.one(data, paced=paced)
        self.assertEqual(r.status, status, "%s: expected tether's own %d, got %d %r (body %r)"
                         % (what, status, r.status, r.reason, r.body[:200]))
        self.assertIsNone(r.value("X-Backend"), "%s: the %d came from the backend, not tether"
                          % (what, status))
        self.assertIsNotNone(r.value("X-Request-Id"), "%s: refusal without X-Request-Id" % what)
        self.assertEqual((r.value("Connection") or b"").lower(), b"close",
                         "%s: refusal without Connection: close" % what)
        if body_contains is not None:
            self.assertIn(body_contains, r.body, "%s: body of the %d" % (what, status))
        self.assertTrue(c.is_closed(2.0), "%s: tether left the connection open after its %d"
                        % (what, status))
        self.assert_backend_got_nothing(mark, what)
        self.assert_alive()
        return r

    def assert_backend_got_nothing(self, mark, what):
        reqs, touched, _errors, _new = self.up.since(mark)
        self.assertEqual([r.brief() for r in reqs], [],
                         "%s: a refused request reached the backend" % what)
        self.assertTrue(self.up.wait(lambda: all(x.closed or not x.pending for x in touched), 3),
                        "%s: tether left a partial request on an open upstream connection: %r"
                        % (what, [bytes(x.pending[:120]) for x in touched if x.pending]))

    def assert_alive(self):
        self.assertTrue(self.t.running, "tether died (exit %r)" % (self.t.proc.poll(),))
        r, c = self.one(b"GET /alive HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertEqual((r.status, r.value("X-Seen")), (200, b"GET /alive"),
                         "tether does not serve a normal request any more")
        c.close()

    def forwarded(self, data, method=b"GET", n_backend=1):
        """Sends data; expects the backend's answer; returns (client response, the backend
        requests that arrived, client)."""
        mark = self.up.mark()
        r, c = self.one(data, method)
        self.assertIsNotNone(r.value("X-Backend"), "expected the backend's answer, got tether's "
                             "%d %r" % (r.status, r.body[:200]))
        reqs = self.up.wait(lambda: (lambda q: q if len(q) >= n_backend else None)(
            self.up.since(mark)[0]), 3) or self.up.since(mark)[0]
        return r, reqs, c

    def assert_clean_upstream(self, req, client_req=None):
        """The request as the backend got it is well-formed for a strict backend."""
        problems = [t for sev, t in ru.upstream_problems(req, client=client_req,
                                                         backend_authority=self.up.address)
                    if sev == "error"]
        self.assertEqual(problems, [], "the backend got %s with problems" % req.brief())

    def next_gets_its_own_answer(self, c, path=b"/next"):
        """On the same client connection, a new request gets its own fresh answer."""
        r, _ = self.one(b"GET %s HTTP/1.1\r\nHost: a.test\r\n\r\n" % path, c=c)
        self.assertEqual((r.status, r.value("X-Seen")), (200, b"GET " + path),
                         "the next request on the same connection got someone else's answer: "
                         "%d %r %r" % (r.status, r.headers, r.body[:200]))
        return r


# =======================================================================================
# Item 1: request trailers


TRAILER_REPRO = (b"POST /trailer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 b"X-Pad: " + b"p" * 17000 + b"\r\n\r\n0\r\n" +
                 b"".join(b"X-T%d: %s\r\n" % (i, b"A" * 4000) for i in range(1, 11)) + b"\r\n")


class Item01RequestTrailers(Hostile):
    def test_issue_reproducer_17000_byte_pad_and_ten_4000_byte_trailers_in_one_write(self):
        r, reqs, c = self.forwarded(TRAILER_REPRO, b"POST")
        self.assertEqual(r.status, 200)
        self.assertEqual(len(reqs), 1, "expected exactly one request at the backend: %r" % reqs)
        b = reqs[0]
        self.assertEqual((b.method, b.target, b.body), (b"POST", b"/trailer", b""))
        self.assertEqual(b.value("X-Pad"), b"p" * 17000, "the 17,000-byte X-Pad field")
        self.assertEqual([n for n, _ in b.headers if n.lower().startswith("x-t")], [],
                         "a trailer became a header of the forwarded head")
        self.assertEqual(b.framing, "chunked", "the chunked body is forwarded re-encoded as chunked")
        self.assertEqual([(n, len(v)) for n, v in b.trailers],
                         [("X-T%d" % i, 4000) for i in range(1, 11)],
                         "the ten trailers are forwarded as trailers, in order")
        self.assertTrue(all(v == b"A" * 4000 for _, v in b.trailers), "trailer values changed")
        self.assert_clean_upstream(b, ru.parse_request(TRAILER_REPRO))
        self.next_gets_its_own_answer(c)
        self.assert_alive()

    def test_16_kib_of_small_trailers_stay_trailers(self):
        trailers = b"".join(b"X-S%d: %s\r\n" % (i, b"s" * 30) for i in range(400))
        data = (b"POST /small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n")
        r, reqs, c = self.forwarded(data, b"POST")
        self.assertEqual(len(reqs), 1)
        b = reqs[0]
        self.assertEqual(b.body, b"hello")
        self.assertEqual(len(b.trailers), 400, "400 small trailers forwarded as trailers")
        self.assertFalse(any(n.startswith("X-S") for n in b.names()), "trailers in the head")
        self.next_gets_its_own_answer(c)

    def test_trailer_content_length_40_never_reaches_the_backend_head(self):
        data = (b"POST /cl-trailer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\nContent-Length: 40\r\n\r\n")
        r, reqs, c = self.forwarded(data, b"POST")
        errors = [x for x in self.up.conns() if x.error]
        self.assertEqual([x.error.reason for x in errors], [],
                         "the backend could not parse the forwarded request")
        self.assertEqual(len(reqs), 1)
        b = reqs[0]
        self.assertEqual(b.values("Content-Length"), [],
                         "the trailer Content-Length: 40 reached the backend head")
        self.assertEqual(b.values("Transfer-Encoding"), [b"chunked"])
        self.assertEqual(b.body, b"hello")
        self.assertEqual(b.trailer_values("Content-Length"), [],
                         "Content-Length may not be forwarded as a trailer")
        self.next_gets_its_own_answer(c)

    def test_denied_trailers_are_dropped_allowed_ones_forwarded(self):
        # (A Transfer-Encoding trailer is refused outright: see the next test.)
        denied = [b"Content-Length: 3", b"Host: evil",
                  b"Connection: close", b"Keep-Alive: 1", b"TE: trailers", b"Trailer: X",
                  b"Upgrade: h2c", b"Proxy-Connection: close", b"Content-Type: text/evil",
                  b"Content-Encoding: gzip", b"Content-Range: bytes 0-1/2",
                  b"Authorization: Bearer evil", b"Cookie: a=evil", b"Set-Cookie: a=evil",
                  b"Expect: 100-continue", b"Max-Forwards: 0", b"X-Forwarded-For: 10.6.6.6",
                  b"X-Forwarded-Host: evil", b"X-Request-Id: evil"]
        data = (b"POST /deny HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n" + b"\r\n".join(denied) +
                b"\r\nX-Last: z\r\n\r\n")
        r, reqs, c = self.forwarded(data, b"POST")
        self.assertEqual(len(reqs), 1)
        b = reqs[0]
        self.assertEqual(b.trailers, [("X-Checksum", b"abc"), ("X-Last", b"z")],
                         "only X-Checksum and X-Last may be forwarded as trailers")
        self.assertNotIn(b"evil", b.raw, "a denied trailer's value reached the backend")
        self.next_gets_its_own_answer(c)

    def test_a_transfer_encoding_trailer_is_refused(self):
        # The decoder (llhttp 8.1) refuses Transfer-Encoding in a trailer section:
        # 400, never a second reading of the framing.
        self.assert_refused(b"POST /deny HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
                            what="Transfer-Encoding as a trailer")

    def test_a_bare_extension_after_a_valued_one_is_refused(self):
        # Valid by RFC 9112 §7.1.1, refused by the decoder (llhttp 8.1 reads the
        # line no further): 400, the conservative answer, never a misreading.
        self.assert_refused(b"POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5;name=value;x\r\nhello\r\n0\r\n\r\n", 400,
                            what="5;name=value;x")

    def test_chunk_extensions_are_dropped_and_the_body_re_encoded(self):
        data = (b"POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;x;name=value\r\nhello\r\n6;q=\"quoted\"\r\n world\r\n0;last=1\r\n\r\n")
        r, reqs, c = self.forwarded(data, b"POST")
        b = reqs[0]
        self.assertEqual(b.body, b"hello world")
        self.assertEqual(b.chunk_exts, [], "chunk extensions reached the backend: %r"
                         % b.chunk_lines)

    def test_trailers_over_the_bound_are_431(self):
        big = b"".join(b"X-B%d: %s\r\n" % (i, b"b" * 4000) for i in range(20))   # 80 KB > 64 KiB
        data = (b"POST /big-trailers HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n" + big + b"\r\n")
        self.assert_refused(data, 431, what="80 KB of request trailers (bound 64 KiB)",
                            paced=True)


# =======================================================================================
# Item 2: Connection naming Content-Length, Transfer-Encoding or Host


SMUGGLE_BODY = b"GET /hijacked HTTP/1.1\r\nHost: a\r\nX-Hijack: "
CONN_CL_REPRO = (b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(SMUGGLE_BODY) + SMUGGLE_BODY)


class Item02ConnectionNamesFraming(Hostile):
    def test_issue_reproducer_connection_content_length_is_400(self):
        self.assert_refused(CONN_CL_REPRO, 400, what="Connection: Content-Length")

    def test_a_second_client_never_gets_the_hijacked_answer(self):
        c1 = self.client()
        c1.send(CONN_CL_REPRO)
        first = self.read(c1, [b"POST"], 1)
        # A victim on another connection, right after: its own answer, its own cookie.
        victim = b"GET /victim HTTP/1.1\r\nHost: a\r\nCookie: session=victim-secret\r\n\r\n"
        r, c2 = self.one(victim)
        self.assertEqual((r.status, r.value("X-Seen")), (200, b"GET /victim"),
                         "the victim got %d %r %r" % (r.status, r.value("X-Seen"), r.body[:200]))
        targets = [x.target for x in self.up.requests()]
        self.assertNotIn(b"/hijacked", targets, "the smuggled /hijacked reached the backend")
        victims = [x for x in self.up.requests() if x.target == b"/victim"]
        self.assertEqual(len(victims), 1)
        self.assertEqual(victims[0].value("Cookie"), b"session=victim-secret")
        for x in self.up.requests():
            if x.target != b"/victim":
                self.assertNotIn(b"victim-secret", x.raw,
                                 "the victim's cookie was swallowed into %s" % x.brief())
        self.assertTrue(first and first[0].status == 400,
                        "the attacker's request should be refused with 400, got %r"
                        % [(x.status, x.value("X-Seen")) for x in first])

    def test_connection_transfer_encoding_is_400(self):
        self.assert_refused(b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: Transfer-Encoding\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
                            what="Connection: Transfer-Encoding")

    def test_connection_host_is_400(self):
        self.assert_refused(b"GET /a HTTP/1.1\r\nHost: a\r\nConnection: Host\r\n\r\n", 400,
                            what="Connection: Host")

    def test_connection_listing_content_length_among_others_is_400(self):
        self.assert_refused(b"POST /a HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, "
                            b"content-length\r\nContent-Length: 2\r\n\r\nok", 400,
                            what="Connection: keep-alive, content-length")


# =======================================================================================
# Item 3: obs-fold


class Item03ObsFold(Hostile):
    ROUTES = {"/fold-response": lambda req, conn: (
        b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok")}

    def test_obs_fold_with_an_empty_first_line_transfer_encoding_is_400(self):
        self.assert_refused(b"POST /f HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n"
                            b"0\r\n\r\n", 400, what="Transfer-Encoding:\\r\\n chunked")

    def test_obs_fold_with_an_empty_first_line_content_length_is_400(self):
        self.assert_refused(b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n 5\r\n\r\nhello",
                            400, what="Content-Length:\\r\\n 5")

    def test_double_wrap_is_400(self):
        self.assert_refused(b"GET /f HTTP/1.1\r\nHost: a\r\nX-A:\r\n a\r\n\tb\r\n\r\n", 400,
                            what="double wrap")

    def test_classic_fold_is_400(self):
        self.assert_refused(b"GET /f HTTP/1.1\r\nHost: a\r\nX-Long: a\r\n  folded\r\n\r\n", 400,
                            what="X-Long: a / folded")

    def test_whitespace_before_the_first_field_is_400(self):
        self.assert_refused(b"GET /f HTTP/1.1\r\n Host: a\r\n\r\n", 400,
                            what="whitespace-prefixed first field line")

    def test_obs_fold_in_a_response_head_is_502(self):
        r, c = self.one(b"GET /fold-response HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(r.status, 502, "a folded response head must be answered 502, got %d %r"
                         % (r.status, r.headers))
        self.assert_alive()


# =======================================================================================
# Item 4: Transfer-Encoding other than exactly chunked


def te_request(te_lines, extra=b""):
    return (b"POST /te HTTP/1.1\r\nHost: a\r\n" + b"".join(l + b"\r\n" for l in te_lines) +
            extra + b"\r\n" + b"5\r\nhello\r\n0\r\n\r\n")


class Item04TransferEncoding(Hostile):
    def test_final_coding_not_exactly_chunked_is_400(self):
        for value in (b"identity, chunked", b"gzip, chunked", b"cow, chunked", b",chunked",
                      b"chunked, chunked", b"chunked,", b"deflate, chunked", b"chunked, gzip",
                      b"xchunked", b"identity"):
            with self.subTest(te=value):
                self.assert_refused(te_request([b"Transfer-Encoding: " + value]), 400,
                                    what="Transfer-Encoding: %s" % s(value))

    def test_two_transfer_encoding_lines_are_400(self):
        for lines in ([b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
                      [b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked"],
                      [b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"]):
            with self.subTest(lines=lines):
                self.assert_refused(te_request(lines), 400, what=" + ".join(s(l) for l in lines))

    def test_transfer_encoding_with_content_length_is_400(self):
        self.assert_refused(te_request([b"Transfer-Encoding: chunked"], b"Content-Length: 3\r\n"),
                            400, what="TE + CL")

    def test_transfer_encoding_on_http_1_0_is_400(self):
        self.assert_refused(te_request([b"Transfer-Encoding: chunked"]).replace(
            b"HTTP/1.1", b"HTTP/1.0", 1), 400, what="TE on HTTP/1.0")

    def test_chunked_case_insensitive_with_ows_is_forwarded(self):
        for value in (b"Chunked", b"CHUNKED", b"  chunked  "):
            with self.subTest(te=value):
                data = te_request([b"Transfer-Encoding: " + value])
                r, reqs, c = self.forwarded(data, b"POST")
                self.assertEqual([x.body for x in reqs], [b"hello"])
                self.assert_clean_upstream(reqs[0])


# =======================================================================================
# Item 5: empty field names and underscores


class Item05FieldNames(Hostile):
    def test_empty_field_name_is_400(self):
        for line in (b": x", b":transfer-encoding: chunked", b":"):
            with self.subTest(line=line):
                self.assert_refused(b"GET /e HTTP/1.1\r\nHost: a\r\n" + line + b"\r\n\r\n", 400,
                                    what="field line %r" % line)

    def test_underscore_fields_are_dropped_by_default(self):
        data = (b"POST /u HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 10.6.6.6\r\n"
                b"Content_Length: 5\r\nX-Ok: 1\r\nContent-Length: 2\r\n\r\nok")
        r, reqs, c = self.forwarded(data, b"POST")
        self.assertEqual(len(reqs), 1)
        b = reqs[0]
        self.assertEqual([n for n in b.names() if "_" in n], [],
                         "underscore fields must be dropped (limits.headers_with_underscores: "
                         "drop is the default)")
        self.assertEqual((b.value("X-Ok"), b.body), (b"1", b"ok"))
        self.assertNotIn(b"10.6.6.6", b.raw)
        self.next_gets_its_own_answer(c)


class Item05UnderscoresReject(Hostile):
    CONFIG = {"limits": {"headers_with_underscores": "reject"}}

    def test_underscore_fields_are_400_when_configured_to_reject(self):
        self.assert_refused(b"GET /u HTTP/1.1\r\nHost: a\r\nX_Custom: 1\r\n\r\n", 400,
                            what="X_Custom with headers_with_underscores: reject")


class Item05UnderscoresAllow(Hostile):
    CONFIG = {"limits": {"headers_with_underscores": "allow"}}

    def test_underscore_fields_pass_when_allowed(self):
        r, reqs, c = self.forwarded(b"GET /u HTTP/1.1\r\nHost: a\r\nX_Custom: 1\r\n\r\n")
        self.assertEqual(reqs[0].value("X_Custom"), b"1")


# =======================================================================================
# Item 6: Host, targets, versions, methods


class Item06HostTargetVersion(Hostile):
    def test_http_1_1_without_host_is_400(self):
        self.assert_refused(b"GET /h HTTP/1.1\r\nX: y\r\n\r\n", 400, what="HTTP/1.1 without Host")

    def test_two_host_fields_are_400(self):
        self.assert_refused(b"GET /h HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, what="two Host")

    def test_http_1_0_without_host_gets_the_backend_host(self):
        r, reqs, c = self.forwarded(b"GET /h10 HTTP/1.0\r\n\r\n")
        self.assertEqual(len(reqs), 1)
        b = reqs[0]
        self.assertEqual(b.version, b"HTTP/1.1", "forwarded as HTTP/1.1")
        self.assertEqual(b.values("Host"), [self.up.address.encode()],
                         "Host: <backend host:port> for a Host-less HTTP/1.0 request")

    def test_absolute_form_is_forwarded_in_origin_form(self):
        r, reqs, c = self.forwarded(b"GET http://a.example/x?q HTTP/1.1\r\nHost: a.example\r\n\r\n")
        b = reqs[0]
        self.assertEqual((b.target, b.values("Host")), (b"/x?q", [b"a.example"]))
        r, reqs, c = self.forwarded(b"GET http://A.Example/y HTTP/1.1\r\nHost: a.example\r\n\r\n")
        self.assertEqual(reqs[0].target, b"/y", "authority compared case-insensitively")

    def test_absolute_form_authority_must_equal_host(self):
        self.assert_refused(b"GET http://a.example/x HTTP/1.1\r\nHost: b.example\r\n\r\n", 400,
                            what="absolute-form authority a.example, Host b.example")

    def test_absolute_form_scheme_other_than_http_is_400(self):
        self.assert_refused(b"GET ftp://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n", 400,
                            what="ftp:// target")

    def test_unsupported_versions_are_505(self):
        for v in (b"HTTP/0.9", b"HTTP/2.0", b"HTTP/1.2"):
            with self.subTest(version=v):
                self.assert_refused(b"GET /v %s\r\nHost: a\r\n\r\n" % v, 505,
                                    what="version %s" % s(v))

    def test_request_line_without_version_or_malformed_is_400(self):
        for line in (b"GET /v", b"GET /v HTTP/1.1 extra", b"GET  /v HTTP/1.1", b"GET /v HTTP/x.y"):
            with self.subTest(line=line):
                self.assert_refused(line + b"\r\nHost: a\r\n\r\n", 400, what=repr(line))

    def test_connect_is_405_with_allow(self):
        r = self.assert_refused(b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
                                405, what="CONNECT")
        self.assertIsNotNone(r.value("Allow"), "405 without an Allow header")

    def test_options_asterisk_is_forwarded_as_is(self):
        r, reqs, c = self.forwarded(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual((reqs[0].method, reqs[0].target), (b"OPTIONS", b"*"))

    def test_asterisk_with_another_method_is_400(self):
        self.assert_refused(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400, what="GET *")

    def test_fragment_in_the_target_is_400(self):
        self.assert_refused(b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400, what="GET /a#frag")


# =======================================================================================
# Item 7: chunk-size lines bounded


class Item07ChunkLines(Hostile):
    def test_a_1_mib_chunk_extension_is_400_and_never_forwarded(self):
        data = (b"POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;x=" + b"e" * (1 << 20) + b"\r\nhello\r\n0\r\n\r\n")
        mark = self.up.mark()
        c = self.client()
        self.send_paced(c, data)
        r = self.read(c, [b"POST"], 1)
        _reqs, touched, errors, _n = self.up.since(mark)
        most = max([len(x.data) for x in touched] or [0])
        self.assertTrue(r, "no answer to a 1 MiB chunk extension; %s; %s; the backend received "
                        "%d bytes on one connection%s" % (
                            self.state(), "tether closed the connection without an answer"
                            if c.eof else "the connection is still open",
                            most, " and could not parse them (%s)" %
                            errors[0].error.reason if errors else ""))
        self.assertEqual(r[0].status, 400, "1 MiB chunk extension: got %d" % r[0].status)
        self.assertIsNone(r[0].value("X-Backend"), "the 400 came from the backend, which got "
                          "%d bytes of the extension" % most)
        self.assertLess(most, 16384, "tether forwarded %d bytes of a 1 MiB chunk extension" % most)
        self.assert_backend_got_nothing(mark, "1 MiB chunk extension")
        self.assert_alive()

    def test_chunk_size_line_over_4096_bytes_is_400(self):
        self.assert_refused(b"POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"5;x=" + b"e" * 4100 + b"\r\nhello\r\n0\r\n\r\n", 400,
                            what="4,104-byte chunk-size line")

    def test_chunk_size_of_17_hex_digits_is_400(self):
        self.assert_refused(b"POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"00000000000000005\r\nhello\r\n0\r\n\r\n", 400,
                            what="17 hex digits")

    def test_chunk_size_of_16_hex_digits_is_fine(self):
        r, reqs, c = self.forwarded(
            b"POST /ext HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0000000000000005\r\nhello\r\n0\r\n\r\n", b"POST")
        self.assertEqual(reqs[0].body, b"hello")


# =======================================================================================
# Item 8: request body timeout


STALLED = b"POST /stalled HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\nabc"


class Item08RequestBodyTimeout(Hostile):
    CONFIG = {"timeouts": {"request_body": "1s"}}

    def test_a_stalled_body_is_408_counted_and_its_upstream_closed(self):
        before = self.t.metric("tether_request_timeouts_total", phase="body") or 0
        codes_before = self.t.metric("tether_http_requests_total", code="408") or 0
        mark = self.up.mark()
        c = self.client(timeout=8)
        c.send(STALLED)
        started = time.monotonic()
        r = self.read(c, [b"POST"], 1, timeout=8)
        took = time.monotonic() - started
        self.assertTrue(r, "no answer within 8s to a stalled body (timeouts.request_body: 1s)")
        self.assertEqual(r[0].status, 408, "stalled body: got %d %r" % (r[0].status, r[0].body))
        self.assertIn(b"tether: request body timeout", r[0].body)
        self.assertLess(took, 5.0, "the 408 took %.1fs with request_body: 1s" % took)
        self.assertTrue(c.is_closed(2.0), "connection left open after the 408")
        _reqs, touched, _e, _n = self.up.since(mark)
        self.assertTrue(self.up.wait(lambda: all(x.closed for x in touched), 3),
                        "the upstream connection holding the partial body was not closed")
        wait_until(lambda: (self.t.metric("tether_request_timeouts_total", phase="body") or 0)
                   >= before + 1, 5, msg='tether_request_timeouts_total{phase="body"} counted')
        wait_until(lambda: (self.t.metric("tether_http_requests_total", code="408") or 0)
                   >= codes_before + 1, 5, msg='tether_http_requests_total{code="408"} counted')
        self.assert_alive()

    def test_fifty_stalled_bodies_do_not_exhaust_the_backend(self):
        mark = self.up.mark()
        clients = [self.client(timeout=10) for _ in range(50)]
        for c in clients:
            c.send(STALLED.replace(b"/stalled", b"/stalled-%d" % id(c)))
        answers = []
        for c in clients:
            r = self.read(c, [b"POST"], 1, timeout=10)
            answers.append(r[0].status if r else None)
        self.assertEqual(answers, [408] * 50, "each stalled body gets its own 408")
        _reqs, touched, _e, _n = self.up.since(mark)
        self.assertTrue(self.up.wait(lambda: all(x.closed for x in touched), 5),
                        "%d upstream connections still hold a stalled body"
                        % sum(not x.closed for x in touched))
        self.assert_alive()

    def test_header_timeout_is_counted_with_phase_header(self):
        before = self.t.metric("tether_request_timeouts_total", phase="header") or 0
        c = self.client(timeout=8)
        c.send(b"GET /slow HTTP/1.1\r\nHost: a\r\n")
        r = self.read(c, [b"GET"], 1, timeout=8)
        self.assertTrue(r and r[0].status == 408, "slow head: %r" % [x.status for x in r])
        wait_until(lambda: (self.t.metric("tether_request_timeouts_total", phase="header") or 0)
                   >= before + 1, 5, msg='tether_request_timeouts_total{phase="header"}')


# =======================================================================================
# Item 9: response header fields


def many_fields(n, size=20):
    return b"".join(b"X-F%d: %s\r\n" % (i, b"f" * size) for i in range(n))


class Item09ResponseHeaderFields(Hostile):
    ROUTES = {
        "/fields-129": lambda req, conn: (b"HTTP/1.1 200 OK\r\n" + many_fields(129) +
                                          b"Content-Length: 3\r\n\r\nbig"),
        "/fields-200": lambda req, conn: (b"HTTP/1.1 200 OK\r\n" + many_fields(200) +
                                          b"Content-Length: 3\r\n\r\nbig"),
        # 70 KB of head (> 64 KiB), then a poisoned "response" in the body.
        "/fields-huge": lambda req, conn: (
            b"HTTP/1.1 200 OK\r\n" + many_fields(1000, 60) + b"Content-Length: 60\r\n\r\n" +
            b"HTTP/1.1 200 OK\r\nX-Poison: 1\r\nContent-Length: 6\r\n\r\npoison"[:60]),
    }

    def fields(self, path, n):
        r, c = self.one(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path)
        try:
            self.assert_alive()
            after = "tether still serves"
        except AssertionError as e:        # the issue: 502, then a crash
            after = "and then %s" % str(e).split("\n")[0]
        self.assertEqual((r.status, r.body), (200, b"big"),
                         "a response with %d header fields: got %d %r; %s"
                         % (n, r.status, r.body[:80], after))
        self.assertEqual(r.value("X-F%d" % (n - 1)), b"f" * 20, "the last field")
        self.next_gets_its_own_answer(c)
        self.assert_alive()

    def test_issue_reproducer_129_response_fields_work_and_tether_survives(self):
        self.fields(b"/fields-129", 129)

    def test_200_response_fields_work(self):
        self.fields(b"/fields-200", 200)

    def test_a_response_head_over_the_limit_is_502_and_its_connection_closed(self):
        mark = self.up.mark()
        r, c = self.one(b"GET /fields-huge HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(r.status, 502, "a 70 KB response head (limit 64 KiB): got %d" % r.status)
        self.assertIsNone(r.value("X-Poison"))
        _reqs, touched, _e, _n = self.up.since(mark)
        self.assertTrue(self.up.wait(lambda: all(x.closed for x in touched), 3),
                        "the upstream connection with the oversized head was not closed")
        for _ in range(3):
            r2, c2 = self.one(b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
            self.assertEqual((r2.status, r2.value("X-Seen")), (200, b"GET /after"),
                             "nothing after the oversized head may be parsed as an answer")
            self.assertIsNone(r2.value("X-Poison"))
        self.assert_alive()


# =======================================================================================
# Item 10: response trailers


def trailer_response(req, conn):
    n = req.target.split(b"=")[-1]
    return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Backend: raw\r\n\r\n"
            b"5\r\nhello\r\n0\r\nX-Checksum: c" + n + b"\r\nX-Secret-Trailer: sekrit" + n +
            b"\r\nSet-Cookie: stolen=" + n + b"\r\nContent-Length: 99\r\n\r\n")


class Item10ResponseTrailers(Hostile):
    ROUTES = {"/t": trailer_response}

    def test_trailers_never_leak_into_the_next_response_head_over_6_rounds(self):
        c = self.client()
        other = self.client()
        for i in range(6):
            r, _ = self.one(b"GET /t?n=%d HTTP/1.1\r\nHost: a\r\n\r\n" % i, c=c)
            self.assertEqual((r.status, r.body), (200, b"hello"), "round %d" % i)
            self.assertEqual([(k, v) for k, v in r.trailers if k.lower() == "x-checksum"],
                             [("X-Checksum", b"c%d" % i)], "allowed trailer forwarded, round %d" % i)
            self.assertEqual([k for k, _ in r.trailers if k.lower() in ("set-cookie",
                                                                     "content-length")], [],
                             "denied trailers forwarded, round %d" % i)
            for cl in (c, other):
                cookie = b"Cookie: other-secret=%d\r\n" % i if cl is other else b""
                nxt, _ = self.one(b"GET /plain-%d HTTP/1.1\r\nHost: a\r\n%s\r\n"
                                  % (i, cookie), c=cl)
                self.assertEqual((nxt.status, nxt.value("X-Seen")), (200, b"GET /plain-%d" % i),
                                 "round %d: the next request got someone else's answer" % i)
                head = nxt.raw[:nxt.raw.find(b"\r\n\r\n")]
                for leak in (b"sekrit", b"stolen", b"X-Checksum", b"Set-Cookie", b"other-secret"):
                    self.assertNotIn(leak, head, "round %d: bytes of a trailer or of another "
                                     "connection leaked into a response head: %r" % (i, head))
            self.assertNotIn(b"other-secret", r.raw, "round %d: another connection's Cookie "
                             "bytes were disclosed in the trailer response" % i)
        self.assert_alive()

    def test_http_1_0_client_gets_the_body_de_chunked_and_no_trailers(self):
        c = self.client()
        c.send(b"GET /t?n=9 HTTP/1.0\r\nHost: a\r\n\r\n")
        data = c.recv_all(5)
        resps, _left, err = ru.parse_all_responses(data, [b"GET"], eof=True)
        self.assertIsNone(err, "not a well-formed response: %r" % data[:300])
        self.assertEqual(len(resps), 1)
        r = resps[0]
        self.assertEqual(r.values("Transfer-Encoding"), [], "chunked sent to an HTTP/1.0 client")
        self.assertEqual(r.body, b"hello")
        for leak in (b"sekrit", b"stolen", b"X-Checksum"):
            self.assertNotIn(leak, data, "a trailer reached the HTTP/1.0 client")


# =======================================================================================
# Item 11: bytes beyond a response's framing


POISON = b"HTTP/1.1 200 OK\r\nX-Poison: 1\r\nContent-Length: 6\r\n\r\npoison"


class Item11ExtraResponseBytes(Hostile):
    ROUTES = {
        "/head-body": lambda req, conn: (b"HTTP/1.1 200 OK\r\nX-Backend: raw\r\n"
                                         b"Content-Length: 5\r\n\r\nhello" + POISON),
        "/cl2": lambda req, conn: (b"HTTP/1.1 200 OK\r\nX-Backend: raw\r\nContent-Length: 2\r\n\r\n"
                                   b"ok" + POISON),
        "/204-body": lambda req, conn: (b"HTTP/1.1 204 No Content\r\nX-Backend: raw\r\n"
                                        b"Content-Length: 5\r\n\r\nhello" + POISON),
        "/304-body": lambda req, conn: (b"HTTP/1.1 304 Not Modified\r\nX-Backend: raw\r\n"
                                        b"Content-Length: 5\r\n\r\nhello" + POISON),
        "/204-cl": lambda req, conn: (b"HTTP/1.1 204 No Content\r\nX-Backend: raw\r\n"
                                      b"Content-Length: 5\r\n\r\n"),
    }

    def check(self, method, path, expect_status, expect_body):
        mark = self.up.mark()
        c = self.client()
        r, _ = self.one(b"%s %s HTTP/1.1\r\nHost: a\r\n\r\n" % (method, path), method, c=c)
        self.assertEqual((r.status, r.body), (expect_status, expect_body),
                         "%s %s: the client must get exactly the framed response"
                         % (s(method), s(path)))
        first = [x for x in self.up.since(mark)[0] if x.target == path]
        self.assertEqual(len(first), 1)
        first_conn = [x for x in self.up.conns() if x.id == first[0].conn_id][0]
        for i in range(3):
            nxt = self.next_gets_its_own_answer(c, b"/later-%d" % i)
            self.assertIsNone(nxt.value("X-Poison"), "the backend's stray bytes were served as "
                              "the answer to a later request")
            later = [x for x in self.up.since(mark)[0] if x.target == b"/later-%d" % i]
            self.assertEqual(len(later), 1)
            self.assertNotEqual(later[0].conn_id, first_conn.id,
                                "the upstream connection with stray bytes was reused")
        self.assertTrue(self.up.wait(lambda: first_conn.peer_closed, 3),
                        "tether did not close the upstream connection with stray bytes")
        self.assert_alive()

    def test_head_answered_with_a_body(self):
        self.check(b"HEAD", b"/head-body", 200, b"")

    def test_content_length_2_followed_by_more(self):
        self.check(b"GET", b"/cl2", 200, b"ok")

    def test_204_with_a_body(self):
        self.check(b"GET", b"/204-body", 204, b"")

    def test_304_with_a_body(self):
        self.check(b"GET", b"/304-body", 304, b"")

    def test_204_with_content_length_ends_at_its_blank_line(self):
        c = self.client()
        r, _ = self.one(b"GET /204-cl HTTP/1.1\r\nHost: a\r\n\r\n", c=c)
        self.assertEqual((r.status, r.body), (204, b""))
        self.next_gets_its_own_answer(c)


# =======================================================================================
# Item 12: response Connection naming framing fields


class Item12ResponseConnectionFraming(Hostile):
    ROUTES = {
        "/conn-cl": lambda req, conn: (b"HTTP/1.1 200 OK\r\nX-Backend: raw\r\n"
                                       b"Connection: Content-Length\r\nContent-Length: 5\r\n\r\nhello"),
        "/conn-te": lambda req, conn: (b"HTTP/1.1 200 OK\r\nX-Backend: raw\r\n"
                                       b"Connection: Transfer-Encoding\r\nTransfer-Encoding: chunked"
                                       b"\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
    }

    def test_connection_content_length_keeps_content_length(self):
        c = self.client()
        r, _ = self.one(b"GET /conn-cl HTTP/1.1\r\nHost: a\r\n\r\n", c=c)
        self.assertEqual((r.status, r.body), (200, b"hello"))
        self.assertEqual(r.values("Content-Length"), [b"5"],
                         "Connection: Content-Length must not drop Content-Length")
        self.next_gets_its_own_answer(c)

    def test_connection_transfer_encoding_keeps_the_framing(self):
        c = self.client()
        r, _ = self.one(b"GET /conn-te HTTP/1.1\r\nHost: a\r\n\r\n", c=c)
        self.assertEqual((r.status, r.body), (200, b"hello"))
        self.assertIn(r.framing, ("chunked", "length"),
                      "the body must stay framed on a kept-alive connection")
        self.next_gets_its_own_answer(c)


# =======================================================================================
# Item 13: 101 and upgrade answers


UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


class Item13Upgrades(Hostile):
    ROUTES = {
        "/no-upgrade": lambda req, conn: (b"HTTP/1.1 101 Switching Protocols\r\n"
                                          b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
        "/ws": lambda req, conn: simple_response(200, b"no websocket here", headers=[
            ("X-Backend", "raw"), ("X-Seen", "GET /ws")]),
    }

    def test_a_101_to_a_request_that_did_not_ask_is_502(self):
        r, c = self.one(b"GET /no-upgrade HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(r.status, 502, "an unasked 101 must be 502, got %d" % r.status)
        self.assert_alive()

    def test_a_non_101_answer_to_an_upgrade_is_never_pooled(self):
        mark = self.up.mark()
        c = self.client()
        r, _ = self.one(UPGRADE, c=c)
        self.assertEqual((r.status, r.body), (200, b"no websocket here"))
        ws = [x for x in self.up.since(mark)[0] if x.target == b"/ws"]
        self.assertEqual(len(ws), 1)
        ws_conn = [x for x in self.up.conns() if x.id == ws[0].conn_id][0]
        self.assertTrue(self.up.wait(lambda: ws_conn.peer_closed, 3),
                        "the upstream connection of a refused upgrade was not closed")
        for i in range(3):
            r2, c2 = self.one(b"GET /after-%d HTTP/1.1\r\nHost: a\r\n\r\n" % i)
            self.assertEqual(r2.status, 200)
            got = [x for x in self.up.since(mark)[0] if x.target == b"/after-%d" % i]
            self.assertEqual(len(got), 1)
            self.assertNotEqual(got[0].conn_id, ws_conn.id,
                                "the upgrade's upstream connection was reused")
        self.assert_alive()


if __name__ == "__main__":
    unittest.main()
