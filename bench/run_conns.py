#!/usr/bin/python3
"""Many connections: memory per idle keep-alive HTTP/1.1 connection, and how much of it
each proxy gives back once they close (issue 17, goal 5). tether vs HAProxy, nginx, h2o
and Caddy, one worker each, in front of the same upstream (bench/benchlib.py).

For each proxy in turn: its resident set (VmRSS summed over its processes, settled), then
N client connections opened one after another, each sending one GET / and reading the
whole answer, then left open and idle; the resident set again; then every connection
closed, and the resident set once more. Reported per connection: (idle - before) / N and
(after close - before) / N. One request at a time, so the proxies hold one upstream
connection each: what is measured is the client side of a connection.

Set-up, all on loopback, access logs off, each as bench/http.sh has it (its documented
reverse proxy with upstream keep-alive), every one keeping an idle client connection open
at least 75 s: tether (timeouts.downstream_idle 75s), HAProxy 2.6 (timeout
http-keep-alive 75s), nginx (keepalive_timeout 75s), h2o 2.2 (num-threads 1,
proxy.reverse.url, and `http1-request-timeout: 75`: by default it closes an HTTP/1
connection idle for 10 s, its HTTP/1 directives' default, sooner than a run of 4000 takes)
and Caddy 2.6 (GOMAXPROCS=1, reverse_proxy, its default idle_timeout of 5 min; no admin
endpoint, no automatic HTTPS), h2o and Caddy when installed (the Debian packages;
bench/benchlib.py H2O_IDLE_CONF, CADDYFILE).

Usage: bench/conns.sh [--connections 4000] [--proxies tether,haproxy,nginx,h2o,caddy]
The markdown is printed and saved under bench/results/.
"""
import argparse
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def read_answer(s, deadline):
    """Reads one HTTP/1.1 answer with a Content-Length body; False if it does not come."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            return False
        d = s.recv(65536)
        if not d:
            return False
        buf += d
    head, body = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        if time.monotonic() > deadline:
            return False
        d = s.recv(65536)
        if not d:
            return False
        body += d
    return head.startswith(b"HTTP/1.1 200")


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


def run_idle(proxy, n):
    before = settle(proxy.pid)
    socks, errors = [], 0
    deadline = time.monotonic() + 120  # bounded: 4000 sequential requests take seconds
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        try:
            s = socket.create_connection((B.HOST, proxy.port), timeout=5)
            s.sendall(REQUEST)
            if read_answer(s, time.monotonic() + 5):
                socks.append(s)
            else:
                errors += 1
                s.close()
        except OSError:
            errors += 1
    time.sleep(B.POOL_DECAY_S)  # past the time tether's pools keep a burst's spares
    idle = settle(proxy.pid)
    for s in socks:
        s.close()
    time.sleep(B.POOL_DECAY_S)
    after = settle(proxy.pid)
    opened = len(socks)
    per = (lambda x: (x - before) / opened if opened else float("nan"))
    return {"before": before, "idle": idle, "after": after, "opened": opened,
            "errors": errors, "per_conn": per(idle), "kept": per(after)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--connections", type=int, default=4000)
    ap.add_argument("--proxies", default="tether,haproxy,nginx,h2o,caddy")
    args = ap.parse_args()
    args.connections = max(1, min(args.connections, 9000))  # the client's fds + the proxy's
    wanted = [p for p in args.proxies.split(",") if p]
    notes = []
    wd = B.workdir()
    _, upstream_port = B.start_nginx_upstream(wd)
    proxies = B.start_proxies(wd, wanted, upstream_port, notes, idle_conns=True)
    if not proxies:
        raise SystemExit("nothing to measure")
    rows, res = [], {}
    for p in proxies:
        r = run_idle(p, args.connections)
        res[p.name] = r
        B.log("conns %-11s opened %d errors %d  RSS %d -> %d -> %d KiB  %.2f KiB/conn, %.2f kept"
              % (p.name, r["opened"], r["errors"], r["before"], r["idle"], r["after"],
                 r["per_conn"], r["kept"]))
        rows.append([p.name, r["opened"], r["errors"], r["before"], r["idle"], r["after"],
                     "%.2f" % r["per_conn"], "%.2f" % r["kept"]])
    text = ["## Idle keep-alive HTTP/1.1 connections: %d through each proxy" % args.connections,
            "", B.table(["proxy", "opened", "errors", "RSS before KiB", "RSS idle KiB",
                         "RSS after close KiB", "KiB per idle connection",
                         "KiB per connection kept after close"], rows), ""]
    peers = [n for n in res if n in B.PEERS]
    if "tether" in res and peers:
        lean = min(peers, key=lambda n: res[n]["per_conn"])
        text.append("- tether / leanest peer KiB per idle connection (%s): **%.2f**"
                    % (lean, res["tether"]["per_conn"] / res[lean]["per_conn"]))
        text.append("")
    B.report("conns", text + notes)


if __name__ == "__main__":
    B.run(main)
