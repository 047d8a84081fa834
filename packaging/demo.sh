#!/bin/sh
# A two-minute look at tether: installs the dependencies, builds, starts two demo
# backends on 127.0.0.1:8081 and :8082 (tests/e2e/apps/http_upstream.py, named "one" and
# "two") and runs tether in front of them on 0.0.0.0:8000, admin on 127.0.0.1:9901.
# Ctrl-C stops everything.
#
#   sh packaging/demo.sh              install deps (apt-get, needs root or sudo), build, run
#   SKIP_DEPS=1 sh packaging/demo.sh  already installed
#   SKIP_BUILD=1 ...                  already built (build/proxy/tether)
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)

if [ -z "${SKIP_DEPS:-}" ]; then
  sh packaging/install-deps.sh
fi
if [ -z "${SKIP_BUILD:-}" ]; then
  cmake -S . -B build
  cmake --build build -j2
fi
TETHER="${TETHER_BIN:-$ROOT/build/proxy/tether}"
[ -x "$TETHER" ] || { echo "demo: no tether binary at $TETHER" >&2; exit 1; }

PIDS=""
cleanup() {
  trap - INT TERM EXIT
  for pid in $PIDS; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

/usr/bin/python3 tests/e2e/apps/http_upstream.py --port 8081 --name one >/dev/null &
PIDS="$PIDS $!"
/usr/bin/python3 tests/e2e/apps/http_upstream.py --port 8082 --name two >/dev/null &
PIDS="$PIDS $!"

cat <<'TRY'

tether on http://localhost:8000 in front of two backends ("one" on :8081, "two" on :8082).
Try, from another terminal:

  curl localhost:8000/id                      # "one" or "two": balanced
  for i in 1 2 3 4; do curl -s localhost:8000/id; echo; done
  curl -s localhost:8000/echo | python3 -m json.tool    # what the backend received
  curl -N 'localhost:8000/chunked?n=5&delay_ms=500'     # streamed, not buffered
  curl localhost:9901/metrics                 # Prometheus metrics
  curl localhost:9901/admin/backends          # backend states
  curl -X POST localhost:8081/admin/health/503          # make "one" fail its health check...
  curl localhost:9901/admin/backends          # ...and watch it go down
  curl -X POST localhost:8081/admin/health/200          # and come back
  kill -HUP $(pgrep -x tether)                # reload the configuration

Ctrl-C to stop.

TRY
"$TETHER" -l 0.0.0.0:8000 --admin 127.0.0.1:9901 \
  -b http://127.0.0.1:8081 -b http://127.0.0.1:8082 --log-format text &
PIDS="$PIDS $!"
wait "$!"
