#!/usr/bin/python3
"""HTTP/1.1 keep-alive throughput of tether, HAProxy and nginx in front of one upstream.

What it measures: requests/s, p50 and p99 latency (wrk --latency), and CPU time per
request of each proxy (utime+stime of its whole process tree, from /proc/<pid>/stat,
over the measured run, divided by the requests wrk completed).

Set-up, all on loopback: one upstream (a separate nginx, 1 worker, 200 with a ~100-byte
body, /health too); each proxy with one worker (tether --workers 1, HAProxy nbthread 1,
nginx worker_processes 1), configured as its own documentation recommends for reverse
proxying with upstream keep-alive on; access logging OFF for all three; active health
checks on /health every 5s for tether and HAProxy (nginx open source has none). Runs are
interleaved (the order rotates each round) and the median of the rounds is reported.

With --tls, each proxy terminates TLS on its listener (HTTPS keep-alive; the upstream stays
plain HTTP): the same ECDSA P-256 self-signed certificate for all, made with the openssl CLI
in the run's temporary directory; TLS 1.2 and 1.3 allowed (a default OpenSSL client, wrk
too, negotiates 1.3); nginx `listen ... ssl` with ssl_session_cache shared:SSL:10m, HAProxy
`bind ... ssl crt` with ssl-min-ver TLSv1.2, tether a `listeners:` entry with `tls:` in its
config file. wrk does not verify the certificate; the readiness check does. wrk keeps its
connections, so the run is mostly record encryption, not handshakes (one per connection).
--baseline stays plain HTTP to the upstream. Saved as http-tls-*.md.

Usage: bench/http.sh [--rounds 3] [--duration 10] [--connections 50] [--threads 1]
                     [--proxies tether,haproxy,nginx] [--baseline] [--tls]
tether is skipped, with a note, when $TETHER_BIN (default build/proxy/tether) does not run.
The markdown is printed and saved under bench/results/.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def run_wrk(port, args, duration, scheme="http"):
    argv = ["wrk", "-t%d" % args.threads, "-c%d" % args.connections, "-d%ds" % duration,
            "--latency", "--timeout", "5s", "%s://%s:%d/" % (scheme, B.HOST, port)]
    r = subprocess.run(argv, capture_output=True, timeout=duration + 30)
    out = r.stdout.decode()
    if r.returncode != 0:
        raise SystemExit("wrk failed: %s %s" % (out, r.stderr.decode()))
    res = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "99"):
        m = re.search(r"^\s+%s(?:\.000)?%%\s+(\S+)" % pct, out, re.M)
        res["p" + pct] = B.to_ms(m.group(1)) if m else float("nan")
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    res["errors"] = m.group(1).strip() if m else ""
    return res


def main():
    ap = B.scenario_args(__doc__)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--baseline", action="store_true", help="also load the upstream directly")
    ap.add_argument("--tls", action="store_true",
                    help="each proxy terminates TLS (HTTPS to the proxy, plain HTTP upstream)")
    args = B.parse_scenario(ap)
    notes = []

    wd = B.workdir()
    tls = B.make_cert(wd) if args.tls else None
    up_proc, up_port = B.start_nginx_upstream(wd)
    proxies = B.start_proxies(wd, args.wanted, up_port, notes, tls=tls)
    tls_label, tls_notes = B.tls_summary(proxies, tls) if tls and proxies else ("", [])
    if args.baseline:
        proxies.append(B.Proxy("direct (no proxy)", up_proc, up_port))
        if tls:
            notes.append("direct (no proxy): plain HTTP to the upstream, no TLS")
    if not proxies:
        raise SystemExit("nothing to measure")
    # the baseline (the upstream itself) is always plain HTTP
    scheme = {p.name: "https" if tls and p.proc is not up_proc else "http" for p in proxies}

    for p in proxies:  # warm-up: connections, caches, page faults
        run_wrk(p.port, args, 1, scheme[p.name])

    results = {p.name: [] for p in proxies}
    for rnd in range(args.rounds):
        order = proxies[rnd % len(proxies):] + proxies[:rnd % len(proxies)]
        for p in order:
            r = B.measured(p.pid, lambda: run_wrk(p.port, args, args.duration, scheme[p.name]))
            results[p.name].append(r)
            B.log("round %d %-8s %9.0f req/s  p50 %.3f ms  p99 %.3f ms  cpu %.2fs%s" % (
                rnd + 1, p.name, r["rps"], r["p50"], r["p99"], r["cpu"],
                ("  non-2xx %d" % r["non2xx"]) if r["non2xx"] else ""))

    rows, summary = [], {}
    for p in proxies:
        rs = results[p.name]
        reqs = sum(r["requests"] for r in rs)
        per_req = (lambda key: 1e6 * sum(r[key] for r in rs) / reqs if reqs else float("nan"))
        cpu_us = per_req("cpu")
        s = {"rps": B.median([r["rps"] for r in rs]), "p50": B.median([r["p50"] for r in rs]),
             "p99": B.median([r["p99"] for r in rs]), "cpu_us": cpu_us,
             "non2xx": sum(r["non2xx"] for r in rs),
             "errors": "; ".join(r["errors"] for r in rs if r["errors"])}
        summary[p.name] = s
        rows.append([p.name, "%.0f" % s["rps"], "%.3f" % s["p50"], "%.3f" % s["p99"],
                     "%.1f" % cpu_us, "%.1f" % per_req("user"), "%.1f" % per_req("sys"),
                     s["non2xx"], s["errors"] or "0"])

    v = B.versions()
    title = "HTTPS keep-alive (%s)" % tls_label if tls else "HTTP keep-alive"
    text = ["## %s: wrk -t%d -c%d -d%ds, %d interleaved rounds (medians)" % (
        title, args.threads, args.connections, args.duration, args.rounds), "",
        B.table(["proxy", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "of which user", "of which kernel",
                 "non-2xx", "socket errors"],
                rows), ""]
    text += B.peer_ratios(summary, "rps", "req/s", "request")
    text += ["- one worker each; upstream: nginx, 1 worker, %d-byte body; access logs off; "
             "upstream keep-alive on; loopback; %d cores shared by wrk, proxy and upstream"
             % (len(B.UPSTREAM_BODY), os.cpu_count()),
             "- CPU: utime+stime of the proxy's process tree (/proc/<pid>/stat, %d Hz ticks) "
             "over the measured runs / requests; user is the proxy's own code, kernel is the "
             "system calls and TCP work done on its behalf" % B.CLK_TCK,
             "- versions: %s; %s; %s" % (v["haproxy"], v["nginx"], v["wrk"])]
    if tls:
        text += ["- " + n for n in tls_notes]
        text.append("- %s" % v["openssl"])
    text += ["- " + n for n in notes]
    B.report("http-tls" if tls else "http", text)


if __name__ == "__main__":
    B.run(main)
