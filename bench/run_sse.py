#!/usr/bin/python3
"""Event-stream fan-out: tether vs HAProxy, nginx, h2o and Caddy (one worker each), one upstream.

The upstream (bench/sse_server.js, node, one event loop) answers every GET with a
text/event-stream that never ends and writes a 200-byte event on each stream every
100 ms, each carrying its send time (process.hrtime, CLOCK_MONOTONIC). The client
(bench/sse_load.js, node, raw sockets) opens N streams (default 2000) through a proxy,
waits for every stream's first event and one second more, then for D seconds takes every
event sent in the window: latency = receive time - send time, same clock; lost events
(gaps in a stream's sequence numbers); coalesced events (one that came in the same read
as an earlier event of its stream: held back and sent together); stalled streams (none
in the last 0.5 s). The same client also reads the upstream directly ("direct", no
proxy): added latency = proxied - direct, percentile by percentile, each round against
the direct run of the same round, median over the rounds.

CPU per event = utime+stime of the proxy's process tree (/proc/<pid>/stat) between the
client's START and END, divided by the events delivered in the window. The upstream's
and the client's CPU are measured over the same window (they must not be the limit).
Rounds are interleaved (the order rotates each round); medians are reported.

Set-up, all on loopback, access logs off for all: tether (-b the upstream, health checks
on /health), HAProxy 2.6 (nbthread 1, `option http-no-delay`; "haproxy-default" is the
same without it), nginx (worker_processes 1, `proxy_buffering off`, upstream keepalive),
h2o (num-threads 1, proxy.reverse.url) and Caddy (GOMAXPROCS=1, reverse_proxy with
flush_interval -1) when installed.

Usage: bench/sse.sh [--rounds 3] [--duration 10] [--streams 2000]
                    [--proxies tether,haproxy,nginx,h2o,caddy[,haproxy-default]]
The client needs N fds, the proxy 2N, the upstream N: at most 9000 streams.
The markdown is printed and saved under bench/results/ (sse-*.md).
"""
import json
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

NODE = "node"
DIRECT = "direct (no proxy)"
PCTS = ("p50_ms", "p99_ms", "p999_ms", "max_ms")


def read_line(proc, deadline):
    """The client's next stdout line, or SystemExit once deadline (monotonic) passes."""
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([proc.stdout], [], [], left)[0]:
            raise SystemExit("sse_load timed out")
        c = os.read(proc.stdout.fileno(), 1)
        if not c:
            proc.wait(5)
            raise SystemExit("sse_load exited %s: %s" % (proc.returncode,
                                                         proc.stderr.read().decode()))
        buf += c
    return buf.decode().strip()


def run_client(proxy, upstream, args):
    """One measured run through proxy: the client's result plus "cpu", "user", "sys" of
    the proxy and "up_cpu", "client_cpu" over the window (seconds)."""
    url = "http://%s:%d/events" % (B.HOST, proxy.port)
    c = subprocess.Popen([NODE, os.path.join(B.HERE, "sse_load.js"), url, str(args.streams),
                          str(args.duration), "1"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    deadline = time.monotonic() + 30 + 1 + args.duration + 20
    try:
        if read_line(c, deadline) != "START":
            raise SystemExit("sse_load: expected START")
        p0, u0, c0 = B.cpu_split(proxy.pid), B.cpu_split(upstream.pid), B.cpu_split(c.pid)
        if read_line(c, deadline) != "END":
            raise SystemExit("sse_load: expected END")
        p1, u1, c1 = B.cpu_split(proxy.pid), B.cpu_split(upstream.pid), B.cpu_split(c.pid)
        r = json.loads(read_line(c, deadline))
        c.wait(10)
    finally:
        if c.poll() is None:
            c.kill()
            c.wait(5)
    r["user"], r["sys"] = p1[0] - p0[0], p1[1] - p0[1]
    r["cpu"] = r["user"] + r["sys"]
    r["up_cpu"] = sum(u1) - sum(u0)
    r["client_cpu"] = sum(c1) - sum(c0)
    return r


def main():
    ap = B.scenario_args(__doc__, "tether,haproxy,nginx,h2o,caddy")
    ap.add_argument("--streams", type=int, default=2000, help="at most 9000")
    args = B.parse_scenario(ap)
    args.streams = max(1, min(args.streams, 9000))
    notes = []

    wd = B.workdir()
    up_proc, up_port = B.start_node_upstream(wd, "sse_server.js", "sse-upstream")
    upstream = B.Proxy("upstream", up_proc, up_port)
    proxies = B.start_proxies(wd, args.wanted, up_port, notes, streaming=True)
    if not proxies:
        raise SystemExit("nothing to measure")
    runs = proxies + [B.Proxy(DIRECT, up_proc, up_port)]

    results = {p.name: [] for p in runs}
    for rnd in range(args.rounds):
        order = runs[rnd % len(runs):] + runs[:rnd % len(runs)]
        for p in order:
            r = run_client(p, upstream, args)
            results[p.name].append(r)
            B.log("round %d %-18s %7.0f events/s  p50 %.2f p99 %.2f max %.1f ms  cpu %.2fs "
                  "(upstream %.2fs, client %.2fs)  lost %d coalesced %d stalled %d errors %d" % (
                      rnd + 1, p.name, r["rate"], r["p50_ms"] or 0, r["p99_ms"] or 0,
                      r["max_ms"], r["cpu"], r["up_cpu"], r["client_cpu"], r["lost"],
                      r["coalesced"], r["stalled"], r["errors"]))

    summary = {}
    for p in runs:
        rs = results[p.name]
        ev = sum(r["events"] for r in rs)
        s = {k: B.median([r[k] or 0 for r in rs]) for k in PCTS}
        s.update({"rate": B.median([r["rate"] for r in rs]),
                  "cpu_us": 1e6 * sum(r["cpu"] for r in rs) / ev if ev else float("nan"),
                  "user_us": 1e6 * sum(r["user"] for r in rs) / ev if ev else float("nan"),
                  "sys_us": 1e6 * sum(r["sys"] for r in rs) / ev if ev else float("nan"),
                  "up_us": 1e6 * sum(r["up_cpu"] for r in rs) / ev if ev else float("nan"),
                  "up_core": B.median([r["up_cpu"] / r["seconds"] for r in rs]),
                  "client_core": B.median([r["client_cpu"] / r["seconds"] for r in rs])})
        for k in ("lost", "coalesced", "stalled", "errors", "over10ms"):
            s[k] = sum(r[k] for r in rs)
        if p.name != DIRECT:  # against the direct run of the same round
            for k in PCTS:
                s["added_" + k] = B.median([r[k] - d[k] for r, d in zip(rs, results[DIRECT])])
        summary[p.name] = s

    lean = B.leanest_peer({n: s for n, s in summary.items() if n != DIRECT})
    rows = []
    for p in proxies:
        s = summary[p.name]
        ratio = "%.2f" % (s["cpu_us"] / summary[lean]["cpu_us"]) if lean else "-"
        rows.append([p.name, args.streams, "%.0f" % s["rate"], "%.1f" % s["cpu_us"],
                     "%.1f" % s["user_us"], "%.1f" % s["sys_us"], ratio,
                     "%+.2f" % s["added_p50_ms"], "%+.2f" % s["added_p99_ms"],
                     "%+.1f" % s["added_max_ms"], "%d / %d" % (s["lost"], s["coalesced"])])
    lat_rows = []
    for p in runs:
        s = summary[p.name]
        lat_rows.append([p.name, "%.2f" % s["p50_ms"], "%.2f" % s["p99_ms"],
                         "%.2f" % s["p999_ms"], "%.1f" % s["max_ms"], s["over10ms"],
                         s["stalled"], s["errors"], "%.0f %%" % (100 * s["up_core"]),
                         "%.0f %%" % (100 * s["client_core"])])

    text = ["## Event-stream fan-out: %d streams, a 200-byte event on each every 100 ms, "
            "%d s x %d interleaved rounds (medians)" % (args.streams, args.duration, args.rounds),
            "",
            B.table(["proxy", "streams", "events/s", "CPU µs/event", "of which user",
                     "of which kernel", "vs leanest peer", "added p50 ms", "added p99 ms",
                     "added max ms", "lost / coalesced"], rows), ""]
    if "tether" in summary and lean:
        t = summary["tether"]
        ratio = t["cpu_us"] / summary[lean]["cpu_us"]
        text += ["- tether / leanest peer CPU per event (%s): **%.2f** (goal ≤ 0.80: %s)" % (
                     lean, ratio, "met" if ratio <= 0.80 else "not met"),
                 "- tether added latency per event: p50 %+.2f ms, **p99 %+.2f ms** (goal ≤ 1 ms: "
                 "%s), max %+.1f ms; %d lost, %d coalesced" % (
                     t["added_p50_ms"], t["added_p99_ms"],
                     "met" if t["added_p99_ms"] <= 1.0 else "not met", t["added_max_ms"],
                     t["lost"], t["coalesced"])]
    text += ["", "Latency per event (receive - send, same clock), and what the upstream and "
             "the client used of a core over the window:", "",
             B.table(["run", "p50 ms", "p99 ms", "p99.9 ms", "max ms", "events > 10 ms",
                      "stalled streams", "errors", "upstream CPU", "client CPU"], lat_rows), ""]
    d = summary[DIRECT]
    v = B.versions()
    text += ["- one worker each; upstream: node %s, one event loop (bench/sse_server.js), "
             "%.1f µs of CPU per event it writes (direct runs); loopback; %d cores shared by "
             "the client, the proxy and the upstream; access logs off" % (
                 v["node"], d["up_us"], os.cpu_count()),
             "- CPU: utime+stime of the proxy's process tree (/proc/<pid>/stat, %d Hz ticks) "
             "over the window / events delivered; direct: the upstream's own" % B.CLK_TCK,
             "- added = the proxied run's percentile - the direct run's in the same round "
             "(median over rounds); coalesced = events that came in the same read as an "
             "earlier event of their stream",
             "- nginx `proxy_buffering off`; HAProxy `option http-no-delay`; h2o "
             "`proxy.reverse.url`; Caddy `reverse_proxy` with `flush_interval -1`, GOMAXPROCS=1",
             "- versions: %s; %s; %s; caddy %s" % (v["haproxy"], v["nginx"], v["h2o"],
                                                     v["caddy"])]
    text += ["- " + n for n in notes]
    B.report("sse", text)


if __name__ == "__main__":
    B.run(main)
