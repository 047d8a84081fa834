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

# wait_for WHAT URL PATTERN: polls URL (10 s at most) until its body contains PATTERN.
wait_for() {
  i=0
  until curl -fs --max-time 1 "$2" 2>/dev/null | grep -q "$3"; do
    i=$((i + 1))
    if [ "$i" -ge 100 ]; then
      echo "demo: $1 did not answer $2 within 10 s" >&2
      exit 1
    fi
    sleep 0.1
  done
}
# The backends first: tether checks them as soon as it starts (and every
# health.down_interval while they are down), so they should be listening.
wait_for 'backend "one"' http://127.0.0.1:8081/health status
wait_for 'backend "two"' http://127.0.0.1:8082/health status

"$TETHER" -l 0.0.0.0:8000 --admin 127.0.0.1:9901 \
  -b http://127.0.0.1:8081 -b http://127.0.0.1:8082 --log-format text &
TETHER_PID=$!
PIDS="$PIDS $TETHER_PID"
# Both backends in rotation before saying "try": the first curl gets an answer, not a 503.
i=0
until [ "$(curl -fs --max-time 1 http://127.0.0.1:9901/admin/backends | grep -c '"state": "up"')" -ge 2 ]; do
  kill -0 "$TETHER_PID" 2>/dev/null || { echo "demo: tether exited (see its log above)" >&2; exit 1; }
  i=$((i + 1))
  if [ "$i" -ge 100 ]; then echo "demo: the backends did not come up within 10 s" >&2; exit 1; fi
  sleep 0.1
done

cat <<'TRY'

tether on http://localhost:8000 in front of two backends ("one" on :8081, "two" on :8082),
both up. Try, from another terminal:

  curl localhost:8000/id                      # "one" or "two": balanced
  for i in 1 2 3 4; do curl -s localhost:8000/id; echo; done
  curl -s localhost:8000/echo | python3 -m json.tool    # what the backend received
  curl -N 'localhost:8000/chunked?n=5&delay_ms=500'     # streamed, not buffered
  curl localhost:9901/metrics                 # Prometheus metrics
  curl localhost:9901/admin/backends          # backend states
  curl -X POST localhost:8081/admin/health/503          # make "one" fail its health check...
  curl localhost:9901/admin/backends          # ...and watch it go down
  curl -X POST localhost:8081/admin/health/200          # and come back within seconds
  curl -X POST 'localhost:9901/admin/log?level=debug'   # more detail in tether's log
  kill -HUP $(pgrep -x tether)                # reload the configuration

Access lines go to stdout, the application log to stderr. Ctrl-C to stop.

TRY
wait "$TETHER_PID"
