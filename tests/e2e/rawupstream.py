"""A raw-bytes backend and a strict reference HTTP/1.1 parser, for hostile-input tests.

Standard library only. Two parts:

1. A STRICT reference parser (RFC 9112 framing, RFC 9110 field syntax) written here,
   independent of tether and of llhttp:

     parse_request(data, pos=0) -> Message            (raises Incomplete / StrictError)
     parse_response(data, pos=0, request_method="GET") -> Message
     parse_all_requests(data) -> (messages, pending_bytes, StrictError or None)
     reference_sequence(client_bytes) -> [Reading]    what a conformant proxy must do with
                                                      each request on a client connection
     upstream_problems(msg, ...) -> [(severity, text)] what is wrong with a request a proxy
                                                      forwarded (severity "error" or "warn")

   parse_request() raises StrictError when the bytes cannot be delimited without guessing:
   bare CR or LF, obs-fold, a field line without a colon or with an invalid name, a
   malformed request line, Transfer-Encoding that is not exactly one `chunked`, TE with
   Content-Length, an invalid or conflicting Content-Length, a malformed chunk. Anything
   else that tether's contract (/tmp/team/DECISIONS.md) treats specially is recorded in
   Message.issues as (code, severity, text, status): severity "reject" (a conformant proxy
   refuses the request, with that status), "may" (RFC leaves it open: refuse or forward
   normalised), "info" (forwarded with a change, e.g. an underscore field dropped).

2. RawUpstream: a TCP backend that records, per connection, every byte it receives, splits
   them into requests with the strict parser and answers each with scripted raw bytes.

     up = RawUpstream(handler)                 # handler(req, conn) -> bytes | Reply | None
     up.port / up.url / up.address / up.stop()
     up.conns()                                # non-health RawConn objects, in accept order
     up.requests()                             # every parsed request (health left out)
     up.mark() / up.since(mark)                # what arrived after a point in time
     up.wait(pred, timeout)                    # waits on the upstream's condition variable

   Health checks (`User-Agent: tether-health-check`, or the health path) are answered 200
   with Connection: close and their connections flagged .health (left out of conns()).
   Unparseable bytes: the connection records .error (a StrictError), answers 400 and
   closes, like a strict real backend. The default handler answers 200 with headers
   X-Backend: raw, X-Conn: <connection id>, X-Seq: <request number on the connection>,
   X-Seen: <method> <target>, and a short body (no body for HEAD).
"""

import re
import socket
import threading
import time

# ---------------------------------------------------------------------------------------
# Character classes (RFC 9110 §5.6.2, RFC 9112)

TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
HEXDIG = frozenset(b"0123456789abcdefABCDEF")
DIGIT = frozenset(b"0123456789")
MAX_HEAD = 1 << 20          # the reference parser gives up on heads above 1 MiB
MAX_CHUNK_LINE = 4096       # contract item 7
MAX_CHUNK_DIGITS = 16       # contract item 7

# Fields that may not be trailers (contract item 1, item 10): never forwarded as trailers.
TRAILER_DENY = frozenset([
    "content-length", "transfer-encoding", "host", "connection", "keep-alive", "te",
    "trailer", "upgrade", "proxy-connection", "content-type", "content-encoding",
    "content-range", "authorization", "cookie", "set-cookie", "expect", "max-forwards",
    "x-request-id"])


def trailer_denied(name):
    n = name.lower()
    return n in TRAILER_DENY or n.startswith("x-forwarded-")


_HOST_RE = re.compile(rb"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?$")


class StrictError(Exception):
    """The bytes are not a message a strict HTTP/1.1 recipient can delimit."""

    def __init__(self, reason, status=400, offset=None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.offset = offset

    def __repr__(self):
        return "StrictError(%r, %d)" % (self.reason, self.status)


class Incomplete(Exception):
    """More bytes are needed to finish the message."""


class Message:
    """One parsed request or response.

    headers   [(name str (latin-1, as sent), value bytes (OWS trimmed))] in order
    body      the decoded body (chunked: the concatenated chunk data)
    framing   "none", "length", "chunked" or "close" (responses only)
    trailers  [(name, value)] of a chunked body
    chunk_exts  [raw chunk-ext bytes, one per chunk that had any]
    chunk_bws   True when a chunk line had whitespace (BWS) in it
    raw       the exact bytes of the message (start..end)
    issues    [(code, severity, text, status)] (see module doc)
    """

    def __init__(self, kind):
        self.kind = kind
        self.method = self.target = self.version = None
        self.status = None
        self.reason = None
        self.headers = []
        self.body = b""
        self.framing = "none"
        self.trailers = []
        self.chunk_exts = []
        self.chunk_bws = False
        self.chunk_lines = []
        self.raw = b""
        self.start = self.end = 0
        self.issues = []
        self.upstream_target = None     # origin-form target a proxy must forward
        self.dropped = []               # names a proxy drops (underscore fields)
        self.content_length = None
        self.conn_id = None             # RawUpstream bookkeeping
        self.seq = None
        self.gseq = None

    # -- field access ---------------------------------------------------------------
    def values(self, name):
        n = name.lower()
        return [v for k, v in self.headers if k.lower() == n]

    def value(self, name):
        v = self.values(name)
        return v[0] if v else None

    def names(self):
        return [k for k, _ in self.headers]

    def trailer_values(self, name):
        n = name.lower()
        return [v for k, v in self.trailers if k.lower() == n]

    def issue(self, code, severity, text, status=400):
        self.issues.append((code, severity, text, status))

    def verdict(self):
        """("reject", status, text) | ("either", None, text) | ("accept", None, "")."""
        for code, sev, text, status in self.issues:
            if sev == "reject":
                return "reject", status, text
        mays = [text for code, sev, text, status in self.issues if sev == "may"]
        if mays:
            return "either", None, "; ".join(mays)
        return "accept", None, ""

    def brief(self):
        if self.kind == "request":
            return "%s %s %s (%s, body %d B)" % (
                _s(self.method), _s(self.target), _s(self.version), self.framing,
                len(self.body))
        return "%s %s (%s, body %d B)" % (_s(self.version), self.status, self.framing,
                                          len(self.body))

    def __repr__(self):
        return "<Message %s>" % self.brief()


def _s(b):
    if b is None:
        return None
    return b.decode("latin-1") if isinstance(b, (bytes, bytearray)) else str(b)


# ---------------------------------------------------------------------------------------
# Lines and fields


def _line(data, pos):
    """One CRLF-terminated line at pos: (line without CRLF, next pos). Bare LF or CR is
    an error (RFC 9112 §2.2: a strict recipient accepts CRLF only)."""
    nl = data.find(b"\n", pos)
    if nl < 0:
        cr = data.find(b"\r", pos)
        if 0 <= cr < len(data) - 1:
            raise StrictError("bare CR in a line", offset=cr)
        if len(data) - pos > MAX_HEAD:
            raise StrictError("line longer than %d bytes" % MAX_HEAD, 431)
        raise Incomplete()
    if nl == pos or data[nl - 1:nl] != b"\r":
        raise StrictError("bare LF as a line terminator", offset=nl)
    line = data[pos:nl - 1]
    cr = line.find(b"\r")
    if cr >= 0:
        raise StrictError("bare CR inside a line", offset=pos + cr)
    return bytes(line), nl + 1


def _field(line, where="header"):
    """(name str, value bytes) of a field line; raises StrictError on bad syntax."""
    if line[:1] in (b" ", b"\t"):
        raise StrictError("obs-fold (a %s line starting with whitespace)" % where)
    colon = line.find(b":")
    if colon < 0:
        raise StrictError("%s line without a colon: %r" % (where, line[:60]))
    name = line[:colon]
    if not name:
        raise StrictError("empty %s field name" % where)
    bad = [c for c in name if c not in TCHAR]
    if bad:
        raise StrictError("invalid byte 0x%02x in %s field name %r" % (bad[0], where, name[:40]))
    value = line[colon + 1:].strip(b" \t")
    for c in value:
        if (c < 0x20 and c != 0x09) or c == 0x7F:
            raise StrictError("control byte 0x%02x in the value of %s" % (c, _s(name)))
    return name.decode("latin-1"), value


def _read_fields(data, pos, where, msg=None):
    fields = []
    while True:
        if msg is not None and data[pos:pos + 1] == b"\n" and \
                pos > 0 and data[pos - 1:pos] == b"\n":
            # An LF-only empty line right after a CRLF: RFC 9112 §2.2 lets a recipient take a
            # lone LF as a line terminator, so this may end the header section.
            msg.issue("lf-end", "may", "header section ended by a bare LF")
            return fields, pos + 1
        line, pos = _line(data, pos)
        if line == b"":
            return fields, pos
        fields.append(_field(line, where))
        if len(fields) > 100000:
            raise StrictError("too many fields", 431)


# ---------------------------------------------------------------------------------------
# Requests


def _request_line(msg, line):
    parts = line.split(b" ")
    if len(parts) == 2 and parts[0] and parts[1]:
        raise StrictError("request line without an HTTP version (HTTP/0.9 form)")
    if len(parts) != 3 or not all(parts):
        raise StrictError("malformed request line %r" % line[:80])
    method, target, version = parts
    if any(c not in TCHAR for c in method):
        raise StrictError("invalid method %r" % method[:40])
    m = re.fullmatch(rb"HTTP/([0-9])\.([0-9])", version)
    if not m:
        raise StrictError("malformed HTTP version %r" % version[:40])
    if version not in (b"HTTP/1.0", b"HTTP/1.1"):
        raise StrictError("unsupported HTTP version %s" % _s(version), 505)
    for c in target:
        if c < 0x21 or c == 0x7F:
            raise StrictError("control byte in the request target")
    msg.method, msg.target, msg.version = method, target, version


def _classify_target(msg):
    """Sets msg.upstream_target and records target issues; returns the authority of an
    absolute-form target (or None)."""
    t, method = msg.target, msg.method
    if any(c > 0x7E for c in t):
        msg.issue("target-non-ascii", "may", "non-ASCII byte in the request target")
    if method == b"CONNECT":
        msg.issue("connect", "reject", "CONNECT (tether is not a forward proxy)", 405)
        return None
    if b"#" in t:
        msg.issue("target-fragment", "reject", "a # fragment in the request target")
    if t == b"*":
        if method != b"OPTIONS":
            msg.issue("asterisk-form", "reject", "* target with a method other than OPTIONS")
        msg.upstream_target = t
        return None
    if t.startswith(b"/"):
        msg.upstream_target = t
        return None
    m = re.match(rb"^([A-Za-z][A-Za-z0-9+.\-]*)://([^/?#]*)(.*)$", t)
    if m:
        scheme, authority, rest = m.group(1).lower(), m.group(2), m.group(3)
        if scheme not in (b"http", b"https"):
            msg.issue("target-scheme", "reject", "absolute-form with scheme %s" % _s(scheme))
        if b"@" in authority:
            msg.issue("target-userinfo", "reject", "userinfo in the target authority")
        if not rest:
            rest = b"/"
        elif rest.startswith(b"?"):
            rest = b"/" + rest
        msg.upstream_target = rest
        return authority
    msg.issue("target-form", "reject", "request target %r is in no valid form" % t[:40])
    msg.upstream_target = t
    return None


def _request_semantics(msg):
    """Contract checks on a parsed request head (records issues; raises StrictError when
    the body cannot be delimited)."""
    authority = _classify_target(msg)
    hosts = msg.values("Host")
    v11 = msg.version == b"HTTP/1.1"
    if v11 and not hosts:
        msg.issue("host-missing", "reject", "HTTP/1.1 request without Host")
    if len(hosts) > 1:
        msg.issue("host-multiple", "reject", "%d Host fields" % len(hosts))
    for h in hosts:
        if h == b"":
            msg.issue("host-empty", "may", "empty Host")
        elif not _HOST_RE.match(h):
            msg.issue("host-invalid", "reject", "invalid Host value %r" % h[:40])
    if authority is not None and hosts and authority.lower() != hosts[0].lower():
        msg.issue("authority-mismatch", "reject",
                  "absolute-form authority %s differs from Host %s" % (_s(authority),
                                                                       _s(hosts[0])))
    for name, value in msg.headers:
        if "_" in name:
            msg.dropped.append(name)
            msg.issue("underscore", "info", "field %s has an underscore (dropped)" % name)
        if any(c >= 0x80 for c in value):
            msg.issue("obs-text", "may", "obs-text in the value of %s" % name)
    tokens = set()
    for v in msg.values("Connection"):
        for tok in v.split(b","):
            tokens.add(tok.strip(b" \t").lower())
    named = tokens & {b"content-length", b"transfer-encoding", b"host"}
    if named:
        msg.issue("connection-names-framing", "reject",
                  "Connection names %s" % ", ".join(sorted(_s(n) for n in named)))
    expects = msg.values("Expect")
    if len(expects) > 1:
        msg.issue("expect-multiple", "may", "%d Expect fields" % len(expects))
    for e in expects:
        if e.lower() != b"100-continue":
            msg.issue("expect-unknown", "may", "Expect: %s" % _s(e))
    _framing(msg)


def _framing(msg):
    tes = msg.values("Transfer-Encoding")
    cls = msg.values("Content-Length")
    if tes:
        if len(tes) > 1:
            raise StrictError("%d Transfer-Encoding fields" % len(tes))
        if tes[0].lower() != b"chunked":
            raise StrictError("Transfer-Encoding %r is not exactly chunked" % tes[0][:40])
        if cls:
            raise StrictError("Transfer-Encoding together with Content-Length")
        if msg.kind == "request" and msg.version == b"HTTP/1.0":
            raise StrictError("Transfer-Encoding on an HTTP/1.0 request")
        msg.framing = "chunked"
        return
    if cls:
        items = []
        for v in cls:
            items += [i.strip(b" \t") for i in v.split(b",")]
        for i in items:
            if not i or any(c not in DIGIT for c in i):
                raise StrictError("invalid Content-Length %r" % i[:40])
            if len(i) > 15:
                raise StrictError("Content-Length %s too large" % _s(i[:20]))
        if len({int(i) for i in items}) > 1:
            raise StrictError("conflicting Content-Length values %s" % _s(b", ".join(items)))
        if len(items) > 1:
            msg.issue("cl-list", "may", "Content-Length repeated (%s)" % _s(b", ".join(items)))
        if any(len(i) > 1 and i.startswith(b"0") for i in items):
            msg.issue("cl-leading-zero", "may", "Content-Length with leading zeros")
        msg.content_length = int(items[0])
        msg.framing = "length"
        return
    msg.framing = "none"


def _chunked_body(msg, data, pos):
    """Reads a chunked body at pos; returns the position after the trailer section."""
    body = []
    while True:
        line, nxt = _line(data, pos)
        if len(line) > MAX_CHUNK_LINE:
            raise StrictError("chunk-size line of %d bytes" % len(line))
        msg.chunk_lines.append(line)
        i = 0
        while i < len(line) and line[i] in HEXDIG:
            i += 1
        if i == 0:
            raise StrictError("invalid chunk size %r" % line[:40])
        if i > MAX_CHUNK_DIGITS:
            raise StrictError("chunk size of %d hex digits" % i)
        size = int(line[:i], 16)
        ext = line[i:]
        if ext:
            _check_chunk_ext(msg, ext)
            msg.chunk_exts.append(ext)
        pos = nxt
        if size == 0:
            fields, pos = _read_fields(data, pos, "trailer")
            msg.trailers = fields
            msg.body = b"".join(body)
            return pos
        if len(data) < pos + size + 2:
            raise Incomplete()
        body.append(bytes(data[pos:pos + size]))
        if data[pos + size:pos + size + 2] != b"\r\n":
            raise StrictError("chunk data not followed by CRLF")
        pos += size + 2


def _check_chunk_ext(msg, ext):
    """chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ) (RFC 9112 §7.1.1)."""
    i, n = 0, len(ext)

    def bws(j):
        k = j
        while k < n and ext[k] in b" \t":
            k += 1
        if k != j:
            msg.chunk_bws = True
        return k

    while i < n:
        i = bws(i)
        if i >= n or ext[i:i + 1] != b";":
            raise StrictError("invalid byte after the chunk size: %r" % ext[:40])
        i = bws(i + 1)
        j = i
        while j < n and ext[j] in TCHAR:
            j += 1
        if j == i:
            raise StrictError("chunk extension without a name: %r" % ext[:40])
        i = bws(j)
        if i < n and ext[i:i + 1] == b"=":
            i = bws(i + 1)
            if i < n and ext[i:i + 1] == b'"':
                i += 1
                while True:
                    if i >= n:
                        raise StrictError("unterminated quoted chunk extension value")
                    c = ext[i]
                    if c == 0x22:
                        i += 1
                        break
                    if c == 0x5C:
                        if i + 1 >= n:
                            raise StrictError("bad quoted-pair in a chunk extension")
                        i += 2
                        continue
                    if (c < 0x20 and c != 0x09) or c == 0x7F:
                        raise StrictError("control byte in a chunk extension")
                    i += 1
            else:
                j = i
                while j < n and ext[j] in TCHAR:
                    j += 1
                if j == i:
                    raise StrictError("chunk extension without a value after =")
                i = j
    if msg.chunk_bws:
        msg.issue("chunk-bws", "may", "whitespace in a chunk-size line")


def parse_request(data, pos=0):
    """Parses one request at data[pos:]. Returns a Message (msg.end = first byte after
    it). Raises Incomplete when more bytes are needed, StrictError when the bytes cannot
    be delimited without guessing."""
    msg = Message("request")
    msg.start = pos
    line, p = _line(data, pos)
    _request_line(msg, line)
    msg.headers, p = _read_fields(data, p, "header", msg)
    _request_semantics(msg)
    if msg.framing == "length":
        n = msg.content_length
        if len(data) < p + n:
            raise Incomplete()
        msg.body = bytes(data[p:p + n])
        p += n
    elif msg.framing == "chunked":
        p = _chunked_body(msg, data, p)
    msg.end = p
    msg.raw = bytes(data[pos:p])
    return msg


def parse_all_requests(data):
    """Every complete request in data: (messages, pending bytes, StrictError or None)."""
    out, pos = [], 0
    while pos < len(data):
        try:
            m = parse_request(data, pos)
        except Incomplete:
            return out, bytes(data[pos:]), None
        except StrictError as e:
            return out, bytes(data[pos:]), e
        out.append(m)
        pos = m.end
    return out, b"", None


# ---------------------------------------------------------------------------------------
# Responses


def parse_response(data, pos=0, request_method=b"GET", eof=False):
    """Parses one response at data[pos:] (strict framing, RFC 9112 §6.3). 1xx, 204 and
    304 end at their blank line; a response to HEAD has no body; without framing the body
    runs to EOF (eof=True says the connection is closed)."""
    if isinstance(request_method, str):
        request_method = request_method.encode()
    msg = Message("response")
    msg.start = pos
    line, p = _line(data, pos)
    m = re.fullmatch(rb"(HTTP/[0-9]\.[0-9]) ([0-9]{3})(?: (.*))?", line)
    if not m:
        raise StrictError("malformed status line %r" % line[:80])
    msg.version, msg.status, msg.reason = m.group(1), int(m.group(2)), m.group(3) or b""
    msg.headers, p = _read_fields(data, p, "header")
    if 100 <= msg.status < 200 or msg.status in (204, 304) or request_method == b"HEAD":
        msg.framing = "none"
    else:
        _framing(msg)
        if msg.framing == "none":
            msg.framing = "close"
    if msg.framing == "length":
        n = msg.content_length
        if len(data) < p + n:
            raise Incomplete()
        msg.body = bytes(data[p:p + n])
        p += n
    elif msg.framing == "chunked":
        p = _chunked_body(msg, data, p)
    elif msg.framing == "close":
        if not eof:
            raise Incomplete()
        msg.body = bytes(data[p:])
        p = len(data)
    msg.end = p
    msg.raw = bytes(data[pos:p])
    return msg


def parse_all_responses(data, methods=(), eof=True):
    """Splits the bytes a client received into responses. methods: the request methods
    in order (HEAD responses have no body); 1xx responses are returned too and do not
    consume a method. Returns (responses, leftover bytes, StrictError or None)."""
    out, pos, mi = [], 0, 0
    methods = list(methods)
    while pos < len(data):
        meth = methods[mi] if mi < len(methods) else b"GET"
        try:
            r = parse_response(data, pos, meth, eof=eof)
        except Incomplete:
            return out, bytes(data[pos:]), None
        except StrictError as e:
            return out, bytes(data[pos:]), e
        out.append(r)
        if r.status >= 200 or r.status == 101:
            mi += 1
        pos = r.end
    return out, b"", None


# ---------------------------------------------------------------------------------------
# What a conformant proxy does with a client's bytes


class Reading:
    """The reference reading of one request on a client connection.

    verdict   "accept", "either" (refusing or forwarding are both conformant), "reject"
              (a conformant proxy refuses it), "incomplete" (the bytes end inside it)
    status    the status a refusal should carry (reject only)
    why       text
    msg       the parsed Message (None for reject-by-StrictError and incomplete)
    """

    def __init__(self, verdict, status=None, why="", msg=None):
        self.verdict, self.status, self.why, self.msg = verdict, status, why, msg

    def __repr__(self):
        return "Reading(%s, %r, %s)" % (self.verdict, self.status,
                                         self.msg.brief() if self.msg else self.why)


def reference_sequence(data, limit=16):
    """Reads a client's bytes request by request the way tether's contract says: stops at
    the first request that must be refused (a conformant proxy closes there), at an
    HTTP/1.0 request or one with Connection: close (the connection ends after it), or when
    the bytes end."""
    out, pos = [], 0
    while pos < len(data) and len(out) < limit:
        try:
            m = parse_request(data, pos)
        except Incomplete:
            out.append(Reading("incomplete", why="the bytes end inside a request"))
            return out
        except StrictError as e:
            out.append(Reading("reject", e.status, e.reason))
            return out
        verdict, status, why = m.verdict()
        out.append(Reading(verdict, status, why, m))
        if verdict == "reject":
            return out
        pos = m.end
        conn = b",".join(m.values("Connection")).lower()
        if m.version == b"HTTP/1.0" and b"keep-alive" not in conn:
            return out
        if b"close" in [t.strip() for t in conn.split(b",")]:
            return out
    return out


# "may" issues that are errors in a forwarded request: the RFC lets a proxy accept them
# from a client only if it normalises them (RFC 9110 §8.6 for repeated Content-Length;
# the contract re-encodes chunked bodies; a bare LF never goes upstream).
UPSTREAM_ERRORS = frozenset(["cl-list", "chunk-bws", "lf-end"])


def upstream_problems(msg, client=None, backend_authority=None, underscores="drop"):
    """What is wrong with a request as a backend received it from tether.

    client             the reference Message of the client's request (for trailer and
                       body checks), or None
    backend_authority  "host:port" tether should put in Host for a Host-less HTTP/1.0
                       request
    Returns [(severity, text)], severity "error" (breaks the contract or lets a backend
    read the bytes another way) or "warn" (legal but worth a look)."""
    out = []
    if msg.version != b"HTTP/1.1":
        out.append(("error", "forwarded as %s (expected HTTP/1.1)" % _s(msg.version)))
    hosts = msg.values("Host")
    if len(hosts) != 1:
        out.append(("error", "forwarded with %d Host fields" % len(hosts)))
    for code, sev, text, status in msg.issues:
        if code == "underscore":
            if underscores != "allow":
                out.append(("error", "forwarded %s" % text.replace(" (dropped)", "")))
        elif code == "cl-leading-zero":
            out.append(("warn", "forwarded a Content-Length with leading zeros "
                                "(strtoll(,,0) backends read it as octal)"))
        elif sev == "reject" or code in UPSTREAM_ERRORS:
            out.append(("error", "forwarded a request with: %s" % text))
        elif sev == "may":
            out.append(("warn", "forwarded as is: %s" % text))
    if not (msg.target.startswith(b"/") or (msg.method == b"OPTIONS" and msg.target == b"*")):
        out.append(("error", "forwarded target %r is not origin-form" % msg.target[:60]))
    if msg.chunk_exts:
        out.append(("error", "forwarded chunk extensions %r (contract: dropped)"
                    % msg.chunk_exts[:2]))
    for name, _ in msg.trailers:
        if trailer_denied(name):
            out.append(("error", "forwarded trailer %s, which may not be a trailer" % name))
    if client is not None:
        head_names = {k.lower() for k, _ in client.headers}
        for name, value in client.trailers:
            # tether adds some of these names itself (X-Forwarded-*, X-Request-Id): what
            # matters is whether the trailer's value got into the head.
            if name.lower() not in head_names and value and any(
                    value in v for v in msg.values(name)):
                out.append(("error", "client trailer %s: %s reached the backend as a header "
                                     "of the head" % (name, _s(value[:40]))))
        allowed = {k.lower() for k, _ in client.trailers if not trailer_denied(k)}
        for name, _ in msg.trailers:
            if name.lower() not in allowed:
                out.append(("error", "backend got trailer %s the client did not send as an "
                                     "allowed trailer" % name))
        if client.version == b"HTTP/1.0" and not client.values("Host") and backend_authority:
            if hosts and hosts[0].decode("latin-1").lower() != backend_authority.lower():
                out.append(("error", "Host-less HTTP/1.0 request forwarded with Host %s "
                                     "(expected %s)" % (_s(hosts[0]), backend_authority)))
    return out


# ---------------------------------------------------------------------------------------
# The raw upstream


class Reply:
    """What a handler sends back: raw bytes, then optionally closes.
    close="after" closes after writing; "rst" resets; None keeps the connection."""

    def __init__(self, data=b"", close=None, parts=None):
        self.data = data
        self.close = close
        self.parts = parts        # [(bytes, seconds to wait before)] instead of data


def simple_response(status=200, body=b"ok", headers=(), reason=None, head=False):
    reason = reason or {200: "OK", 204: "No Content", 400: "Bad Request"}.get(status, "X")
    lines = ["HTTP/1.1 %d %s" % (status, reason)]
    lines += ["%s: %s" % (k, v) for k, v in headers]
    if not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
        lines.append("Content-Length: %d" % (0 if head else len(body)))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)


class RawConn:
    """One TCP connection to the raw upstream."""

    def __init__(self, up, sock, addr, cid):
        self.up = up
        self.sock = sock
        self.addr = addr
        self.id = cid
        self.data = bytearray()      # every byte received, in order
        self.parsed_to = 0           # bytes of data consumed by complete requests
        self.requests = []
        self.error = None            # StrictError when the bytes stopped making sense
        self.error_at = None         # global sequence number at the time of the error
        self.health = False
        self.peer_closed = False     # tether closed (EOF or reset)
        self.we_closed = False
        self.sent = bytearray()
        self.opened = time.monotonic()

    @property
    def pending(self):
        """Bytes received after the last complete request (a partial request)."""
        return bytes(self.data[self.parsed_to:])

    @property
    def closed(self):
        return self.peer_closed or self.we_closed

    def send(self, data):
        try:
            self.sock.sendall(data)
            self.sent += data
        except OSError:
            pass

    def close(self, rst=False):
        if self.we_closed:
            return
        self.we_closed = True
        try:
            if rst:
                import struct
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if rst:
            try:
                self.sock.close()
            except OSError:
                pass

    def __repr__(self):
        return "<RawConn %d %d B, %d requests%s%s%s>" % (
            self.id, len(self.data), len(self.requests), " health" if self.health else "",
            " error=%r" % self.error.reason if self.error else "",
            " closed" if self.closed else "")


def default_handler(req, conn):
    head = req.method == b"HEAD"
    body = b"seen %s %s conn=%d seq=%d\n" % (req.method, req.target[:200], conn.id, req.seq)
    return simple_response(200, body, headers=[
        ("X-Backend", "raw"), ("X-Conn", str(conn.id)), ("X-Seq", str(req.seq)),
        ("X-Seen", "%s %s" % (_s(req.method), _s(req.target[:200])))], head=head)


class RawUpstream:
    """A threaded TCP backend that records raw bytes per connection and answers each
    strictly parsed request with handler(req, conn) -> bytes | Reply | None (None: send
    nothing, e.g. to stall)."""

    def __init__(self, handler=None, host="127.0.0.1", health_path=b"/health", name="raw",
                 parse=True):
        self.handler = handler or default_handler
        self.health_path = health_path
        self.name = name
        self.parse = parse
        self.host = host
        self.cond = threading.Condition()
        self._conns = []
        self._requests = []
        self._errors = []            # RawConns in the order their bytes stopped parsing
        self._gseq = 0
        self._stop = False
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((host, 0))
        self.lsock.listen(256)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self._threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True, name="rawup-accept")
        t.start()
        self._threads.append(t)

    # -- addresses ------------------------------------------------------------------
    @property
    def url(self):
        return "http://%s:%d" % (self.host, self.port)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    # -- inspection -----------------------------------------------------------------
    def conns(self, health=False):
        with self.cond:
            return [c for c in self._conns if health or not c.health]

    def requests(self):
        with self.cond:
            return list(self._requests)

    def mark(self):
        """A point in time: (request count, per-connection byte counts, connection count)."""
        with self.cond:
            return (len(self._requests), {c.id: len(c.data) for c in self._conns},
                    len(self._conns), len(self._errors))

    def since(self, mark):
        """(requests, connections that got bytes, connections whose bytes stopped parsing,
        new connections) after mark."""
        nreq, sizes, nconn, nerr = mark
        with self.cond:
            reqs = list(self._requests[nreq:])
            touched = [c for c in self._conns if not c.health and
                       len(c.data) > sizes.get(c.id, 0)]
            errors = [c for c in self._errors[nerr:] if not c.health]
            new = [c for c in self._conns[nconn:] if not c.health]
        return reqs, touched, errors, new

    def wait(self, pred, timeout=5.0):
        """Waits until pred() holds (evaluated under the lock); returns its value or None."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.1))

    def wait_requests(self, n, timeout=5.0):
        return self.wait(lambda: len(self._requests) >= n, timeout)

    def close_all(self):
        """Closes every open connection from the backend side."""
        for c in self.conns(health=True):
            if not c.closed:
                c.close()

    # -- lifecycle ------------------------------------------------------------------
    def stop(self):
        self._stop = True
        try:
            self.lsock.close()
        except OSError:
            pass
        for c in self.conns(health=True):
            try:
                c.sock.close()
            except OSError:
                pass
        for t in self._threads:
            t.join(2)

    def _accept_loop(self):
        cid = 0
        while not self._stop:
            try:
                s, addr = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            cid += 1
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = RawConn(self, s, addr, cid)
            with self.cond:
                self._conns.append(conn)
                self.cond.notify_all()
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True,
                                 name="rawup-%d" % cid)
            t.start()
            self._threads.append(t)

    def _serve(self, conn):
        s = conn.sock
        s.settimeout(0.1)
        while not self._stop and not conn.we_closed:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                with self.cond:
                    conn.peer_closed = True
                    self.cond.notify_all()
                break
            replies = []
            with self.cond:
                conn.data += chunk
                if self.parse and conn.error is None:
                    replies = self._parse_more(conn)
                self.cond.notify_all()
            for r in replies:
                self._send_reply(conn, r)
                if conn.we_closed:
                    break
        if conn.we_closed:
            # Keep draining what tether still sends so that it can be recorded.
            self._drain(conn)
        try:
            s.close()
        except OSError:
            pass

    def _drain(self, conn):
        s = conn.sock
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and not self._stop:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                with self.cond:
                    conn.peer_closed = True
                    self.cond.notify_all()
                return
            with self.cond:
                conn.data += chunk
                self.cond.notify_all()

    def _parse_more(self, conn):
        """Under the lock: parses complete requests; returns the replies to send."""
        replies = []
        while conn.parsed_to < len(conn.data):
            try:
                m = parse_request(conn.data, conn.parsed_to)
            except Incomplete:
                break
            except StrictError as e:
                conn.error = e
                conn.error_at = self._gseq
                if not conn.requests and self._looks_like_health(conn.data):
                    conn.health = True
                self._errors.append(conn)
                replies.append(Reply(simple_response(
                    400, b"strict backend: " + e.reason.encode("latin-1", "replace") + b"\n",
                    headers=[("X-Backend", "raw"), ("Connection", "close")]), close="after"))
                break
            conn.parsed_to = m.end
            ua = (m.value("User-Agent") or b"")
            if not conn.requests and (ua.startswith(b"tether-health") or
                                      m.target == self.health_path):
                conn.health = True
            m.conn_id = conn.id
            m.seq = len(conn.requests) + 1
            conn.requests.append(m)
            if conn.health:
                replies.append(Reply(simple_response(200, b'{"status": true}', headers=[
                    ("Connection", "close")]), close="after"))
                break
            self._gseq += 1
            m.gseq = self._gseq
            self._requests.append(m)
            try:
                r = self.handler(m, conn)
            except Exception as e:  # noqa: BLE001 - a broken handler answers 500
                r = simple_response(500, ("handler error: %r" % e).encode())
            if r is None:
                continue
            if isinstance(r, (bytes, bytearray)):
                r = Reply(bytes(r))
            replies.append(r)
            if r.close:
                break
        return replies

    @staticmethod
    def _looks_like_health(data):
        return b"tether-health-check" in bytes(data[:2000])

    def _send_reply(self, conn, r):
        if r.parts:
            for data, delay in r.parts:
                if delay:
                    time.sleep(delay)   # scripted pacing of a response, not synchronisation
                conn.send(data)
        elif r.data:
            conn.send(r.data)
        if r.close == "rst":
            conn.close(rst=True)
        elif r.close:
            conn.close()
