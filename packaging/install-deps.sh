#!/bin/sh
# Installs every build, test and bench dependency of tether from Debian 12's packages.
#   sh packaging/install-deps.sh            build + test + bench
set -eu
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  build-essential cmake pkg-config ccache git ca-certificates openssl clang libclang-rt-dev \
  libuv1-dev node-llhttp libssl-dev libhiredis-dev prometheus-cpp-dev \
  libspdlog-dev libfmt-dev libyaml-cpp-dev libcli11-dev nlohmann-json3-dev \
  libsystemd-dev libgtest-dev libgmock-dev libzstd-dev libbrotli-dev zlib1g-dev libnghttp2-dev \
  curl python3 python3-websockets python3-socketio python3-aiohttp uvicorn \
  python3-requests python3-redis redis-server redis-sentinel prometheus nodejs node-ws \
  python3-h2 nghttp2-client haproxy nginx-light h2o caddy wrk procps psmisc valgrind logrotate zstd brotli gzip
# The node Socket.IO peers of the end-to-end tests (socket.io, socket.io-client),
# from the npm registry, pinned by tests/e2e/apps/node/package-lock.json.
command -v npm >/dev/null 2>&1 || $SUDO apt-get install -y -q --no-install-recommends npm
NODE_PEERS="$(cd "$(dirname "$0")/.." && pwd)/tests/e2e/apps/node"
if [ -f "$NODE_PEERS/package-lock.json" ]; then
  (cd "$NODE_PEERS" && npm ci --no-audit --no-fund --loglevel=error)
fi
