#!/usr/bin/python3
"""CPU per request with many concurrent clients against the same proxy with few.

What it measures: for each proxy, wrk with --few (50) and with --many (5,000) keep-alive
connections, CPU time per request of the proxy's process tree (utime+stime from
/proc/<pid>/stat over the run, divided by the requests wrk completed), requests/s and
latency, and the ratio many/few of CPU per request. A proxy whose cost per request grows
with the number of clients (an upstream pool that churns, memory that is freed and faulted
in again, scans over all connections) shows a ratio well above 1.

Set-up: as bench/http.sh (one upstream nginx, 1 worker; each proxy one worker with
upstream keep-alive as its documentation recommends; access logs off; the same upstream
for all). Every run is preceded by a pause of 3 s so that the connections of the run before
are closed or swept (tether and HAProxy keep a burst's idle upstream connections for a
few seconds). Runs are interleaved: each round runs every (proxy, concurrency) pair in a
rotating order; medians of the rounds. The descriptor limit here is 20,000 per process:
--many is at most 9,000 (each proxy holds a client and an upstream socket per request).

Usage: bench/clients.sh [--rounds 3] [--duration 8] [--few 50] [--many 5000]
                        [--proxies tether,haproxy,nginx,h2o,caddy]
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402
from run_http import run_wrk  # noqa: E402


class Load:
    def __init__(self, connections):
        self.connections, self.threads = connections, 1


def main():
    ap = B.scenario_args(__doc__, proxies="tether,haproxy,nginx,h2o,caddy")
    ap.add_argument("--few", type=int, default=50)
    ap.add_argument("--many", type=int, default=5000)
    args = B.parse_scenario(ap)
    args.duration = min(args.duration, 30)
    args.many = max(args.few, min(args.many, 9000))
    notes = []

    wd = B.workdir()
    up_proc, up_port = B.start_nginx_upstream(wd)
    proxies = B.start_proxies(wd, args.wanted, up_port, notes)
    if not proxies:
        raise SystemExit("nothing to measure")
    loads = [Load(args.few), Load(args.many)]
    pairs = [(p, l) for p in proxies for l in loads]
    for p, l in pairs:  # warm-up: connections, caches, page faults
        run_wrk(p.port, l, 1)

    results = {(p.name, l.connections): [] for p, l in pairs}
    for rnd in range(args.rounds):
        k = (rnd * len(loads)) % len(pairs)
        for p, l in pairs[k:] + pairs[:k]:
            time.sleep(3)
            r = B.measured(p.pid, lambda: run_wrk(p.port, l, args.duration))
            results[(p.name, l.connections)].append(r)
            B.log("round %d %-8s -c%-5d %9.0f req/s  p99 %.3f ms  cpu %.2fs%s" % (
                rnd + 1, p.name, l.connections, r["rps"], r["p99"], r["cpu"],
                ("  errors %s" % r["errors"]) if r["errors"] else ""))

    def cpu_us(name, c):
        rs = results[(name, c)]
        reqs = sum(r["requests"] for r in rs)
        return 1e6 * sum(r["cpu"] for r in rs) / reqs if reqs else float("nan")

    rows, ratio = [], {}
    for p in proxies:
        few, many = cpu_us(p.name, args.few), cpu_us(p.name, args.many)
        ratio[p.name] = many / few
        rf, rm = results[(p.name, args.few)], results[(p.name, args.many)]
        rows.append([p.name, "%.1f" % few, "%.1f" % many, "**%.2f**" % ratio[p.name],
                     "%.0f" % B.median([r["rps"] for r in rf]),
                     "%.0f" % B.median([r["rps"] for r in rm]),
                     "%.1f" % B.median([r["p99"] for r in rm]),
                     "; ".join(r["errors"] for r in rf + rm if r["errors"]) or "0"])

    v = B.versions()
    text = ["## Many clients: wrk -t1 -c%d and -c%d -d%ds, %d interleaved rounds" % (
        args.few, args.many, args.duration, args.rounds), "",
        B.table(["proxy", "CPU µs/req at %d" % args.few, "CPU µs/req at %d" % args.many,
                 "ratio", "req/s at %d" % args.few, "req/s at %d" % args.many,
                 "p99 ms at %d" % args.many, "socket errors"], rows), ""]
    if "tether" in ratio:
        peers = [n for n in ratio if n in B.PEERS]
        if peers:
            best = min(peers, key=lambda n: ratio[n])
            text.append("- tether's growth %.2fx; the flattest peer's (%s) %.2fx" % (
                ratio["tether"], best, ratio[best]))
    text += ["- one worker each; upstream: nginx, 1 worker, %d-byte body; access logs off; "
             "upstream keep-alive on; loopback; %d cores shared by wrk, proxy and upstream"
             % (len(B.UPSTREAM_BODY), os.cpu_count()),
             "- CPU: utime+stime of the proxy's process tree over the measured runs / requests",
             "- versions: %s; %s; %s; %s; %s" % (v["haproxy"], v["nginx"], v["h2o"], v["caddy"],
                                                 v["wrk"])]
    text += ["- " + n for n in notes]
    B.report("clients", text)


if __name__ == "__main__":
    B.run(main)
