#!/usr/bin/python3
"""HTTP/2 over TLS: tether vs HAProxy, nginx, h2o and Caddy (one worker each), same upstream.

Issue 13's proof. Two measurements, all on loopback:

1. Load: h2load (nghttp2) over TLS, C connections x M concurrent streams each
   (`h2load -c 10 -m 10 -t 1 -D <duration>`), GET /, after a warm-up run. Reported per
   proxy: requests/s, mean request time, CPU time per request (utime+stime of the proxy's
   whole process tree, /proc/<pid>/stat, over the run, divided by the requests h2load
   completed), its user/kernel split, non-2xx answers and failed/errored/timed-out
   requests. Interleaved rounds (the order rotates), medians of the rounds.
2. Idle memory: N (default 2000) TLS connections to each proxy in turn, each with the h2
   preface and SETTINGS exchanged both ways (and acknowledged) and one GET / answered,
   then left idle (the client: Python ssl + asyncio + the `h2` library); reported:
   (VmRSS with them open - VmRSS before) / N, KiB, summed over the proxy's processes, and
   what is still held once they are closed. Measured on the fresh proxies, before the load.

Set-up: one upstream (a separate nginx, 1 worker, 200 with a ~100-byte body); each proxy
with one worker/thread, access logs off, upstream keep-alive on, TLS on its listener with
the same ECDSA P-256 self-signed certificate (openssl req, made for the run), ALPN h2
offered first, each configured as its own documentation shows for reverse proxying over
HTTP/2 (benchlib.start_proxies(h2=True); the notes of the report cite the pages). h2load
offers h2 and http/1.1 by ALPN; the protocol it got ("Application protocol: ...") is
checked for every run, and a proxy that did not give h2 is flagged.

Usage: bench/h2.sh [--rounds 3] [--duration 10] [--connections 10] [--streams 10]
                   [--idle 2000] [--proxies tether,haproxy,nginx,h2o,caddy]
tether is skipped, with a note, when $TETHER_BIN (default build/proxy/tether) does not run.
The markdown is printed and saved under bench/results/ (h2-*.md).
"""
import asyncio
import os
import re
import resource
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

PROXIES = "tether,haproxy,nginx,h2o,caddy"
GOAL_CPU, GOAL_RPS, GOAL_MEM = 0.85, 1.0, 0.5  # issue 13: at most / at least / at most
COLUMNS = ["proxy", "protocol", "req/s", "mean ms", "CPU µs/req", "of which user",
           "of which kernel", "non-2xx", "failed/errored/timeout"]
# tether closes an HTTP/2 connection gracefully (GOAWAY) after 10000 streams by default;
# h2load does not open a new one then (its connection is done, the in-flight streams fail),
# so the bench lifts it as it lifts nginx's keepalive_requests (default 1000, which bounds
# nginx's HTTP/2 connections the same way) to 1000000. HAProxy 2.6, h2o 2.2 and Caddy 2.6
# have no such limit by default.
TETHER_MAX_STREAMS = 1000000
IDLE_OPEN_AT_ONCE = 32     # handshakes in flight at a time
IDLE_OPEN_TIMEOUT_S = 180  # for all N connections of one proxy
IDLE_ONE_TIMEOUT_S = 10    # for one connection: TCP, TLS, preface, SETTINGS, one request


# ---- 1. load: h2load ---------------------------------------------------------------------

def run_h2load(port, args, duration):
    argv = ["h2load", "-c", str(args.connections), "-m", str(args.streams), "-t", "1",
            "-D", str(duration), "https://%s:%d/" % (B.HOST, port)]
    r = subprocess.run(argv, capture_output=True, timeout=duration + 40)
    out = r.stdout.decode(errors="replace")
    if r.returncode != 0 and "finished in" not in out:
        raise SystemExit("h2load failed (%d): %s %s" % (r.returncode, out,
                                                        r.stderr.decode(errors="replace")))
    res = {"raw": out}
    m = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    total, _, done, ok, failed, errored, timeout = (int(x) for x in m.groups()) if m else (0,) * 7
    res["requests"] = done
    res["failed"], res["errored"], res["timeout"] = failed, errored, timeout
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    res["2xx"] = int(m.group(1)) if m else 0
    # 3xx+4xx+5xx: h2load counts a status when the head arrives and a request when its stream
    # ends, so at the duration's edges "done" and the status counts differ by a few
    res["non2xx"] = sum(int(x) for x in m.groups()[1:]) if m else 0
    m = re.search(r"Application protocol: (\S+)", out)
    res["proto"] = m.group(1) if m else ("none" if "No protocol negotiated" in out else "?")
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)", out)
    res["mean_ms"] = B.to_ms(m.group(3)) if m else float("nan")
    if not done:
        B.log("h2load on port %d completed nothing (exit %d):\n%s\n%s" % (
            port, r.returncode, out[-3000:], r.stderr.decode(errors="replace")[-1000:]))
    return res


# ---- 2. idle memory: N idle HTTP/2 connections ---------------------------------------------

def h2_client_context(tls):
    ctx = tls.client_context()
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def open_idle_h2(port, ctx):
    """One TLS connection with ALPN h2: the preface and SETTINGS both ways (the server's
    acknowledged, ours acknowledged by it), GET / answered in full; then it is left as it
    is. Returns (reader, writer, status)."""
    import h2.config
    import h2.connection
    import h2.events
    reader, writer = await asyncio.open_connection(B.HOST, port, ssl=ctx,
                                                   server_hostname=B.HOST)
    try:
        alpn = writer.get_extra_info("ssl_object").selected_alpn_protocol()
        if alpn != "h2":
            raise ConnectionError("ALPN %r, not h2" % alpn)
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                    header_encoding=None))
        conn.initiate_connection()  # preface + SETTINGS
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(b":method", b"GET"), (b":scheme", b"https"),
                                (b":authority", b"%s:%d" % (B.HOST.encode(), port)),
                                (b":path", b"/")], end_stream=True)
        writer.write(conn.data_to_send())
        status, ended, their_settings, our_settings_acked = None, False, False, False
        while not (ended and their_settings and our_settings_acked):
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("closed by the proxy")
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = int(dict(ev.headers)[b":status"])
                elif isinstance(ev, h2.events.DataReceived):
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                    ended = True
                elif isinstance(ev, h2.events.RemoteSettingsChanged):
                    their_settings = True  # h2 acknowledges them (data_to_send below)
                elif isinstance(ev, h2.events.SettingsAcknowledged):
                    our_settings_acked = True
                elif isinstance(ev, (h2.events.StreamReset, h2.events.ConnectionTerminated)):
                    raise ConnectionError("%s" % ev)
            out = conn.data_to_send()
            if out:
                writer.write(out)
        await writer.drain()
        return reader, writer, status
    except BaseException:
        writer.transport.abort()
        raise


async def open_many(port, n, ctx):
    """Up to n idle h2 connections, IDLE_OPEN_AT_ONCE at a time, all within
    IDLE_OPEN_TIMEOUT_S. Returns (connections [(reader, writer)], errors, non-200, first
    error)."""
    sem = asyncio.Semaphore(IDLE_OPEN_AT_ONCE)
    conns, errors, bad, first = [], 0, 0, []
    deadline = time.monotonic() + IDLE_OPEN_TIMEOUT_S

    async def one():
        nonlocal errors, bad
        async with sem:
            left = deadline - time.monotonic()
            if left <= 0:
                errors += 1
                return
            try:
                r, w, status = await asyncio.wait_for(open_idle_h2(port, ctx),
                                                      min(IDLE_ONE_TIMEOUT_S, left))
            except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError,
                    ValueError) as e:
                errors += 1
                if not first:
                    first.append("%s: %s" % (type(e).__name__, e))
                return
            except Exception as e:  # noqa: BLE001 - a protocol error from h2
                errors += 1
                if not first:
                    first.append("%s: %s" % (type(e).__name__, e))
                return
            if status != 200:
                bad += 1
            conns.append((r, w))
    await asyncio.gather(*(one() for _ in range(n)))
    return conns, errors, bad, (first[0] if first else "")


async def still_open(conns):
    """How many of conns the proxy has not closed, after letting the loop read what
    arrived."""
    await asyncio.sleep(0.2)
    return sum(1 for r, _ in conns if not r.at_eof())


async def close_all(conns):
    for _, w in conns:
        w.transport.abort()
    await asyncio.sleep(0.1)


def settle(pid, timeout=5.0):
    """RSS once it stops moving (two equal readings 0.25 s apart), KiB."""
    last, t0 = B.rss_kib(pid), time.monotonic()
    while time.monotonic() - t0 < timeout:
        time.sleep(0.25)
        now = B.rss_kib(pid)
        if now == last:
            return now
        last = now
    return last


def run_idle(proxy, n, tls):
    loop = asyncio.new_event_loop()
    try:
        ctx = h2_client_context(tls)
        before = settle(proxy.pid)
        t0 = time.monotonic()
        conns, errors, bad, first = loop.run_until_complete(open_many(proxy.port, n, ctx))
        took = time.monotonic() - t0
        time.sleep(B.POOL_DECAY_S)  # past the time tether's pools keep a burst's spares
        idle = settle(proxy.pid)
        alive = loop.run_until_complete(still_open(conns))
        loop.run_until_complete(close_all(conns))
        time.sleep(B.POOL_DECAY_S)
        after = settle(proxy.pid)
    finally:
        loop.close()
    opened = len(conns)
    per = (lambda x: (x - before) / opened if opened else float("nan"))
    return {"before": before, "idle": idle, "after": after, "opened": opened,
            "errors": errors, "non200": bad, "first_error": first, "alive": alive,
            "took": took, "per_conn": per(idle), "kept": per(after)}


# ---- the report -----------------------------------------------------------------------------

def died(proxy, deaths, when):
    """True (and noted in deaths, once) if proxy's process has exited."""
    rc = proxy.proc.poll()
    if rc is None:
        return False
    if proxy.name not in deaths:
        deaths[proxy.name] = "%s exited %s %s" % (
            proxy.name, ("on signal %d" % -rc) if rc < 0 else ("with status %d" % rc), when)
        B.log("!! " + deaths[proxy.name])
    return True


def log_tail(wd, name, n=8):
    """The last n lines of the proxy's own log (benchlib puts tether's and HAProxy's stderr
    in wd/<name>.log, h2o's and Caddy's in wd/<name>/<name>.log)."""
    for path in (os.path.join(wd, name + ".log"), os.path.join(wd, name, name + ".log")):
        try:
            with open(path, errors="replace") as f:
                return [l.rstrip()[:300] for l in f.readlines()[-n:]]
        except OSError:
            continue
    return []


def verdict(ratio, goal, at_most):
    ok = ratio <= goal if at_most else ratio >= goal
    return ("met (%.2fx)" % ratio) if ok else ("**missed** (%.2fx)" % ratio)


def main():
    ap = B.scenario_args(__doc__, proxies=PROXIES)
    ap.add_argument("--connections", type=int, default=10, help="h2load -c")
    ap.add_argument("--streams", type=int, default=10, help="h2load -m (concurrent streams)")
    ap.add_argument("--idle", type=int, default=2000,
                    help="idle HTTP/2 connections per proxy (0: skip)")
    ap.add_argument("--max-streams", type=int, default=TETHER_MAX_STREAMS,
                    help="tether's http2.max_streams_per_connection (0: its default, 10000)")
    args = B.parse_scenario(ap)
    args.connections = max(1, min(args.connections, 1000))
    args.streams = max(1, min(args.streams, 100))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cap = max(0, min(soft, hard) - 500)  # the client's fds; the proxy has its own limit
    args.idle = max(0, min(args.idle, cap, 9000))
    notes = []

    wd = B.workdir()
    tls = B.make_cert(wd)
    up_proc, up_port = B.start_nginx_upstream(wd)
    tether_extra = ("http2:\n  max_streams_per_connection: %d\n" % args.max_streams
                    if args.max_streams > 0 else "")
    proxies = B.start_proxies(wd, args.wanted, up_port, notes, tls=tls, h2=True,
                              tether_extra=tether_extra)
    if not proxies:
        raise SystemExit("nothing to measure")
    tls_label, tls_notes = B.tls_summary(proxies, tls)
    alpn = {}
    for p in proxies:
        try:
            alpn[p.name] = tls.alpn(p.port) or "none"
        except (OSError, ssl.SSLError) as e:
            alpn[p.name] = "? (%s)" % e
    B.log("ALPN offered h2,http/1.1 -> %s" % ", ".join("%s %s" % kv for kv in alpn.items()))

    # 2. idle memory first, on the fresh proxies
    idle, deaths = {}, {}
    for p in proxies:
        died(p, deaths, "right after it started (readiness check and TLS/ALPN probes)")
    if args.idle:
        for p in proxies:
            if died(p, deaths, "before the idle-memory test"):
                continue
            r = run_idle(p, args.idle, tls)
            if died(p, deaths, "during the idle-memory test"):
                continue
            idle[p.name] = r
            B.log("idle %-8s opened %d/%d in %.1fs errors %d%s non-200 %d still open %d  "
                  "RSS %d -> %d -> %d KiB  %.2f KiB/conn, %.2f kept" % (
                      p.name, r["opened"], args.idle, r["took"], r["errors"],
                      (" (%s)" % r["first_error"]) if r["first_error"] else "", r["non200"],
                      r["alive"], r["before"], r["idle"], r["after"], r["per_conn"], r["kept"]))

    # 1. load
    completed = {}
    for p in proxies:  # warm-up: connections (both sides), caches, page faults
        if died(p, deaths, "before the warm-up"):
            completed[p.name] = 0
            continue
        r = run_h2load(p.port, args, 2)
        died(p, deaths, "during the warm-up")
        completed[p.name] = r["requests"]
        B.log("warm-up  %-8s %9.0f req/s  %s  2xx %d/%d" % (p.name, r["rps"], r["proto"],
                                                          r["2xx"], r["requests"]))
    results = {p.name: [] for p in proxies}
    for rnd in range(args.rounds):
        order = proxies[rnd % len(proxies):] + proxies[:rnd % len(proxies)]
        for p in order:
            if died(p, deaths, "before round %d" % (rnd + 1)):
                continue
            r = B.measured(p.pid, lambda: run_h2load(p.port, args, args.duration))
            if died(p, deaths, "during round %d" % (rnd + 1)):
                continue
            results[p.name].append(r)
            completed[p.name] += r["requests"]
            B.log("round %d %-8s %9.0f req/s  mean %.3f ms  cpu %.2fs (%.1f µs/req)  %s  "
                  "2xx %d/%d%s" % (
                      rnd + 1, p.name, r["rps"], r["mean_ms"], r["cpu"],
                      1e6 * r["cpu"] / r["requests"] if r["requests"] else float("nan"),
                      r["proto"], r["2xx"], r["requests"],
                      ("  failed %d errored %d timeout %d" % (r["failed"], r["errored"],
                                                              r["timeout"]))
                      if r["failed"] or r["errored"] or r["timeout"] else ""))

    rows, summary, suspicious = [], {}, []
    for p in proxies:
        rs = results[p.name]
        if not rs:
            rows.append([p.name, "-", "-", "-", "-", "-", "-", "-", "not measured: it died"])
            continue
        reqs = sum(r["requests"] for r in rs)
        per_req = (lambda key: 1e6 * sum(r[key] for r in rs) / reqs if reqs else float("nan"))
        protos = sorted({r["proto"] for r in rs})
        s = {"rps": B.median([r["rps"] for r in rs]),
             "mean_ms": B.median([r["mean_ms"] for r in rs]), "cpu_us": per_req("cpu"),
             "non2xx": sum(r["non2xx"] for r in rs),
             "bad": "%d/%d/%d" % tuple(sum(r[k] for r in rs)
                                       for k in ("failed", "errored", "timeout")),
             "proto": "/".join(protos)}
        summary[p.name] = s
        rows.append([p.name, s["proto"], "%.0f" % s["rps"], "%.3f" % s["mean_ms"],
                     "%.1f" % s["cpu_us"], "%.1f" % per_req("user"), "%.1f" % per_req("sys"),
                     s["non2xx"], s["bad"]])
        if protos != ["h2"] or alpn.get(p.name) != "h2":
            suspicious.append("%s did not negotiate h2 (h2load: %s; ALPN probe: %s)"
                              % (p.name, s["proto"], alpn.get(p.name)))
        if s["non2xx"] or s["bad"] != "0/0/0":
            suspicious.append("%s: %d non-2xx, failed/errored/timeout %s over %d requests"
                              % (p.name, s["non2xx"], s["bad"], reqs))

    v = B.versions()
    text = ["## HTTP/2 over TLS (%s): h2load -c%d -m%d -t1 -D%d, %d interleaved rounds "
            "(medians)" % (tls_label, args.connections, args.streams, args.duration,
                           args.rounds), "", B.table(COLUMNS, rows), ""]
    text += B.peer_ratios(summary, "rps", "req/s", "request")
    goals = []
    peers = [n for n in summary if n in B.PEERS]
    if "tether" in summary and peers:
        lean = B.leanest_peer(summary)
        best = max(peers, key=lambda n: summary[n]["rps"])
        cpu = summary["tether"]["cpu_us"] / summary[lean]["cpu_us"]
        rps = summary["tether"]["rps"] / summary[best]["rps"]
        goals.append("- goal (issue 13): CPU per request ≤ %.2fx the leanest peer's (%s): %s"
                     % (GOAL_CPU, lean, verdict(cpu, GOAL_CPU, True)))
        goals.append("- goal (issue 13): requests/s ≥ %.2fx the best peer's (%s): %s"
                     % (GOAL_RPS, best, verdict(rps, GOAL_RPS, False)))

    if idle:
        irows = [[n, r["opened"], r["errors"], r["non200"], r["alive"], r["before"],
                  r["idle"], r["after"], "%.2f" % r["per_conn"], "%.2f" % r["kept"]]
                 for n, r in idle.items()]
        text += ["", "### Memory per idle HTTP/2 connection: %d TLS h2 connections to each "
                 "proxy (one GET / answered on each, then idle)" % args.idle, "",
                 B.table(["proxy", "opened", "errors", "non-200", "still open at the reading",
                          "RSS before KiB", "RSS idle KiB", "RSS after close KiB",
                          "KiB per idle connection", "KiB per connection kept after close"],
                         irows), ""]
        ipeers = [n for n in idle if n in B.PEERS and idle[n]["opened"]]
        if "tether" in idle and ipeers and idle["tether"]["opened"]:
            ilean = min(ipeers, key=lambda n: idle[n]["per_conn"])
            mem = idle["tether"]["per_conn"] / idle[ilean]["per_conn"]
            text.append("- tether / leanest peer KiB per idle HTTP/2 connection (%s): **%.2f**"
                        % (ilean, mem))
            goals.append("- goal (issue 13): memory per idle HTTP/2 connection ≤ %.2fx the "
                         "leanest peer's (%s): %s" % (GOAL_MEM, ilean,
                                                      verdict(mem, GOAL_MEM, True)))
        for n, r in idle.items():
            if r["errors"] or r["non200"] or r["alive"] != r["opened"]:
                suspicious.append("%s idle: %d of %d opened (%d errors%s), %d non-200, %d still "
                                  "open at the reading" % (
                                      n, r["opened"], args.idle, r["errors"],
                                      ", first: " + r["first_error"] if r["first_error"] else "",
                                      r["non200"], r["alive"]))
    if "tether" in deaths and ("tether" not in summary or "tether" not in idle):
        goals.append("- goals (issue 13): %s not assessed: tether died (see Anomalies)"
                     % ("none" if "tether" not in summary else "memory"))
    text += [""] + goals + [""]
    text += [
        "Notes:", "",
        "- load: h2load %s over TLS, ALPN offering h2 and http/1.1 (the protocol each run "
        "got is the table's \"protocol\", from h2load's \"Application protocol\"), %d "
        "connections x %d concurrent streams, one thread, GET /; a 2 s warm-up run per "
        "proxy first; runs interleaved, the order rotating each round; requests/s and mean "
        "request time are the medians of the rounds" % (
            v["h2load"].split()[-1], args.connections, args.streams),
        "- CPU: utime+stime of the proxy's process tree (/proc/<pid>/stat, %d Hz ticks) over "
        "the measured runs / the requests h2load completed; user is the proxy's own code "
        "(HPACK, framing, TLS records), kernel the system calls and TCP work" % B.CLK_TCK,
        "- idle memory: VmRSS summed over the proxy's processes (/proc/<pid>/status), settled, "
        "before and %.1f s after the connections were opened (and again after they were "
        "closed); each connection: TCP, TLS (ALPN h2, certificate verified), the client "
        "preface and SETTINGS, the proxy's SETTINGS acknowledged and ours acknowledged by it, "
        "one GET / answered; opened %d at a time by one Python asyncio client (ssl, h2 %s); "
        "measured on the fresh proxies, before the load runs" % (
            B.POOL_DECAY_S, IDLE_OPEN_AT_ONCE, h2_version()),
        "- one worker/thread each; upstream: nginx, 1 worker, %d-byte body, HTTP/1.1 "
        "keep-alive from every proxy; access logs off; loopback; %d cores shared by h2load, "
        "proxy and upstream" % (len(B.UPSTREAM_BODY), os.cpu_count()),
        "- tether: `listeners: [{address, tls: {certificates: [{cert, key}]}}]`, ALPN by "
        "default `tls.alpn: [h2, http/1.1]`, `http2:` settings at their defaults (README "
        "\"Configuration\": max_concurrent_streams 100, initial_window 64KiB, "
        "connection_window 1MiB) but %s; access log off, downstream_idle 75s" % (
            "`http2: {max_streams_per_connection: %d}` (default 10000, after which tether "
            "sends a graceful GOAWAY; h2load opens no new connection then, so its load on "
            "tether would stop; lifted as nginx's keepalive_requests is)" % args.max_streams
            if args.max_streams > 0 else "max_streams_per_connection at its default 10000 "
            "(after which tether sends a GOAWAY, and h2load does not reconnect)"),
        "- nginx %s: `listen 127.0.0.1:<port> ssl http2` (ngx_http_v2_module, "
        "https://nginx.org/en/docs/http/ngx_http_v2_module.html, the 1.22 syntax) with "
        "ssl_certificate(_key), ssl_session_cache shared:SSL:10m (\"Configuring HTTPS "
        "servers\"); proxy_pass to an upstream block with `keepalive 64`, proxy_http_version "
        "1.1 and `Connection \"\"` (ngx_http_upstream_module, keepalive); keepalive_requests "
        "1000000 and keepalive_timeout 75s (which bound HTTP/2 connections too since 1.19.7)"
        % v["nginx"].split("/")[-1],
        "- HAProxy %s: `bind 127.0.0.1:<port> ssl crt cert+key.pem ssl-min-ver TLSv1.2 alpn "
        "h2,http/1.1` (configuration manual 2.6, \"alpn\" bind option: the documented way to "
        "serve HTTP/2 over TLS), mode http, option http-keep-alive, http-reuse safe to the "
        "backend, nbthread 1, no log line; timeout client 75s" % (
            v["haproxy"].split()[2] if len(v["haproxy"].split()) > 2 else "?"),
        "- h2o %s: a `listen:` with `ssl: {certificate-file, key-file, minimum-version: "
        "TLSv1.2}` (h2o base directives, https://h2o.examp1e.net/configure/base_directives.html"
        "#listen; HTTP/2 is what it selects by ALPN), `proxy.reverse.url` (proxy directives, "
        "upstream keep-alive on by default), num-threads 1, no access-log; "
        "http2-idle-timeout 75 (default 10 s) so idle connections last as at the others"
        % (v["h2o"].split()[2] if len(v["h2o"].split()) > 2 else "?"),
        "- Caddy %s: a site `https://127.0.0.1:<port>` with `tls <cert> <key>` (Caddyfile "
        "tls directive, https://caddyserver.com/docs/caddyfile/directives/tls) and "
        "`reverse_proxy 127.0.0.1:<upstream>` (https://caddyserver.com/docs/caddyfile/"
        "directives/reverse_proxy, keep-alive to the upstream by default); HTTP/2 is its "
        "default over TLS; global `servers { protocols h1 h2 }` (no HTTP/3 listener), "
        "admin off, auto_https off, no access log; GOMAXPROCS=1" % v["caddy"].split()[0],
        "- versions: %s; %s; %s; %s; %s" % (v["haproxy"], v["nginx"], v["h2o"], v["h2load"],
                                            v["openssl"])]
    text += ["- " + n for n in tls_notes[:1]]
    text.append("- ALPN selected when offered h2,http/1.1 (Python ssl probe): %s"
                % ", ".join("%s %s" % kv for kv in alpn.items()))
    text += ["- " + n for n in notes]
    for name, what in deaths.items():
        suspicious.insert(0, "**%s**; the runs after are not measured; the last lines of its log:"
                          % what)
        tail = log_tail(wd, name)
        if tail:
            suspicious[0] += "\n\n  ```\n" + "\n".join("  " + l for l in tail) + "\n  ```"
    if suspicious:
        text += ["", "Anomalies:", ""] + ["- " + s for s in suspicious]
    B.report("h2", text)


def h2_version():
    try:
        import h2
        return h2.__version__
    except ImportError:
        return "?"


if __name__ == "__main__":
    B.run(main)
