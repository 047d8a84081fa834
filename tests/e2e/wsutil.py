"""WebSocket helpers for tether's e2e tests (test_websocket.py, test_socketio.py).

Standard library plus python3-websockets 10.4 (Debian). Three pieces:

  frame(opcode, payload, fin, mask)     one RFC 6455 frame as bytes (masked: client side)
  close_payload(code, reason)           the payload of a close frame
  recv_frame(raw_client, timeout)       the next frame from a harness.RawClient:
                                        Frame(fin, opcode, payload, masked), or None on EOF/timeout
  upgrade_head(host, path, key, extra)  a hand-written upgrade request
  accept_for(key)                       the Sec-WebSocket-Accept for a Sec-WebSocket-Key
  RawWsBackend(script, first_bytes)     a hand-made WebSocket backend on a raw socket (one
                                        thread per connection) for what websockets cannot
                                        do on purpose: a frame in the same segment as its
                                        101, half-closes, non-101 answers
  arun(coro, timeout)                   asyncio.run with a bound
  ws_connect(url, **kw)                 websockets.connect with test defaults (no
                                        compression, no keepalive pings, no size limit)
"""

import asyncio
import base64
import collections
import hashlib
import os
import socket
import struct
import threading
import time

try:
    import websockets
except ImportError:  # the raw-frame helpers need only the standard library
    websockets = None

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10

Frame = collections.namedtuple("Frame", "fin opcode payload masked", defaults=(False,))


def frame(opcode, payload=b"", fin=True, mask=True):
    if isinstance(payload, str):
        payload = payload.encode()
    head = bytearray([(0x80 if fin else 0) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head.append(mbit | n)
    elif n < 65536:
        head.append(mbit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mbit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    body = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return bytes(head) + key + body


def close_payload(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason


def _parse(buf):
    """(Frame, used) for a whole frame at the start of buf, else (None, 0)."""
    if len(buf) < 2:
        return None, 0
    b0, b1 = buf[0], buf[1]
    n = b1 & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None, 0
        n = struct.unpack("!H", buf[2:4])[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None, 0
        n = struct.unpack("!Q", buf[2:10])[0]
        pos = 10
    key = None
    if b1 & 0x80:
        if len(buf) < pos + 4:
            return None, 0
        key = buf[pos:pos + 4]
        pos += 4
    if len(buf) < pos + n:
        return None, 0
    payload = bytes(buf[pos:pos + n])
    if key:
        payload = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return Frame(bool(b0 & 0x80), b0 & 0x0F, payload, key is not None), pos + n


def recv_frame(client, timeout=5.0):
    """Next frame from a harness.RawClient (uses and updates its buffer)."""
    deadline = time.monotonic() + timeout
    while True:
        f, used = _parse(client.buffer)
        if f is not None:
            client.buffer = client.buffer[used:]
            return f
        if client.eof or not client._recv_some(deadline):  # noqa: SLF001 - harness helper
            return None


def accept_for(key):
    if isinstance(key, str):
        key = key.encode()
    return base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()


def new_key():
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_head(host, path="/", key=None, extra=()):
    """An upgrade request as bytes. extra: (name, value) pairs."""
    key = key or new_key()
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host, "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: %s" % key,
             "Sec-WebSocket-Version: 13"]
    lines += ["%s: %s" % kv for kv in extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawWsBackend:
    """A WebSocket backend written by hand on raw sockets.

    For each connection: reads the request head; a request without Upgrade (health
    checks) gets 200 {"status": true} and the connection closes. An upgrade gets
    `status_line` (default a proper 101 with Sec-WebSocket-Accept) followed, in the
    same sendall, by `first_bytes`; then script(conn, rest) runs in the connection's
    thread, with rest the bytes that arrived behind the request head. Exceptions
    in a script are kept in .errors; request heads in .heads (text)."""

    def __init__(self, script=None, first_bytes=b"", refuse=None, extra_headers=b""):
        self.script = script
        self.extra_headers = extra_headers  # raw header lines added to the 101
        self.first_bytes = first_bytes
        self.refuse = refuse          # e.g. b"HTTP/1.1 403 Forbidden\r\n..." for upgrades
        self.heads = []
        self.errors = []
        self.results = []             # whatever scripts append
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = False
        self._conns = []
        self._thread = threading.Thread(target=self._accept, daemon=True, name="raw-ws")
        self._thread.start()

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _accept(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, rest = data.split(b"\r\n\r\n", 1)
            text = head.decode("latin-1")
            headers = {}
            for line in text.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            if "upgrade" not in headers.get("connection", "").lower():
                body = b'{"status": true}\n'
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
                return
            self.heads.append(text)
            if self.refuse is not None:
                conn.sendall(self.refuse)
                if self.script:
                    self.script(conn, rest)
                return
            resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                    % accept_for(headers.get("sec-websocket-key", ""))).encode()
            resp += self.extra_headers + b"\r\n"
            conn.sendall(resp + self.first_bytes)
            if self.script:
                self.script(conn, rest)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def stop(self):
        self._stop = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in self._conns:
            try:
                c.close()
            except OSError:
                pass
        self._thread.join(2)


def read_frames_from_socket(conn, buf, count, timeout=5.0):
    """Reads `count` frames from a plain socket (a RawWsBackend script). Returns
    (frames, leftover buffer); fewer frames on EOF or timeout."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        f, used = _parse(buf)
        if f is not None:
            out.append(f)
            buf = buf[used:]
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            break
        conn.settimeout(left)
        try:
            chunk = conn.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    return out, buf


def read_and_answer_close(conn, buf, count, got, timeout=8.0):
    """A RawWsBackend script's end: reads `count` frames into `got`; when the last of
    them is a close frame, answers it with the same payload (unmasked, as a server)."""
    fs, _ = read_frames_from_socket(conn, buf, count, timeout=timeout)
    got.extend(fs)
    if len(fs) == count and fs[-1].opcode == OP_CLOSE:
        conn.sendall(frame(OP_CLOSE, fs[-1].payload, mask=False))


def arun(coro, timeout=60.0):
    """Runs a coroutine to completion in a fresh event loop, bounded by timeout."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def ws_connect(url, **kw):
    opts = dict(compression=None, ping_interval=None, max_size=None, open_timeout=5,
                close_timeout=3)
    opts.update(kw)
    return websockets.connect(url, **opts)


async def until_closed(ws):
    """Reads (and drops) messages until the connection closes. Returns the close frame
    received, or None when the connection ended without one."""
    try:
        while True:
            await ws.recv()
    except websockets.ConnectionClosed as e:
        return e.rcvd


def rss_kib(pid):
    """VmRSS of a process, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)
