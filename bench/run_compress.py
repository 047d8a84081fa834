#!/usr/bin/python3
"""Response compression through tether and nginx, one upstream.

The upstream is an nginx (1 worker) serving two generated files with their types:
/data.json (200 KB of JSON records, as an API answer) and /app.js (1 MB of JavaScript-like
text, as a bundle). In front of it, each with one worker and access logs off:
  - nginx with `gzip on; gzip_comp_level L; gzip_types application/json
    application/javascript; gzip_min_length 1024;` (its documentation's set-up for
    compressing proxied answers; `gzip_proxied any` so that none is skipped);
  - tether with `compression: {enabled: true, levels: {gzip: L}}` (and zstd, brotli at
    their defaults, measured separately by the Accept-Encoding sent).
wrk sends keep-alive GETs with one Accept-Encoding; CPU per response is the proxy's
process-tree utime+stime over the run / responses. The size is one answer's body as
received (curl, not decoded). Runs are interleaved; medians of the rounds.

Usage: bench/compress.sh [--rounds 3] [--duration 5] [--connections 4] [--level 5]
"""
import argparse
import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def make_files(d):
    rnd = random.Random(7)
    os.makedirs(d, exist_ok=True)
    recs = []
    while sum(len(r) for r in recs) < 200_000:
        i = len(recs)
        recs.append('{"id":"chat-%d","title":"Conversation %d","model":"llama3:%db",'
                    '"updated_at":%d,"tags":["%s"],"archived":%s}'
                    % (i, rnd.randrange(10**6), rnd.choice([8, 70]), 1700000000 + rnd.randrange(10**7),
                       rnd.choice(["work", "home", "code", "docs"]), rnd.choice(["true", "false"])))
    with open(os.path.join(d, "data.json"), "w") as f:
        f.write("[" + ",".join(recs)[:199_998] + "]")
    words = ["function", "return", "const", "let", "if", "else", "for", "while", "this", "props",
             "state", "render", "export", "import", "default", "async", "await", "new", "null"]
    out = []
    n = 0
    while n < 1_000_000:
        line = "%s %s_%d(%s) { %s %s.%s_%d; }\n" % (
            rnd.choice(words), rnd.choice(words), rnd.randrange(500), rnd.choice(words),
            rnd.choice(words), rnd.choice(words), rnd.choice(words), rnd.randrange(2000))
        out.append(line)
        n += len(line)
    with open(os.path.join(d, "app.js"), "w") as f:
        f.write("".join(out)[:1_000_000])


def start_upstream(wd, files):
    return B.start_nginx(wd, "upstream-files", "upstream-nginx", "the upstream nginx", lambda port: """
  types { application/json json; application/javascript js; }
  server {
    listen %(host)s:%(port)d backlog=4096;
    root %(root)s;
    etag off;
    location = /health { default_type application/json; return 200 '{"status": true}\\n'; }
  }""" % {"host": B.HOST, "port": port, "root": files}, timeout=10)


def start_nginx_gzip(wd, upstream_port, level):
    def body(port):
        return B.nginx_proxy_http(port, upstream_port) + """
  gzip on;
  gzip_comp_level %d;
  gzip_types application/json application/javascript;
  gzip_min_length 1024;
  gzip_proxied any;""" % level
    p, port = B.start_nginx(wd, "nginx-gzip", "nginx", "nginx as proxy", body)
    return B.Proxy("nginx", p, port)


def body_size(port, path, coding):
    r = subprocess.run(["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w", "%{size_download}",
                        "-H", "Accept-Encoding: " + coding, "http://%s:%d%s" % (B.HOST, port, path)],
                       capture_output=True, timeout=30)
    return int(r.stdout or 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--level", type=int, default=5, help="gzip level for both (1..9)")
    args = ap.parse_args()
    args.duration = max(1, min(args.duration, 30))
    wd = B.workdir()
    files = os.path.join(wd, "files")
    make_files(files)
    up, up_port = start_upstream(wd, files)
    notes = []
    ok, info = B.tether_available()
    if not ok:
        raise SystemExit("tether: %s" % info)
    notes.append("tether: %s" % info)
    tether = B.start_tether(wd, up_port, extra_conf="compression: { enabled: true, levels: { gzip: %d } }\n"
                            % args.level)
    nginx = start_nginx_gzip(wd, up_port, args.level)
    # (proxy, coding) pairs: gzip on both at the same level, tether's zstd and br beside.
    configs = [(tether, "gzip"), (nginx, "gzip"), (tether, "zstd"), (tether, "br")]
    paths = [("/data.json", 200_000), ("/app.js", 1_000_000)]
    results = {}
    for path, _ in paths:
        for p, coding in configs:
            size = body_size(p.port, path, coding)
            results[(path, p.name, coding)] = {"size": size, "cpu": [], "rps": []}
    for rnd in range(args.rounds):
        order = configs[rnd % len(configs):] + configs[:rnd % len(configs)]
        for path, _ in paths:
            for p, coding in order:
                r = B.measured(p.pid, lambda: wrk(wd, p.port, args, path, coding))
                per = r["cpu"] / r["requests"] * 1e6 if r["requests"] else float("nan")
                results[(path, p.name, coding)]["cpu"].append(per)
                results[(path, p.name, coding)]["rps"].append(r["rps"])
                B.log("round %d %s %s %s: %.0f resp/s, %.0f µs/resp" % (rnd + 1, path, p.name, coding,
                                                                       r["rps"], per))
    rows = []
    for path, original in paths:
        ngx = B.median(results[(path, "nginx", "gzip")]["cpu"])
        for p, coding in configs:
            res = results[(path, p.name, coding)]
            cpu = B.median(res["cpu"])
            rows.append([path, p.name, coding, "%.0f" % B.median(res["rps"]), "%.0f" % cpu,
                         "**%.2f**" % (cpu / ngx) if ngx else "-", res["size"],
                         "%.1f %%" % (100.0 * res["size"] / original)])
    v = B.versions()
    lines = ["## Compression: wrk -t1 -c%d -d%ds per configuration, %d interleaved rounds (medians), gzip level %d"
             % (args.connections, args.duration, args.rounds, args.level), "",
             B.table(["path", "proxy", "coding", "responses/s", "CPU µs per response",
                      "vs nginx gzip", "bytes sent", "of the original"], rows), "",
             "- CPU: utime+stime of the proxy's process tree over the run / responses; one worker each; "
             "access logs off; upstream keep-alive on; 2 cores shared by wrk, the proxy and the upstream",
             "- upstream: one nginx serving the two files (etag off)",
             "- versions: %s; %s" % (v["nginx"], "; ".join(notes))]
    B.report("compress", lines)
    B.stop(tether.proc)
    B.stop(nginx.proc)
    B.stop(up)


def wrk(wd, port, args, path, coding):
    """Keep-alive GETs of path with one Accept-Encoding for args.duration seconds."""
    script = os.path.join(wd, "ae-%s.lua" % coding)
    with open(script, "w") as f:
        f.write('wrk.headers["Accept-Encoding"] = "%s"\n' % coding)
    argv = ["wrk", "-t1", "-c%d" % args.connections, "-d%ds" % args.duration, "--timeout", "5s",
            "-s", script, "http://%s:%d%s" % (B.HOST, port, path)]
    out = subprocess.run(argv, capture_output=True, timeout=args.duration + 30).stdout.decode()
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    n = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise SystemExit("non-2xx answers from port %d: %s" % (port, out))
    return {"rps": float(m.group(1)) if m else 0.0, "requests": int(n.group(1)) if n else 0}


if __name__ == "__main__":
    B.run(main)
