#!/bin/sh
# What affinity costs: tether with affinity off, memory, Redis (cache hits) and Redis
# (every request a new key), one run, medians. Details: bench/run_affinity.py.
#
#   bench/affinity.sh [--duration 5] [--rounds 2] [--connections 50]
set -eu
cd "$(dirname "$0")"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
exec /usr/bin/python3 run_affinity.py "$@"
