#!/bin/sh
# Builds tether's Debian package from the CMake install rules (packaging/CMakeLists.txt):
# configures a Release build with prefix /usr and Debian's hardening flags, builds the
# binary (tests off), and runs cpack -G DEB. The last line printed is the .deb's path.
#   sh packaging/build-deb.sh        needs the build dependencies: sh packaging/install-deps.sh
# TETHER_DEB_BUILD_DIR (build-deb) is the build directory, TETHER_JOBS (2) the parallelism.
set -eu
cd "$(dirname "$0")/.."
BUILD=${TETHER_DEB_BUILD_DIR:-build-deb}
JOBS=${TETHER_JOBS:-2}
umask 022  # the package's files and directories get the modes they are staged with

# The flags dpkg-buildpackage would pass (stack protector, _FORTIFY_SOURCE, format
# checks, full RELRO), less -g and -O2: the binary is stripped and Release sets -O3.
export DEB_BUILD_MAINT_OPTIONS=hardening=+all
export DEB_CFLAGS_MAINT_STRIP="-g -O2" DEB_CXXFLAGS_MAINT_STRIP="-g -O2"
CPPFLAGS=$(dpkg-buildflags --get CPPFLAGS)
CFLAGS="$(dpkg-buildflags --get CFLAGS) $CPPFLAGS"
CXXFLAGS="$(dpkg-buildflags --get CXXFLAGS) $CPPFLAGS"
LDFLAGS=$(dpkg-buildflags --get LDFLAGS)

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr \
  -DTETHER_TESTS=OFF -DTETHER_FUZZ=OFF -DTETHER_SANITIZE=OFF \
  -DCMAKE_C_FLAGS="$CFLAGS" -DCMAKE_CXX_FLAGS="$CXXFLAGS" -DCMAKE_EXE_LINKER_FLAGS="$LDFLAGS"
nice cmake --build "$BUILD" -j"$JOBS"
rm -f "$BUILD"/tether_*.deb
(cd "$BUILD" && cpack -G DEB)
ls "$(pwd)/$BUILD"/tether_*.deb
