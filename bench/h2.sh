#!/bin/sh
# HTTP/2 over TLS (issue 13): tether vs HAProxy, nginx, h2o and Caddy, one worker each, same
# upstream (benchlib's nginx), access logs off, upstream keep-alive on.
#
# 1. h2load over TLS, 10 connections x 10 concurrent streams (h2load -c 10 -m 10 -t 1 -D <s>):
#    requests/s, CPU time per request of each proxy (/proc/<pid>/stat, user/kernel),
#    non-2xx and failed requests, and the protocol negotiated (must be h2).
# 2. Memory per idle HTTP/2 connection: 2000 TLS h2 connections to each proxy (preface,
#    SETTINGS both ways, one GET /, then idle), (RSS open - RSS before) / N.
# Interleaved rounds, medians; tether's ratios against the leanest/best peer and the goals
# of issue 13. Everything binds 127.0.0.1; every run and loop is bounded. Details and
# set-up: bench/run_h2.py.
#
#   bench/h2.sh                                  3 rounds x 10 s x 5 proxies (~4 min)
#   bench/h2.sh --rounds 1 --duration 3         a quick look
#   bench/h2.sh --idle 0                         the load only
#   TETHER_BIN=/path/to/tether bench/h2.sh --proxies tether,haproxy,nginx
#
# Needs: h2load (nghttp2-client), haproxy, nginx, h2o, caddy (skipped when absent), openssl,
# python3-h2, a built tether (skipped with a note if $TETHER_BIN does not run).
set -eu
cd "$(dirname "$0")"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 run_h2.py "$@"
