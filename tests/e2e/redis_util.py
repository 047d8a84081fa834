"""Redis as operators run it, for test_redis_store.py: redis-server with an ACL user,
with TLS (certificates made by openssl in a temp dir), a master with a replica watched
by three redis-sentinel processes.

Every process is on loopback, on a port that was free a moment ago (redis-server and
redis-sentinel cannot bind port 0), and every wait is bounded. Standard library plus
python3-redis (Debian).
"""

import os
import subprocess
import tempfile
import time

from harness import START_TIMEOUT, AppProcess, free_port, require_program

ACL_USER = "tether"
ACL_PASSWORD = "s3cret-acl-pw"
# What tether needs of its user (README, "Redis keys"): pins (GET, SET, PEXPIRE), liveness
# (PING), the admin's lookup (PTTL), the shared admin state (HGETALL, HSET, HSETNX, HINCRBY,
# MULTI, EXEC, PUBLISH, SUBSCRIBE on the channel tether:admin). The default user is off, so
# that nothing works without AUTH.
ACL_RULES = ["on", ">" + ACL_PASSWORD, "~tether:*", "&tether:admin", "+get", "+set", "+pexpire",
             "+pttl", "+ping", "+hgetall", "+hset", "+hsetnx", "+hincrby", "+multi", "+exec",
             "+publish", "+subscribe"]


def _wait_ready(app, what):
    app.out.wait_for(lambda line: "Ready to accept connections" in line, START_TIMEOUT, what,
                     on_records=False)


def start_redis_server(extra_args=(), attempts=5, tls_port=False, name="redis-server",
                       port=None):
    """redis-server on a free loopback port, no persistence. With tls_port, the port is
    a TLS port and the plain one is off (extra_args must name the certificates).
    Returns an AppProcess with .port."""
    binary = require_program("redis-server")
    last = None
    for _ in range(attempts):
        p = port or free_port()
        ports = ["--port", "0", "--tls-port", str(p)] if tls_port else ["--port", str(p)]
        argv = [binary] + ports + ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                   "--daemonize", "no", "--loglevel", "notice"] + list(extra_args)
        app = AppProcess(argv, name=name, cwd=tempfile.gettempdir(), port=p)
        try:
            _wait_ready(app, name + " ready")
            return app
        except AssertionError as e:
            last = "%s\n%s" % (e, app.output()[-2000:])
            app.stop()
            if port:
                time.sleep(0.25)
    raise AssertionError("%s did not start: %s" % (name, last))


# The operator's own user, for the tests' checks and changes.
ADMIN_USER, ADMIN_PASSWORD = "admin", "admin-pw"


def acl_args(user=ACL_USER, rules=ACL_RULES):
    return (["--user", user] + list(rules) + ["--user", "default", "off"] +
            ["--user", ADMIN_USER, "on", ">" + ADMIN_PASSWORD, "~*", "&*", "+@all"])


# ---------------------------------------------------------------------------------------
# TLS


def _openssl(*args, cwd):
    binary = require_program("openssl")
    p = subprocess.run([binary] + list(args), cwd=cwd, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), p.stderr.decode()[-2000:]))


def make_certificates(directory):
    """A CA, a server certificate for localhost and 127.0.0.1, and a client certificate,
    all signed by the CA; plus a second CA that signed nothing here. Returns a dict of
    paths: ca, server_cert, server_key, client_cert, client_key, other_ca."""
    d = directory

    def path(name):
        return os.path.join(d, name)

    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
             "-out", "ca.pem", "-days", "2", "-subj", "/CN=tether test CA", cwd=d)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other-ca.key",
             "-out", "other-ca.pem", "-days", "2", "-subj", "/CN=another CA", cwd=d)
    with open(path("server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    with open(path("client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", who + ".key",
                 "-out", who + ".csr", "-subj", "/CN=" + ("localhost" if who == "server"
                                                          else "tether"), cwd=d)
        _openssl("x509", "-req", "-in", who + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", who + ".pem", "-days", "2",
                 "-extfile", who + ".ext", cwd=d)
    return {"ca": path("ca.pem"), "server_cert": path("server.pem"),
            "server_key": path("server.key"), "client_cert": path("client.pem"),
            "client_key": path("client.key"), "other_ca": path("other-ca.pem")}


def tls_args(certs, auth_clients="yes"):
    return ["--tls-cert-file", certs["server_cert"], "--tls-key-file", certs["server_key"],
            "--tls-ca-cert-file", certs["ca"], "--tls-auth-clients", auth_clients]


def tls_client(port, certs, username=ACL_USER, password=ACL_PASSWORD):
    import redis  # python3-redis
    return redis.Redis(host="127.0.0.1", port=port, username=username, password=password,
                       ssl=True, ssl_ca_certs=certs["ca"], ssl_certfile=certs["client_cert"],
                       ssl_keyfile=certs["client_key"], socket_timeout=2)


def client(port, password=None, username=None):
    import redis  # python3-redis
    return redis.Redis(host="127.0.0.1", port=port, username=username, password=password,
                       socket_timeout=2)


# ---------------------------------------------------------------------------------------
# Sentinel


MASTER_NAME = "pins"


class SentinelSet:
    """A master and a replica (both with requirepass `password`) and three sentinels
    (no password of their own) watching the master with quorum 2 and a down-after of
    `down_after_ms`. .master, .replica, .sentinels are AppProcess; .stop() ends all."""

    def __init__(self, password, down_after_ms=1000):
        self.password = password
        self.dir = tempfile.mkdtemp(prefix="tether-sentinel-")
        self.apps = []
        auth = ["--requirepass", password, "--masterauth", password]
        self.master = self._keep(start_redis_server(auth, name="redis-master"))
        self.replica = self._keep(start_redis_server(
            auth + ["--replicaof", "127.0.0.1", str(self.master.port)], name="redis-replica"))
        self.wait_replicated()
        self.sentinels = [self._keep(self._start_sentinel(i, down_after_ms)) for i in range(3)]
        self.wait_sentinels_agree()

    def _keep(self, app):
        self.apps.append(app)
        return app

    def _start_sentinel(self, i, down_after_ms, attempts=5):
        binary = require_program("redis-sentinel")
        last = None
        for _ in range(attempts):
            port = free_port()
            conf = os.path.join(self.dir, "sentinel-%d.conf" % i)
            with open(conf, "w") as f:  # sentinel rewrites its file: one each, writable
                f.write("port %d\nbind 127.0.0.1\ndaemonize no\nsentinel resolve-hostnames no\n"
                        "sentinel monitor %s 127.0.0.1 %d 2\n"
                        "sentinel auth-pass %s %s\n"
                        "sentinel down-after-milliseconds %s %d\n"
                        "sentinel failover-timeout %s 10000\n"
                        "sentinel parallel-syncs %s 1\n"
                        % (port, MASTER_NAME, self.master.port, MASTER_NAME, self.password,
                           MASTER_NAME, down_after_ms, MASTER_NAME, MASTER_NAME))
            app = AppProcess([binary, conf], name="redis-sentinel-%d" % i, cwd=self.dir, port=port)
            try:
                # A sentinel says no "Ready to accept connections": it listens once it
                # monitors.
                app.out.wait_for(lambda line: "+monitor master" in line, START_TIMEOUT,
                                 "sentinel monitoring", on_records=False)
                return app
            except AssertionError as e:
                last = "%s\n%s" % (e, app.output()[-2000:])
                app.stop()
        raise AssertionError("redis-sentinel did not start: %s" % last)

    def wait_replicated(self, timeout=15):
        c = client(self.replica.port, self.password)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = c.info("replication")
                if info.get("master_link_status") == "up":
                    return
            except Exception:
                pass
            time.sleep(0.05)
        raise AssertionError("the replica did not sync with the master")

    def wait_sentinels_agree(self, timeout=20):
        """Every sentinel knows the replica and the two other sentinels: a failover can
        then be voted at once."""
        deadline = time.monotonic() + timeout
        state = None
        while time.monotonic() < deadline:
            state = []
            for s in self.sentinels:
                try:
                    m = client(s.port).sentinel_master(MASTER_NAME)
                    state.append((m.get("num-slaves"), m.get("num-other-sentinels")))
                except Exception as e:
                    state.append(repr(e))
            if all(x == (1, 2) for x in state):
                return
            time.sleep(0.1)
        raise AssertionError("sentinels do not agree on the set: %r" % (state,))

    def master_port(self, sentinel=0):
        ip, port = client(self.sentinels[sentinel].port).sentinel_get_master_addr_by_name(
            MASTER_NAME)
        return int(port)

    def url(self, db=0):
        hosts = ",".join("127.0.0.1:%d" % s.port for s in self.sentinels)
        return "redis+sentinel://:%s@%s/%s/%d" % (self.password, hosts, MASTER_NAME, db)

    def stop(self):
        for app in reversed(self.apps):
            app.stop()
