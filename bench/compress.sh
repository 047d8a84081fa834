#!/bin/sh
# Response compression: CPU per compressed response and compressed size, tether vs nginx
# (gzip on), h2o 2.2 (compress) and Caddy 2.6 (encode), gzip at the same level, for a 200 KB
# JSON and a 1 MB JavaScript bundle served by one upstream nginx; each proxy's other codings
# beside (tether zstd and brotli, h2o brotli, Caddy zstd). One worker each, access logs off,
# upstream keep-alive on. Everything binds 127.0.0.1; each run is bounded by --duration.
# Details: bench/run_compress.py.
#
#   bench/compress.sh                              3 rounds x 5 s (~4 min with h2o and Caddy)
#   bench/compress.sh --rounds 1 --duration 2      a quick look
#   bench/compress.sh --proxies tether,nginx       without h2o and Caddy
#
# Needs: wrk, nginx, curl (sh packaging/install-deps.sh), a built tether ($TETHER_BIN,
# default build/proxy/tether); h2o and caddy when installed (apt-get install h2o caddy).
set -eu
cd "$(dirname "$0")"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 run_compress.py "$@"
