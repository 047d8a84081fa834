#!/usr/bin/python3
"""HTTP/1.1 keep-alive throughput of tether, HAProxy, nginx, h2o and Caddy in front of one upstream.

What it measures: requests/s, p50 and p99 latency (wrk --latency), and CPU time per
request of each proxy (utime+stime of its whole process tree, from /proc/<pid>/stat,
over the measured run, divided by the requests wrk completed).

Set-up, all on loopback: one upstream (a separate nginx, 1 worker, 200 with a ~100-byte
body, /health too); each proxy with one worker (tether --workers 1, HAProxy nbthread 1,
nginx worker_processes 1, h2o num-threads 1, Caddy GOMAXPROCS=1), configured as its own
documentation recommends for reverse proxying with upstream keep-alive on (benchlib.py has
each configuration, with where it comes from); access logging OFF for all; active health
checks on /health every 5s for tether and HAProxy (nginx open source has none). Runs are
interleaved (the order rotates each round) and the median of the rounds is reported.

With --tls, each proxy terminates TLS on its listener (HTTPS keep-alive; the upstream stays
plain HTTP): the same ECDSA P-256 self-signed certificate for all, made with the openssl CLI
in the run's temporary directory; TLS 1.2 and 1.3 allowed (a default OpenSSL client, wrk
too, negotiates 1.3); nginx `listen ... ssl` with ssl_session_cache shared:SSL:10m, HAProxy
`bind ... ssl crt` with ssl-min-ver TLSv1.2, tether a `listeners:` entry with `tls:` in its
config file; h2o and Caddy as for bench/h2.sh (wrk offers no ALPN, so they answer in
HTTP/1.1 too). wrk does not verify the certificate; the readiness check does. wrk keeps its
connections, so the run is mostly record encryption, not handshakes (one per connection).
--baseline stays plain HTTP to the upstream. Saved as http-tls-*.md.

--profile prod (default plain: the above) measures the production configuration of every
proxy, also h2o and Caddy: browser-like requests (about 1.3 KB of headers with a `token`
cookie holding an HS256 JWT whose payload has an `id` claim; USERS distinct users rotated
over the requests, a wrk Lua script), BACKENDS backends (one nginx on as many loopback
addresses), per-user affinity on that cookie and a JSON access log written to a file by
every proxy, each configured as its own documentation shows (benchlib.Prod and the
configurations it changes). The log files' line counts are reported against the requests
wrk completed, and tether's ratios against the goal of issue 17. Saved as http-prod-*.md.

Usage: bench/http.sh [--rounds 3] [--duration 10] [--connections 50] [--threads 1]
                     [--proxies tether,haproxy,nginx,h2o,caddy] [--baseline] [--tls]
                     [--profile plain|prod]
tether is skipped, with a note, when $TETHER_BIN (default build/proxy/tether) does not run.
The markdown is printed and saved under bench/results/.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


COLUMNS = ["proxy", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "of which user", "of which kernel",
           "non-2xx", "socket errors"]

# --profile prod
USERS = 300
BACKENDS = 4
PROD_PROXIES = "tether,haproxy,nginx,h2o,caddy"
GOAL_CPU, GOAL_RPS = 0.80, 1.15  # issue 17, goal 2: at most / at least these ratios
JWT_SECRET = b"tether-bench-secret-not-a-real-one"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt_hs256(claims):
    """A signed HS256 JWT, as an identity provider issues them."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(JWT_SECRET, ("%s.%s" % (head, body)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (head, body, b64url(sig))


def browser_headers(user):
    """A browser's request headers for user (0..USERS-1): Chrome on Linux, a session
    cookie `token` (a JWT with an `id` claim) beside two analytics cookies."""
    now = 1764000000
    token = jwt_hs256({"id": "user-%04d" % user, "sub": "%08x-4c1d-4e5f-9a2b-%012x" % (
        user * 7919, user * 104729), "name": "Bench User %d" % user,
        "email": "user%d@example.com" % user, "roles": ["user", "reader"],
        "iss": "https://auth.example.com/", "aud": "tether-bench",
        "iat": now, "exp": now + 3600})
    return {
        "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/131.0.0.0 Safari/537.36",
        "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                  "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7",
        "Accept-Language": "en-GB,en-US;q=0.9,en;q=0.8,fr;q=0.7",
        "Accept-Encoding": "gzip, deflate, br, zstd",
        "Referer": "https://app.example.com/dashboard/projects?tab=overview&page=2",
        "sec-ch-ua": '"Google Chrome";v="131", "Chromium";v="131", "Not_A Brand";v="24"',
        "sec-ch-ua-mobile": "?0",
        "sec-ch-ua-platform": '"Linux"',
        "Sec-Fetch-Dest": "document", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Site": "same-origin",
        "Sec-Fetch-User": "?1", "Upgrade-Insecure-Requests": "1", "Cache-Control": "max-age=0",
        "Priority": "u=0, i",
        "Cookie": "_ga=GA1.1.%d.1764000000; theme=dark; token=%s; _ga_X1Y2Z3=GS1.1.1764000000"
                  ".4.1.1764003000.0.0.0" % (1000000 + user * 37, token),
    }


def lua_quote(text):
    return '"%s"' % text.replace("\\", "\\\\").replace('"', '\\"')


def prod_script(wd):
    """A wrk Lua script: the USERS requests are formatted once, then sent in rotation,
    each thread from a different user. Returns (path, bytes of one request's headers)."""
    path = os.path.join(wd, "browser.lua")
    users = []
    for u in range(USERS):
        fields = ", ".join("[%s] = %s" % (lua_quote(k), lua_quote(v))
                           for k, v in browser_headers(u).items())
        users.append("  {%s}," % fields)
    size = len("".join("%s: %s\r\n" % kv for kv in browser_headers(0).items()))
    with open(path, "w") as f:
        f.write("""-- browser-like requests of %(n)d users, in rotation (bench/run_http.py --profile prod)
local users = {
%(users)s
}
local reqs, n = {}, 0
init = function(args)
  for i, h in ipairs(users) do
    reqs[i] = wrk.format("GET", "/app/dashboard/projects?tab=overview", h)
  end
  n = math.random(#reqs)
end
request = function()
  n = n %% #reqs + 1
  return reqs[n]
end
""" % {"n": USERS, "users": "\n".join(users)})
    return path, size


def run_wrk(port, args, duration, scheme="http"):
    script = ["-s", args.script] if getattr(args, "script", None) else []
    argv = ["wrk", "-t%d" % args.threads, "-c%d" % args.connections, "-d%ds" % duration,
            "--latency", "--timeout", "5s"] + script + ["%s://%s:%d/" % (scheme, B.HOST, port)]
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
    ap.add_argument("--profile", choices=("plain", "prod"), default="plain",
                    help="prod: browser-like requests, JSON access logs, per-user affinity, "
                         "%d backends, for %s" % (BACKENDS, PROD_PROXIES))
    ap.set_defaults(proxies=None)
    args = B.parse_scenario(ap)
    if args.proxies is None:
        args.wanted = PROD_PROXIES.split(",")
    if args.profile == "prod" and (args.tls or args.baseline):
        raise SystemExit("--profile prod is plain HTTP to the proxies, without --baseline")
    notes, prod = [], None

    wd = B.workdir()
    tls = B.make_cert(wd) if args.tls else None
    if args.profile == "prod":
        import run_backends  # its loopback backends; imported here, it imports this module
        up_proc, up_port = run_backends.start_backends(wd, BACKENDS)
        prod = B.Prod(wd, ["%s:%d" % (run_backends.address(i), up_port) for i in range(BACKENDS)])
        args.script, header_bytes = prod_script(wd)
    else:
        up_proc, up_port = B.start_nginx_upstream(wd)
    proxies = B.start_proxies(wd, args.wanted, up_port, notes, tls=tls, prod=prod)
    tls_label, tls_notes = B.tls_summary(proxies, tls) if tls and proxies else ("", [])
    if args.baseline:
        proxies.append(B.Proxy("direct (no proxy)", up_proc, up_port))
        if tls:
            notes.append("direct (no proxy): plain HTTP to the upstream, no TLS")
    if not proxies:
        raise SystemExit("nothing to measure")
    # the baseline (the upstream itself) is always plain HTTP
    scheme = {p.name: "https" if tls and p.proc is not up_proc else "http" for p in proxies}

    completed = {}  # requests wrk completed through each proxy, warm-up included
    for p in proxies:  # warm-up: connections, caches, page faults
        completed[p.name] = run_wrk(p.port, args, 1, scheme[p.name])["requests"]

    results = {p.name: [] for p in proxies}
    for rnd in range(args.rounds):
        order = proxies[rnd % len(proxies):] + proxies[:rnd % len(proxies)]
        for p in order:
            r = B.measured(p.pid, lambda: run_wrk(p.port, args, args.duration, scheme[p.name]))
            results[p.name].append(r)
            completed[p.name] += r["requests"]
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
    if prod:
        prod_report(args, proxies, rows, summary, completed, prod, header_bytes, v, notes)
        return
    title = "HTTPS keep-alive (%s)" % tls_label if tls else "HTTP keep-alive"
    text = ["## %s: wrk -t%d -c%d -d%ds, %d interleaved rounds (medians)" % (
        title, args.threads, args.connections, args.duration, args.rounds), "",
        B.table(COLUMNS, rows), ""]
    text += B.peer_ratios(summary, "rps", "req/s", "request")
    text += ["- one worker each; upstream: nginx, 1 worker, %d-byte body; access logs off; "
             "upstream keep-alive on; loopback; %d cores shared by wrk, proxy and upstream"
             % (len(B.UPSTREAM_BODY), os.cpu_count()),
             "- CPU: utime+stime of the proxy's process tree (/proc/<pid>/stat, %d Hz ticks) "
             "over the measured runs / requests; user is the proxy's own code, kernel is the "
             "system calls and TCP work done on its behalf" % B.CLK_TCK,
             "- versions: %s; %s; %s; caddy %s; %s" % (v["haproxy"], v["nginx"], v["h2o"], v["caddy"],
                                                   v["wrk"])]
    if tls:
        text += ["- " + n for n in tls_notes]
        text.append("- %s" % v["openssl"])
    text += ["- " + n for n in notes]
    B.report("http-tls" if tls else "http", text)


def log_lines(prod, proxies, completed):
    """[proxy, access-log lines, requests wrk completed] for each proxy, read once the
    proxies have flushed (every second) and stopped (each writes what it holds on exit)."""
    time.sleep(1.5)
    for p in proxies:
        B.stop(p.proc)
    rows = []
    for p in proxies:
        try:
            with open(prod.log_path(p.name), "rb") as f:
                lines = sum(1 for _ in f)
        except OSError:
            lines = 0
        rows.append([p.name, lines, completed[p.name]])
    return rows


def prod_report(args, proxies, rows, summary, completed, prod, header_bytes, v, notes):
    logs = log_lines(prod, proxies, completed)
    text = ["## HTTP keep-alive, production profile: wrk -t%d -c%d -d%ds, %d interleaved rounds "
            "(medians)" % (args.threads, args.connections, args.duration, args.rounds), "",
            B.table(COLUMNS, rows), ""]
    text += B.peer_ratios(summary, "rps", "req/s", "request")
    if "tether" in summary and any(n in B.PEERS for n in summary):
        peers = [n for n in summary if n in B.PEERS]
        cpu = summary["tether"]["cpu_us"] / summary[B.leanest_peer(summary)]["cpu_us"]
        rps = summary["tether"]["rps"] / max(summary[n]["rps"] for n in peers)
        text.append("- goal (issue 17): CPU ≤ %.2fx the leanest peer, req/s ≥ %.2fx the best: "
                    "CPU %s, req/s %s" % (GOAL_CPU, GOAL_RPS,
                                          "met" if cpu <= GOAL_CPU else "**missed** (%.2fx)" % cpu,
                                          "met" if rps >= GOAL_RPS else "**missed** (%.2fx)" % rps))
    text += ["", "Access-log lines written by each proxy, against the requests wrk completed "
             "through it (warm-up included; a few more lines than requests are the readiness "
             "checks and requests in flight when wrk stopped):", "",
             B.table(["proxy", "log lines", "requests"], logs), ""]
    text += [
        "Notes:", "",
        "- requests: wrk -s (a Lua script), GET /app/dashboard/projects?tab=overview with %d "
        "bytes of headers like Chrome's (User-Agent, Accept, Accept-Language, Accept-Encoding, "
        "Referer, sec-ch-ua*, Sec-Fetch-*, Cookie); the Cookie holds `token=<HS256 JWT>` "
        "whose payload has an `id` claim, one of %d users, rotated request by request"
        % (header_bytes, USERS),
        "- backends: one nginx (1 worker, %d-byte body) listening on %d loopback addresses "
        "(%s); upstream keep-alive on for all; one worker each; loopback; %d cores shared"
        % (len(B.UPSTREAM_BODY), len(prod.backends), ", ".join(prod.backends), os.cpu_count()),
        "- nginx: `hash $cookie_token consistent;` in the upstream block (ngx_http_upstream "
        "docs), `log_format json_log escape=json '{...}'` and `access_log <file> json_log "
        "buffer=64k flush=1s` (ngx_http_log_module docs)",
        "- HAProxy: `balance hash req.cook(token)` with `hash-type consistent` (2.6 "
        "configuration manual), checked servers; a JSON `log-format '{\"time\":\"%trg\",...}'` (2.6 has "
        "no JSON encoder: the JSON is written around its variables, strings escaped with "
        "%{+E}) with `log stdout format raw local0` (its documented logging without syslog, written "
        "line by line), stdout redirected to the file",
        "- tether: `affinity: {keys: [\"jwt:cookie:token:id\"], store: memory}` (README "
        "\"Affinity\": the user's id from the JWT, pins held by the one instance, so no proxy "
        "pays a store round trip; Redis is what several tethers would share) and "
        "`access_log: {enabled: true, format: json, path: <file>, flush: 1s}` (README \"Logs\")",
        "- h2o %s: `access-log: {path: <file>, escape: json, format: '{...}'}`; its "
        "proxy.reverse.url takes one URL in 2.2 and it has no hashing on a cookie, so it "
        "proxies to the first backend only, without affinity" % v["h2o"].split()[2]
        if len(v["h2o"].split()) > 2 else "- h2o: not run",
        "- Caddy: `lb_policy header Cookie` over the %d backends (Caddy hashes a header's "
        "value; its `lb_policy cookie` sets a cookie of its own instead of hashing the "
        "client's), `log { output file <file>; format json }`" % len(prod.backends),
        "- CPU: utime+stime of the proxy's process tree (/proc/<pid>/stat, %d Hz ticks) over "
        "the measured runs / requests" % B.CLK_TCK,
        "- versions: %s; %s; %s; %s; caddy %s" % (v["haproxy"], v["nginx"], v["h2o"], v["wrk"],
                                                 v["caddy"])]
    text += ["- " + n for n in notes]
    B.report("http-prod", text)


if __name__ == "__main__":
    B.run(main)
