"""Differential request-smuggling test: hostile requests through tether to a backend that
records the raw bytes it receives.

The corpus (corpus/smuggling.json, made by corpus/gen_smuggling.py) holds several hundred
hostile HTTP/1.1 requests in families learnt from published request-smuggling research;
each family names its source. For every case the client sends the request and, in the
same write on the same connection, an innocent `GET /after`. A strict reference parser
(rawupstream.py) reads the client's bytes as tether's contract says a proxy must
(reference_sequence): request by request, each "accept", "either" or "reject". Then:

  - a request the reference rejects must be refused by tether: its own 4xx/5xx with an
    X-Request-Id, Connection: close, and the connection closed; no complete request may
    reach the backend, and a partial one only on an upstream connection tether closes;
  - a request tether forwards must reach the backend as exactly one well-formed request
    (strict parse, HTTP/1.1, one Host, only `chunked` or one Content-Length, no chunk
    extensions, no denied trailers, no underscore fields, origin-form target) whose method,
    target and decoded body equal the reference reading of the client's bytes: the two
    framings agree;
  - the client gets exactly one answer per request, in order (the X-Seen header of each
    backend answer names the request it answers), and nothing else;
  - the backend never sees a request the reference does not read from the client's
    bytes (e.g. a /hijacked smuggled inside a body);
  - tether stays alive, and serves a normal request after the whole corpus.

A case that leaves tether dead or an upstream connection out of step restarts tether, so
later cases are judged on their own. The summary printed at the end counts refused vs
forwarded per family, and lists every failure on one line.

Run: cd tests/e2e && TETHER_BIN=... python3 -m unittest -v test_smuggling
Environment: SMUGGLING_ONLY=<substring>[,<substring>...] runs only the cases whose id contains
one of them.
"""

import collections
import json
import os
import sys
import time
import unittest

from harness import E2ETestCase, RawClient, Tether, require_program, run_tether, wait_until
import rawupstream as ru

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus", "smuggling.json")
AFTER = b"GET /after HTTP/1.1\r\nHost: a.test\r\n\r\n"
CASE_TIMEOUT = 2.5           # seconds to wait for all answers of one case
CLOSE_TIMEOUT = 1.0          # after a refusal: time for tether to close the connection
QUIET_TIMEOUT = 1.5          # time for a partial upstream request to be closed by tether
HEALTH = {"interval": "1s", "rise": 1, "timeout": "1s"}

# Cases also run over TLS: one or more per family, the reproducers first.
TLS_SUBSET = [
    "conn-content-length", "conn-transfer-encoding", "pw-vanilla-clte", "pw-vanilla-tecl",
    "pw-cowComma-clte", "pw-nameprefix1-clte", "pw-linewrapped1-tecl", "pw-0dspam-clte",
    "pw-underjoin1-clte", "pw-contentEnc-tecl", "dp-midspace-0b", "dp-endspace-ff",
    "te-comma-leading", "te-identity-chunked", "te-two-lines-chunked", "te-http10",
    "te-ok-case-Chunked", "cl-two-lines-different", "cl-empty-then-value", "cl-plus",
    "cl-list-same", "cl-get-body", "cl-underscore-name", "chunk-underscore",
    "chunk-size-cr-ext-garden31", "chunk-ext-5000-bytes", "chunk-extensions",
    "chunk-smuggle-in-data", "trailer-content-length", "trailer-mixed", "rl-http20",
    "rl-no-version", "rl-connect-authority", "rl-options-asterisk", "rl-absolute-form",
    "rl-absolute-mismatch", "rl-http10-no-host", "host-two", "host-connection-host",
    "field-obs-fold-empty-first-te", "field-name-empty-te", "field-underscore-xff",
    "expect-100-smuggle-body", "0cl-get-prefix", "ctl-pipelined-post", "ctl-post-chunked",
]


def load_corpus():
    with open(CORPUS) as f:
        doc = json.load(f)
    for c in doc["cases"]:
        c["bytes"] = c["request"].encode("latin-1")
    return doc


def supported(config):
    """Whether this tether accepts a configuration fragment (--check-config)."""
    return run_tether(["--check-config"], config=config).returncode == 0


def hv(resp, name):
    v = resp.value(name)
    return None if v is None else v.decode("latin-1")


def short(b, n=120):
    r = repr(bytes(b[:n]))
    return r + ("...(%d B)" % len(b) if len(b) > n else "")


class Outcome:
    def __init__(self, case):
        self.case = case
        self.kind = None            # refused | forwarded | no-answer | crash
        self.failures = []
        self.warns = []
        self.restart = False
        self.statuses = []
        self.late = []

    def fail(self, text, restart=False):
        self.failures.append(text)
        self.restart = self.restart or restart

    def line(self):
        return "%s [%s]: %s" % (self.case["id"], self.kind, " | ".join(self.failures))


class Differential:
    """One tether (plain or TLS listener) in front of one RawUpstream; runs cases."""

    def __init__(self, test, tls=None):
        self.test = test
        self.tls = tls                      # (cert, key) for a TLS listener, or None
        self.up = ru.RawUpstream()
        test.addCleanup(self.up.stop)
        self.timeouts = {"request_header": "2s"}
        if supported({"timeouts": {"request_body": "1s"}}):
            self.timeouts["request_body"] = "1s"
        self.t = None
        self.restarts = 0
        self.start()

    def start(self):
        cfg = {"health": dict(HEALTH), "timeouts": dict(self.timeouts)}
        kw = {}
        if self.tls:
            cert, key = self.tls
            cfg["listeners"] = [{"address": "127.0.0.1:0",
                                 "tls": {"certificates": [{"cert": cert, "key": key}]}}]
            kw["listen"] = []
        # Not E2ETestCase.start_tether: a run may restart tether many times, and each
        # instance's log tail would be printed on failure.
        self.t = Tether(backends=[self.up.url], config=cfg, log_level="info", **kw)
        self.test.addCleanup(self.t.cleanup)
        self.t.start()
        wait_until(lambda: self.t.admin_get("/readyz").status == 200, 10, msg="/readyz 200")

    def restart(self):
        self.restarts += 1
        self.t.cleanup()
        self.up.close_all()
        self.start()

    def client(self):
        if self.tls:
            import test_tls
            return test_tls.TlsClient(self.t.proxy_port, sni="a.test", timeout=CASE_TIMEOUT)
        return RawClient(self.t.proxy_port, timeout=CASE_TIMEOUT)

    # -- one case -------------------------------------------------------------------
    def run(self, case, index=0):
        # The innocent request carries the case's index, so that a request tether sends
        # late (after the case was judged) is still blamed on the right case.
        after = AFTER.replace(b"/after", b"/after-%d" % index)
        data = case["bytes"] + after
        ref = ru.reference_sequence(data)
        methods = [r.msg.method if r.msg else b"GET" for r in ref]
        out = Outcome(case)
        mark = self.up.mark()
        try:
            c = self.client()
        except OSError as e:
            out.kind = "crash"
            out.fail("could not connect to tether: %r" % e, restart=True)
            return out
        try:
            c.send(data)
            resps, closed, perr = self._read(c, methods, ref)
        finally:
            c.close()
        # Let tether finish with the upstream side: a partial request must be closed.
        self.up.wait(lambda: all(x.closed or not x.pending for x in self.up.conns()),
                     QUIET_TIMEOUT)
        reqs, touched, errors, _new = self.up.since(mark)
        mine, late = [], []
        for r in reqs:
            tag = r.target.startswith(b"/after-") and r.target[7:].isdigit()
            (late if tag and int(r.target[7:]) != index else mine).append(r)
        out.late = late
        self._judge(out, ref, resps, closed, perr, mine, touched, errors,
                    after.split(b" ")[1])
        if not self.t.running:
            out.kind = "crash"
            out.fail("tether died (exit %r)" % self.t.proc.poll(), restart=True)
        return out

    def _read(self, c, methods, ref):
        """Reads answers until one per reference reading, EOF, or CASE_TIMEOUT; after a
        refusal waits for the close; after a forwarded request the reference rejects,
        lingers a little to see what else tether makes of the bytes. Returns (final
        responses, closed, response parse error)."""
        expected = len(ref)
        deadline = time.monotonic() + CASE_TIMEOUT
        finals, perr = [], None
        while True:
            resps, _left, perr = ru.parse_all_responses(c.buffer, methods, eof=c.eof)
            finals = [r for r in resps if r.status >= 200 or r.status == 101]
            if perr is not None or c.eof:
                break
            if finals and hv(finals[-1], "X-Backend") is None:
                # tether answered itself: it must close now.
                close_deadline = min(deadline, time.monotonic() + CLOSE_TIMEOUT)
                while not c.eof and c._recv_some(close_deadline):
                    pass
                resps, _left, perr = ru.parse_all_responses(c.buffer, methods, eof=c.eof)
                finals = [r for r in resps if r.status >= 200 or r.status == 101]
                break
            if len(finals) >= expected:
                if (hv(finals[0], "X-Backend") is not None and
                        ref[0].verdict in ("reject", "incomplete")):
                    linger = min(deadline, time.monotonic() + 0.3)
                    while not c.eof and c._recv_some(linger):
                        pass
                    resps, _left, perr = ru.parse_all_responses(c.buffer, methods, eof=c.eof)
                    finals = [r for r in resps if r.status >= 200 or r.status == 101]
                break
            if not c._recv_some(deadline):
                break
        return finals, c.eof, perr

    def _judge(self, out, ref, resps, closed, perr, reqs, touched, errors, after_target):
        up = self.up
        wrongly_forwarded = False
        for conn in errors:
            out.fail("backend could not parse what tether sent on upstream connection %d: "
                     "%s; bytes %s" % (conn.id, conn.error.reason, short(conn.pending)))
        for conn in touched:
            if conn.pending and not conn.closed and conn.error is None:
                out.fail("tether left a partial request on open upstream connection %d: %s"
                         % (conn.id, short(conn.pending)), restart=True)
        if perr is not None:
            out.fail("tether's answer is not a well-formed HTTP/1.1 response: %s"
                     % perr.reason, restart=True)
        bi = ri = 0
        for k, reading in enumerate(ref):
            label = "request %d" % (k + 1)
            if ri >= len(resps):
                if reading.verdict == "incomplete":
                    break
                if k > 0 and (hv(resps[ri - 1], "Connection") or "").lower() == "close":
                    break       # tether ended the connection after a full answer: allowed
                if out.kind is None:
                    out.kind = "no-answer"
                out.fail("no answer to %s (%s, reference: %s%s) within %.1fs%s" % (
                    label, reading.msg.brief() if reading.msg else "-", reading.verdict,
                    " %s" % reading.status if reading.status else "", CASE_TIMEOUT,
                    "; connection closed" if closed else "; connection left open"))
                break
            r = resps[ri]
            ri += 1
            out.statuses.append(r.status)
            if hv(r, "X-Backend") is not None:
                if out.kind is None:
                    out.kind = "forwarded"
                if reading.verdict in ("reject", "incomplete"):
                    out.fail("tether forwarded %s, which must be refused (%s %s); the backend "
                             "answered %d" % (label, reading.status or "", reading.why,
                                              r.status), restart=True)
                    bi += 1 if bi < len(reqs) else 0
                    wrongly_forwarded = True
                    break
                if hv(r, "X-Seen") is None and errors:
                    # The strict backend could not read what tether sent (reported above)
                    # and answered 400 itself.
                    break
                if bi >= len(reqs):
                    out.fail("client got a backend answer (%s) to %s but the backend saw no "
                             "new request" % (hv(r, "X-Seen"), label), restart=True)
                    break
                b = reqs[bi]
                bi += 1
                want = "%s %s" % (ru._s(reading.msg.method), ru._s(reading.msg.upstream_target))
                got = "%s %s" % (ru._s(b.method), ru._s(b.target))
                if hv(r, "X-Seen") != got:
                    out.fail("answer/request mismatch: the client's answer to %s is the "
                             "backend's answer to %r (backend request was %r)"
                             % (label, hv(r, "X-Seen"), got), restart=True)
                if got != want:
                    out.fail("backend got %r for %s, the client sent %r" % (got, label, want),
                             restart=True)
                if b.body != reading.msg.body:
                    out.fail("framing disagrees on %s: backend body %s != client body %s"
                             % (label, short(b.body, 60), short(reading.msg.body, 60)),
                             restart=True)
                for sev, text in ru.upstream_problems(b, client=reading.msg,
                                                      backend_authority=up.address):
                    (out.failures if sev == "error" else out.warns).append(
                        "%s: %s" % (label, text))
                if (hv(r, "Connection") or "").lower() == "close":
                    break
            else:
                if out.kind is None:
                    out.kind = "refused"
                if r.status < 400:
                    out.fail("tether answered %s itself with %d (expected a forwarded answer "
                             "or a 4xx/5xx refusal)" % (label, r.status))
                    break
                if hv(r, "X-Request-Id") is None:
                    out.fail("tether's %d refusal of %s has no X-Request-Id" % (r.status, label))
                if (hv(r, "Connection") or "").lower() != "close":
                    out.fail("tether's %d refusal of %s lacks Connection: close" % (r.status, label))
                if not closed:
                    out.fail("tether's %d refusal of %s left the connection open" % (r.status, label))
                if reading.verdict == "accept":
                    out.warns.append("%s refused with %d, though the reference accepts it"
                                     % (label, r.status))
                elif reading.verdict == "reject" and reading.status and r.status != reading.status:
                    out.warns.append("%s refused with %d; the contract says %d (%s)"
                                     % (label, r.status, reading.status, reading.why))
                break
        extra_resps, extra_reqs = resps[ri:], reqs[bi:]
        if wrongly_forwarded:
            # What follows a request that should have been refused is beyond the
            # reference; only requests other than the client's own /after are news.
            own = "GET " + after_target.decode()
            extra_resps = [x for x in extra_resps if hv(x, "X-Seen") != own]
            extra_reqs = [x for x in extra_reqs if x.target != after_target]
        if extra_resps:
            extra = ["%d %s" % (x.status, hv(x, "X-Seen") or "(tether)") for x in extra_resps]
            out.fail("client got %d answer(s) it did not ask for: %s" % (len(extra), extra),
                     restart=True)
        if extra_reqs:
            extra = ["%s %s" % (ru._s(x.method), ru._s(x.target[:60])) for x in extra_reqs]
            smuggled = any(b"hijack" in x.target or b"evil" in x.target for x in extra_reqs)
            out.fail("%sbackend saw request(s) the client did not send (as the reference "
                     "reads its bytes): %s" % ("SMUGGLED: " if smuggled else "", extra),
                     restart=True)
        if out.kind is None:
            out.kind = "no-answer"

    # -- the corpus ---------------------------------------------------------------------
    def run_all(self, cases):
        outcomes = []
        for i, case in enumerate(cases):
            o = self.run(case, i)
            outcomes.append(o)
            for r in o.late:
                j = int(r.target[7:])
                if 0 <= j < len(outcomes):
                    outcomes[j].fail("after this case was judged, the backend still got %s %s"
                                     % (ru._s(r.method), ru._s(r.target)))
            if o.restart or not self.t.running:
                self.restart()
        return outcomes


def summarize(title, outcomes, restarts):
    by_fam = collections.OrderedDict()
    for o in outcomes:
        fam = by_fam.setdefault(o.case["family"], collections.Counter())
        fam[o.kind] += 1
        fam["failed" if o.failures else "ok"] += 1
    lines = ["", "=== %s: %d cases, %d refused, %d forwarded, %d no answer, %d crashes, "
             "%d failed, %d tether restarts ===" % (
                 title, len(outcomes), sum(o.kind == "refused" for o in outcomes),
                 sum(o.kind == "forwarded" for o in outcomes),
                 sum(o.kind == "no-answer" for o in outcomes),
                 sum(o.kind == "crash" for o in outcomes),
                 sum(bool(o.failures) for o in outcomes), restarts)]
    for fam, cnt in by_fam.items():
        lines.append("  %-28s refused %3d  forwarded %3d  no-answer %2d  crash %2d  failed %3d"
                     % (fam, cnt["refused"], cnt["forwarded"], cnt["no-answer"], cnt["crash"],
                        cnt["failed"]))
    warns = [(o.case["id"], w) for o in outcomes for w in o.warns]
    if warns:
        lines.append("  warnings (%d):" % len(warns))
        lines += ["    %s: %s" % w for w in warns]
    fails = [o for o in outcomes if o.failures]
    if fails:
        lines.append("  failures (%d):" % len(fails))
        lines += ["    " + o.line() for o in fails]
    return "\n".join(lines)


def selected(cases):
    only = os.environ.get("SMUGGLING_ONLY")
    if not only:
        return cases
    subs = only.split(",")
    return [c for c in cases if any(s in c["id"] for s in subs)]


class Corpus(unittest.TestCase):
    """The corpus itself: large enough, sourced, and read by the reference parser the way
    its labels say (no tether needed)."""

    def test_corpus_is_large_and_every_family_has_a_source(self):
        doc = load_corpus()
        self.assertGreaterEqual(len(doc["cases"]), 150, "the corpus must hold 150+ cases")
        fams = {f["id"]: f for f in doc["families"]}
        for f in fams.values():
            self.assertTrue(f.get("source"), "family %s has no source note" % f["id"])
        ids = [c["id"] for c in doc["cases"]]
        self.assertEqual(len(ids), len(set(ids)), "duplicate case ids")
        self.assertEqual(len({c["bytes"] for c in doc["cases"]}), len(ids),
                         "two cases send the same bytes")
        for c in doc["cases"]:
            self.assertIn(c["family"], fams, c["id"])

    def test_reference_parser_agrees_with_every_label(self):
        wrong = []
        for c in load_corpus()["cases"]:
            seq = ru.reference_sequence(c["bytes"] + AFTER)
            first = seq[0]
            if first.verdict != c["expect"] or (
                    c["expect"] == "reject" and c["status"] and first.status != c["status"]):
                wrong.append("%s: label %s %s, reference %s %s (%s)" % (
                    c["id"], c["expect"], c["status"], first.verdict, first.status, first.why))
            if seq[-1].verdict == "incomplete":
                wrong.append("%s: the bytes end inside a request" % c["id"])
        self.assertEqual(wrong, [], "\n".join(wrong))

    def test_reference_parser_basics(self):
        m = ru.parse_request(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"5;e=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
        self.assertEqual((m.framing, m.body, m.trailers, m.chunk_exts),
                         ("chunked", b"hello", [("X-T", b"1")], [b";e=1"]))
        for bad in (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: a\r\n X: a\r\n\r\n",
                    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"):
            with self.assertRaises(ru.StrictError):
                ru.parse_request(bad)
        with self.assertRaises(ru.Incomplete):
            ru.parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nabc")
        r = ru.parse_response(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello")
        self.assertEqual((r.body, r.end), (b"", 46))


class SmugglingDifferential(E2ETestCase):
    """The corpus through tether, plain and over TLS."""

    def test_corpus_through_a_plain_listener(self):
        cases = selected(load_corpus()["cases"])
        d = Differential(self)
        started = time.monotonic()
        outcomes = d.run_all(cases)
        text = summarize("plain HTTP", outcomes, d.restarts)
        sys.stderr.write(text + "\n(%.1fs)\n" % (time.monotonic() - started))
        # Whatever happened, tether is alive and serves a normal request afterwards.
        self.assertTrue(d.t.running, "tether is not running after the corpus")
        with RawClient(d.t.proxy_port) as c:
            c.send(b"GET /final HTTP/1.1\r\nHost: a.test\r\n\r\n")
            r = c.recv_response(timeout=5)
        self.assertIsNotNone(r, "no answer to a normal GET after the corpus")
        self.assertEqual((r.status, dict((k.lower(), v) for k, v in r.headers).get("x-seen")),
                         (200, "GET /final"), "a normal GET after the corpus")
        fails = [o for o in outcomes if o.failures]
        self.assertEqual(len(fails), 0, "%d of %d cases failed:\n%s" % (
            len(fails), len(outcomes), "\n".join(o.line() for o in fails)))

    def test_subset_through_a_tls_listener(self):
        require_program("openssl")
        import test_tls
        if test_tls.CERTS is None:
            test_tls.CERTS = test_tls.Certs()
            self.addCleanup(self._drop_certs, test_tls)
        by_id = {c["id"]: c for c in load_corpus()["cases"]}
        missing = [i for i in TLS_SUBSET if i not in by_id]
        self.assertEqual(missing, [], "TLS_SUBSET names cases the corpus lacks")
        cases = selected([by_id[i] for i in TLS_SUBSET])
        d = Differential(self, tls=test_tls.CERTS.pair("a"))
        outcomes = d.run_all(cases)
        sys.stderr.write(summarize("TLS", outcomes, d.restarts) + "\n")
        self.assertTrue(d.t.running, "tether is not running after the TLS subset")
        with test_tls.TlsClient(d.t.proxy_port, sni="a.test") as c:
            c.send(b"GET /final HTTP/1.1\r\nHost: a.test\r\n\r\n")
            r = c.recv_response(timeout=5)
        self.assertIsNotNone(r, "no answer to a normal GET over TLS after the subset")
        self.assertEqual(r.status, 200)
        fails = [o for o in outcomes if o.failures]
        self.assertEqual(len(fails), 0, "%d of %d TLS cases failed:\n%s" % (
            len(fails), len(outcomes), "\n".join(o.line() for o in fails)))

    @staticmethod
    def _drop_certs(mod):
        if mod.CERTS is not None:
            mod.CERTS.cleanup()
            mod.CERTS = None


if __name__ == "__main__":
    unittest.main()
