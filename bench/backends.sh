#!/bin/sh
# Cost in the number of backends: CPU per request of tether with 2 and with 500 backends,
# for every balancing algorithm, in one run; nginx, HAProxy and Caddy with 500 backends
# (their documented equivalents of each algorithm) beside it; and the CPU tether's health
# checks of 500 backends cost when idle. No h2o: h2o 2.2's proxy.reverse.url takes one URL
# (several backends came with 2.3). Details and set-up: bench/run_backends.py.
#
#   bench/backends.sh                                  3 rounds x 5 s (~6 min)
#   bench/backends.sh --rounds 1 --duration 2 --algos round_robin     a quick look
#   TETHER_BASE_BIN=/path/to/old/tether bench/backends.sh --proxies tether,tether-base
#
# Needs: wrk, haproxy, nginx, and caddy for that peer (sh packaging/install-deps.sh; skipped,
# with a note, when not installed), a built tether ($TETHER_BIN, default build/proxy/tether).
# Loopback only: the 500 backends are one nginx listening on 500 addresses 127.0.1.1 ...
# 127.0.2.244 (all of 127.0.0.0/8 is loopback on Linux).
set -eu
cd "$(dirname "$0")"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 run_backends.py "$@"
