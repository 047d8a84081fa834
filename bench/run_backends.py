#!/usr/bin/python3
"""CPU per request of tether with 2 and with 500 backends, per balancing algorithm.

What it measures, in one run:
  - tether's CPU time per request (utime+stime of its process tree from /proc, over the
    measured run, divided by the requests wrk completed) with 2 backends and with 500,
    for round_robin, least_conn, p2c and consistent_hash, and the ratio 500 / 2 (the goal
    of issue 17: within 1.15x for every algorithm);
  - the same for nginx, HAProxy and Caddy with 500 backends (and with 2 with --peers-at-2),
    each with its documented equivalent of the algorithm:
        round_robin      nginx default (weighted round robin)  HAProxy balance roundrobin
        least_conn       nginx least_conn                      HAProxy balance leastconn
        p2c              nginx random two least_conn           HAProxy balance random(2)
        consistent_hash  nginx hash $remote_addr consistent    HAProxy balance source,
                                                               hash-type consistent,
                                                               hash-balance-factor 125
    (tether's consistent_hash without an affinity key hashes the client's address, with a
    load bound of 1.25 x the mean: HAProxy's hash-balance-factor 125 is the same bound);
    Caddy 2.6, reverse_proxy with the 500 upstreams in `to` and its `lb_policy`:
        round_robin      lb_policy round_robin
        least_conn       lb_policy least_conn (fewest current requests)
        p2c              lb_policy random_choose 2 (the less loaded of two taken at random)
        consistent_hash  lb_policy ip_hash (the client's address, as nginx's $remote_addr
                         and HAProxy's source; 2.6 has no client_ip_hash, which came in
                         2.7, and no load bound, so with one client address, as nginx,
                         every request goes to one backend; it hashes the key with each
                         upstream, rendezvous hashing, a pass over the list per pick)
    with GOMAXPROCS=1 (one thread running Go code), no admin endpoint, no automatic HTTPS,
    no access log (none without a `log` directive), active health checks `health_uri
    /health`, `health_interval 5s`, and its transport's default keep-alive (32 idle
    connections per upstream);
  - no h2o: h2o 2.2 (Debian's package) takes one URL in proxy.reverse.url (a sequence is
    refused: "argument cannot be a sequence"; several backends came with 2.3), so it has no
    balancing over backends to measure;
  - the CPU tether's active health checks cost with 500 backends and no traffic, as a
    percentage of one core over --idle seconds (goal: under 2 %).

Set-up, all on loopback: the backends are one nginx (1 worker) listening on port P of
500 addresses 127.0.1.1 ... 127.0.2.244 (a backend is an address: 500 distinct ones);
the 2-backend runs use the first two. Each proxy has one worker, upstream keep-alive,
access log off; tether, HAProxy and Caddy check /health every 5 s (nginx open source has
no active checks); nginx keeps max(64, 2 x backends) idle upstream connections (its
keepalive cache is shared by all servers of the upstream block, so 64 would miss with
500), tether 64 per backend (its default), HAProxy http-reuse safe, Caddy 32 per backend
(its default). wrk -t1 -c50 from 127.0.0.1: consistent_hash therefore sees one client
address (one key), which the load bound of tether and HAProxy spreads; the cost of a pick
is what is measured.

Every configuration is started just before its measured run (then warmed for 1 s) and
stopped after it, so that no idle proxy's health checks run during another's
measurement; a tether run starts only once every backend is up (GET /admin/backends).
The order of configurations rotates each round; medians of the rounds are reported.
Every wait is bounded; every run lasts --duration (at most 30 s).

With --two-serving, tether also runs with the 500 backends listed (and health-checked) but
only 2 of weight above 0: the same working set as with 2 backends (two upstreams' sockets,
connections and metrics warm in the caches), so what remains of the ratio is the pick's own
cost in the length of the list. With 500 serving, each request goes to another backend's
cold upstream connection; --peers-at-2 shows that nginx, HAProxy and Caddy pay for that too.

Usage: bench/backends.sh [--rounds 3] [--duration 5] [--connections 50] [--backends 500]
                         [--algos round_robin,least_conn,p2c,consistent_hash]
                         [--proxies tether,nginx,haproxy,caddy] [--peers-at-2]
                         [--two-serving] [--idle 20]
tether-base in --proxies (with $TETHER_BASE_BIN) measures an earlier build in the same run.
The markdown is printed and saved under bench/results/backends-*.md.
"""
import argparse
import json
import os
import shutil
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from run_http import run_wrk  # noqa: E402

ALGOS = ["round_robin", "least_conn", "p2c", "consistent_hash"]
NGINX_ALGO = {"round_robin": "", "least_conn": "least_conn;", "p2c": "random two least_conn;",
              "consistent_hash": "hash $remote_addr consistent;"}
HAPROXY_ALGO = {"round_robin": "balance roundrobin", "least_conn": "balance leastconn",
                "p2c": "balance random(2)",
                "consistent_hash":
                    "balance source\n  hash-type consistent\n  hash-balance-factor 125"}
CADDY_ALGO = {"round_robin": "round_robin", "least_conn": "least_conn",
              "p2c": "random_choose 2", "consistent_hash": "ip_hash"}
# As bench/benchlib.py CADDYFILE (no admin, no automatic HTTPS, no access log, its own log
# at ERROR), the upstreams in `to`, checked as tether and HAProxy are.
CADDYFILE = B.CADDY_GLOBAL + """http://%(host)s:%(port)d {
  reverse_proxy {
    to %(upstreams)s
    lb_policy %(policy)s
    health_uri /health
    health_interval 5s
  }
}
"""
NO_H2O = ("h2o is not in this scenario: h2o 2.2's proxy.reverse.url takes one URL (several "
          "backends came with 2.3), so it has no balancing over backends")


def address(i):
    """The i-th backend address: 127.0.1.1, ..., 127.0.1.254, 127.0.2.1, ..."""
    return "127.0.%d.%d" % (1 + i // 254, 1 + i % 254)


def free_port_on_all(n):
    """A port free on the first n backend addresses (checked by binding each, bounded)."""
    import socket
    for _ in range(20):
        port = B.free_port()
        ok = True
        for i in range(n):
            s = socket.socket()
            try:
                s.bind((address(i), port))
            except OSError:
                ok = False
            finally:
                s.close()
            if not ok:
                break
        if ok:
            return port
    raise SystemExit("no port free on all %d backend addresses" % n)


def start_backends(wd, n):
    """One nginx listening on port P of n loopback addresses; (proc, P)."""
    port = free_port_on_all(n)
    listens = "\n".join("    listen %s:%d;" % (address(i), port) for i in range(1, n))
    d = os.path.join(wd, "backends")
    os.makedirs(os.path.join(d, "logs"), exist_ok=True)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write(B.nginx_conf(d, """
  server {
    listen %(a0)s:%(port)d backlog=4096;
%(listens)s
    location = /health { default_type application/json; return 200 '{"status": true}\\n'; }
    location / { default_type text/plain; return 200 '%(body)s'; }
  }""" % {"a0": address(0), "port": port, "listens": listens,
          "body": B.UPSTREAM_BODY.replace("\n", "\\n")}))
    p = B.spawn(["nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "logs", "error.log")],
                "backends-nginx")
    B.wait_until(lambda: _get(address(n - 1), port, "/health") == 200, 15,
                 "the backends nginx on %d addresses" % n)
    return p, port


def _get(host, port, path, timeout=2):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open("http://%s:%d%s" % (host, port, path), timeout=timeout) as r:
        r.read()
        return r.status


# ---- one configuration: a proxy, an algorithm, a number of backends ----------------------

class Config:
    """proxy, algorithm, backends listed; serving: how many of them have a weight above 0
    (tether only; the others weight 0: listed and health-checked, never picked)."""
    def __init__(self, proxy, algo, n, serving=None):
        self.proxy, self.algo, self.n = proxy, algo, n
        self.serving = serving if serving is not None else n

    @property
    def key(self):
        return (self.proxy, self.algo, self.n, self.serving)

    @property
    def size(self):
        return "%d of %d" % (self.serving, self.n) if self.serving != self.n else str(self.n)

    def __str__(self):
        return "%s %s %s" % (self.proxy, self.algo, self.size)


def tether_yaml(algo, n, up_port, serving):
    lines = ["access_log: { enabled: false }", "balance: %s" % algo,
             "health: { path: /health, interval: 5s }",
             "limits: { max_connections: 20000 }", "timeouts: { downstream_idle: 75s }",
             "backends:"]
    lines += ["  - { url: \"http://%s:%d\", weight: %d }" % (address(i), up_port,
                                                             100 if i < serving else 0)
              for i in range(n)]
    return "\n".join(lines) + "\n"


def start_tether(wd, binary, name, algo, n, up_port, serving=None):
    serving = n if serving is None else serving
    conf = os.path.join(wd, "%s-%s-%d-%d.yaml" % (name, algo, n, serving))
    with open(conf, "w") as f:
        f.write(tether_yaml(algo, n, up_port, serving))
    logf = os.path.join(wd, "%s.log" % name)
    for _ in range(5):
        port, admin = B.free_port(), B.free_port()
        p = B.spawn([binary, "-c", conf, "-l", "%s:%d" % (B.HOST, port),
                     "--admin", "%s:%d" % (B.HOST, admin), "--log-level", "warn"], name,
                    stderr=open(logf, "a"))

        def all_up():
            if p.poll() is not None:
                raise SystemExit("%s exited with %s; see %s" % (name, p.returncode, logf))
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open("http://%s:%d/admin/backends" % (B.HOST, admin), timeout=2) as r:
                bs = json.loads(r.read())
            return len(bs) == n and all(b["state"] == "up" for b in bs)
        try:
            B.wait_until(all_up, 20, "%s: all %d backends up" % (name, n), interval=0.2)
            B.wait_http(port, p, "/", timeout=5)
            return p, port
        except (RuntimeError, SystemExit, OSError):
            B.stop(p)
    raise SystemExit("could not start %s; see %s" % (name, logf))


def start_nginx(wd, algo, n, up_port):
    keepalive = max(64, 2 * n)
    servers = "\n".join("    server %s:%d;" % (address(i), up_port) for i in range(n))
    body = lambda port: """
  upstream backend {
    %(algo)s
%(servers)s
    keepalive %(ka)d;
    keepalive_requests 1000000;
  }
  server {
    listen %(host)s:%(port)d backlog=4096;
    location = /health { return 200 'ok'; }
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }""" % {"algo": NGINX_ALGO[algo], "servers": servers, "ka": keepalive, "host": B.HOST,
         "port": port}
    p, port = B.start_nginx(wd, "nginx-%s-%d" % (algo, n), "nginx", "nginx as proxy", body)
    return p, port


def start_haproxy(wd, algo, n, up_port):
    conf = os.path.join(wd, "haproxy-%s-%d.cfg" % (algo, n))
    servers = "\n".join("  server s%d %s:%d check inter 5s" % (i + 1, address(i), up_port)
                        for i in range(n))

    def launch(port):
        with open(conf, "w") as f:
            f.write(B.haproxy_conf(port, up_port, backend="  %s\n  option httpchk GET /health\n%s"
                                   % (HAPROXY_ALGO[algo], servers)))
        return B.spawn(["haproxy", "-f", conf, "-db"], "haproxy",
                       stderr=open(os.path.join(wd, "haproxy.log"), "a")), "/"
    return B.start_on_free_port("haproxy; see %s/haproxy.log" % wd, launch)


def start_caddy(wd, algo, n, up_port):
    """Caddy (GOMAXPROCS=1) with CADDYFILE over the first n backends; (proc, port)."""
    upstreams = " ".join("%s:%d" % (address(i), up_port) for i in range(n))
    p = B.start_configured(wd, "caddy-%s-%d" % (algo, n), "Caddyfile", CADDYFILE,
                           ["caddy", "run", "--adapter", "caddyfile", "--config"], up_port,
                           env={"GOMAXPROCS": "1"},
                           extra={"upstreams": upstreams, "policy": CADDY_ALGO[algo]})
    return p.proc, p.port


def start(wd, cfg, up_port):
    if cfg.proxy == "tether":
        return start_tether(wd, B.TETHER_BIN, "tether", cfg.algo, cfg.n, up_port, cfg.serving)
    if cfg.proxy == "tether-base":
        return start_tether(wd, B.TETHER_BASE_BIN, "tether-base", cfg.algo, cfg.n, up_port,
                            cfg.serving)
    if cfg.proxy == "nginx":
        return start_nginx(wd, cfg.algo, cfg.n, up_port)
    if cfg.proxy == "caddy":
        return start_caddy(wd, cfg.algo, cfg.n, up_port)
    return start_haproxy(wd, cfg.algo, cfg.n, up_port)


def idle_health(wd, binary, name, n, up_port, seconds):
    """Percent of one core tether spends with n backends checked every 5 s, no traffic."""
    p, _ = start_tether(wd, binary, name, "least_conn", n, up_port)
    time.sleep(2)  # past the start-up burst (every backend checked at once)
    r = B.measured(p.pid, lambda: (time.sleep(seconds), {})[1])
    B.stop(p)
    return 100.0 * r["cpu"] / seconds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5, help="seconds per run (max 30)")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--backends", type=int, default=500, help="the large fleet (max 1000)")
    ap.add_argument("--algos", default=",".join(ALGOS))
    ap.add_argument("--proxies", default="tether,nginx,haproxy,caddy")
    ap.add_argument("--peers-at-2", action="store_true",
                    help="also measure nginx, HAProxy and Caddy with 2 backends")
    ap.add_argument("--two-serving", action="store_true",
                    help="also tether with the large fleet listed but only 2 of weight > 0: "
                         "the cost of the pick itself, without the larger working set")
    ap.add_argument("--idle", type=int, default=20,
                    help="seconds of idle health-check measurement (0: skip; max 60)")
    args = ap.parse_args()
    args.duration = max(1, min(args.duration, 30))
    args.rounds = max(1, min(args.rounds, 10))
    args.backends = max(3, min(args.backends, 1000))
    args.idle = max(0, min(args.idle, 60))
    args.threads = 1
    algos = [a for a in args.algos.split(",") if a]
    for a in algos:
        if a not in ALGOS:
            raise SystemExit("unknown algorithm %s (one of %s)" % (a, ", ".join(ALGOS)))
    wanted = [p for p in args.proxies.split(",") if p]
    notes = [NO_H2O]
    for p in list(wanted):
        if p == "h2o":
            wanted.remove(p)
            B.log(NO_H2O)
        elif p == "caddy" and not shutil.which("caddy"):
            wanted.remove(p)
            notes.append("caddy skipped: not installed (apt-get install caddy)")
        elif p not in ("tether", "tether-base", "nginx", "haproxy", "caddy"):
            raise SystemExit("unknown proxy %s" % p)
    for t, binary in (("tether", B.TETHER_BIN), ("tether-base", B.TETHER_BASE_BIN)):
        if t in wanted:
            ok, info = B.tether_available(binary)
            notes.append("%s: %s" % (t, info) if ok else "%s skipped: %s" % (t, info))
            if not ok:
                wanted.remove(t)
            elif t == "tether-base":
                notes[-1] = "tether-base (%s): %s" % (binary, info)
    big = args.backends
    configs = []
    for proxy in wanted:
        sizes = [2, big] if proxy.startswith("tether") or args.peers_at_2 else [big]
        for algo in algos:
            for n in sizes:
                configs.append(Config(proxy, algo, n))
            if args.two_serving and proxy.startswith("tether"):
                configs.append(Config(proxy, algo, big, 2))
    if not configs:
        raise SystemExit("nothing to measure")

    wd = B.workdir()
    _, up_port = start_backends(wd, big)
    results = {c.key: [] for c in configs}
    for rnd in range(args.rounds):
        k = (rnd * 3) % len(configs)  # rotate, so no configuration always runs first
        for cfg in configs[k:] + configs[:k]:
            p, port = start(wd, cfg, up_port)
            try:
                run_wrk(port, args, 1)  # warm-up: connections, caches, page faults
                r = B.measured(p.pid, lambda: run_wrk(port, args, args.duration))
            finally:
                B.stop(p)
            us = 1e6 * r["cpu"] / r["requests"] if r["requests"] else float("nan")
            r["us"] = us
            results[cfg.key].append(r)
            B.log("round %d %-32s %8.0f req/s  %6.2f µs/req%s" % (
                rnd + 1, cfg, r["rps"], us,
                ("  non-2xx %d" % r["non2xx"]) if r["non2xx"] else ""))

    idle = {}
    if args.idle:
        for t, binary in (("tether", B.TETHER_BIN), ("tether-base", B.TETHER_BASE_BIN)):
            if t in wanted:
                idle[t] = idle_health(wd, binary, t, big, up_port, args.idle)
                B.log("%s idle with %d backends: %.2f %% of a core" % (t, big, idle[t]))

    def med(key, field="us"):
        rs = results.get(key)
        return B.median([r[field] for r in rs]) if rs else None

    def fmt(x, spec="%.2f"):
        return spec % x if x is not None else "-"

    headers = ["algorithm"]
    tethers = [t for t in ("tether", "tether-base") if t in wanted]
    for t in tethers:
        headers += ["%s µs/req, 2" % t, "%s µs/req, %d" % (t, big), "%s %d / 2" % (t, big)]
        if args.two_serving:
            headers += ["%s µs/req, 2 of %d" % (t, big), "%s 2 of %d / 2" % (t, big)]
    peers = [p for p in ("nginx", "haproxy", "caddy") if p in wanted]
    for p in peers:
        if args.peers_at_2:
            headers.append("%s µs/req, 2" % p)
        headers.append("%s µs/req, %d" % (p, big))
    rows = []
    for algo in algos:
        row = [algo]
        for t in tethers:
            a, b = med((t, algo, 2, 2)), med((t, algo, big, big))
            row += [fmt(a), fmt(b), "**%.2f**" % (b / a) if a and b else "-"]
            if args.two_serving:
                c = med((t, algo, big, 2))
                row += [fmt(c), "%.2f" % (c / a) if a and c else "-"]
        for p in peers:
            if args.peers_at_2:
                row.append(fmt(med((p, algo, 2, 2))))
            row.append(fmt(med((p, algo, big, big))))
        rows.append(row)
    rps_rows = []
    for algo in algos:
        rps_rows.append([algo] + ["%.0f" % med(c.key, "rps") for c in configs if c.algo == algo])
    rps_headers = ["algorithm"] + ["%s %s" % (c.proxy, c.size) for c in configs
                                   if c.algo == algos[0]]

    v = B.versions()
    errors = sum(r["non2xx"] for rs in results.values() for r in rs)
    text = ["## CPU per request in the number of backends: wrk -t1 -c%d -d%ds, %d interleaved "
            "rounds (medians)" % (args.connections, args.duration, args.rounds), "",
            B.table(headers, rows), ""]
    for t in tethers:
        if t in idle:
            text.append("- %s idle with %d backends checked every 5 s: **%.2f %%** of a core "
                        "(over %d s)" % (t, big, idle[t], args.idle))
    text += ["- CPU: utime+stime of the proxy's process tree (/proc/<pid>/stat, %d Hz ticks) "
             "over the measured run / requests completed; one worker each; access logs off; "
             "upstream keep-alive on; %d cores shared by wrk, the proxy and the backends"
             % (B.CLK_TCK, os.cpu_count()),
             "- backends: one nginx, 1 worker, on %d loopback addresses; tether, HAProxy and "
             "Caddy health-check /health every 5 s (part of the measured CPU); nginx keepalive "
             "max(64, 2 x backends); Caddy GOMAXPROCS=1, lb_policy round_robin, least_conn, "
             "random_choose 2 (p2c), ip_hash (consistent_hash; no load bound)" % big,
             "- non-2xx answers over all runs: %d" % errors,
             "- versions: %s; %s; caddy %s; %s" % (v["haproxy"], v["nginx"], v["caddy"],
                                                   v["wrk"])]
    text += ["- " + n for n in notes]
    text += ["", "requests/s (medians):", "", B.table(rps_headers, rps_rows)]
    B.report("backends", text)


if __name__ == "__main__":
    B.run(main)
