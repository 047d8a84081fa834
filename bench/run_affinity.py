"""What affinity costs: tether with affinity off, on with the memory store, and on
with Redis, in front of one nginx upstream, in one run.

Scenarios (wrk --latency, keep-alive, the same connections and duration each):
  off          no affinity keys
  memory       keys [cookie:tether_affinity]; every request carries one of 1000 cookies
  redis-hit    the same against Redis: pins answered by the local cache after the first
  redis-miss   every request a new cookie value: a Redis GET and a SET each (worst case)

For the Redis runs it also reports the GET latency Redis gave tether, from
tether_affinity_store_seconds{op="get"} (p50 and p99 by bucket). Loopback only,
bounded durations.

  bench/affinity.sh [--duration 5] [--rounds 2] [--connections 50]
"""
import argparse
import os
import re
import subprocess
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402

LUA_FIXED = """
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/", {["Cookie"] = "tether_affinity=user" .. (n % 1000)})
end
"""
LUA_UNIQUE = """
local n = 0
local id = tostring(math.random(1, 1000000000))
request = function()
  n = n + 1
  return wrk.format("GET", "/", {["Cookie"] = "tether_affinity=u" .. id .. "-" .. n})
end
"""


def start_redis(wd):
    port = B.free_port()
    p = B.spawn(["redis-server", "--port", str(port), "--bind", B.HOST, "--save", "", "--appendonly", "no"],
                "redis")
    B.wait_until(lambda: subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG",
                 10, "redis")
    return port


def start_tether(wd, upstream_port, store, affinity):
    conf = os.path.join(wd, "tether-%s.yaml" % ("redis" if store else "memory" if affinity else "off"))
    with open(conf, "w") as f:
        f.write("access_log: {enabled: false}\nhealth: {path: /health, interval: 5s}\n")
        if affinity:
            f.write("affinity:\n  keys: [\"cookie:tether_affinity\"]\n  lookup_timeout: 50ms\n")
            if store:
                f.write("  store: %s\n" % store)
    port = B.free_port()
    admin = B.free_port()
    p = B.spawn([B.TETHER_BIN, "-c", conf, "-l", "%s:%d" % (B.HOST, port), "--admin", "%s:%d" % (B.HOST, admin),
                 "-b", "http://%s:%d" % (B.HOST, upstream_port), "--log-level", "warn"], "tether")
    B.wait_http(port, p, "/health")
    return p, port, admin


def wrk(port, script, args):
    path = os.path.join(args.wd, "s.lua")
    with open(path, "w") as f:
        f.write(script)
    r = subprocess.run(["wrk", "-t1", "-c%d" % args.connections, "-d%ds" % args.duration, "--latency", "-s", path,
                        "http://%s:%d/" % (B.HOST, port)], capture_output=True, timeout=args.duration + 30)
    out = r.stdout.decode()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = B.to_ms(re.search(r"50%\s+(\S+)", out).group(1))
    p99 = B.to_ms(re.search(r"99%\s+(\S+)", out).group(1))
    return rps, p50, p99


def store_quantiles(admin):
    text = urllib.request.urlopen("http://%s:%d/metrics" % (B.HOST, admin), timeout=5).read().decode()
    buckets = []
    for m in re.finditer(r'tether_affinity_store_seconds_bucket\{op="get",le="([^"]+)"\} (\S+)', text):
        buckets.append((float("inf") if m.group(1) == "+Inf" else float(m.group(1)), float(m.group(2))))
    if not buckets or buckets[-1][1] == 0:
        return "-", "-"
    total = buckets[-1][1]

    def q(f):
        for le, c in buckets:
            if c >= f * total:
                return "≤ %.1f ms" % (le * 1000) if le != float("inf") else "> max"
        return "-"
    return q(0.5), q(0.99)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--connections", type=int, default=50)
    args = ap.parse_args()
    args.duration = min(args.duration, 60)
    args.wd = B.workdir()
    _, up_port = B.start_nginx_upstream(args.wd)
    redis_port = start_redis(args.wd)
    redis_url = "redis://%s:%d/0" % (B.HOST, redis_port)
    scenarios = [("off", None, False, LUA_FIXED), ("memory", None, True, LUA_FIXED),
                 ("redis-hit", redis_url, True, LUA_FIXED), ("redis-miss", redis_url, True, LUA_UNIQUE)]
    results = {name: [] for name, *_ in scenarios}
    quantiles = {}
    for rnd in range(args.rounds):
        for name, store, aff, script in scenarios:
            p, port, admin = start_tether(args.wd, up_port, store, aff)
            wrk(port, script, argparse.Namespace(**{**vars(args), "duration": 1}))  # warm up
            r = wrk(port, script, args)
            results[name].append(r)
            if store:
                quantiles[name] = store_quantiles(admin)
            B.stop(p)
            B.log("round %d %-10s %8.0f req/s  p50 %.3f ms  p99 %.3f ms" % (rnd + 1, name, *r))
    base = B.median([r[0] for r in results["off"]])
    rows = []
    for name, *_ in scenarios:
        rps = B.median([r[0] for r in results[name]])
        p50 = B.median([r[1] for r in results[name]])
        p99 = B.median([r[2] for r in results[name]])
        q = quantiles.get(name, ("-", "-"))
        rows.append([name, "%.0f" % rps, "%.2f" % (rps / base), "%.3f" % p50, "%.3f" % p99, q[0], q[1]])
    text = ["## Affinity: wrk -t1 -c%d -d%ds, %d rounds (medians)" % (args.connections, args.duration, args.rounds), "",
            B.table(["scenario", "req/s", "vs off", "p50 ms", "p99 ms", "Redis GET p50", "Redis GET p99"], rows), "",
            "- one tether worker; upstream: nginx; Redis on loopback; lookup_timeout 50ms; access log off",
            "- redis-hit: 1000 users, pins answered from tether's local cache after the first lookup",
            "- redis-miss: every request a new key: one Redis GET and one SET each (the worst case)"]
    B.report("affinity", text)


if __name__ == "__main__":
    B.run(main)
