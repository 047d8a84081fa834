"""Attacks on tether's HTTP/2 layer, end to end, from the published advisories:
Rapid Reset (CVE-2023-44487), MadeYouReset (CVE-2025-8671), the 2024
CONTINUATION flood (CVE-2024-27316 and kin), the HPACK bomb, and the 2019
family (CVE-2019-9511..9518: data dribble, ping flood, resource loop, reset
flood, settings flood, 0-length headers, empty frames, internal data
buffering), floods of frames that carry nothing (empty DATA, WINDOW_UPDATE
and RST_STREAM on closed streams, PRIORITY), slow readers, the stream limits,
HTTP/1-only fields and request smuggling through the HTTP/2 -> HTTP/1.1
downgrade.

Each attack is mounted with hand-made frames (a raw socket, HPACK written here
without the dynamic table unless the attack is the dynamic table) over
cleartext prior-knowledge HTTP/2, a few also over TLS with ALPN h2. Each test
asserts (a) the refusal the codec documents (proxy/http/h2_server.h: GOAWAY
ENHANCE_YOUR_CALM or PROTOCOL_ERROR, RST_STREAM, 431, a close) and its
tether_http2_* counter, (b) that tether still serves another connection, over
HTTP/1.1 (urllib) and HTTP/2 (the python3-h2 client), and (c) where it
matters, that memory stays bounded (VmRSS) and no upstream work is left
behind (tether_upstream_connections, the backend's /stats).

Run: cd tests/e2e && TETHER_BIN=... python3 -m unittest -v test_http2_attacks
"""

import collections
import json
import select
import socket
import ssl
import struct
import threading
import time
import unittest

import h2util
from harness import E2ETestCase, http_get, sanitized, wait_until
from test_http_core import FAST_HEALTH, RssSampler, rss_kib, wait_ready

try:
    import h2.config
    import h2.connection
    import h2.events
    import hpack
    HAVE_H2 = True
except ImportError:  # python3-h2 (and its python3-hpack) missing
    HAVE_H2 = False

MiB = 1 << 20
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 §6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
# Flags
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
# Settings
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT, S_INITIAL_WINDOW, S_MAX_FRAME, \
    S_MAX_HEADER_LIST = range(1, 7)
# Error codes (RFC 9113 §7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, \
    ENHANCE_YOUR_CALM = range(12)
MAX_WINDOW = 0x7FFFFFFF

GOAWAYS = "tether_http2_goaways_total"
STREAM_ERRORS = "tether_http2_stream_errors_total"
UPSTREAM_CONNS = "tether_upstream_connections"


def require_h2():
    h2util.require_h2(HAVE_H2)  # with python3-hpack, which this file uses itself


# ---------------------------------------------------------------------------------------
# Frames and HPACK, by hand (so that they can be wrong on purpose)


def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid & 0xFFFFFFFF) + payload


def settings_frame(pairs=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v)
                                                          for k, v in pairs))


def window_update(sid, inc):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack(">I", inc & 0xFFFFFFFF))


def rst_stream(sid, code=CANCEL):
    return frame(RST_STREAM, 0, sid, struct.pack(">I", code))


def ping(data=b"\0" * 8, ack=False):
    return frame(PING, ACK if ack else 0, 0, data)


def priority(sid, depends_on, weight=16, exclusive=False):
    dep = depends_on | (0x80000000 if exclusive else 0)
    return frame(PRIORITY, 0, sid, struct.pack(">IB", dep, weight - 1))


def hpack_int(value, prefix_bits, first=0):
    """RFC 7541 §5.1 integer with an N-bit prefix, `first` holding the pattern bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    if isinstance(s, str):
        s = s.encode("latin-1")
    return hpack_int(len(s), 7) + s


def literal(name, value):
    """A literal field without indexing, new name: never touches the dynamic table."""
    return b"\x00" + hpack_str(name) + hpack_str(value)


def literal_indexed(name, value):
    """A literal field with incremental indexing, new name: it enters the dynamic table."""
    return b"\x40" + hpack_str(name) + hpack_str(value)


def indexed(index):
    return hpack_int(index, 7, 0x80)


def block(fields):
    return b"".join(literal(n, v) for n, v in fields)


def request_fields(port, path="/id", method="GET", extra=(), authority=None):
    return [(":method", method), (":scheme", "http"), (":path", path),
            (":authority", authority or "127.0.0.1:%d" % port)] + list(extra)


Frame = collections.namedtuple("Frame", "type flags sid payload headers")


# ---------------------------------------------------------------------------------------
# A raw HTTP/2 client: frames out by hand, frames in parsed by a reader thread


class _PlainIo:
    def __init__(self, sock):
        self.sock = sock

    def send(self, data):
        self.sock.sendall(data)

    def recv(self):
        return self.sock.recv(65536)


class _TlsIo:
    """TLS over a plain socket with ssl.MemoryBIO: the reader thread and the sender never
    use the SSL object at the same time, and the reader never waits for a send."""

    def __init__(self, sock, ctx, sni):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self.inc, self.out, server_hostname=sni)
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.pending = []  # plaintext read during the handshake
        while True:
            try:
                self.obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                if self.out.pending:
                    sock.sendall(self.out.read())
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("EOF during the TLS handshake")
                self.inc.write(data)
        if self.out.pending:
            sock.sendall(self.out.read())
        self.alpn = self.obj.selected_alpn_protocol()

    def send(self, data):
        with self.send_lock:
            with self.lock:
                self.obj.write(data)
                raw = self.out.read()
            self.sock.sendall(raw)

    def recv(self):
        raw = self.sock.recv(65536)
        if not raw:
            return b""
        chunks = []
        with self.lock:
            self.inc.write(raw)
            while True:
                try:
                    c = self.obj.read(65536)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    if not chunks:
                        return b""
                    break
                if not c:
                    break
                chunks.append(c)
        out = b"".join(chunks)
        # Nothing decrypted (a ticket, a partial record): not EOF.
        return out if out else None


class H2Raw:
    """One HTTP/2 connection to tether.

    settings   the client's SETTINGS (default: a 2 GiB - 1 stream window, so that no
               WINDOW_UPDATE is ever needed; the connection window is opened as far)
    read       start the reader thread at once (False: the socket is not read until
               start_reading(); a client that never reads)
    rcvbuf     SO_RCVBUF before connecting (a small one fills at once)
    tls        an ssl.SSLContext: TLS with ALPN h2 (sni: its server_hostname)
    """

    def __init__(self, port, settings=None, read=True, rcvbuf=None, tls=None, sni="a.test",
                 open_window=True, timeout=10.0):
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.io = _TlsIo(self.sock, tls, sni) if tls is not None else _PlainIo(self.sock)
        self.cond = threading.Condition()
        self.frames = []
        self.streams = {}
        self.goaway = None         # (last_stream_id, error_code)
        self.eof = False
        self.eof_at = None
        self.read_error = None
        self.send_error = None
        self.bytes_in = 0
        self.ping_acks = 0
        self.settings_acks = 0
        self.data_frames = 0
        self.peer_initial_window = 65535     # the server's SETTINGS_INITIAL_WINDOW_SIZE
        self.send_window = {0: 65535}        # what we may send: per stream, 0 = connection
        self._buf = b""
        self._hblock = None         # (sid, flags, bytes) of a header block in progress
        self._decoder = hpack.Decoder()
        self._decoder.max_header_list_size = 1 << 30
        self._stop = False
        self._thread = None
        if settings is None:
            settings = [(S_INITIAL_WINDOW, MAX_WINDOW), (S_ENABLE_PUSH, 0)]
        out = PREFACE + settings_frame(settings)
        if open_window:
            out += window_update(0, MAX_WINDOW - 65535)
        self.send(out)
        if read:
            self.start_reading()
            self.wait(lambda: any(f.type == SETTINGS and not f.flags & ACK for f in self.frames),
                      5, "the server's SETTINGS")
            self.send(settings_frame(ack=True))

    # ---- output ------------------------------------------------------------
    def send(self, data):
        """Sends; False (and send_error) if the connection is gone or the send blocked
        past the socket timeout."""
        if self.send_error is not None:
            return False
        try:
            self.io.send(data)
            return True
        except (OSError, ssl.SSLError) as e:
            self.send_error = e
            return False

    def headers(self, sid, fields_or_block, end_stream=True, end_headers=True):
        blk = fields_or_block if isinstance(fields_or_block, bytes) else block(fields_or_block)
        flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
        return self.send(frame(HEADERS, flags, sid, blk))

    def get(self, sid, path="/id", extra=(), end_stream=True, method="GET"):
        return self.headers(sid, request_fields(self.port, path, method, extra), end_stream)

    def data(self, sid, payload=b"", end_stream=False):
        return self.send(frame(DATA, END_STREAM if end_stream else 0, sid, payload))

    def upload(self, sid, total, timeout=10.0, piece=16000):
        """Sends up to `total` body bytes on `sid` as flow control allows (a well-behaved
        client). Returns how many went out when `total` is reached, the windows stay shut
        for `timeout` seconds, or the stream or connection ends."""
        sent = 0
        while sent < total:
            def room():
                st = self.streams.get(sid, {})
                if st.get("rst") is not None or st.get("ended") or self.goaway or self.eof:
                    return -1
                w = min(self.send_window.get(sid, self.peer_initial_window),
                        self.send_window[0])
                return w if w > 0 else 0
            try:
                n = self.wait(room, timeout, "window on stream %d" % sid)
            except AssertionError:
                return sent
            if n < 0:
                return sent
            n = min(n, piece, total - sent)
            with self.cond:
                self.send_window[sid] = self.send_window.get(sid, self.peer_initial_window) - n
                self.send_window[0] -= n
            if not self.data(sid, b"u" * n):
                return sent
            sent += n
        return sent

    # ---- input -------------------------------------------------------------
    def start_reading(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True, name="h2raw-reader")
            self._thread.start()

    def _run(self):
        try:
            while not self._stop:
                r, _, _ = select.select([self.sock], [], [], 0.2)
                if not r:
                    continue
                try:
                    data = self.io.recv()
                except (ConnectionResetError, BrokenPipeError) as e:
                    self.read_error = e
                    data = b""
                if data is None:
                    continue
                if not data:
                    break
                with self.cond:
                    self.bytes_in += len(data)
                    self._buf += data
                    self._parse()
                    self.cond.notify_all()
        except (OSError, ValueError, ssl.SSLError) as e:
            self.read_error = e
        finally:
            with self.cond:
                self.eof = True
                self.eof_at = time.monotonic()
                self.cond.notify_all()

    def _stream(self, sid):
        return self.streams.setdefault(sid, {"status": None, "headers": None, "body": b"",
                                             "ended": False, "rst": None, "trailers": None})

    def _parse(self):
        while len(self._buf) >= 9:
            n = (self._buf[0] << 16) | (self._buf[1] << 8) | self._buf[2]
            if len(self._buf) < 9 + n:
                return
            ftype, flags = self._buf[3], self._buf[4]
            sid = struct.unpack(">I", self._buf[5:9])[0] & 0x7FFFFFFF
            payload = self._buf[9:9 + n]
            self._buf = self._buf[9 + n:]
            self._on_frame(ftype, flags, sid, payload)

    def _on_frame(self, ftype, flags, sid, payload):
        decoded = None
        if ftype in (HEADERS, CONTINUATION):
            if ftype == HEADERS:
                p = payload
                if flags & PADDED:
                    p = p[1:len(p) - p[0]]
                if flags & PRIORITY_FLAG:
                    p = p[5:]
                self._hblock = (sid, flags, p)
            elif self._hblock is not None:
                self._hblock = (self._hblock[0], self._hblock[1], self._hblock[2] + payload)
                flags |= self._hblock[1] & END_STREAM
            if flags & END_HEADERS and self._hblock is not None:
                sid, hflags, blk = self._hblock
                self._hblock = None
                decoded = [(bytes(k), bytes(v)) for k, v in self._decoder.decode(blk, raw=True)]
                st = self._stream(sid)
                status = dict(decoded).get(b":status")
                if status is not None and st["status"] is None or \
                        (status is not None and st["status"] and st["status"] < 200):
                    st["status"], st["headers"] = int(status), decoded
                else:
                    st["trailers"] = decoded
                if hflags & END_STREAM:
                    st["ended"] = True
                ftype = HEADERS
                flags = hflags | END_HEADERS
        elif ftype == DATA:
            p = payload
            if flags & PADDED:
                p = p[1:len(p) - p[0]]
            st = self._stream(sid)
            st["body"] += p
            self.data_frames += 1
            if flags & END_STREAM:
                st["ended"] = True
        elif ftype == RST_STREAM:
            self._stream(sid)["rst"] = struct.unpack(">I", payload[:4])[0]
        elif ftype == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            self.goaway = (last & 0x7FFFFFFF, code)
        elif ftype == WINDOW_UPDATE and len(payload) >= 4:
            inc = struct.unpack(">I", payload[:4])[0] & 0x7FFFFFFF
            self.send_window[sid] = self.send_window.get(sid, self.peer_initial_window) + inc
        elif ftype == SETTINGS and not flags & ACK:
            for i in range(0, len(payload) - 5, 6):
                k, v = struct.unpack(">HI", payload[i:i + 6])
                if k == S_INITIAL_WINDOW:
                    for w in self.send_window:
                        if w:
                            self.send_window[w] += v - self.peer_initial_window
                    self.peer_initial_window = v
        elif ftype == PING and flags & ACK:
            self.ping_acks += 1
        elif ftype == SETTINGS and flags & ACK:
            self.settings_acks += 1
        if ftype == CONTINUATION and decoded is None:
            return
        if len(self.frames) < 200000:
            self.frames.append(Frame(ftype, flags, sid, payload[:64], decoded))

    def wait(self, pred, timeout=5.0, what="condition"):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                v = pred()
                if v:
                    return v
                left = deadline - time.monotonic()
                if left <= 0 or (self.eof and not pred()):
                    raise AssertionError("h2 client: no %s within %.1fs (eof=%r goaway=%r "
                                         "read_error=%r)" % (what, timeout, self.eof,
                                                             self.goaway, self.read_error))
                self.cond.wait(min(left, 0.2))

    def wait_goaway(self, timeout=5.0):
        return self.wait(lambda: self.goaway, timeout, "GOAWAY")

    def wait_closed(self, timeout=5.0):
        """True once the peer closed (EOF or reset) within timeout, else False."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.2))
        return True

    def wait_response(self, sid, timeout=5.0):
        """(status, body) once the stream ended; AssertionError if it was reset."""
        def done():
            st = self.streams.get(sid)
            if st and st["rst"] is not None:
                raise AssertionError("stream %d was reset (code %d)" % (sid, st["rst"]))
            return st is not None and st["ended"]
        try:
            self.wait(done, timeout, "end of stream %d" % sid)
        except AssertionError:
            st = self.streams.get(sid)
            if st and st["rst"] is not None:
                raise AssertionError("stream %d was reset (code %d)" % (sid, st["rst"])) \
                    from None
            raise
        st = self.streams[sid]
        return st["status"], st["body"]

    def wait_rst(self, sid, timeout=5.0):
        return self.wait(lambda: self.streams.get(sid, {}).get("rst") is not None, timeout,
                         "RST_STREAM on stream %d" % sid) and self.streams[sid]["rst"]

    def stream(self, sid):
        with self.cond:
            return dict(self._stream(sid))

    def close(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(2)


def h2lib_get(port, path="/id", timeout=5.0):
    """One GET over a fresh prior-knowledge connection with the python3-h2 client:
    (status, body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":path", path),
                                (":authority", "127.0.0.1:%d" % port)], end_stream=True)
        sock.sendall(conn.data_to_send())
        status, body = None, b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = sock.recv(65536)
            if not data:
                raise AssertionError("h2 GET %s: connection closed (status %r)" % (path, status))
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    raise AssertionError("h2 GET %s: reset %r" % (path, ev.error_code))
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    return status, body
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
        raise AssertionError("h2 GET %s: no answer within %.1fs" % (path, timeout))
    finally:
        sock.close()




class StallingUpstream:
    """A backend that answers its health checks and, for any other request, reads the head
    and then never reads the body (it holds the connection until tether closes it, at most
    30 s): a request body can only flow as far as tether buffers it."""

    def __init__(self):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(128)
        self.port = self.srv.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.held = 0
        self.closed = 0
        self.lock = threading.Lock()
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(30)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                d = conn.recv(1)
                if not d:
                    return
                head += d
            if head.split(b" ", 2)[1].startswith(b"/health"):
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close"
                             b"\r\n\r\nok")
                return
            with self.lock:
                self.held += 1
            # Never read again: wait for tether to close. Unread bytes hide its FIN from
            # recv(), so the TCP state tells (TCP_INFO's first byte: 7 CLOSE, 8 CLOSE_WAIT).
            deadline = time.monotonic() + 30
            while not self._stop and time.monotonic() < deadline:
                try:
                    state = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
                except OSError:
                    break
                if state in (7, 8):
                    break
                time.sleep(0.05)
            with self.lock:
                self.closed += 1
        finally:
            conn.close()

    def stop(self):
        self._stop = True
        self.srv.close()

# ---------------------------------------------------------------------------------------


class H2AttackCase(E2ETestCase):
    """tether with one backend (http_upstream "a"), one worker (the attacker shares the
    event loop with the connections that must still be served) and small bounds."""

    HTTP2 = {"glitch_budget": 100}

    def setUp(self):
        require_h2()

    def start(self, http2=None, config=None, listen=("127.0.0.1:0",), upstream=None):
        self.up = upstream or self.start_http_upstream(name="a")
        cfg = {"workers": 1, "health": dict(FAST_HEALTH),
               "timeouts": {"downstream_idle": "2s"},
               "limits": {"max_request_header_bytes": 8192},
               "http2": dict(self.HTTP2, **(http2 or {}))}
        for k, v in (config or {}).items():
            cfg[k] = v
        self.t = self.start_tether(backends=[self.up.url], config=cfg, listen=list(listen))
        wait_ready(self.t)
        return self.t

    def client(self, port=None, **kw):
        c = H2Raw(self.t.proxy_port if port is None else port, **kw)
        self.addCleanup(c.close)
        return c

    # ---- checks ------------------------------------------------------------
    def counter(self, name, **labels):
        return self.t.metric(name, **labels) or 0.0

    def wait_counter_at_least(self, name, value, timeout=5.0, **labels):
        try:
            return wait_until(lambda: self.counter(name, **labels) >= value, timeout,
                              msg="%s%r >= %r" % (name, labels, value))
        except AssertionError as e:
            raise AssertionError("%s; it is %r" % (e, self.counter(name, **labels))) from None

    def assert_served(self, port=None, h2_port=None):
        """Another connection is served: HTTP/1.1 and HTTP/2 (python3-h2), both 200."""
        port = self.t.proxy_port if port is None else port
        r = http_get("http://127.0.0.1:%d/id" % port, timeout=5)
        self.assertEqual((r.status, r.body), (200, b"a"), "HTTP/1.1 on another connection")
        status, body = h2lib_get(h2_port or port, "/id")
        self.assertEqual((status, body), (200, b"a"), "HTTP/2 on another connection")
        self.assertTrue(self.t.running, "tether exited")

    def upstream_active(self):
        return self.counter(UPSTREAM_CONNS, state="active")

    def wait_upstream_released(self, timeout=3.0):
        """No upstream connection carries a request any more."""
        try:
            wait_until(lambda: self.upstream_active() == 0, timeout,
                       msg="tether_upstream_connections{state=active} == 0")
        except AssertionError as e:
            raise AssertionError("%s; it is %r" % (e, self.upstream_active())) from None

    def backend_stats(self):
        r = http_get(self.up.url + "/stats", timeout=5)
        self.assertEqual(r.status, 200)
        return json.loads(r.body)

    def backend_requests(self):
        """Requests the backend served, its health checks and /stats left out."""
        s = self.backend_stats()
        return sum(n for p, n in s["paths"].items() if p not in ("/health", "/stats"))

    def rss(self):
        return rss_kib(self.t.proc.pid)

    def sampler(self):
        s = RssSampler(self.t.proc.pid)
        self.addCleanup(s.stop)
        return s

    def assert_rss_bounded(self, base_kib, sampler, limit_mib, what):
        peak = max(sampler.stop(), self.rss())
        if sanitized():
            return  # ASan's quarantine keeps freed memory resident: RSS says nothing there
        grew = (peak - base_kib) / 1024.0
        self.assertLess(grew, limit_mib, "%s: tether's RSS grew %.1f MiB (%d -> %d KiB)"
                        % (what, grew, base_kib, peak))

    def flood(self, c, unit, count, batch=200, stop_on_goaway=True):
        """Sends `unit` (bytes) `count` times in batches; stops when the send fails or the
        GOAWAY arrived. Returns how many were sent."""
        sent = 0
        deadline = time.monotonic() + 20
        while sent < count and time.monotonic() < deadline:
            n = min(batch, count - sent)
            if not c.send(unit * n):
                break
            sent += n
            if stop_on_goaway and (c.goaway or c.eof):
                break
        return sent

    def assert_calm(self, c, reason, timeout=5.0, last_max=None):
        """GOAWAY ENHANCE_YOUR_CALM arrived, the connection closed and reason counted."""
        last, code = c.wait_goaway(timeout)
        self.assertEqual(code, ENHANCE_YOUR_CALM, "GOAWAY code (last stream %d)" % last)
        if last_max is not None:
            self.assertLessEqual(last, last_max, "GOAWAY's last stream id")
        self.assertTrue(c.wait_closed(5), "the connection stays open after the GOAWAY")
        reasons = reason if isinstance(reason, (list, tuple)) else [reason]
        wait_until(lambda: sum(self.counter(GOAWAYS, reason=r) for r in reasons) >= 1, 5,
                   msg="tether_http2_goaways_total{reason in %r} >= 1" % (reasons,))


# ---------------------------------------------------------------------------------------
# CVE-2023-44487 Rapid Reset, CVE-2025-8671 MadeYouReset


class RapidReset(H2AttackCase):
    HTTP2 = {"glitch_budget": 100000}   # the reset rule alone

    def _rapid_reset(self, c, pairs=1000):
        before = self.backend_requests()
        base = self.rss()
        s = self.sampler()
        sid, sent = 1, 0
        deadline = time.monotonic() + 20
        while sent < pairs and time.monotonic() < deadline:
            burst = b""
            for _ in range(50):
                burst += frame(HEADERS, END_STREAM | END_HEADERS, sid,
                               block(request_fields(c.port, "/sleep/5000")))
                burst += rst_stream(sid, CANCEL)
                sid += 2
            if not c.send(burst):
                break
            sent += 50
            if c.goaway or c.eof:
                break
        self.assert_calm(c, "rapid_reset")
        last, _ = c.goaway
        # The ratio rule applies past 100 streams: the GOAWAY comes soon after.
        self.assertLess(last, 2 * 400, "GOAWAY only after %d streams" % ((last + 1) // 2))
        self.wait_counter_at_least(STREAM_ERRORS, 100, reason="client_reset")
        # Upstream work was cancelled, not left running (/sleep/5000 would hold it 5 s).
        self.wait_upstream_released(3.0)
        self.assert_rss_bounded(base, s, 32, "rapid reset")
        # At most the streams opened before the GOAWAY reached the backend, none after.
        reached = self.backend_requests() - before
        self.assertLessEqual(reached, (last + 1) // 2, "requests that reached the backend")
        return sent

    def test_rapid_reset_is_ended_with_enhance_your_calm(self):
        self.start()
        c = self.client()
        self._rapid_reset(c)
        self.assert_served()

    def test_rapid_reset_over_tls(self):
        certs = tls_certs()
        self.start(config={"listeners": [tls_listener(certs), {"address": "127.0.0.1:0"}]},
                   listen=[])
        tls_port, plain_port = self.t.proxy_ports[0], self.t.proxy_ports[1]
        c = self.client(tls_port, tls=tls_client_ctx(certs))
        self.assertEqual(c.io.alpn, "h2")
        self._rapid_reset(c)
        self.assert_served(plain_port)
        # An HTTP/2 request over TLS is still served on a new connection.
        c2 = self.client(tls_port, tls=tls_client_ctx(certs))
        c2.get(1, "/id")
        self.assertEqual(c2.wait_response(1), (200, b"a"))

    def test_resets_mixed_with_completed_streams_still_trip_the_ratio(self):
        # Every other stream completes (answered 200) and every other is reset at once:
        # resets are half of all streams, the rule's threshold.
        self.start()
        c = self.client()
        sid = 1
        answered = []
        for i in range(400):
            if c.goaway or c.eof:
                break
            if i % 2 == 0:
                c.get(sid, "/id")
                answered.append(sid)
            else:
                c.send(frame(HEADERS, END_STREAM | END_HEADERS, sid,
                             block(request_fields(c.port, "/sleep/5000"))) + rst_stream(sid))
            sid += 2
        self.assert_calm(c, "rapid_reset", timeout=10)
        self.wait_upstream_released(3.0)
        self.assert_served()


    def test_resets_below_the_ratio_are_capped_in_all(self):
        # One reset for every two completed streams (a third of all: under the ratio) never
        # trips the ratio; max_premature_resets (1000 in all) must.
        self.start()
        c = self.client()
        sid, resets = 1, 0
        deadline = time.monotonic() + 60
        while resets < 1500 and time.monotonic() < deadline and not (c.goaway or c.eof):
            out, done = b"", []
            for _ in range(10):
                out += frame(HEADERS, END_STREAM | END_HEADERS, sid,
                             block(request_fields(c.port, "/sleep/5000"))) + rst_stream(sid)
                resets += 1
                out += frame(HEADERS, END_STREAM | END_HEADERS, sid + 2,
                             block(request_fields(c.port, "/id")))
                out += frame(HEADERS, END_STREAM | END_HEADERS, sid + 4,
                             block(request_fields(c.port, "/id")))
                done += [sid + 2, sid + 4]
                sid += 6
            if not c.send(out):
                break
            c.wait(lambda: c.goaway or all(c.streams.get(i, {}).get("ended") for i in done),
                   10, "the completed streams of a batch")
        self.assert_calm(c, "rapid_reset", timeout=10)
        self.assertGreaterEqual(resets, 1000, "the GOAWAY came before the cap (%d resets)"
                                % resets)
        self.assertLessEqual(resets, 1010, "no GOAWAY after %d premature resets" % resets)
        self.wait_upstream_released(3.0)
        self.assert_served()


class MadeYouReset(H2AttackCase):
    HTTP2 = {"glitch_budget": 50}

    def _made_you_reset(self, c, paced):
        # Three ways to make the server reset a stream it started upstream work for, without
        # the client ever sending RST_STREAM (so the Rapid Reset rule never sees them):
        #   DATA beyond the content-length; a WINDOW_UPDATE overflowing the stream's window
        #   (2^31-1 already); trailers without END_STREAM.
        sid = 1
        for i in range(300):
            if c.goaway or c.eof:
                break
            kind = i % 3
            fields = request_fields(c.port, "/sleep/5000", "POST", [("content-length", "1")])
            out = frame(HEADERS, END_HEADERS, sid, block(fields))
            if kind == 0:
                out += frame(DATA, 0, sid, b"xx")                 # 2 > content-length 1
            elif kind == 1:
                out += window_update(sid, 1)                      # 2^31-1 + 1
            else:
                out += frame(HEADERS, END_HEADERS, sid, block([("x-t", "1")]))  # no END_STREAM
            if not c.send(out):
                break
            if paced:  # one stream at a time: its reset went out before the next begins
                c.wait(lambda: c.streams.get(sid, {}).get("rst") is not None or c.goaway, 5,
                       "the reset of stream %d" % sid)
            sid += 2
        return sid

    def test_frames_that_make_tether_reset_streams_end_the_connection(self):
        self.start()
        c = self.client()
        before = self.backend_requests()
        base = self.rss()
        s = self.sampler()
        self._made_you_reset(c, paced=True)
        self.assert_calm(c, "glitches")
        resets = [st["rst"] for st in c.streams.values() if st["rst"] is not None]
        self.assertTrue(all(code in (PROTOCOL_ERROR, FLOW_CONTROL_ERROR) for code in resets),
                        resets)
        self.assertGreaterEqual(len(resets), 50, "resets before the GOAWAY (budget 50)")
        self.assertLessEqual(len(resets), 52, "resets before the GOAWAY (budget 50)")
        self.wait_counter_at_least(STREAM_ERRORS, 50, reason="protocol")
        self.assertEqual(self.counter(GOAWAYS, reason="rapid_reset"), 0)
        self.wait_upstream_released(3.0)
        self.assertEqual(self.backend_requests() - before, 0, "a request reached the backend")
        self.assert_rss_bounded(base, s, 32, "MadeYouReset")
        self.assert_served()

    def test_a_burst_of_frames_that_make_tether_reset_streams(self):
        # The same in one burst: the resets are staged only after the whole read, so the
        # streams still count against max_concurrent_streams (100) while their resets wait.
        # Whichever bound trips first (the glitch budget, or nghttp2's stream limit as a
        # connection error), the connection ends and nothing is left upstream.
        self.start()
        c = self.client()
        before = self.backend_requests()
        base = self.rss()
        s = self.sampler()
        self._made_you_reset(c, paced=False)
        last, code = c.wait_goaway(5)
        self.assertIn(code, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR), "GOAWAY code")
        self.assertLessEqual(last, 2 * (100 + 52), "streams opened before the GOAWAY")
        self.assertTrue(c.wait_closed(5))
        wait_until(lambda: self.counter(GOAWAYS, reason="glitches") +
                   self.counter(GOAWAYS, reason="protocol") >= 1, 5, msg="the GOAWAY counted")
        self.wait_upstream_released(3.0)
        self.assertEqual(self.backend_requests() - before, 0, "a request reached the backend")
        self.assert_rss_bounded(base, s, 32, "MadeYouReset burst")
        self.assert_served()

    def test_window_update_of_zero_on_a_stream_is_a_connection_error(self):
        self.start()
        c = self.client()
        c.get(1, "/sleep/3000")
        c.wait(lambda: self.upstream_active() >= 1, 3, "the request upstream")
        c.send(window_update(1, 0))
        last, code = c.wait_goaway()
        self.assertEqual(code, PROTOCOL_ERROR)
        self.assertTrue(c.wait_closed(5), "open after GOAWAY PROTOCOL_ERROR")
        self.wait_counter_at_least(GOAWAYS, 1, reason="protocol")
        self.wait_upstream_released(2.0)  # < the 3 s the backend would sleep
        self.assert_served()

    def test_data_on_a_half_closed_stream_is_a_connection_error(self):
        self.start()
        c = self.client()
        c.get(1, "/sleep/3000")                        # END_STREAM: half-closed (remote)
        c.wait(lambda: self.upstream_active() >= 1, 3, "the request upstream")
        c.data(1, b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", end_stream=True)
        last, code = c.wait_goaway()
        self.assertIn(code, (STREAM_CLOSED, PROTOCOL_ERROR))
        self.assertTrue(c.wait_closed(5))
        self.wait_counter_at_least(GOAWAYS, 1, reason="protocol")
        self.wait_upstream_released(2.0)
        self.assertNotIn("/smuggled", self.backend_stats()["paths"])
        self.assert_served()


# ---------------------------------------------------------------------------------------
# CONTINUATION flood, header list size, HPACK bomb, 0-length headers


class HeaderBlocks(H2AttackCase):
    def _continuation_flood(self, c, piece):
        before = self.backend_requests()
        base = self.rss()
        s = self.sampler()
        c.headers(1, request_fields(c.port, "/id"), end_stream=True, end_headers=False)
        unit = frame(CONTINUATION, 0, 1, piece)
        self.flood(c, unit, 20000, batch=100)
        self.assert_calm(c, "flood")
        self.assert_rss_bounded(base, s, 16, "CONTINUATION flood")
        self.assertEqual(self.backend_requests(), before, "the endless request reached the backend")

    def test_continuation_flood_is_ended_with_enhance_your_calm(self):
        self.start()
        c = self.client()
        self._continuation_flood(c, literal("x-c", "v" * 100))
        self.assert_served()

    def test_empty_continuation_frames_flood(self):
        self.start()
        c = self.client()
        self._continuation_flood(c, b"")
        self.assert_served()

    def test_continuation_flood_over_tls(self):
        certs = tls_certs()
        self.start(config={"listeners": [tls_listener(certs), {"address": "127.0.0.1:0"}]},
                   listen=[])
        tls_port, plain_port = self.t.proxy_ports[0], self.t.proxy_ports[1]
        c = self.client(tls_port, tls=tls_client_ctx(certs))
        self.assertEqual(c.io.alpn, "h2")
        self._continuation_flood(c, literal("x-c", "v" * 100))
        self.assert_served(plain_port)

    def test_one_literal_split_over_continuations_is_bounded(self):
        # A single 1 MiB header value, HPACK-encoded across frames: the decoder must not
        # buffer it whole (nghttp2's CONTINUATION cap or its literal bound end it).
        self.start()
        c = self.client()
        base = self.rss()
        s = self.sampler()
        head = block(request_fields(c.port, "/id")) + b"\x00" + hpack_str("x-big") + \
            hpack_int(MiB, 7)
        c.send(frame(HEADERS, END_STREAM, 1, head))
        self.flood(c, frame(CONTINUATION, 0, 1, b"v" * 16000), 66, batch=4)
        last, code = c.wait_goaway()
        self.assertIn(code, (ENHANCE_YOUR_CALM, COMPRESSION_ERROR, PROTOCOL_ERROR), code)
        self.assertTrue(c.wait_closed(5))
        self.assert_rss_bounded(base, s, 16, "a 1 MiB literal")
        self.assert_served()

    def test_header_list_beyond_the_bound_is_answered_431(self):
        self.start()                                    # max_request_header_bytes: 8192
        c = self.client()
        before = self.backend_requests()
        big = [("x-h%d" % i, "v" * 1000) for i in range(30)]   # ~31 KB, 2 frames
        blk = block(request_fields(c.port, "/id", extra=big))
        c.send(frame(HEADERS, END_STREAM, 1, blk[:16000]) +
               frame(CONTINUATION, END_HEADERS, 1, blk[16000:]))
        status, _ = c.wait_response(1)
        self.assertEqual(status, 431)
        self.wait_counter_at_least(STREAM_ERRORS, 1, reason="headers_too_large")
        # The connection survives (HPACK state intact): the next stream is served.
        c.get(3, "/id")
        self.assertEqual(c.wait_response(3), (200, b"a"))
        self.assertIsNone(c.goaway)
        self.assertEqual(self.backend_requests() - before, 1, "only stream 3 went upstream")
        self.assert_served()

    def test_hpack_bomb_is_bounded_by_the_header_list_size(self):
        # One 4000-byte literal enters the dynamic table (index 62), then is referenced by
        # 1-byte indexed fields: 16 KB of HPACK decode to ~64 MB of header list per stream.
        self.start()
        c = self.client()
        before = self.backend_requests()
        base = self.rss()
        s = self.sampler()
        fields = block(request_fields(c.port, "/id"))
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1,
                     fields + literal_indexed("x-bomb", "b" * 4000) + indexed(62) * 4000))
        self.assertEqual(c.wait_response(1)[0], 431)
        sid = 3
        for _ in range(20):
            c.send(frame(HEADERS, END_STREAM | END_HEADERS, sid,
                         fields + indexed(62) * (16384 - len(fields) - 8)))
            sid += 2
        for i in range(3, sid, 2):
            self.assertEqual(c.wait_response(i, 10)[0], 431, "stream %d" % i)
        self.assert_rss_bounded(base, s, 16, "HPACK bomb (~1.3 GB decoded)")
        # The dynamic table is still in step: a request that uses it is served.
        c.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, fields + indexed(62)))
        self.assertEqual(c.wait_response(sid), (200, b"a"))
        self.assertIsNone(c.goaway)
        self.wait_counter_at_least(STREAM_ERRORS, 21, reason="headers_too_large")
        self.assertEqual(self.backend_requests() - before, 1)
        self.assert_served()

    def test_zero_length_header_fields_do_not_leak(self):
        # CVE-2019-9516: fields of an empty name and value, many per block, many streams.
        self.start(http2={"glitch_budget": 5000})
        c = self.client()
        before = self.backend_requests()
        fields = block(request_fields(c.port, "/id")) + literal("", "") * 4000
        c.get(1, "/id")
        c.wait_response(1)
        base = self.rss()
        s = self.sampler()
        sid = 3
        for _ in range(400):
            if not c.send(frame(HEADERS, END_STREAM | END_HEADERS, sid, fields)):
                break
            sid += 2
        c.wait(lambda: all(c.streams.get(i, {}).get("ended") or
                           c.streams.get(i, {}).get("rst") is not None for i in range(3, sid, 2))
               or c.goaway, 15, "every stream refused")
        for i in range(3, sid, 2):
            st = c.stream(i)
            self.assertTrue(st["rst"] in (PROTOCOL_ERROR,) or st["status"] in (400, 431),
                            "stream %d: %r" % (i, st))
        self.assert_rss_bounded(base, s, 16, "0-length header fields")
        self.assertEqual(self.backend_requests() - before, 1)
        if c.goaway is None:
            c.get(sid, "/id")
            self.assertEqual(c.wait_response(sid), (200, b"a"))
        self.assert_served()


# ---------------------------------------------------------------------------------------
# Floods of frames that carry nothing: PING, SETTINGS, empty DATA, WINDOW_UPDATE and
# RST_STREAM on closed streams, PRIORITY (CVE-2019-9512, -9515, -9518, -9513)


class Floods(H2AttackCase):
    HTTP2 = {"glitch_budget": 100}

    def test_ping_flood_is_ended_with_enhance_your_calm(self):
        self.start()
        c = self.client()
        base = self.rss()
        s = self.sampler()
        self.flood(c, ping(b"12345678"), 20000)
        self.assert_calm(c, ["glitches", "flood"])
        self.assertLessEqual(c.ping_acks, 2 * 100 + 10, "PING acks answered past the budget")
        self.assert_rss_bounded(base, s, 16, "PING flood")
        self.assert_served()

    def test_ping_flood_from_a_client_that_never_reads(self):
        # CVE-2019-9512 as published: the acks are never read. With a budget that does not
        # trip, nghttp2's cap on queued acks (1000) or the output bound must.
        self.start(http2={"glitch_budget": 10 ** 6})
        c = self.client(read=False, rcvbuf=4096, timeout=3)
        base = self.rss()
        s = self.sampler()
        sent = self.flood(c, ping(b"abcdefgh"), 300000, batch=1000, stop_on_goaway=False)
        # Meanwhile, others are served.
        self.assert_served()
        c.start_reading()
        self.assertTrue(c.wait_closed(10), "the connection of a client that never reads "
                        "stays open (%d PINGs sent)" % sent)
        self.assert_rss_bounded(base, s, 16, "unread PING acks")
        if c.goaway is not None:  # the ack cap (flood); else the stall or idle timeout closed it
            self.assertIn(c.goaway[1], (ENHANCE_YOUR_CALM, NO_ERROR))
            if c.goaway[1] == ENHANCE_YOUR_CALM:
                self.wait_counter_at_least(GOAWAYS, 1, reason="flood")
        self.assert_served()

    def test_settings_flood_is_ended_with_enhance_your_calm(self):
        self.start()
        c = self.client()
        unit = settings_frame([(S_INITIAL_WINDOW, MAX_WINDOW), (S_MAX_FRAME, 16384)])
        self.flood(c, unit, 20000)
        self.assert_calm(c, ["glitches", "flood"])
        self.assertLessEqual(c.settings_acks, 2 * 100 + 10)
        self.assert_served()

    def test_empty_data_flood_is_ended_with_enhance_your_calm(self):
        self.start()
        c = self.client()
        c.get(1, "/echo", method="POST", end_stream=False)
        c.wait(lambda: self.upstream_active() >= 1, 3, "the upload upstream")
        self.flood(c, frame(DATA, 0, 1, b""), 20000)
        self.assert_calm(c, "glitches")
        self.wait_upstream_released(3.0)
        self.assert_served()

    def test_window_update_flood_on_closed_streams(self):
        self.start()
        c = self.client()
        for sid in (1, 3, 5):
            c.get(sid, "/id")
            self.assertEqual(c.wait_response(sid), (200, b"a"))
        c.wait(lambda: c.streams[5]["ended"], 2)
        unit = window_update(1, 1) + window_update(3, 1) + window_update(5, 1)
        self.flood(c, unit, 10000)
        # 30000 frames against a budget of 100: the GOAWAY must come within the time
        # they take to read, well before downstream_idle (2s) would send its own.
        try:
            c.wait(lambda: c.goaway, 1.5, "GOAWAY")
        except AssertionError:
            self.fail("30000 WINDOW_UPDATEs on closed streams 1, 3, 5 with glitch_budget 100: "
                      "no GOAWAY (glitches counted: %r)" % self.counter(GOAWAYS, reason="glitches"))
        self.assert_calm(c, "glitches")
        self.assert_served()

    def test_rst_stream_flood_on_closed_streams(self):
        # Frames that carry nothing (CVE-2019-9518 "empty frames"): RST_STREAM for a stream
        # already closed. The codec does not count them (no stream of its own: not a
        # premature reset); nghttp2's own reset rate limit (a burst of 1000, the
        # CVE-2023-44487 backport) ends the connection with GOAWAY INTERNAL_ERROR, which the
        # codec counts as a protocol GOAWAY.
        self.start()
        c = self.client()
        c.get(1, "/id")
        self.assertEqual(c.wait_response(1), (200, b"a"))
        self.flood(c, rst_stream(1, CANCEL), 30000, batch=500)
        last, code = c.wait_goaway(5)
        self.assertIn(code, (ENHANCE_YOUR_CALM, INTERNAL_ERROR), "GOAWAY code")
        self.assertTrue(c.wait_closed(5), "the connection stays open after the GOAWAY")
        wait_until(lambda: sum(self.counter(GOAWAYS, reason=r)
                               for r in ("glitches", "rapid_reset", "protocol")) >= 1, 5,
                   msg="a GOAWAY counted")
        self.assert_served()

    def test_priority_flood_is_ended_with_enhance_your_calm(self):
        # CVE-2019-9513 (resource loop): PRIORITY frames that keep reshaping the tree of
        # idle streams.
        self.start()
        c = self.client()
        base = self.rss()
        s = self.sampler()
        out, sent = b"", 0
        for i in range(20000):
            sid = 2 * i + 101
            out += priority(sid, 2 * ((i * 7919) % i) + 101 if i else 0, 1 + i % 256,
                            exclusive=bool(i % 2))
            if len(out) > 14 * 200:
                if not c.send(out) or c.goaway or c.eof:
                    break
                sent += 200
                out = b""
        self.assert_calm(c, "glitches")
        self.assert_rss_bounded(base, s, 16, "PRIORITY flood")
        self.assert_served()

    def test_reset_flood_of_malformed_requests_from_a_client_that_never_reads(self):
        # CVE-2019-9514: requests that make tether answer RST_STREAM, the answers unread.
        self.start()
        c = self.client(read=False, rcvbuf=4096, timeout=3)
        base = self.rss()
        s = self.sampler()
        sent, sid = 0, 1
        deadline = time.monotonic() + 15
        while sent < 5000 and time.monotonic() < deadline:
            out = b""
            for _ in range(100):
                out += frame(HEADERS, END_STREAM | END_HEADERS, sid,
                             block(request_fields(c.port, "/id", extra=[("Bad", "x")])))
                sid += 2
            if not c.send(out):
                break
            sent += 100
        self.assert_served()
        c.start_reading()
        self.assert_calm(c, "glitches", timeout=10)
        self.assert_rss_bounded(base, s, 16, "reset flood")
        self.assert_served()


# ---------------------------------------------------------------------------------------
# Slow readers (CVE-2019-9511 data dribble, CVE-2019-9517 internal data buffering)


class SlowRead(H2AttackCase):
    HTTP2 = {"glitch_budget": 1000}

    def test_an_upload_beyond_the_window_is_refused_and_bounded(self):
        # CVE-2019-9517 the other way: the client ignores flow control and sends 12 MB of
        # DATA on a stream whose backend reads nothing; tether holds at most the stream's
        # window (http2.initial_window, 64 KiB) and nghttp2 refuses what is beyond it (the
        # kernel's buffers towards the backend take a few MB first, so the window keeps
        # opening until they are full).
        up = StallingUpstream()
        self.addCleanup(up.stop)
        self.start(upstream=up)
        c = self.client()
        base = self.rss()
        s = self.sampler()
        c.get(1, "/upload", method="POST", end_stream=False)
        wait_until(lambda: up.held >= 1, 5, msg="the request at the backend")
        chunk = frame(DATA, 0, 1, b"u" * 16000)
        self.flood(c, chunk, 768, batch=8)
        c.wait(lambda: c.goaway or c.streams.get(1, {}).get("rst") is not None, 10,
               "a refusal of the data beyond the window")
        if c.goaway is not None:
            self.assertEqual(c.goaway[1], FLOW_CONTROL_ERROR, "GOAWAY code")
        else:
            # FLOW_CONTROL_ERROR from nghttp2; INTERNAL_ERROR when tether's own guard on the
            # held body trips first (see the flow-controlled counterpart below).
            self.assertIn(c.stream(1)["rst"], (FLOW_CONTROL_ERROR, INTERNAL_ERROR),
                          "RST_STREAM code")
        self.assert_rss_bounded(base, s, 8, "4 MB of request body beyond the window")
        # tether let go of the upstream connection (its FIN waits in the kernel behind the
        # bytes the backend never read, so the backend cannot see it).
        self.wait_upstream_released(3.0)
        # Others are served (the stalling backend answers its health path only).
        r = http_get(self.t.url("/health"), timeout=5)
        self.assertEqual((r.status, r.body), (200, b"ok"), "HTTP/1.1 on another connection")
        self.assertEqual(h2lib_get(self.t.proxy_port, "/health"), (200, b"ok"),
                         "HTTP/2 on another connection")

    def test_a_flow_controlled_upload_to_a_stalled_backend_waits_not_resets(self):
        # The well-behaved counterpart: the client keeps within the windows tether grants
        # while the backend stops reading (once the kernel's buffers are full). The stream
        # must stall (no WINDOW_UPDATE), never be reset, and memory stays bounded.
        up = StallingUpstream()
        self.addCleanup(up.stop)
        self.start(upstream=up)
        c = self.client()
        base = self.rss()
        s = self.sampler()
        c.get(1, "/upload", method="POST", end_stream=False)
        wait_until(lambda: up.held >= 1, 5, msg="the request at the backend")
        sent = c.upload(1, 64 * MiB, timeout=1.5)
        st = c.stream(1)
        self.assertIsNone(st["rst"], "a flow-controlled upload was reset (code %r) after %d "
                          "bytes" % (st["rst"], sent))
        self.assertIsNone(c.goaway)
        self.assertLess(sent, 64 * MiB, "64 MiB went into a backend that reads nothing")
        self.assert_rss_bounded(base, s, 8, "a stalled upload")

    def test_zero_window_read_is_bounded_and_closed_after_downstream_idle(self):
        self.start()
        c = self.client(settings=[(S_INITIAL_WINDOW, 0)], open_window=False)
        base = self.rss()
        s = self.sampler()
        c.get(1, "/big?bytes=20000000")
        c.wait(lambda: c.streams.get(1, {}).get("status"), 5, "the response head")
        t0 = time.monotonic()
        self.assertEqual(c.stream(1)["status"], 200)
        self.assertEqual(c.data_frames, 0, "DATA sent into a zero window")
        # Meanwhile, others are served.
        self.assert_served()
        self.assertTrue(c.wait_closed(8), "a zero-window stream held past downstream_idle (2s)")
        took = c.eof_at - t0
        self.assertGreater(took, 1.0, "closed after %.2fs, before downstream_idle" % took)
        self.assert_rss_bounded(base, s, 10, "20 MB behind a zero window")
        self.wait_upstream_released(3.0)
        self.assert_served()

    def test_a_client_that_never_reads_is_bounded_and_closed(self):
        self.start()
        c = self.client(read=False, rcvbuf=4096)
        base = self.rss()
        s = self.sampler()
        mark = len(self.t.logs)
        c.get(1, "/big?bytes=20000000")
        wait_until(lambda: self.upstream_active() >= 1, 3, msg="the response upstream")
        self.assert_served()
        self.t.wait_log(msg="http2: idle connection closed", timeout=10, start=mark)
        self.wait_upstream_released(3.0)
        self.assert_rss_bounded(base, s, 10, "20 MB to a client that never reads")
        c.start_reading()
        self.assertTrue(c.wait_closed(10), "the connection is still open")
        self.assertLess(c.bytes_in, 20000000, "the whole body was delivered")
        self.assert_served()

    def test_data_dribble_on_many_streams_is_bounded(self):
        # CVE-2019-9511: a 1-byte window on 20 streams of 5 MB (100 MB waiting upstream),
        # opened a byte at a time; tether must queue no more than its per-stream buffer.
        self.start()
        c = self.client(settings=[(S_INITIAL_WINDOW, 1)], open_window=False)
        base = self.rss()
        s = self.sampler()
        sids = list(range(1, 41, 2))
        for sid in sids:
            c.get(sid, "/big?bytes=5000000")
        c.wait(lambda: all(c.streams.get(i, {}).get("status") == 200 for i in sids), 10,
               "20 response heads")

        def received():
            return sum(len(c.streams[i]["body"]) for i in sids)

        for r in range(1, 101):  # each round: one more byte per stream, once it arrived
            c.send(b"".join(window_update(i, 1) for i in sids) + window_update(0, len(sids)))
            c.wait(lambda: received() >= len(sids) * (r + 1), 5, "dribbled byte round %d" % r)
        self.assertEqual(received(), len(sids) * 101, "bytes beyond the windows opened")
        self.assertIsNone(c.goaway)
        self.assert_served()                    # meanwhile
        peak = max(s.max_kib, self.rss())
        self.assertLess((peak - base) / 1024.0, 16,
                        "100 MB of responses behind 1-byte windows grew RSS %.1f MiB"
                        % ((peak - base) / 1024.0))
        # The dribble stops: the streams are stalled, closed after downstream_idle (2s).
        t0 = time.monotonic()
        self.assertTrue(c.wait_closed(8), "stalled streams held past downstream_idle")
        self.assertGreater(c.eof_at - t0, 1.0, "closed before downstream_idle")
        self.wait_upstream_released(3.0)
        self.assert_rss_bounded(base, s, 16, "data dribble")
        self.assert_served()


# ---------------------------------------------------------------------------------------
# Stream limits


class StreamLimits(H2AttackCase):
    HTTP2 = {"glitch_budget": 1000}

    def _beyond_max_concurrent(self, ack_settings):
        self.start(http2={"max_concurrent_streams": 5})
        c = self.client(read=False)
        c.start_reading()
        c.wait(lambda: any(f.type == SETTINGS and not f.flags & ACK for f in c.frames), 5,
               "the server's SETTINGS")
        if ack_settings:
            c.send(settings_frame(ack=True))
            c.send(ping(b"synced!!"))         # the ACK is processed once its PING is answered
            c.wait(lambda: c.ping_acks, 5, "the PING ack")
        before = self.counter(STREAM_ERRORS, reason="refused")
        held = [1, 3, 5, 7, 9]
        for sid in held:
            c.get(sid, "/sleep/1500")
        extra = [11, 13, 15]
        for sid in extra:
            c.get(sid, "/id")
        for sid in extra:
            self.assertEqual(c.wait_rst(sid), REFUSED_STREAM,
                             "stream %d beyond max_concurrent_streams (5)" % sid)
        self.assertIsNone(c.goaway, "a GOAWAY for streams beyond max_concurrent_streams")
        self.wait_counter_at_least(STREAM_ERRORS, before + 3, reason="refused")
        self.assert_served()                    # meanwhile
        for sid in held:
            self.assertEqual(c.wait_response(sid, 10), (200, b"slept 1500\n"), "stream %d" % sid)
        # The slots freed: a new stream on the same connection is served.
        c.get(17, "/id")
        self.assertEqual(c.wait_response(17), (200, b"a"))
        self.assertIsNone(c.goaway)

    def test_streams_beyond_the_acknowledged_max_concurrent_end_the_connection(self):
        # The client acknowledged SETTINGS_MAX_CONCURRENT_STREAMS = 5, keeps 5 streams open
        # and opens a 6th: it broke the limit it agreed to. nghttp2 (1.52) treats that as a
        # connection error (RFC 9113 §5.1.2 asks for a stream error; no option changes it):
        # GOAWAY PROTOCOL_ERROR, counted, and everyone else is served. Clients that keep
        # to the limit (browsers do) never meet this; streams whose slot tether still holds
        # after they closed are refused one by one (the test above the ACK, and Rapid Reset).
        self.start(http2={"max_concurrent_streams": 5})
        c = self.client(read=False)
        c.start_reading()
        c.wait(lambda: any(f.type == SETTINGS and not f.flags & ACK for f in c.frames), 5,
               "the server's SETTINGS")
        c.send(settings_frame(ack=True))
        c.send(ping(b"synced!!"))
        c.wait(lambda: c.ping_acks, 5, "the PING ack")
        before = self.counter(GOAWAYS, reason="protocol")
        for sid in [1, 3, 5, 7, 9]:
            c.get(sid, "/sleep/1500")
        c.get(11, "/id")
        last, code = c.wait_goaway(5)
        self.assertEqual(code, PROTOCOL_ERROR)
        self.assertTrue(c.wait_closed(5), "the connection is closed")
        self.wait_counter_at_least(GOAWAYS, before + 1, reason="protocol")
        self.assert_served()

    def test_streams_beyond_max_concurrent_before_the_settings_ack_are_refused(self):
        # The same before the client acknowledged the SETTINGS (its first flight).
        self._beyond_max_concurrent(ack_settings=False)

    def test_streams_beyond_max_streams_per_connection_get_a_graceful_goaway(self):
        self.start(http2={"max_streams_per_connection": 10})
        c = self.client()
        before = self.counter(GOAWAYS, reason="graceful")
        sids = list(range(1, 25, 2))             # 12 streams: 10 served, 2 beyond
        for sid in sids:
            c.get(sid, "/sleep/700")
        last, code = c.wait_goaway(5)
        self.assertEqual((last, code), (19, NO_ERROR), "the GOAWAY names the 10th stream")
        # In-flight streams are still answered after the GOAWAY.
        st19 = c.stream(19)
        self.assertFalse(st19["ended"], "the GOAWAY came only after the streams ended")
        for sid in sids[:10]:
            self.assertEqual(c.wait_response(sid, 10), (200, b"slept 700\n"), "stream %d" % sid)
        for sid in sids[10:]:
            st = c.stream(sid)
            self.assertTrue(st["rst"] == REFUSED_STREAM or (st["status"] is None),
                            "stream %d beyond the GOAWAY: %r" % (sid, st))
        self.assertTrue(c.wait_closed(5), "the connection stays open after its last stream")
        self.wait_counter_at_least(GOAWAYS, before + 1, reason="graceful")
        self.assert_served()


# ---------------------------------------------------------------------------------------
# HTTP/1-only fields and smuggling through the downgrade to HTTP/1.1


class Smuggling(H2AttackCase):
    HTTP2 = {"glitch_budget": 1000}

    def assert_refused(self, c, sid, what):
        """The stream was refused: RST_STREAM PROTOCOL_ERROR, or a 4xx answered by tether."""
        def done():
            st = c.streams.get(sid)
            return st and (st["rst"] is not None or st["ended"])
        c.wait(done, 5, "an answer to %s" % what)
        st = c.stream(sid)
        ok = st["rst"] == PROTOCOL_ERROR or (st["status"] is not None and
                                             400 <= st["status"] < 500)
        self.assertTrue(ok, "%s: %r" % (what, {k: st[k] for k in ("status", "rst", "body")}))
        if st["status"] is not None:
            self.assertNotIn(b"x-upstream-name", dict(st["headers"]),
                             "%s was answered by the backend" % what)

    def test_http_1_only_fields_are_stream_errors_other_streams_fine(self):
        self.start()
        c = self.client()
        before = self.backend_requests()
        errors_before = self.counter(STREAM_ERRORS, reason="protocol")
        bad = [("connection", "keep-alive"), ("transfer-encoding", "chunked"),
               ("upgrade", "h2c"), ("te", "gzip"), ("keep-alive", "timeout=5"),
               ("proxy-connection", "keep-alive")]
        sid, good = 1, []
        for name, value in bad:
            c.get(sid, "/id", extra=[(name, value)])
            self.assert_refused(c, sid, "%s: %s" % (name, value))
            self.assertEqual(c.stream(sid)["rst"], PROTOCOL_ERROR, name)
            c.get(sid + 2, "/id")
            good.append(sid + 2)
            sid += 4
        c.get(sid, "/echo", extra=[("te", "trailers")])   # the one TE allowed
        good.append(sid)
        for g in good:
            self.assertEqual(c.wait_response(g)[0], 200, "stream %d" % g)
        self.assertIsNone(c.goaway)
        self.wait_counter_at_least(STREAM_ERRORS, errors_before + len(bad), reason="protocol")
        self.assertEqual(self.backend_requests() - before, len(good))
        self.assert_served()

    def test_smuggling_through_the_downgrade_never_reaches_the_backend(self):
        self.start()
        c = self.client()
        before = self.backend_requests()
        smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        sid = 1
        cases = []  # (what, frames) each refused

        def case(what, fields, body=None, end_stream=None):
            nonlocal sid
            es = True if end_stream is None else end_stream
            out = frame(HEADERS, END_HEADERS | (END_STREAM if body is None and es else 0),
                        sid, block(fields))
            if body is not None:
                if isinstance(body, str):
                    body = body.encode()
                out += frame(DATA, END_STREAM if es else 0, sid, body)
            cases.append((what, sid, out))
            sid += 2

        p = c.port
        case("content-length below the DATA",
             request_fields(p, "/echo", "POST", [("content-length", "4")]), "abcd" + smuggled)
        case("content-length above the DATA",
             request_fields(p, "/echo", "POST", [("content-length", "100")]), b"abcd")
        case("transfer-encoding chunked in h2",
             request_fields(p, "/echo", "POST", [("transfer-encoding", "chunked")]),
             ("0\r\n\r\n" + smuggled).encode())
        case("CRLF in a value", request_fields(p, "/echo", extra=[("x-a", "1\r\n" + smuggled)]))
        case("LF in a value", request_fields(p, "/echo", extra=[("x-a", "1\nX-B: 2")]))
        case("NUL in a value", request_fields(p, "/echo", extra=[("x-a", "1\0" + smuggled)]))
        case("CR in a name", request_fields(p, "/echo", extra=[("x-a\r\nx-b", "1")]))
        case("upper case name", request_fields(p, "/echo", extra=[("X-Upper", "1")]))
        case("space in a name", request_fields(p, "/echo", extra=[("x a", "1")]))
        case("colon in a name", request_fields(p, "/echo", extra=[("x:a", "1")]))
        case("empty name", request_fields(p, "/echo", extra=[("", "1")]))
        case(":path with a space",
             request_fields(p, "/echo HTTP/1.1\r\nHost: x\r\n\r\nGET /smuggled"))
        case(":path with a bare space", request_fields(p, "/echo x"))
        case(":path absolute form", request_fields(p, "http://evil.test/smuggled"))
        case(":path empty", request_fields(p, ""))
        case(":path with a fragment", request_fields(p, "/echo#/smuggled"))
        case(":method with a space", request_fields(p, "/echo", "GET /smuggled"))
        case(":authority vs host", request_fields(p, "/echo", extra=[("host", "evil.test")]))
        case(":authority with CRLF", request_fields(p, "/echo", authority="a\r\nX-B: 1"))
        case(":authority with a slash", request_fields(p, "/echo", authority="a/smuggled"))
        case("two content-lengths",
             request_fields(p, "/echo", "POST", [("content-length", "4"),
                                                 ("content-length", "40")]), b"abcd")
        case("content-length list",
             request_fields(p, "/echo", "POST", [("content-length", "4, 4")]), b"abcd")
        case("content-length sign",
             request_fields(p, "/echo", "POST", [("content-length", "+4")]), b"abcd")
        case("pseudo-header after a field",
             [(":method", "GET"), (":scheme", "http"), ("x-a", "1"), (":path", "/echo"),
              (":authority", "127.0.0.1:%d" % p)])
        case("duplicate :path", request_fields(p, "/echo") + [(":path", "/smuggled")])
        case("unknown pseudo-header", request_fields(p, "/echo", extra=[(":smuggle", "1")]))
        case("response pseudo-header", request_fields(p, "/echo", extra=[(":status", "200")]))
        case("CONNECT to a target", [(":method", "CONNECT"), (":authority", "evil.test:80")])
        for what, trailer in (("CRLF in a trailer", ("x-t", "1\r\n" + smuggled)),
                              ("transfer-encoding trailer", ("transfer-encoding", "chunked")),
                              ("pseudo-header trailer", (":path", "/smuggled")),
                              ("upper case trailer", ("X-T", "1"))):
            out = frame(HEADERS, END_HEADERS, sid, block(request_fields(p, "/echo", "POST")))
            out += frame(DATA, 0, sid, b"abcd")
            out += frame(HEADERS, END_HEADERS | END_STREAM, sid, block([trailer]))
            cases.append((what, sid, out))
            sid += 2
        case("content-length without DATA",
             request_fields(p, "/echo", "POST", [("content-length", "4")]))
        case(":path with a tab", request_fields(p, "/echo\tx"))
        case(":path with DEL", request_fields(p, "/echo\x7f"))
        case("method lower case", request_fields(p, "/echo", "get"))
        for what, sid_, out in cases:
            c.send(out)
            self.assert_refused(c, sid_, what)
        # The pooled upstream connections are clean: a request through them is intact.
        c.get(sid, "/echo")
        status, body = c.wait_response(sid)
        self.assertEqual(status, 200)
        e = json.loads(body)
        self.assertEqual((e["method"], e["path"], e["body_length"]), ("GET", "/echo", 0))
        for _ in range(3):
            self.assertEqual(http_get(self.t.url("/echo")).status, 200)
        stats = self.backend_stats()
        self.assertNotIn("/smuggled", stats["paths"], stats["paths"])
        self.assertNotIn("/smuggled", " ".join(stats["targets"]), stats["targets"])
        # Only the counter-check requests, no second request out of any refused one.
        self.assertEqual(self.backend_requests() - before, 4,
                         "requests the backend saw: %r" % stats["paths"])
        self.assert_served()

    def test_a_body_that_looks_like_http_1_stays_a_body(self):
        # No content-length: tether frames the upload chunked; its bytes (a chunk end and a
        # second request) must arrive as the body of one request.
        self.start()
        c = self.client()
        before = self.backend_requests()
        payload = b"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        c.get(1, "/echo", method="POST", end_stream=False)
        c.data(1, payload[:10])
        c.data(1, payload[10:], end_stream=True)
        status, body = c.wait_response(1)
        self.assertEqual(status, 200)
        e = json.loads(body)
        self.assertEqual(e["body_length"], len(payload))
        c.get(3, "/echo", method="POST", extra=[("content-length", str(len(payload)))],
              end_stream=False)
        c.data(3, payload, end_stream=True)
        status, body = c.wait_response(3)
        self.assertEqual((status, json.loads(body)["body_length"]), (200, len(payload)))
        for _ in range(3):
            self.assertEqual(http_get(self.t.url("/id")).status, 200)
        self.assertNotIn("/smuggled", self.backend_stats()["paths"])
        self.assertEqual(self.backend_requests() - before, 5)
        self.assert_served()


# ---------------------------------------------------------------------------------------
# TLS helpers (certificates made with test_tls.Certs, once per run)

_CERTS = None


def tls_certs():
    global _CERTS
    if _CERTS is None:
        from test_tls import Certs  # a class, not a TestCase: its tests do not run here
        _CERTS = Certs()
    return _CERTS


def tls_listener(certs, address="127.0.0.1:0"):
    return {"address": address,
            "tls": {"certificates": [{"cert": certs.cert("a"), "key": certs.key("a")}]}}


def tls_client_ctx(certs):
    ctx = ssl.create_default_context(cafile=certs.ca)
    ctx.set_alpn_protocols(["h2"])
    return ctx


def tearDownModule():
    global _CERTS
    if _CERTS is not None:
        import shutil
        shutil.rmtree(_CERTS.dir, ignore_errors=True)
        _CERTS = None


if __name__ == "__main__":
    unittest.main()
