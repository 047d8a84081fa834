"""Helpers for test_affinity.py and test_affinity_redis.py (session affinity, SPEC.md
"Affinity keys"): unsigned JWTs, Engine.IO long-polling by hand, pin store keys,
redis-server on a chosen port, and the tether configuration the tests share.

Standard library plus python3-redis (Debian). Every loop is bounded.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import signal
import tempfile
import time

from harness import AppProcess, START_TIMEOUT, require_program

SIO_PATH = "/ws/socket.io/"
# Open WebUI's route (OPENWEBUI.md): the Engine.IO sid, then the user, then a cookie.
SIO_KEYS = ["engineio_sid", "jwt:cookie:token:id", "cookie:tether_affinity"]
USER_KEY = "jwt:cookie:token:id"


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims, header=None):
    """An unsigned token header.payload.signature, as tether reads it (never verified)."""
    header = header or {"alg": "HS256", "typ": "JWT"}
    return "%s.%s.%s" % (b64url(json.dumps(header)), b64url(json.dumps(claims)),
                         b64url(b"not-a-real-signature"))


def user_cookie(user):
    """Cookie header of Open WebUI's web UI for user id `user`."""
    return "token=" + make_jwt({"id": user, "exp": 4102444800})


def pin_store_key(key):
    """balancer::pinStoreKey: "tether:pin:" + first 32 hex of SHA-256(key)."""
    return "tether:pin:" + hashlib.sha256(key.encode()).hexdigest()[:32]


def user_key(user):
    return "%s=%s" % (USER_KEY, user)


def sid_key(sid):
    return "engineio_sid=" + sid


def tether_config(store="memory", keys=None, sio_keys=SIO_KEYS, extra_affinity=None,
                  health_interval="200ms", balance=None, **top):
    """Top-level affinity `keys` (default: the user's JWT) for every path, and Open WebUI's
    Socket.IO route. Health checks are fast so that a dead backend is seen in ~0.5 s."""
    aff = {"keys": keys if keys is not None else [USER_KEY], "store": store}
    aff.update(extra_affinity or {})
    cfg = {
        "health": {"path": "/health", "interval": health_interval, "timeout": "500ms",
                   "rise": 1, "fall": 1},
        "affinity": aff,
        "routes": [{"match": {"path_prefix": SIO_PATH},
                    "affinity": {"keys": list(sio_keys)}}],
    }
    if balance:
        cfg["balance"] = balance
    cfg.update(top)
    return cfg


# ---------------------------------------------------------------------------------------
# HTTP on fresh connections (a browser's polls may use any connection, any tether)


class Resp:
    def __init__(self, status, headers, body, elapsed):
        self.status, self.headers, self.body, self.elapsed = status, headers, body, elapsed

    def header(self, name):
        return self.headers.get(name)

    def header_all(self, name):
        return self.headers.get_all(name) or []

    def __repr__(self):
        return "Resp(%d, %r)" % (self.status, self.body[:200])


def request(port, path, method="GET", headers=None, body=None, timeout=5.0):
    """One request on a new connection to 127.0.0.1:port; raises on transport errors."""
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return Resp(r.status, r.msg, data, time.monotonic() - t0)
    finally:
        c.close()


# ---------------------------------------------------------------------------------------
# Engine.IO v4 long-polling by hand


def eio_path(sid=None, transport="polling", extra=""):
    q = "EIO=4&transport=%s" % transport
    if sid:
        q += "&sid=" + sid
    return "%s?%s%s" % (SIO_PATH, q, extra)


def eio_handshake(port, headers=None):
    """GET ...?EIO=4&transport=polling: returns (Resp, sid)."""
    r = request(port, eio_path(), headers=headers)
    if r.status != 200:
        raise AssertionError("handshake answered %d: %r" % (r.status, r.body[:300]))
    m = re.match(rb'^0(\{.*\})', r.body)
    if not m:
        raise AssertionError("not an open packet: %r" % r.body[:300])
    return r, json.loads(m.group(1))["sid"]


def eio_packets(body):
    """A polling payload: packets separated by the record separator 0x1e."""
    return [p.decode() for p in body.split(b"\x1e") if p]


def hello_name(packets):
    """The instance name from the app's 'hello' event (sent right after connect)."""
    for p in packets:
        if p.startswith('42["hello"'):
            return json.loads(p[2:])[1]["name"]
    return None


class Poller:
    """One Engine.IO session driven by hand over raw HTTP, each request on a new
    connection to whichever tether port comes next in `ports` (round robin)."""

    def __init__(self, ports, headers=None):
        self.ports = list(ports)
        self.i = 0
        self.headers = dict(headers or {})
        self.log = []  # (port, method, status, body)

    def next_port(self):
        p = self.ports[self.i % len(self.ports)]
        self.i += 1
        return p

    def handshake(self):
        port = self.next_port()
        r, self.sid = eio_handshake(port, self.headers)
        self.log.append((port, "GET", r.status, r.body))
        return self.sid

    def post(self, payload):
        port = self.next_port()
        h = dict(self.headers)
        h["Content-Type"] = "text/plain;charset=UTF-8"
        r = request(port, eio_path(self.sid), "POST", h, payload.encode())
        self.log.append((port, "POST", r.status, r.body))
        return r

    def get(self, timeout=5.0):
        port = self.next_port()
        r = request(port, eio_path(self.sid), headers=self.headers, timeout=timeout)
        self.log.append((port, "GET", r.status, r.body))
        return r

    def connect_namespace(self):
        """POST '40' then GET until the CONNECT answer arrives; returns the instance
        name from the app's hello event."""
        r = self.post("40")
        if r.status != 200:
            raise AssertionError("POST 40 answered %d %r" % (r.status, r.body))
        packets = []
        for _ in range(5):
            g = self.get()
            if g.status != 200:
                raise AssertionError("poll answered %d %r" % (g.status, g.body))
            packets += eio_packets(g.body)
            if hello_name(packets):
                return hello_name(packets)
        raise AssertionError("no hello after connect: %r" % packets)

    def ack_call(self, event, ack_id, *args):
        """Emits `event` with an ack id and polls until the ack arrives; returns its data."""
        r = self.post("42%d%s" % (ack_id, json.dumps([event] + list(args))))
        if r.status != 200:
            raise AssertionError("emit answered %d %r" % (r.status, r.body))
        prefix = "43%d" % ack_id
        for _ in range(5):
            g = self.get()
            if g.status != 200:
                raise AssertionError("poll answered %d %r" % (g.status, g.body))
            for p in eio_packets(g.body):
                if p.startswith(prefix):
                    return json.loads(p[len(prefix):])[0]
        raise AssertionError("no ack %d for %s" % (ack_id, event))


# ---------------------------------------------------------------------------------------
# Redis


def start_redis_on(port, attempts=40):
    """redis-server on a given loopback port (a restart after SIGKILL: the port may take
    a moment to be free). Returns an AppProcess with .redis_url."""
    binary = require_program("redis-server")
    last = None
    for _ in range(attempts):
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--loglevel", "notice"]
        app = AppProcess(argv, name="redis-server", cwd=tempfile.gettempdir(), port=port)
        try:
            app.out.wait_for(lambda line: "Ready to accept connections" in line,
                             START_TIMEOUT, "redis ready", on_records=False)
            app.redis_url = "redis://127.0.0.1:%d/0" % port
            return app
        except AssertionError as e:
            last = e
            app.stop()
            time.sleep(0.25)
    raise AssertionError("redis-server did not start on port %d: %s" % (port, last))


def redis_client(port):
    import redis  # python3-redis
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)


def pause(app):
    os.kill(app.proc.pid, signal.SIGSTOP)


def resume(app):
    os.kill(app.proc.pid, signal.SIGCONT)
