"""A small HTTP/2 client for the e2e tests, on the `h2` library (Debian's
python3-h2) over a blocking socket: it sends what a test scripts and records
every event, with the time it arrived, so that tests can assert on frames
(GOAWAY, RST_STREAM, DATA as it streams), not only on whole responses.

    c = H2Client(port)                      # cleartext, prior knowledge
    c = H2Client(port, tls_ctx=ctx, sni=)   # TLS with ALPN h2
    sid = c.request("GET", "/echo", headers=[("x-a", "1")], body=None, end=True)
    resp = c.response(sid, timeout=10)      # .status .headers .body .trailers .reset .data_times
    c.until(lambda: c.goaway is not None, timeout=5)
    c.close()
"""

import socket
import ssl
import time

try:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions
    import h2.settings
    HAVE_H2 = True
except ImportError:  # the tests fail with a clear reason (harness.require_module)
    HAVE_H2 = False


if HAVE_H2:
    class _Connection(h2.connection.H2Connection):
        """h2's connection, except that a graceful GOAWAY (NO_ERROR) leaves the
        streams it covers running, as RFC 9113 §6.8 says (h2 4.1 closes at once)."""

        def _receive_goaway_frame(self, frame):
            if frame.error_code != 0:
                return super()._receive_goaway_frame(frame)
            ev = h2.events.ConnectionTerminated()
            ev.error_code = h2.errors.ErrorCodes.NO_ERROR
            ev.last_stream_id = frame.last_stream_id
            ev.additional_data = frame.additional_data or None
            return [], [ev]


def require_h2(available=None):
    """Skips the test without python3-h2 (`available`: the caller's own import
    check, default this module's); fails instead under CI=true."""
    import unittest
    from harness import in_ci
    if not (HAVE_H2 if available is None else available):
        msg = "python3-h2 is not installed"
        if in_ci():
            raise AssertionError(msg + " (CI=true: run packaging/install-deps.sh)")
        raise unittest.SkipTest(msg)


class Response:
    def __init__(self, sid):
        self.sid = sid
        self.status = None
        self.headers = []
        self.informational = []
        self.body = bytearray()
        self.data_times = []  # (time, len) of each DATA frame
        self.trailers = None
        self.ended = False
        self.reset = None  # RST_STREAM error code

    def header(self, name):
        name = name.lower()
        return [v for n, v in self.headers if n == name]


class H2Client:
    def __init__(self, port, host="127.0.0.1", tls_ctx=None, sni=None, settings=None,
                 connect_timeout=5.0, authority=None, auto_ack=True):
        if not HAVE_H2:
            raise RuntimeError("python3-h2 is not installed")
        raw = socket.create_connection((host, port), timeout=connect_timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls_ctx is not None:
            self.sock = tls_ctx.wrap_socket(raw, server_hostname=sni)
            self.alpn = self.sock.selected_alpn_protocol()
        else:
            self.sock = raw
            self.alpn = None
        self.authority = authority or "%s:%d" % (sni or host, port)
        self.scheme = "https" if tls_ctx is not None else "http"
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=False,
                                        normalize_outbound_headers=False,
                                        validate_inbound_headers=False)
        self.conn = _Connection(config=cfg)
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.responses = {}
        self.goaway = None        # (error_code, last_stream_id) of the last GOAWAY
        self.goaways = []
        self.remote_settings = {}
        self.closed = False       # the server closed the connection
        self.events = []
        self.auto_ack = auto_ack  # False: DATA is not acknowledged, the windows stay as they are
        self.flush()

    # ---- sending -----------------------------------------------------------
    def flush(self):
        data = self.conn.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def send_raw(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def request(self, method, path, headers=(), body=None, end=True, authority=None):
        sid = self.conn.get_next_available_stream_id()
        hs = [(":method", method), (":scheme", self.scheme),
              (":authority", authority or self.authority), (":path", path)]
        hs += list(headers)
        self.responses[sid] = Response(sid)
        self.conn.send_headers(sid, hs, end_stream=end and body is None)
        if body is not None and len(body) <= 16384 and end:
            # A small body goes in the same write as its HEADERS, as browsers send it.
            self.conn.send_data(sid, bytes(body), end_stream=True)
        elif body is not None:
            self.send_data(sid, body, end=end)
        self.flush()
        return sid

    def send_data(self, sid, data, end=True):
        """Sends `data` as the windows allow (reading meanwhile)."""
        view = memoryview(data)
        deadline = time.monotonic() + 60
        while view:
            try:
                room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            except h2.exceptions.StreamClosedError:
                return
            if room <= 0:
                if time.monotonic() > deadline:
                    raise AssertionError("no window opened for stream %d" % sid)
                self._read(1.0)
                if self.closed:
                    return
                continue
            n = min(room, len(view))
            try:
                self.conn.send_data(sid, bytes(view[:n]))
            except h2.exceptions.StreamClosedError:
                return  # the server answered (and reset) the stream meanwhile
            view = view[n:]
            self.flush()
        if end:
            try:
                self.conn.end_stream(sid)
            except h2.exceptions.StreamClosedError:
                return
            self.flush()

    def reset(self, sid, code=8):
        self.conn.reset_stream(sid, error_code=code)
        self.flush()

    def ping(self, payload=b"12345678"):
        self.conn.ping(payload)
        self.flush()

    # ---- receiving ---------------------------------------------------------
    def _read(self, timeout):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return
        except OSError:
            self.closed = True
            return
        if not data:
            self.closed = True
            return
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.events.append(("protocol_error", str(e)))
            self.closed = True
            return
        now = time.monotonic()
        for ev in events:
            self.events.append(ev)
            self._on(ev, now)
        self.flush()

    def _on(self, ev, now):
        r = self.responses.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived):
            r.status = int(dict(ev.headers)[":status"])
            r.headers = [(n, v) for n, v in ev.headers if not n.startswith(":")]
        elif isinstance(ev, h2.events.InformationalResponseReceived):
            r.informational.append(int(dict(ev.headers)[":status"]))
        elif isinstance(ev, h2.events.DataReceived):
            if r is not None:
                r.body += ev.data
                r.data_times.append((now, len(ev.data)))
            if self.auto_ack:
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived):
            r.trailers = list(ev.headers)
        elif isinstance(ev, h2.events.StreamEnded):
            r.ended = True
        elif isinstance(ev, h2.events.StreamReset):
            if r is not None:
                r.reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = (ev.error_code, ev.last_stream_id)
            self.goaways.append(self.goaway)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            for k, v in ev.changed_settings.items():
                self.remote_settings[k] = v.new_value

    def until(self, pred, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return pred()
            self._read(min(left, 0.5))
        return True

    def response(self, sid, timeout=10.0):
        r = self.responses[sid]
        if not self.until(lambda: r.ended or r.reset is not None, timeout):
            raise AssertionError("stream %d: no complete response within %.1f s (status %r, "
                                 "%d body bytes, closed %r, goaway %r)"
                                 % (sid, timeout, r.status, len(r.body), self.closed, self.goaway))
        return r

    def wait_closed(self, timeout=10.0):
        return self.until(lambda: self.closed, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
