#!/bin/sh
# Many connections: KiB of resident memory per idle keep-alive HTTP/1.1 connection, and
# how much is still held once they close; tether vs HAProxy, nginx, h2o and Caddy, one
# worker each, same upstream (h2o and Caddy skipped, with a note, when not installed).
# Everything binds 127.0.0.1; every loop is bounded. Details: run_conns.py.
#
#   bench/conns.sh                       4000 connections (~1 min)
#   bench/conns.sh --connections 8000    up to 9000 (the client's fds and the proxy's)
#   TETHER_BASE_BIN=... bench/conns.sh --proxies tether,tether-base,haproxy,nginx,h2o,caddy
set -eu
cd "$(dirname "$0")"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 run_conns.py "$@"
