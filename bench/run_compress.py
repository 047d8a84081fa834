#!/usr/bin/python3
"""Response compression through tether, nginx, h2o and Caddy, one upstream.

The upstream is an nginx (1 worker) serving two generated files with their types:
/data.json (200 KB of JSON records, as an API answer) and /app.js (1 MB of JavaScript-like
text, as a bundle). In front of it, each with one worker and access logs off, and each set
up as its own documentation shows for compressing proxied answers: gzip at the same level
L (--level), answers of application/json and application/javascript from 1024 bytes on:
  - nginx with `gzip on; gzip_comp_level L; gzip_types application/json
    application/javascript; gzip_min_length 1024;` (its documentation's set-up for
    compressing proxied answers; `gzip_proxied any` so that none is skipped); gzip only
    (brotli and zstd are not in nginx itself);
  - tether with `compression: {enabled: true, levels: {gzip: L}}` (and zstd 3, brotli 4,
    its defaults, measured separately by the Accept-Encoding sent);
  - h2o 2.2 (H2O_COMPRESS_CONF below): benchlib.H2O_CONF, its reverse proxy, with the
    compress directives at the path: `compress: {gzip: L, br: 4}` (the mapping form sets
    each coding's quality; `compress: ON` would enable both at quality 1), brotli at
    tether's level, and `compress-minimum-size: 1024`. It compresses what its mime map
    deems compressible, which application/json and application/javascript are by default
    (so no file.mime.addtypes). No zstd: h2o 2.2's compress knows gzip and br only;
  - Caddy 2.6 (CADDYFILE_COMPRESS below): benchlib's global options (no admin endpoint, no
    automatic HTTPS, no access log), GOMAXPROCS=1 (benchlib.start_caddy), `bind 127.0.0.1`
    (a site address alone listens on every interface), and `encode { gzip L; zstd; minimum_length 1024; match { header Content-Type
    application/json*; header Content-Type application/javascript* } }` before
    reverse_proxy at its defaults (not the `flush_interval -1` of benchlib.CADDYFILE, meant
    for streams: a flush to the client after every read from the upstream). Its zstd takes
    no level in 2.6 (the encoder's default). No brotli: Caddy 2.6's encoders are gzip and
    zstd.
wrk sends keep-alive GETs with one Accept-Encoding; each proxy is measured for each coding it
offers. CPU per response is the proxy's process-tree utime+stime over the run / responses;
"vs nginx gzip" is that against nginx's. The size is one answer's body as received (curl,
not decoded), its Content-Encoding checked. Runs are interleaved; medians of the rounds.

Usage: bench/compress.sh [--rounds 3] [--duration 5] [--connections 4] [--level 5]
                         [--proxies tether,nginx,h2o,caddy]
h2o and Caddy are skipped, with a note, when not installed (apt-get install h2o caddy).
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

# The codings each proxy offers here, in the order of the rows.
CODINGS = ("gzip", "zstd", "br")
OFFERS = {"tether": CODINGS, "nginx": ("gzip",), "h2o": ("gzip", "br"), "caddy": ("gzip", "zstd")}
TETHER_BR_LEVEL = 4  # tether's default brotli level (conf/config.h), for h2o's br
NOT_OFFERED = ("nginx: gzip only (brotli and zstd are third-party modules); h2o 2.2: no zstd "
               "(its compress directive takes gzip and br only); Caddy 2.6: no brotli (its "
               "encoders are http.encoders.gzip and http.encoders.zstd)")

# h2o 2.2's compress directives (global, host, path or extension level), here at the path of
# the reverse proxy; compress-minimum-size after compress, which resets the minimum size
# along with the codings (h2o applies a level's directives in the order written).
H2O_COMPRESS_CONF = B.H2O_CONF.replace(B.H2O_URL, B.H2O_URL + """\
        compress:
          gzip: %(level)d
          br: %(br)d
        compress-minimum-size: 1024
""")

# Caddy 2.6's encode handler (ordered before reverse_proxy by the Caddyfile), its response
# matcher on the Content-Type as nginx's gzip_types; bound to the loopback address only.
CADDYFILE_COMPRESS = B.CADDY_GLOBAL + """http://%(host)s:%(port)d {
  bind %(host)s
  encode {
    gzip %(level)d
    zstd
    minimum_length 1024
    match {
      header Content-Type application/json*
      header Content-Type application/javascript*
    }
  }
  reverse_proxy %(host)s:%(up)d
}
"""


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


def fetch(port, path, coding):
    """(bytes of the body as received, its Content-Encoding) for one GET of path with
    Accept-Encoding: coding."""
    r = subprocess.run(["curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-D", "-",
                        "-w", "\n%{size_download}", "-H", "Accept-Encoding: " + coding,
                        "http://%s:%d%s" % (B.HOST, port, path)],
                       capture_output=True, timeout=30)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"(?im)^content-encoding:\s*(\S+)", out)
    size = out.rsplit("\n", 1)[-1].strip()
    return int(size) if size.isdigit() else 0, m.group(1).lower() if m else "identity"


def start_proxies(wd, wanted, up_port, level, notes):
    """The proxies of --proxies in front of up_port, each compressing as the docstring says;
    h2o and Caddy skipped, with a note, when not installed."""
    proxies = []
    for name in wanted:
        if name in ("h2o", "caddy") and shutil.which(name) is None:
            notes.append("%s skipped: not installed (apt-get install %s)" % (name, name))
        elif name == "tether":
            ok, info = B.tether_available()
            if not ok:
                raise SystemExit("tether: %s" % info)
            notes.append("tether: %s" % info)
            proxies.append(B.start_tether(
                wd, up_port, extra_conf="compression: { enabled: true, levels: { gzip: %d } }\n"
                % level))
        elif name == "nginx":
            proxies.append(start_nginx_gzip(wd, up_port, level))
        elif name == "h2o":
            proxies.append(B.start_h2o(wd, up_port, conf=H2O_COMPRESS_CONF,
                                       extra={"level": level, "br": TETHER_BR_LEVEL}))
        else:
            proxies.append(B.start_caddy(wd, up_port, conf=CADDYFILE_COMPRESS,
                                         extra={"level": level}))
    return proxies


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--level", type=int, default=5, help="gzip level for all (1..9)")
    ap.add_argument("--proxies", default=",".join(OFFERS),
                    help="some of %s (h2o and caddy: when installed)" % ", ".join(OFFERS))
    args = ap.parse_args()
    args.duration = max(1, min(args.duration, 30))
    args.level = max(1, min(args.level, 9))
    wanted = [p for p in args.proxies.split(",") if p]
    for name in wanted:
        if name not in OFFERS:
            raise SystemExit("unknown proxy %s (one of %s)" % (name, ", ".join(OFFERS)))
    wd = B.workdir()
    files = os.path.join(wd, "files")
    make_files(files)
    up, up_port = start_upstream(wd, files)
    notes = []
    proxies = start_proxies(wd, wanted, up_port, args.level, notes)
    if not proxies:
        raise SystemExit("no proxy to measure: %s" % "; ".join(notes))
    # (proxy, coding) pairs, coding by coding: each proxy with each coding it offers.
    configs = [(p, c) for c in CODINGS for p in proxies if c in OFFERS[p.name]]
    paths = [("/data.json", 200_000), ("/app.js", 1_000_000)]
    results, flags = {}, []
    for path, _ in paths:
        for p, coding in configs:
            size, got = fetch(p.port, path, coding)
            results[(path, p.name, coding)] = {"size": size, "got": got, "cpu": [], "rps": []}
            if got != coding:
                flags.append("**%s answered %s with Content-Encoding %s to Accept-Encoding %s**"
                             % (p.name, path, got, coding))
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
        ngx = results.get((path, "nginx", "gzip"))
        ngx = B.median(ngx["cpu"]) if ngx else None
        for p, coding in configs:
            res = results[(path, p.name, coding)]
            cpu = B.median(res["cpu"])
            rows.append([path, p.name, coding if res["got"] == coding else
                         "%s (sent: %s)" % (coding, res["got"]),
                         "%.0f" % B.median(res["rps"]), "%.0f" % cpu,
                         "**%.2f**" % (cpu / ngx) if ngx else "-", res["size"],
                         "%.1f %%" % (100.0 * res["size"] / original)])
    v = B.versions()
    names = [p.name for p in proxies]
    versions = [v["nginx"]] + [v["h2o"]] * ("h2o" in names) + ["caddy " + v["caddy"]] * ("caddy" in names)
    lines = ["## Compression: wrk -t1 -c%d -d%ds per configuration, %d interleaved rounds (medians), gzip level %d"
             % (args.connections, args.duration, args.rounds, args.level), "",
             B.table(["path", "proxy", "coding", "responses/s", "CPU µs per response",
                      "vs nginx gzip", "bytes sent", "of the original"], rows), "",
             "- CPU: utime+stime of the proxy's process tree over the run / responses; one worker each; "
             "access logs off; upstream keep-alive on; 2 cores shared by wrk, the proxy and the upstream",
             "- set-up: nginx `gzip on`, gzip_comp_level %(l)d, gzip_types application/json "
             "application/javascript, gzip_min_length 1024, gzip_proxied any; tether "
             "`compression: {enabled: true, levels: {gzip: %(l)d}}` (zstd 3, br 4 by default); "
             "h2o `compress: {gzip: %(l)d, br: %(br)d}`, compress-minimum-size 1024; Caddy "
             "`encode { gzip %(l)d; zstd; minimum_length 1024; match header Content-Type "
             "application/json* application/javascript* }`, GOMAXPROCS=1"
             % {"l": args.level, "br": TETHER_BR_LEVEL},
             "- not offered: %s" % NOT_OFFERED,
             "- upstream: one nginx serving the two files (etag off)",
             "- versions: %s" % "; ".join(versions + notes)]
    lines += ["- %s" % f for f in flags]
    B.report("compress", lines)
    for p in proxies:
        B.stop(p.proc)
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
