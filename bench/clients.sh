#!/bin/sh
# Many concurrent clients: CPU per request of each proxy with 5,000 concurrent keep-alive
# clients against the same proxy with 50, in one run (issue 17 goal 5: the ratio stays
# within 1.15x). Details and set-up: bench/run_clients.py.
#
#   bench/clients.sh                                    3 rounds x 8 s (~5 min)
#   bench/clients.sh --many 8000 --rounds 5             up to the descriptor limit
#   TETHER_BASE_BIN=/path/to/old/tether bench/clients.sh --proxies tether,tether-base
set -eu
cd "$(dirname "$0")"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 run_clients.py "$@"
