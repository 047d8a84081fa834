#!/usr/bin/python3
"""WebSocket scenarios: tether vs HAProxy, nginx, h2o and Caddy (one worker each), one echo upstream.

1. Echo load: bench/ws_load.js opens C WebSockets through the proxy to a node `ws` echo
   upstream (bench/ws_echo_server.js); each sends a 64-byte message and waits for the echo,
   then the next, for D seconds. Reported: round trips/s, p50/p99 round-trip latency, and
   CPU time per round trip of the proxy (utime+stime of its process tree, /proc/<pid>/stat;
   a round trip is one message each way through the proxy). Rounds are interleaved.
2. Idle memory: bench/ws_idle.js opens N (default 4000) WebSockets through the proxy, each
   exchanging one message then idling; reported: (VmRSS after - VmRSS before) / N in KiB,
   summed over the proxy's processes (/proc/<pid>/status). The client needs N fds and the
   proxy 2N: bench/ws.sh raises `ulimit -n` to the hard limit.

Set-up, all on loopback, each as its documentation shows for proxying WebSockets: tether
(-b the echo upstream, access log off, health checks on /health, timeouts.tunnel_idle 1h),
HAProxy 2.6 (mode http, timeout tunnel 1h, nbthread 1, no log), nginx (proxy_http_version
1.1, the Upgrade/Connection map of its WebSocket proxying page, proxy_read_timeout and
proxy_send_timeout 1h, worker_processes 1, access_log off), h2o 2.2 (num-threads 1,
proxy.reverse.url, `proxy.websocket: ON` as its proxy directives document, WebSocket being
off by default in 2.2, and `proxy.websocket.timeout: 3600000`, 1 h in ms; no access log) and
Caddy 2.6 (GOMAXPROCS=1, reverse_proxy, which proxies WebSockets by itself, with no timeout
on an upgraded connection in 2.6; no admin endpoint, no automatic HTTPS, no access log),
h2o and Caddy when installed (the Debian packages; bench/benchlib.py H2O_WS_CONF, CADDYFILE).

With --tls, each proxy terminates TLS on its listener and the clients connect with wss://
(the echo upstream stays plain ws://): the same ECDSA P-256 self-signed certificate for all,
made with the openssl CLI in the run's temporary directory, TLS 1.2 and 1.3 allowed (node
negotiates 1.3); set-up as for bench/http.sh --tls. The clients verify the proxy's
certificate against it ($BENCH_CA). Idle memory then includes each proxy's TLS state per
connection. h2o and Caddy terminate TLS as for bench/h2.sh (benchlib H2O_TLS_WS_CONF: a
`listen:` with `ssl: {certificate-file, key-file, minimum-version: TLSv1.2}` and
proxy.websocket as above; CADDYFILE_TLS: an https:// site with `tls <cert> <key>`); the node
clients offer no ALPN, so both speak HTTP/1.1 and its Upgrade. Saved as ws-tls-*.md.

Usage: bench/ws.sh [--rounds 3] [--duration 10] [--connections 50] [--idle 4000]
                   [--proxies tether,haproxy,nginx,h2o,caddy] [--skip-load] [--skip-idle]
                   [--tls]
tether is skipped, with a note, when $TETHER_BIN (default build/proxy/tether) does not run.
The markdown is printed and saved under bench/results/.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

NODE = "node"


def ws_url(port, tls=None):
    return "%s://%s:%d/" % ("wss" if tls else "ws", B.HOST, port)


def client_env(tls):
    """The node clients' environment: with TLS, BENCH_CA names the certificate to trust."""
    env = dict(os.environ)
    if tls:
        env["BENCH_CA"] = tls.cert
    return env


def run_load(port, connections, duration, tls=None):
    r = subprocess.run([NODE, os.path.join(B.HERE, "ws_load.js"), ws_url(port, tls),
                        str(connections), str(duration), "64"],
                       capture_output=True, timeout=duration + 60, env=client_env(tls))
    if r.returncode != 0:
        raise SystemExit("ws_load failed: %s %s" % (r.stdout.decode(), r.stderr.decode()))
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


def node_openssl():
    try:
        r = subprocess.run([NODE, "-p", "process.versions.openssl"], capture_output=True,
                           timeout=10)
        return r.stdout.decode().strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def settle_rss(pid, timeout=5.0):
    """RSS once two readings 0.25 s apart differ by less than 1% (or after timeout)."""
    deadline = time.monotonic() + timeout
    last = B.rss_kib(pid)
    while time.monotonic() < deadline:
        time.sleep(0.25)
        cur = B.rss_kib(pid)
        if abs(cur - last) <= 0.01 * max(last, 1):
            return cur
        last = cur
    return last


def run_idle(proxy, n, tls=None):
    before = settle_rss(proxy.pid)
    client = subprocess.Popen([NODE, os.path.join(B.HERE, "ws_idle.js"),
                               ws_url(proxy.port, tls), str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, start_new_session=True,
                              env=client_env(tls))
    try:
        line = client.stdout.readline().decode().split()  # ws_idle reports within 60 s
        if len(line) != 3 or line[0] != "OPEN":
            raise SystemExit("ws_idle failed: %r" % line)
        opened, errors = int(line[1]), int(line[2])
        # tether's pools keep the spares of a burst (the 200 parallel opens) for two
        # seconds in case it comes back: what idle WebSockets hold is measured after.
        time.sleep(B.POOL_DECAY_S)
        after = settle_rss(proxy.pid)
    finally:
        client.stdin.close()
        try:
            client.wait(15)
        except subprocess.TimeoutExpired:
            client.kill()
            client.wait(5)
    return {"before": before, "after": after, "opened": opened, "errors": errors,
            "per_conn": (after - before) / opened if opened else float("nan")}


def main():
    ap = B.scenario_args(__doc__, proxies="tether,haproxy,nginx,h2o,caddy")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--idle", type=int, default=4000)
    ap.add_argument("--skip-load", action="store_true")
    ap.add_argument("--skip-idle", action="store_true")
    ap.add_argument("--tls", action="store_true",
                    help="each proxy terminates TLS (wss:// to the proxy, plain ws:// upstream)")
    args = B.parse_scenario(ap)
    args.idle = max(1, min(args.idle, 8000))
    notes = []

    wd = B.workdir()
    tls = B.make_cert(wd) if args.tls else None
    _, echo_port = B.start_node_upstream(wd, "ws_echo_server.js", "ws-echo")
    proxies = B.start_proxies(wd, args.wanted, echo_port, notes, websocket=True, tls=tls)
    if not proxies:
        raise SystemExit("nothing to measure")
    tls_label, tls_notes = B.tls_summary(proxies, tls) if tls else ("", [])

    text = []
    summary = {}
    if not args.skip_load:
        for p in proxies:
            run_load(p.port, args.connections, 1, tls)  # warm-up
        results = {p.name: [] for p in proxies}
        for rnd in range(args.rounds):
            order = proxies[rnd % len(proxies):] + proxies[:rnd % len(proxies)]
            for p in order:
                r = B.measured(p.pid, lambda: run_load(p.port, args.connections, args.duration,
                                                       tls))
                results[p.name].append(r)
                B.log("round %d %-8s %8.0f round trips/s  p50 %.3f ms  p99 %.3f ms  cpu %.2fs"
                      "  errors %d" % (rnd + 1, p.name, r["rate"], r["p50_ms"] or 0,
                                       r["p99_ms"] or 0, r["cpu"], r["errors"]))
        rows = []
        for p in proxies:
            rs = results[p.name]
            msgs = sum(r["messages"] for r in rs)
            per_msg = (lambda key: 1e6 * sum(r[key] for r in rs) / msgs if msgs else float("nan"))
            s = {"rate": B.median([r["rate"] for r in rs]),
                 "p50": B.median([r["p50_ms"] or 0 for r in rs]),
                 "p99": B.median([r["p99_ms"] or 0 for r in rs]),
                 "cpu_us": per_msg("cpu"),
                 "errors": sum(r["errors"] for r in rs)}
            summary[p.name] = s
            rows.append([p.name, "%.0f" % s["rate"], "%.3f" % s["p50"], "%.3f" % s["p99"],
                         "%.1f" % s["cpu_us"], "%.1f" % per_msg("user"), "%.1f" % per_msg("sys"),
                         s["errors"]])
        title = "WebSocket echo over TLS (wss, %s)" % tls_label if tls else "WebSocket echo"
        text += ["## %s: %d connections, 64-byte messages, %d s x %d interleaved "
                 "rounds (medians)" % (title, args.connections, args.duration, args.rounds), "",
                 B.table(["proxy", "round trips/s", "p50 ms", "p99 ms", "CPU µs/round trip",
                          "of which user", "of which kernel", "errors"], rows), ""]
        text += B.peer_ratios(summary, "rate", "round trips/s", "round trip")
        text.append("")

    if not args.skip_idle:
        rows, idle = [], {}
        for p in proxies:
            r = run_idle(p, args.idle, tls)
            idle[p.name] = r
            B.log("idle %-8s opened %d errors %d  RSS %d -> %d KiB  %.1f KiB/conn" % (
                p.name, r["opened"], r["errors"], r["before"], r["after"], r["per_conn"]))
            rows.append([p.name, r["opened"], r["errors"], r["before"], r["after"],
                         "%.1f" % r["per_conn"]])
        title = "Idle TLS WebSockets (wss, %s)" % tls_label if tls else "Idle WebSockets"
        text += ["## %s: %d through each proxy" % (title, args.idle), "",
                 B.table(["proxy", "opened", "errors", "RSS before KiB", "RSS after KiB",
                          "KiB per WebSocket"], rows), ""]
        peers = [n for n in idle if n in B.PEERS]
        if "tether" in idle and peers:
            lean = min(peers, key=lambda n: idle[n]["per_conn"])
            text.append("- tether / leanest peer KiB per idle %sWebSocket (%s): **%.2f**" % (
                "TLS " if tls else "", lean, idle["tether"]["per_conn"] / idle[lean]["per_conn"]))
        text.append("")

    v = B.versions()
    text += ["- one worker each; echo upstream: node %s + ws; loopback; %d cores shared by the "
             "client, proxy and upstream; access logs off" % (v["node"], os.cpu_count()),
             "- CPU: utime+stime of the proxy's process tree (/proc/<pid>/stat, %d Hz ticks); "
             "RSS: VmRSS summed over the proxy's processes" % B.CLK_TCK,
             "- versions: %s; %s; %s; caddy %s" % (v["haproxy"], v["nginx"], v["h2o"],
                                                  v["caddy"])]
    if tls:
        text += ["- " + n for n in tls_notes]
        names = [p.name for p in proxies]
        if "h2o" in names:
            text.append("- h2o TLS: `listen: {ssl: {certificate-file, key-file, "
                        "minimum-version: TLSv1.2}}` (its base directives), proxy.websocket ON, "
                        "proxy.websocket.timeout 3600000")
        if "caddy" in names:
            text.append("- Caddy TLS: a site `https://127.0.0.1:<port>` with `tls <cert> <key>` "
                        "(its tls directive), `servers { protocols h1 h2 }`, reverse_proxy")
        text.append("- %s; node's TLS client (OpenSSL %s) verifies the proxy's certificate"
                    % (v["openssl"], node_openssl()))
    text += ["- " + n for n in notes]
    B.report("ws-tls" if tls else "ws", text)


if __name__ == "__main__":
    B.run(main)
