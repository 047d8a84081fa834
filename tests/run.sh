#!/bin/bash
# Installs every dependency, builds tether and runs every test:
#   1. unit, integration and end-to-end tests (real redis-server, uvicorn,
#      python-socketio, websockets, curl, Prometheus) against a RelWithDebInfo build;
#   2. the unit and integration tests again under ASan + UBSan;
#   3. the end-to-end tests again against the ASan + UBSan binary: a sanitizer
#      report or a leak in tether fails the test that caused it (tests/e2e/harness.py,
#      TETHER_SANITIZED); the tests that measure resident memory skip and say so;
#   4. every libFuzzer target of tests/fuzz/ (clang, ASan + UBSan), each for
#      TETHER_FUZZ_SECONDS (default 30) from its committed corpus, TETHER_FUZZ_JOBS
#      (default 2) at a time. A crash fails the run; its input is written to
#      tests/fuzz/crashes/ (keep it as a regression seed, tests/fuzz/README.md).
#
#   sudo tests/run.sh            (as root, sudo is not needed)
#   sudo tests/run.sh fuzz       only the fuzzers (4.), e.g. with TETHER_FUZZ_SECONDS=3600
#
# With CI=true a test whose component is missing fails instead of skipping.
# Build directories: TETHER_BUILD_DIR (build), TETHER_ASAN_BUILD_DIR (build-asan),
# TETHER_FUZZ_BUILD_DIR (build-fuzz). Each step prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${TETHER_BUILD_DIR:-build}
ASAN_BUILD=${TETHER_ASAN_BUILD_DIR:-build-asan}
FUZZ_BUILD=${TETHER_FUZZ_BUILD_DIR:-build-fuzz}
FUZZ_SECONDS=${TETHER_FUZZ_SECONDS:-30}
FUZZ_JOBS=${TETHER_FUZZ_JOBS:-2}

TIMES=()
step() {  # step NAME COMMAND...: runs it and records how long it took
  local name=$1 t0=$SECONDS
  shift
  echo "tests/run.sh: == $name"
  "$@"
  TIMES+=("$(printf '%5d s  %s' $((SECONDS - t0)) "$name")")
  echo "tests/run.sh: $name took $((SECONDS - t0)) s"
}

step "dependencies" sh packaging/install-deps.sh
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

ONLY=${1:-all}
case $ONLY in all|fuzz) ;; *) echo "usage: tests/run.sh [fuzz]" >&2; exit 2 ;; esac

if [ "$ONLY" = all ]; then
# 1. Everything, on the build users run.
step "build" eval 'cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build "$BUILD" -j2'
step "unit, integration, e2e" ctest --test-dir "$BUILD" --output-on-failure -j2 --timeout 900
# The Debian package: built, installed with dpkg, checked (version, configuration,
# unit, man page, lintian) and purged again (tests/package.sh).
step "Debian package" env SKIP_DEPS=1 bash tests/package.sh

# 2. Unit and integration tests under ASan + UBSan.
step "build ASan+UBSan" eval 'cmake -S . -B "$ASAN_BUILD" -DCMAKE_BUILD_TYPE=Debug -DTETHER_SANITIZE=ON &&
  cmake --build "$ASAN_BUILD" -j2'
step "unit, integration under ASan+UBSan" env \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir "$ASAN_BUILD" --output-on-failure -j2 -L 'unit|integration' --timeout 900

# 3. The end-to-end suite against the sanitized binary (ctest passes its TETHER_BIN).
# An error or a leak makes tether exit 86, which the harness checks with its stderr.
step "e2e under ASan+UBSan" env TETHER_SANITIZED=1 \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 LSAN_OPTIONS=exitcode=86 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=86 \
  ctest --test-dir "$ASAN_BUILD" --output-on-failure -j2 -L e2e --timeout 900
fi

# 4. The fuzzers: built with clang, only their targets; each runs from its
# corpus (new inputs go to a scratch directory, not into the committed corpus).
step "build fuzzers" eval 'cmake -S . -B "$FUZZ_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTETHER_TESTS=OFF \
  -DTETHER_FUZZ=ON -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ &&
  cmake --build "$FUZZ_BUILD" -j2 --target fuzzers'
fuzz_one() {  # fuzz_one TARGET LOG: one bounded run; its exit code
  local t=$1 log=$2 max_len=4096 work rc=0
  local dict=()
  case $t in
    fuzz_engineio_sid) max_len=1024 ;;
    fuzz_admin) max_len=8192 ;;
    fuzz_compression|fuzz_h2_server) max_len=16384 ;;
  esac
  case $t in fuzz_h1_*|fuzz_admin) dict=(-dict=tests/fuzz/http.dict) ;; esac
  work=$(mktemp -d)
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$FUZZ_BUILD/tests/fuzz/$t" -max_total_time="$FUZZ_SECONDS" -max_len="$max_len" -timeout=10 \
    -rss_limit_mb=2560 "${dict[@]}" -artifact_prefix="tests/fuzz/crashes/$t-" -print_final_stats=1 \
    "$work" "tests/fuzz/corpus/$t" > "$log" 2>&1 || rc=$?
  rm -rf "$work"
  return "$rc"
}
fuzz() {  # every target, FUZZ_JOBS at a time (one per core)
  local targets=(fuzz_h1_request fuzz_h1_response fuzz_h2_server fuzz_websocket_frames fuzz_engineio_sid
                 fuzz_affinity_key fuzz_admin_state fuzz_config fuzz_admin fuzz_compression
                 fuzz_upgrade_fds fuzz_cache_control)
  local logs failed=() t running=0
  logs=$(mktemp -d)
  mkdir -p tests/fuzz/crashes
  for t in "${targets[@]}"; do
    if [ "$running" -ge "$FUZZ_JOBS" ]; then
      wait -n || true
      running=$((running - 1))
    fi
    (rc=0; fuzz_one "$t" "$logs/$t.log" || rc=$?; echo "$rc" > "$logs/$t.rc") &
    running=$((running + 1))
  done
  wait
  for t in "${targets[@]}"; do
    if [ "$(cat "$logs/$t.rc")" -ne 0 ]; then
      failed+=("$t")
      echo "tests/run.sh: $t FAILED (exit $(cat "$logs/$t.rc")); its log:"
      grep -v '^#[0-9]' "$logs/$t.log" | tail -60
    else
      echo "tests/run.sh: $t: $(awk '/^stat::number_of_executed_units/ {print $2}' "$logs/$t.log") runs, no crash"
    fi
  done
  rm -rf "$logs"
  if [ ${#failed[@]} -ne 0 ]; then
    echo "tests/run.sh: fuzzers that crashed: ${failed[*]}; inputs in tests/fuzz/crashes/"
    return 1
  fi
}
step "fuzzers (${FUZZ_SECONDS} s each)" fuzz

printf 'tests/run.sh: %s\n' "${TIMES[@]}"
echo "tests/run.sh: all tests passed"
