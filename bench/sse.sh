#!/bin/sh
# Event-stream fan-out: tether vs HAProxy, nginx, h2o and Caddy, one worker each, one node
# upstream writing a 200-byte event on every stream every 100 ms.
#
# Measures events/s, CPU time per event of each proxy (/proc/<pid>/stat), the latency each
# adds per event (against the client reading the upstream directly), and events lost or
# coalesced. Access logs are OFF for every proxy. Everything binds 127.0.0.1; every run is
# bounded. Details and set-up: bench/run_sse.py.
#
#   bench/sse.sh                                 2000 streams, 3 rounds x 10 s (~3 min)
#   bench/sse.sh --streams 50 --rounds 1 --duration 2    a quick look
#   bench/sse.sh --proxies tether,haproxy,haproxy-default   HAProxy with and without
#                                                        option http-no-delay
#
# Needs: node, haproxy, nginx, and h2o and caddy for those peers (sh
# packaging/install-deps.sh; a peer that is not installed is skipped with a note), and a
# built tether (skipped if $TETHER_BIN, default build/proxy/tether, does not run).
set -eu
cd "$(dirname "$0")"
# N streams need N fds in the client and the upstream, 2N in the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 run_sse.py "$@"
