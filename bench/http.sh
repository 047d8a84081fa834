#!/bin/sh
# HTTP/1.1 keep-alive benchmark: tether vs HAProxy, nginx, h2o and Caddy, one worker each,
# same upstream.
#
# Measures requests/s, p50/p99 latency (wrk --latency) and CPU time per request of each
# proxy (from /proc/<pid>/stat). Access logs are OFF for every proxy (but with --profile prod); upstream keep-alive
# is ON for every proxy. Everything binds 127.0.0.1; each run is bounded by --duration.
# Details and set-up: bench/run_http.py.
#
#   bench/http.sh                                   3 rounds x 10 s x 5 proxies (~160 s)
#   bench/http.sh --rounds 1 --duration 3           a quick look
#   TETHER_BIN=/path/to/tether bench/http.sh --proxies tether,haproxy
#   bench/http.sh --tls                             the same over HTTPS (saved as http-tls-*)
#   bench/http.sh --profile prod --rounds 5         the production profile (saved as http-prod-*):
#       tether, HAProxy, nginx, h2o and Caddy with browser-like requests (1.3 KB of headers, a
#       JWT cookie, 300 users), JSON access logs to files, per-user affinity, 4 backends
#
# --tls: each proxy terminates TLS on its listener, wrk speaks HTTPS to it, the upstream
# stays plain HTTP. One ECDSA P-256 self-signed certificate (made with `openssl req` in the
# run's temporary directory) for all; TLS 1.2 and 1.3 allowed, 1.3 negotiated; nginx
# `listen ... ssl` + ssl_session_cache shared:SSL:10m, HAProxy `bind ... ssl crt`
# ssl-min-ver TLSv1.2, tether `listeners: [{address, tls: {certificates: [...]}}]`.
#
# Needs: wrk, haproxy, nginx (sh packaging/install-deps.sh), openssl for --tls, a built tether
# (skipped with a note if $TETHER_BIN, default build/proxy/tether, does not run).
set -eu
cd "$(dirname "$0")"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 run_http.py "$@"
