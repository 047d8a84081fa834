"""Shared parts of tether's load scenarios (bench/run_http.py, bench/run_ws.py, ...).

Starts the proxies under test (tether, HAProxy, nginx, and h2o and Caddy where installed;
one worker each) and the upstreams on loopback ports, reads CPU time and RSS of a
proxy's whole process tree from /proc, and formats markdown. Every process started here is in its own
process group and is killed at exit. Standard library only.

With a Tls (make_cert), every proxy terminates TLS on its listener with the same
certificate; the upstreams stay plain HTTP.
"""
import atexit
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TETHER_BIN = os.environ.get("TETHER_BIN", os.path.join(ROOT, "build", "proxy", "tether"))
# An earlier build to compare in the same run (--proxies tether,tether-base,...): an A/B
# of a change, both binaries measured against the same upstream, in turn.
TETHER_BASE_BIN = os.environ.get("TETHER_BASE_BIN", "")
# tether's pools (idle upstream connections, buffers, decoders) keep the spares of a burst
# for one to two seconds of their 1 s ticks (proxy/io/free_list.h, PoolDemand); a memory
# figure for connections at rest is read after this long.
POOL_DECAY_S = 2.5
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"  # loopback only, always

_procs = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def workdir():
    d = tempfile.mkdtemp(prefix="tether-bench-")
    os.chmod(d, 0o755)  # nginx workers (nobody) read below it
    atexit.register(shutil.rmtree, d, True)
    return d


def spawn(argv, name, stdout=None, stderr=None, env=None, cwd=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout or subprocess.DEVNULL,
                         stderr=stderr or subprocess.DEVNULL, start_new_session=True,
                         env=full_env, cwd=cwd)
    p.bench_name = name
    _procs.append(p)
    return p


def stop(p, timeout=5.0):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)


@atexit.register
def _stop_all():
    for p in reversed(_procs):
        try:
            stop(p)
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception:  # noqa: BLE001 - "not yet"
            pass
        time.sleep(interval)
    raise RuntimeError("timed out after %.0fs waiting for %s" % (timeout, what))


def http_ok(port, path="/", tls=None):
    """A 2xx on GET path. With tls (a Tls), over HTTPS, verifying the proxy's certificate
    against the bench's own (so each proxy is seen serving it, for 127.0.0.1)."""
    if tls is None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        url = "http://%s:%d%s" % (HOST, port, path)
    else:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=tls.client_context()))
        url = "https://%s:%d%s" % (HOST, port, path)
    with opener.open(url, timeout=2) as r:
        return 200 <= r.status < 300


def wait_http(port, proc, path="/", timeout=15, tls=None):
    def ready():
        if proc.poll() is not None:
            raise SystemExit("%s exited with %s while starting" % (proc.bench_name, proc.returncode))
        return http_ok(port, path, tls)
    wait_until(ready, timeout, "%s to answer on %d" % (proc.bench_name, port))


# ---- TLS: one certificate for every proxy -----------------------------------------------

class Tls:
    """The bench's certificate: ECDSA P-256, self-signed, CN and DNS name bench.test, IP
    127.0.0.1, made with the openssl CLI under the workdir. cert and key are PEM files;
    pem is both in one file (HAProxy's crt)."""
    SUBJECT = "/CN=bench.test"
    DESCRIPTION = "ECDSA P-256"

    def __init__(self, cert, key, pem):
        self.cert, self.key, self.pem = cert, key, pem

    def client_context(self):
        """A client context trusting only the bench's certificate, hostname checked."""
        return ssl.create_default_context(cafile=self.cert)

    def probe(self, port):
        """(protocol, cipher) a default OpenSSL client (Python's ssl, same library and
        defaults as wrk) negotiates with the proxy on port, e.g. ("TLSv1.3",
        "TLS_AES_256_GCM_SHA384")."""
        with socket.create_connection((HOST, port), timeout=5) as raw:
            with self.client_context().wrap_socket(raw, server_hostname=HOST) as s:
                return s.version(), s.cipher()[0]

    def alpn(self, port, offer=("h2", "http/1.1")):
        """The ALPN protocol the proxy on port selects when a client offers offer (None: no
        ALPN answer)."""
        ctx = self.client_context()
        ctx.set_alpn_protocols(list(offer))
        with socket.create_connection((HOST, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=HOST) as s:
                return s.selected_alpn_protocol()


def make_cert(wd):
    """Generates the bench's certificate under wd/tls (openssl req, bounded) -> Tls."""
    d = os.path.join(wd, "tls")
    os.makedirs(d, exist_ok=True)
    cert, key, pem = (os.path.join(d, n) for n in ("cert.pem", "key.pem", "cert+key.pem"))
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec",
                        "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", Tls.SUBJECT,
                        "-addext", "subjectAltName=DNS:bench.test,IP:%s" % HOST, "-days", "2",
                        "-keyout", key, "-out", cert],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    if r.returncode != 0:
        raise SystemExit("openssl req failed: %s" % r.stderr.decode())
    with open(pem, "w") as out:
        for part in (cert, key):
            with open(part) as f:
                out.write(f.read())
    os.chmod(pem, 0o600)
    return Tls(cert, key, pem)


# ---- /proc -----------------------------------------------------------------------------

def _children(pid):
    out = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid):
    """pid and all its descendants."""
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo += _children(p)
    return seen


def cpu_split(pid):
    """(utime, stime) of pid's whole process tree (all threads), in seconds: the time the
    proxy spent in its own code, and in the kernel on its behalf (syscalls, TCP)."""
    user = sys_ = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            user += int(fields[11])  # utime (field 14)
            sys_ += int(fields[12])  # stime (field 15)
        except (OSError, IndexError):
            pass
    return user / CLK_TCK, sys_ / CLK_TCK


def measured(pid, fn):
    """Runs fn() and returns its result (a dict) with "user", "sys" and "cpu": the seconds
    of CPU pid's process tree spent meanwhile (cpu_split)."""
    u0, s0 = cpu_split(pid)
    r = fn()
    u1, s1 = cpu_split(pid)
    r["user"], r["sys"] = u1 - u0, s1 - s0
    r["cpu"] = r["user"] + r["sys"]
    return r


def rss_kib(pid):
    """VmRSS summed over pid's process tree, KiB."""
    total = 0
    for p in tree(pid):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# ---- the upstream: a second nginx serving a ~100-byte answer --------------------------

UPSTREAM_BODY = "tether bench upstream: a small static answer of about one hundred bytes, " \
                "the same for all proxies.\n"


def nginx_conf(d, http_body):
    """An nginx configuration, 1 worker, everything under d, no access log, client
    keep-alive as for the other proxies; http_body goes inside http { }."""
    return """
worker_processes 1;
daemon off;
pid %(d)s/nginx.pid;
error_log %(d)s/logs/error.log warn;
events { worker_connections 20000; }
worker_rlimit_nofile 20000;
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_temp_path %(d)s/client_body;
  proxy_temp_path %(d)s/proxy;
  fastcgi_temp_path %(d)s/fastcgi;
  uwsgi_temp_path %(d)s/uwsgi;
  scgi_temp_path %(d)s/scgi;%(body)s
}
""" % {"d": d, "body": http_body}


def scenario_args(doc, proxies="tether,haproxy,nginx,h2o,caddy"):
    """An ArgumentParser with the options every scenario has: --rounds (default 3, at most
    10), --duration (seconds per run, default 10, at most 60), --proxies."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=10, help="seconds per run (max 60)")
    ap.add_argument("--proxies", default=proxies)
    return ap


def parse_scenario(ap):
    """ap's arguments with --rounds and --duration brought into range and args.wanted, the
    list of --proxies (empty when a scenario's default for it is None)."""
    args = ap.parse_args()
    args.duration = max(1, min(args.duration, 60))
    args.rounds = max(1, min(args.rounds, 10))
    args.wanted = [p for p in (args.proxies or "").split(",") if p]
    return args


def start_on_free_port(what, launch, timeout=15, tls=None):
    """launch(port) -> (proc, check_path): up to 5 tries on fresh ports (another process
    may take a port between free_port() and bind). With tls, the check is over HTTPS.
    Returns (proc, port)."""
    for _ in range(5):
        port = free_port()
        p, path = launch(port)
        try:
            wait_http(port, p, path, timeout=timeout, tls=tls)
            return p, port
        except (RuntimeError, SystemExit):
            stop(p)
    raise SystemExit("could not start %s" % what)


def start_nginx(wd, name, proc_name, what, http_body_for_port, timeout=15, tls=None):
    """nginx under wd/name with http_body_for_port(port) inside http { }; tls: its
    listener is HTTPS. (proc, port)."""
    d = os.path.join(wd, name)
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")

    def launch(port):
        with open(conf, "w") as f:
            f.write(nginx_conf(d, http_body_for_port(port)))
        return spawn(["nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "logs", "error.log")],
                     proc_name), "/health"
    return start_on_free_port(what, launch, timeout, tls)


def start_nginx_upstream(wd):
    """nginx, 1 worker, on a free loopback port: 200 with UPSTREAM_BODY on every path,
    {"status": true} on /health. Returns (proc, port)."""
    return start_nginx(wd, "upstream-nginx", "upstream-nginx", "the upstream nginx", lambda port: """
  server {
    listen %(host)s:%(port)d backlog=4096;
    location = /health { default_type application/json; return 200 '{"status": true}\\n'; }
    location / { default_type text/plain; return 200 '%(body)s'; }
  }""" % {"host": HOST, "port": port, "body": UPSTREAM_BODY.replace("\n", "\\n")}, timeout=10)


def start_node_upstream(wd, script, name):
    """node bench/<script> 0 127.0.0.1, which prints "PORT <n>" once it listens; its
    stderr in wd/<name>.log. Returns (proc, port)."""
    p = spawn(["node", os.path.join(HERE, script), "0", HOST], name,
              stdout=subprocess.PIPE, stderr=open(os.path.join(wd, name + ".log"), "w"))
    line = p.stdout.readline().decode().strip()  # bounded: the process exits on error
    if not line.startswith("PORT "):
        raise SystemExit("%s did not start: %r (see %s.log)" % (name, line, name))
    return p, int(line.split()[1])


# ---- the production profile (bench/http.sh --profile prod) -------------------------------

class Prod:
    """What --profile prod changes in every proxy's configuration: several backends
    ("host:port" each, one nginx on several loopback addresses), per-user affinity on the
    `token` cookie (a JWT), and a JSON access log written to wd/access-<proxy>.log, each
    as the proxy's own documentation shows."""
    COOKIE = "token"

    def __init__(self, wd, backends):
        self.wd, self.backends = wd, list(backends)

    def log_path(self, name):
        return os.path.join(self.wd, "access-%s.log" % name)


# The fields every proxy's JSON line carries, in each one's own format language.
NGINX_JSON_LOG = """
  log_format json_log escape=json '{"time":"$time_iso8601","client":"$remote_addr",'
    '"method":"$request_method","path":"$request_uri","protocol":"$server_protocol",'
    '"status":$status,"backend":"$upstream_addr","bytes_in":$request_length,'
    '"bytes_out":$bytes_sent,"duration":$request_time,"ttfb":"$upstream_header_time",'
    '"user_agent":"$http_user_agent"}';"""
# HAProxy 2.6 has no JSON encoder for log-format (%{+json}o and named fields came after 2.6),
# so the JSON is written out around its variables, strings escaped with %{+E}.
HAPROXY_JSON_LOG = ("""log-format '{"time":"%trg","client":"%ci","method":"%HM","""
                    """"path":"%{+E}HU","protocol":"%HV","status":%ST,"backend":"%si:%sp","""
                    """"bytes_in":%U,"bytes_out":%B,"duration":%Ta,"ttfb":%Tr,"""
                    """"user_agent":%{+Q}hr}'""")
H2O_JSON_LOG = ("'{\"time\":\"%{%Y-%m-%dT%H:%M:%S}t\",\"client\":\"%h\",\"method\":\"%m\","
                "\"path\":\"%U%q\",\"protocol\":\"%H\",\"status\":%s,"
                "\"bytes_out\":%b,\"duration\":%{duration}x,\"user_agent\":\"%{user-agent}i\"}'")


# ---- the proxies -------------------------------------------------------------------------

def nginx_proxy_http(port, upstream_port, websocket=False, tls=None, streaming=False,
                     prod=None, h2=False):
    """nginx as its documentation recommends for reverse proxying with upstream keep-alive
    (and, for WebSocket, the Upgrade/Connection map): the inside of http { }. With tls, the
    listener terminates TLS as "Configuring HTTPS servers" recommends: listen ... ssl,
    ssl_certificate(_key), a shared session cache, here TLS 1.2 and 1.3 only. streaming:
    `proxy_buffering off`, as nginx documents for event streams (each piece of the
    response goes to the client as it arrives). prod (a Prod): its backends with `hash
    $cookie_token consistent` (the upstream module's consistent hashing on a request
    variable) and a `log_format ... escape=json` written with `access_log ... buffer=64k
    flush=1s`, as the log module documents. h2 (with tls): HTTP/2 to clients as
    ngx_http_v2_module documents for 1.22, `listen ... ssl http2` (ALPN h2, then http/1.1);
    its other settings at their defaults (keepalive_requests and keepalive_timeout, set
    in nginx_conf, also bound its HTTP/2 connections since 1.19.7)."""
    servers = "    server %s:%d;" % (HOST, upstream_port)
    log_conf, ssl_conf = "", ""  # ssl_conf: the server block's own lines
    if prod is not None:
        servers = "    hash $cookie_%s consistent;\n" % prod.COOKIE + "\n".join(
            "    server %s;" % b for b in prod.backends)
        log_conf = NGINX_JSON_LOG
        ssl_conf = """
    access_log %s json_log buffer=64k flush=1s;""" % prod.log_path("nginx")
    ws_map = """
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }""" if websocket else ""
    ws_headers = """
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;""" if websocket else """
      proxy_set_header Connection "";"""
    if streaming:
        ws_headers += """
      proxy_buffering off;"""
    ssl_listen = ""
    if tls is not None:
        ssl_listen = " ssl http2" if h2 else " ssl"
        ssl_conf += """
    ssl_certificate %s;
    ssl_certificate_key %s;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    ssl_session_timeout 10m;""" % (tls.cert, tls.key)
    return """%(ws_map)s%(log_conf)s
  upstream backend {
%(servers)s
    keepalive 64;
    keepalive_requests 1000000;
  }
  server {
    listen %(host)s:%(port)d%(ssl_listen)s backlog=4096;%(ssl_conf)s
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;%(ws_headers)s
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }""" % {"host": HOST, "port": port, "servers": servers, "ws_map": ws_map, "log_conf": log_conf,
         "ws_headers": ws_headers, "ssl_listen": ssl_listen, "ssl_conf": ssl_conf}


def haproxy_conf(port, upstream_port, tls=None, backend=None, no_delay=False, prod=None,
                 h2=False):
    """HAProxy 2.6 as its documentation recommends: mode http, keep-alive both sides
    (option http-keep-alive is the default), http-reuse safe, one thread, no logging.
    With tls, the frontend terminates TLS: bind ... ssl crt PEM (certificate and key in
    one file) ssl-min-ver TLSv1.2, and tells the backend X-Forwarded-Proto: https, as
    nginx ($scheme) and tether do; no tune.ssl.default-dh-param (no DHE with ECDSA).
    backend: the lines of the backend section instead of one checked server at
    upstream_port. no_delay: `option http-no-delay`, which HAProxy documents for
    interactive streams: no MSG_MORE on its sends, so that each piece is sent at once.
    prod (a Prod): its backends, checked, with `balance hash req.cook(token)` and
    `hash-type consistent`, and a JSON `log-format` (HAPROXY_JSON_LOG) to stdout (`log stdout
    format raw`, the documented set-up for containers), which start_haproxy writes to
    the profile's file. h2 (with tls): `alpn h2,http/1.1` on the bind line, as the 2.6
    configuration manual documents for HTTP/2 over TLS (the H2 mux, its defaults)."""
    bind_ssl, fe_ssl, log_global, log_fe = "", "", "\n  # no \"log\" line: no access log", ""
    if prod is not None:
        log_global = "\n  log stdout format raw local0"
        log_fe = ("\n  log global\n  http-request capture req.fhdr(User-Agent) len 256\n  "
                  + HAPROXY_JSON_LOG)
        backend = ("  balance hash req.cook(%s)\n  hash-type consistent\n"
                   "  option httpchk GET /health\n" % prod.COOKIE) + "\n".join(
            "  server s%d %s check inter 5s" % (i + 1, b) for i, b in enumerate(prod.backends))
    if tls is not None:
        bind_ssl = " ssl crt %s ssl-min-ver TLSv1.2" % tls.pem
        if h2:
            bind_ssl += " alpn h2,http/1.1"
        fe_ssl = """
  http-request set-header X-Forwarded-Proto https if { ssl_fc }"""
    return """
global
  nbthread 1
  # 2 fds per proxied connection; 9000 fits the usual 20000-fd hard limit here
  maxconn 9000%(log_global)s

defaults
  mode http
  option http-keep-alive
  option forwardfor%(no_delay)s
  http-reuse safe
  timeout connect 5s
  timeout client 75s
  timeout server 30m
  timeout http-keep-alive 75s
  timeout tunnel 1h

frontend fe
  bind %(host)s:%(port)d%(bind_ssl)s
  maxconn 9000%(fe_ssl)s%(log_fe)s
  default_backend be

backend be
%(backend)s
""" % {"host": HOST, "port": port, "bind_ssl": bind_ssl, "fe_ssl": fe_ssl,
       "log_global": log_global, "log_fe": log_fe,
       "no_delay": "\n  option http-no-delay" if no_delay else "",
       "backend": backend if backend is not None else
       "  option httpchk GET /health\n  server s1 %s:%d check inter 5s" % (HOST, upstream_port)}


TETHER_ACCESS_LOG_OFF = "access_log: { enabled: false }\n"
# With --profile prod: the JSON access log to a file, flushed every second as nginx's is
# (README "Logs"); per-user affinity on the JWT's `id` claim in the `token` cookie, pins
# in the local (memory) store; the backends from the file (no -b).
TETHER_PROD_CONF = """access_log: { enabled: true, format: json, path: %(log)s, flush: 1s }
affinity:
  keys: ["jwt:cookie:%(cookie)s:id"]
  store: memory
backends:
%(backends)s
"""
TETHER_CONF = """# tether for the benchmark: access log off (as for the peers), health checks on.
health:
  path: /health
  interval: 5s
limits:
  max_connections: 20000
timeouts:
  downstream_idle: 75s
  tunnel_idle: 1h
"""

# With TLS the listener comes from the file: -l replaces the file's listeners with
# plain ones (conf/loader.cc). tether allows TLS 1.2 and 1.3.
TETHER_TLS_LISTENER = """listeners:
  - address: %(host)s:%(port)d
    tls:
      certificates:
        - { cert: %(cert)s, key: %(key)s }
"""


class Proxy:
    def __init__(self, name, proc, port):
        self.name, self.proc, self.port = name, proc, port

    @property
    def pid(self):
        return self.proc.pid


def start_nginx_proxy(wd, upstream_port, websocket=False, tls=None, streaming=False,
                      prod=None, h2=False):
    p, port = start_nginx(wd, "nginx-proxy", "nginx", "nginx as proxy",
                          lambda port: nginx_proxy_http(port, upstream_port, websocket, tls,
                                                        streaming, prod, h2),
                          tls=tls)
    return Proxy("nginx", p, port)


def start_haproxy(wd, upstream_port, tls=None, no_delay=False, name="haproxy", prod=None,
                  h2=False):
    """HAProxy in the foreground; with prod, its stdout (the access log) is the profile's
    log file. h2: see haproxy_conf."""
    conf = os.path.join(wd, name + ".cfg")

    def launch(port):
        with open(conf, "w") as f:
            f.write(haproxy_conf(port, upstream_port, tls, no_delay=no_delay, prod=prod, h2=h2))
        out = open(prod.log_path(name), "a") if prod is not None else None
        return spawn(["haproxy", "-f", conf, "-db"], name, stdout=out,
                     stderr=open(os.path.join(wd, name + ".log"), "w")), "/health"
    p, port = start_on_free_port("%s; see %s/%s.log" % (name, wd, name), launch, tls=tls)
    return Proxy(name, p, port)


def tether_available(binary=None):
    binary = binary or TETHER_BIN
    if not binary or not os.access(binary, os.X_OK):
        return False, "no binary at %s" % binary
    try:
        r = subprocess.run([binary, "--version"], capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "%s --version failed: %s" % (binary, e)
    if r.returncode != 0:
        return False, "%s --version exited %d" % (binary, r.returncode)
    return True, (r.stdout or r.stderr).decode().strip()


def start_tether(wd, upstream_port, tls=None, binary=None, name="tether", extra_conf="",
                 prod=None):
    """tether in front of upstream_port with TETHER_CONF (plus extra_conf, more top-level
    YAML keys); with prod (a Prod), TETHER_PROD_CONF instead of the access log off and in
    front of the profile's backends."""
    binary = binary or TETHER_BIN
    conf = os.path.join(wd, name + ".yaml")
    backend_args = ["-b", "http://%s:%d" % (HOST, upstream_port)]
    if prod is None:
        extra_conf = TETHER_ACCESS_LOG_OFF + extra_conf
    else:
        extra_conf = TETHER_PROD_CONF % {
            "log": prod.log_path(name), "cookie": prod.COOKIE,
            "backends": "\n".join("  - { url: \"http://%s\" }" % b for b in prod.backends)
        } + extra_conf
        backend_args = []
    with open(conf, "w") as f:
        f.write(TETHER_CONF + extra_conf)

    def launch(port):
        listen = ["-l", "%s:%d" % (HOST, port)]
        if tls is not None:
            listen = []
            with open(conf, "w") as f:
                f.write(TETHER_CONF + extra_conf + TETHER_TLS_LISTENER % {
                    "host": HOST, "port": port, "cert": tls.cert, "key": tls.key})
        return spawn([binary, "-c", conf] + listen + ["--admin", HOST + ":0"] + backend_args
                     + ["--log-level", "warn"],
                     name, stderr=open(os.path.join(wd, name + ".log"), "w")), "/health"
    p, port = start_on_free_port("%s; see %s/%s.log" % (name, wd, name), launch, tls=tls)
    return Proxy(name, p, port)


H2O_CONF = """# h2o as its documentation shows for a reverse proxy (proxy.reverse.url), one thread,
# no access log (h2o writes none unless access-log is set)
num-threads: 1
max-connections: 20000
error-log: %(d)s/h2o-error.log
listen:
  host: %(host)s
  port: %(port)d
hosts:
  default:
    paths:
      /:
        proxy.reverse.url: http://%(host)s:%(up)d/
"""

# WebSocket (bench/ws.sh): `proxy.websocket: ON`, which h2o 2.2's proxy directives document
# (off by default there, "experimental"): when the upstream answers a handshake with 101, the
# connection becomes a tunnel; `proxy.websocket.timeout` (ms, default 300000, 5 min) set to
# 1 h, as the others' tunnel timeouts.
H2O_URL = "        proxy.reverse.url: http://%(host)s:%(up)d/\n"
H2O_WS_URL = H2O_URL + """\
        proxy.websocket: ON
        proxy.websocket.timeout: 3600000
"""
H2O_WS_CONF = H2O_CONF.replace(H2O_URL, H2O_WS_URL)

# Idle keep-alive connections (bench/conns.sh): `http1-request-timeout: 75` (its HTTP/1
# directives: the time it waits for a request, 10 s by default, after which it closes an
# idle keep-alive connection), so that idle connections live as long as at the other
# proxies (75 s).
H2O_IDLE_CONF = H2O_CONF.replace("num-threads: 1\n", "num-threads: 1\nhttp1-request-timeout: 75\n")

# Caddy's reverse_proxy; flush_interval -1 flushes each write to the client at once (its
# documented setting for streaming; it does so for text/event-stream by itself too).
# No admin endpoint, no automatic HTTPS, no access log (none without a `log` directive),
# its own log at ERROR.
CADDY_GLOBAL = """{
  admin off
  auto_https off
  log {
    level ERROR
  }
}
"""
CADDYFILE = CADDY_GLOBAL + """http://%(host)s:%(port)d {
  reverse_proxy %(host)s:%(up)d {
    flush_interval -1
  }
}
"""


# --profile prod: h2o 2.2's proxy.reverse.url takes one URL (several backends came in 2.3)
# and it has no hashing on a cookie, so the first backend; the access log as its
# access-log directive documents, a JSON-shaped format with `escape: json`.
H2O_PROD_CONF = H2O_CONF.replace("no access log (h2o writes none unless access-log is set)",
                                 "a JSON access log").replace(
    "        proxy.reverse.url: http://%(host)s:%(up)d/\n", """\
        proxy.reverse.url: http://%(backend0)s/
        access-log:
          path: %(log)s
          escape: json
          format: """ + H2O_JSON_LOG.replace("%", "%%") + "\n")

# --profile prod: the backends with `lb_policy header Cookie` (Caddy 2.6 hashes a header's
# value; its `cookie` policy sets a cookie of its own instead of hashing the client's), a
# JSON access log to a file (`log { output file; format json }`), not rolled (Caddy rolls at
# 100 MiB by default, and the bench counts the lines of one file).
CADDYFILE_PROD = CADDYFILE.replace("""  reverse_proxy %(host)s:%(up)d {
    flush_interval -1
  }""", """  log {
    output file %(log)s {
      roll_disabled
    }
    format json
  }
  reverse_proxy %(backends)s {
    lb_policy header Cookie
    flush_interval -1
  }""")


# HTTP/2 over TLS (bench/h2.sh): h2o's listener with `ssl:` (certificate-file, key-file), as
# its base directives document; h2 is what it selects by ALPN. http2-idle-timeout 75 (its
# default is 10 s) so that idle connections live as long as at the other proxies (75 s).
H2O_TLS_CONF = H2O_CONF.replace("""  port: %(port)d
""", """  port: %(port)d
  ssl:
    certificate-file: %(cert)s
    key-file: %(key)s
    minimum-version: TLSv1.2
http2-idle-timeout: 75
""")
# WebSocket over TLS (bench/ws.sh --tls): that listener, proxy.websocket as in H2O_WS_CONF
# (the node clients offer no ALPN: HTTP/1.1 and its Upgrade).
H2O_TLS_WS_CONF = H2O_TLS_CONF.replace(H2O_URL, H2O_WS_URL)

# HTTP/2 over TLS (bench/h2.sh): an https:// site with `tls <cert> <key>` (the tls directive's
# own certificate files; no automatic HTTPS, no redirects); HTTP/2 is Caddy's default over
# TLS. `servers { protocols h1 h2 }` leaves out its HTTP/3 (UDP) listener, which no client
# here uses. reverse_proxy with its defaults (upstream keep-alive on).
CADDYFILE_TLS = """{
  admin off
  auto_https off
  log {
    level ERROR
  }
  servers {
    protocols h1 h2
  }
}
https://%(host)s:%(port)d {
  tls %(cert)s %(key)s {
    protocols tls1.2 tls1.3
  }
  reverse_proxy %(host)s:%(up)d
}
"""


def start_configured(wd, name, conf_name, conf_text, argv, upstream_port, env=None,
                     extra=None, tls=None):
    """A proxy configured by one file: wd/name/conf_name holds conf_text % {"d", "host",
    "port", "up": upstream_port} (and extra) for the port tried; argv (the file's path appended) starts it in the
    foreground, its stderr in wd/name/name.log. With tls, conf_text also gets "cert" and
    "key" and the readiness check is over HTTPS. Returns a Proxy."""
    d = os.path.join(wd, name)
    os.makedirs(d, exist_ok=True)
    conf = os.path.join(d, conf_name)
    log_path = os.path.join(d, name + ".log")

    def launch(port):
        with open(conf, "w") as f:
            keys = dict(extra or {}, d=d, host=HOST, port=port, up=upstream_port)
            if tls is not None:
                keys.update(cert=tls.cert, key=tls.key)
            f.write(conf_text % keys)
        return spawn(argv + [conf], name, stderr=open(log_path, "w"),
                     env=dict(env or {}, HOME=d, XDG_DATA_HOME=d, XDG_CONFIG_HOME=d)), "/health"
    p, port = start_on_free_port("%s; see %s" % (name, log_path), launch, tls=tls)
    return Proxy(name, p, port)


def prod_extra(prod, name):
    """The keys H2O_PROD_CONF and CADDYFILE_PROD take."""
    return {"log": prod.log_path(name), "backend0": prod.backends[0],
            "backends": " ".join(prod.backends)}


def start_h2o(wd, upstream_port, prod=None, tls=None, websocket=False, idle_conns=False,
              conf=None, extra=None):
    """tls: HTTPS (and so HTTP/2) on its listener, H2O_TLS_CONF (not with prod).
    websocket: H2O_WS_CONF (with tls, H2O_TLS_WS_CONF); idle_conns: H2O_IDLE_CONF.
    conf: a scenario's own configuration instead (as start_configured's conf_text, extra
    its further keys; bench/run_compress.py)."""
    if conf is None and tls is not None:
        conf = H2O_TLS_WS_CONF if websocket else H2O_TLS_CONF
    elif conf is None:
        conf = (H2O_PROD_CONF if prod else H2O_WS_CONF if websocket else
                H2O_IDLE_CONF if idle_conns else H2O_CONF)
    return start_configured(wd, "h2o", "h2o.conf", conf,
                            ["h2o", "-c"], upstream_port,
                            extra=prod_extra(prod, "h2o") if prod else extra, tls=tls)


def start_caddy(wd, upstream_port, prod=None, tls=None, websocket=False, idle_conns=False,
                conf=None, extra=None):
    """Caddy with GOMAXPROCS=1: one thread running Go code, as the others' one worker.
    tls: HTTPS (and so HTTP/2) on its listener, CADDYFILE_TLS (not with prod).
    websocket and idle_conns change nothing: reverse_proxy proxies WebSockets by itself
    (Caddy 2.6 has no timeout on an upgraded connection; stream_timeout came in 2.7), and
    its idle_timeout for keep-alive connections is 5 min by default.
    conf: a scenario's own Caddyfile instead (extra: its further keys; bench/run_compress.py)."""
    if conf is None:
        conf = CADDYFILE_TLS if tls is not None else CADDYFILE_PROD if prod else CADDYFILE
    return start_configured(wd, "caddy", "Caddyfile", conf,
                            ["caddy", "run", "--adapter", "caddyfile", "--config"],
                            upstream_port, env={"GOMAXPROCS": "1"},
                            extra=prod_extra(prod, "caddy") if prod else extra, tls=tls)


# Peers beyond HAProxy and nginx, started only when installed (the Debian packages).
OPTIONAL_PEERS = {"h2o": start_h2o, "caddy": start_caddy}
PEERS = ("haproxy", "nginx") + tuple(OPTIONAL_PEERS)


def start_proxies(wd, wanted, upstream_port, notes, websocket=False, tls=None,
                  streaming=False, prod=None, h2=False, tether_extra="", idle_conns=False):
    """The proxies named in wanted ("tether", "haproxy", "nginx"; "h2o" and "caddy" when
    installed, over TLS only with h2 or websocket), in that order, in front of
    upstream_port. tether is skipped, with a line in notes, when it does not run; so are
    h2o and Caddy when absent.
    With tls (a Tls), each terminates TLS on its listener with that certificate.
    streaming (event streams): nginx `proxy_buffering off`, HAProxy `option
    http-no-delay`; "haproxy-default" is HAProxy without it. prod (a Prod): each in
    front of its backends with affinity and a JSON access log (bench/http.sh --profile
    prod). h2 (with tls; bench/h2.sh): every proxy offers HTTP/2 by ALPN on its TLS
    listener (nginx `listen ... ssl http2`, HAProxy `alpn h2,http/1.1`, tether by default),
    and h2o and Caddy are started too, over TLS (H2O_TLS_CONF, CADDYFILE_TLS).
    websocket: nginx with the Upgrade/Connection map, h2o with proxy.websocket
    (H2O_WS_CONF), with or without tls (h2o and Caddy then over TLS as for h2,
    H2O_TLS_WS_CONF and CADDYFILE_TLS). idle_conns (bench/conns.sh): h2o keeps idle
    keep-alive connections 75 s (H2O_IDLE_CONF).
    tether_extra: more top-level YAML keys for tether (and tether-base)."""
    if h2 and tls is None:
        raise ValueError("h2 needs tls")
    proxies = []
    if "tether" in wanted:
        ok, info = tether_available()
        if ok:
            proxies.append(start_tether(wd, upstream_port, tls, prod=prod,
                                        extra_conf=tether_extra))
            notes.append("tether: %s" % info)
        else:
            notes.append("tether skipped: %s" % info)
    if "tether-base" in wanted:
        ok, info = tether_available(TETHER_BASE_BIN)
        if ok:
            proxies.append(start_tether(wd, upstream_port, tls, TETHER_BASE_BIN, "tether-base",
                                        extra_conf=tether_extra, prod=prod))
            notes.append("tether-base (%s): %s" % (TETHER_BASE_BIN, info))
        else:
            notes.append("tether-base skipped: %s" % info)
    if "haproxy" in wanted:
        proxies.append(start_haproxy(wd, upstream_port, tls, no_delay=streaming, prod=prod,
                                     h2=h2))
    if "haproxy-default" in wanted:
        proxies.append(start_haproxy(wd, upstream_port, tls, name="haproxy-default"))
    if "nginx" in wanted:
        proxies.append(start_nginx_proxy(wd, upstream_port, websocket, tls, streaming, prod,
                                         h2))
    for name, start in OPTIONAL_PEERS.items():
        if name not in wanted:
            continue
        if shutil.which(name) is None:
            notes.append("%s skipped: not installed (apt-get install %s)" % (name, name))
            continue
        proxies.append(start(wd, upstream_port, prod, tls=tls, websocket=websocket,
                             idle_conns=idle_conns))
    return proxies


def tls_summary(proxies, tls):
    """What each proxy negotiates with a default OpenSSL client: (short label for a heading,
    e.g. "TLS 1.3, ECDSA P-256", note lines)."""
    got = {}
    for p in proxies:
        try:
            got[p.name] = tls.probe(p.port)
        except (OSError, ssl.SSLError) as e:
            got[p.name] = ("?", str(e))
    versions_seen = sorted({v for v, _ in got.values()})
    label = "%s, %s" % ("/".join(v.replace("TLSv", "TLS ") for v in versions_seen),
                        tls.DESCRIPTION)
    notes = ["TLS terminated by each proxy with the same %s self-signed certificate (openssl "
             "req, made for this run); TLS 1.2 and 1.3 allowed; negotiated with a default "
             "OpenSSL client: %s" % (tls.DESCRIPTION, "; ".join(
                 "%s %s %s" % (n, v, c) for n, (v, c) in got.items())),
             "TLS set-up: nginx `listen ... ssl`, ssl_protocols TLSv1.2 TLSv1.3, "
             "ssl_session_cache shared:SSL:10m; HAProxy `bind ... ssl crt cert+key.pem "
             "ssl-min-ver TLSv1.2` (default session cache), X-Forwarded-Proto https; tether "
             "`listeners: [{address, tls: {certificates: [{cert, key}]}}]`; h2o `listen: ssl: "
             "{certificate-file, key-file}` and Caddy `tls cert key` (H2O_TLS_CONF, "
             "CADDYFILE_TLS); the upstream is plain HTTP for all"]
    return label, notes


# ---- formatting --------------------------------------------------------------------------

def leanest_peer(summary):
    """The peer (PEERS) in summary (name -> {"cpu_us"}) with the least CPU, or None."""
    peers = [n for n in summary if n in PEERS]
    return min(peers, key=lambda n: summary[n]["cpu_us"]) if peers else None


def peer_ratios(summary, rate_key, rate_what, cpu_what):
    """The two headline lines: tether's rate against the faster peer's and its CPU against
    the leaner peer's (summary: name -> {rate_key, "cpu_us"}); none without tether or a peer."""
    peers = [n for n in summary if n in PEERS]
    if "tether" not in summary or not peers:
        return []
    best = max(peers, key=lambda n: summary[n][rate_key])
    lean = leanest_peer(summary)
    return ["- tether / best peer %s (%s): **%.2f**" % (
                rate_what, best, summary["tether"][rate_key] / summary[best][rate_key]),
            "- tether / leanest peer CPU per %s (%s): **%.2f**" % (
                cpu_what, lean, summary["tether"]["cpu_us"] / summary[lean]["cpu_us"])]


def median(xs):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def table(headers, rows):
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    for r in rows:
        out.append("| " + " | ".join(str(c) for c in r) + " |")
    return "\n".join(out)


def versions():
    def first_line(argv):
        try:
            r = subprocess.run(argv, capture_output=True, timeout=5)
            return (r.stdout or r.stderr).decode().strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "?"
    return {"haproxy": first_line(["haproxy", "-v"]), "nginx": first_line(["nginx", "-v"]),
            "wrk": first_line(["wrk", "--version"]), "node": first_line(["node", "--version"]),
            "openssl": first_line(["openssl", "version"]),
            "h2o": first_line(["h2o", "--version"]), "caddy": first_line(["caddy", "version"]),
            "h2load": first_line(["h2load", "--version"])}


def report(kind, lines):
    """Prints a scenario's markdown and saves it under bench/results/."""
    out = "\n".join(lines)
    print(out)
    log("saved to %s" % save(kind, out))


def run(main):
    """Runs a scenario's main(), saying how long it took."""
    t0 = time.time()
    try:
        main()
    finally:
        log("took %.0fs" % (time.time() - t0))


def save(kind, text):
    d = os.path.join(HERE, "results")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "%s-%s.md" % (kind, time.strftime("%Y%m%d-%H%M%S")))
    with open(path, "w") as f:
        f.write(text + "\n")
    return path


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(text):
    m = re.match(r"^([\d.]+)(us|ms|s|m)$", text.strip())
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
