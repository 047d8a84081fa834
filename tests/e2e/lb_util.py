"""Small helpers shared by test_backends.py, test_admin.py and test_metrics.py.

Standard library only; everything is bounded (request counts, deadlines).
"""

import collections
import http.client
import json
import time

from harness import wait_until


class KeepAliveClient:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port (reopened when the peer
    closes it, e.g. after a 503 with Connection: close)."""

    def __init__(self, port, timeout=5.0):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def request(self, method="GET", path="/id", headers=None, body=None):
        """Returns (status, headers, body); raises on a transport error."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            r = self.conn.getresponse()
            data = r.read()
        except Exception:
            self.close()
            raise
        if r.will_close:
            self.close()
        return r.status, r.headers, data

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except OSError:
                pass
            self.conn = None


def distribution(port, n, path="/id", headers=None):
    """n GETs of `path` on one keep-alive connection. Returns (Counter of bodies of the
    200 answers, list of (status or exception) for everything else)."""
    c = KeepAliveClient(port)
    got, bad = collections.Counter(), []
    try:
        for _ in range(n):
            try:
                status, _, body = c.request("GET", path, headers=headers)
            except Exception as e:  # noqa: BLE001 - counted
                bad.append(repr(e))
                continue
            if status == 200:
                got[body.decode()] += 1
            else:
                bad.append(status)
    finally:
        c.close()
    return got, bad


def backend_by_address(t, address):
    for b in t.backends_state():
        if b.get("address") == address:
            return b
    raise AssertionError("no backend %s in /admin/backends: %s"
                         % (address, json.dumps(t.backends_state())))


def wait_state(t, address, state, timeout=5.0):
    """Waits until /admin/backends shows `address` in `state`; returns the seconds it took."""
    t0 = time.monotonic()
    wait_until(lambda: backend_by_address(t, address)["state"] == state, timeout,
               msg="backend %s state %r" % (address, state))
    return time.monotonic() - t0


def wait_all_up(t, addresses, timeout=5.0):
    for a in addresses:
        wait_state(t, a, "up", timeout)
