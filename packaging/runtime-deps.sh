#!/bin/sh
# Prints the Debian packages that own the shared libraries BINARY loads, one a line.
# The container image's runtime stage installs exactly these (see packaging/Dockerfile),
# so a library added to the build needs no edit here.
#   sh packaging/runtime-deps.sh build/proxy/tether
set -eu
[ $# -eq 1 ] || { echo "usage: $0 BINARY" >&2; exit 2; }
ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
  dpkg -S "$lib" 2>/dev/null \
    || dpkg -S "$(realpath "$lib")" 2>/dev/null \
    || dpkg -S "*/$(basename "$lib")" 2>/dev/null \
    || { echo "runtime-deps: no package owns $lib" >&2; exit 1; }
done | cut -d: -f1 | sort -u
