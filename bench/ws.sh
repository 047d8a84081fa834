#!/bin/sh
# WebSocket benchmark: tether vs HAProxy, nginx, h2o and Caddy, one worker each, same node `ws`
# echo upstream (h2o with proxy.websocket ON; Caddy's reverse_proxy as it is).
#
# 1. echo load: round trips/s, p50/p99 round-trip latency, proxy CPU per round trip (/proc)
# 2. idle memory: (RSS after - RSS before) / N for N idle WebSockets (default 4000) per proxy
# Access logs are OFF for every proxy. Everything binds 127.0.0.1; every run is bounded.
# Details and set-up: bench/run_ws.py.
#
#   bench/ws.sh                                     3 rounds x 10 s + 4000 idle (~2 min)
#   bench/ws.sh --rounds 1 --duration 3 --idle 1000 a quick look
#   bench/ws.sh --skip-load                         idle memory only
#   bench/ws.sh --tls --skip-load                   memory per idle TLS WebSocket (ws-tls-*)
#
# --tls: each proxy terminates TLS on its listener, the clients connect with wss:// (and
# verify the certificate), the echo upstream stays plain ws://. One ECDSA P-256
# self-signed certificate (made with `openssl req` in the run's temporary directory) for
# all; TLS 1.2 and 1.3 allowed, 1.3 negotiated; set-up as for bench/http.sh --tls (h2o and
# Caddy as for bench/h2.sh).
#
# Needs: node with the ws module (Debian's node-ws, or `npm install` in bench/), haproxy,
# nginx, and h2o and caddy for those peers (sh packaging/install-deps.sh; a peer that is not
# installed is skipped with a note), openssl for --tls, and a built tether (skipped if
# $TETHER_BIN, default build/proxy/tether, does not run).
set -eu
cd "$(dirname "$0")"
# N idle WebSockets need N fds in the client and 2N in the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 run_ws.py "$@"
