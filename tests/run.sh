#!/bin/bash
# Installs every dependency, builds tether and runs every test: unit,
# integration and end-to-end (real redis-server, uvicorn, python-socketio,
# websockets, curl, Prometheus), then the unit and integration tests again
# under ASan + UBSan.
#
#   sudo tests/run.sh            (as root, sudo is not needed)
#
# With CI=true a test whose component is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

sh packaging/install-deps.sh
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
ctest --test-dir build --output-on-failure -j2 --timeout 900

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTETHER_SANITIZE=ON
cmake --build build-asan -j2
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan --output-on-failure -j2 -L 'unit|integration' --timeout 900
echo "tests/run.sh: all tests passed"
