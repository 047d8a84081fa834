#!/bin/bash
# The Debian package, end to end, as root on Debian 12: builds it (packaging/build-deb.sh),
# installs it with dpkg -i, checks what it installed (files, conffiles, tether --version,
# tether --check-config on the installed configuration, as the unit's dynamic user would
# read it, the man page, the logrotate file, the unit with systemd-analyze verify), lints
# it with lintian, installs it again over an edited configuration and an enabled unit,
# removes and installs it again, and purges it, checking that nothing is left. systemd
# need not be PID 1: systemd-analyze verify works offline.
#
#   sudo bash tests/package.sh               installs the build dependencies first
#   sudo SKIP_DEPS=1 bash tests/package.sh   already installed (sh packaging/install-deps.sh)
#
# It refuses to run where a tether package is already installed (its purge would take
# that one away). TETHER_DEB_BUILD_DIR (build-deb) is the build directory.
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$SECONDS
say() { echo "tests/package.sh: $*"; }
fail() { echo "tests/package.sh: FAIL: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || { echo "tests/package.sh: run as root (dpkg -i)" >&2; exit 2; }
if dpkg-query -W -f='${db:Status-Status}' tether 2>/dev/null | grep -qv '^not-installed$'; then
  fail "a tether package is already on this machine ($(dpkg-query -W -f='${Version} ${db:Status-Abbrev}' tether)); dpkg --purge tether first"
fi

# Dependencies: the build's, then the tools of these checks.
export DEBIAN_FRONTEND=noninteractive
[ -n "${SKIP_DEPS:-}" ] || sh packaging/install-deps.sh
TOOLS="dpkg-dev lintian systemd man-db groff-base logrotate util-linux"
missing=$(for p in $TOOLS; do dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null |
  grep -qx installed || echo "$p"; done)
if [ -n "$missing" ]; then
  say "installing $(tr '\n' ' ' <<<"$missing")"
  apt-get update -q
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $missing
fi

# 1. Build.
t=$SECONDS
DEB=$(sh packaging/build-deb.sh | tail -n 1)
[ -f "$DEB" ] || fail "packaging/build-deb.sh made no package ($DEB)"
VERSION=$(dpkg-deb -f "$DEB" Version)
say "built $DEB ($VERSION) in $((SECONDS - t)) s"
dpkg-deb -f "$DEB" Depends | sed 's/^/tests\/package.sh: Depends: /'

# Whatever happens from here on, the package goes again.
INSTALLED=""
cleanup() {
  if [ -n "$INSTALLED" ]; then
    say "purging the package"
    dpkg --purge tether >/dev/null || echo "tests/package.sh: dpkg --purge tether failed" >&2
  fi
}
trap cleanup EXIT

# 2. Install.
INSTALLED=1
if ! dpkg -i "$DEB"; then
  say "dpkg -i left dependencies to install: apt-get -f install"
  apt-get -f install -y -q
fi
[ "$(dpkg-query -W -f='${db:Status-Status}' tether)" = installed ] || fail "tether is not installed"

# dpkg may be told to leave out docs and man pages (path-exclude, as in slim images):
# such a file is reported, not failed.
EXCLUDES=$(cat /etc/dpkg/dpkg.cfg /etc/dpkg/dpkg.cfg.d/* 2>/dev/null |
  sed -n 's/^path-exclude[= ]*//p' || true)
excluded() {  # excluded PATH: true when a path-exclude pattern matches it
  local - pat
  set -f  # the patterns are matched against PATH, not expanded
  for pat in $EXCLUDES; do
    # shellcheck disable=SC2053
    [[ $1 == $pat ]] && return 0
  done
  return 1
}
HAVE_MAN=1
for f in /usr/bin/tether /lib/systemd/system/tether.service /etc/tether/tether.yaml \
         /etc/logrotate.d/tether /usr/share/doc/tether/README.md \
         /usr/share/doc/tether/copyright /usr/share/doc/tether/changelog.gz \
         /usr/share/man/man8/tether.8.gz /usr/share/lintian/overrides/tether; do
  if [ -e "$f" ]; then continue; fi
  if excluded "$f"; then
    say "$f not installed: dpkg's path-exclude leaves it out here"
    case $f in */man8/*) HAVE_MAN="" ;; esac
  else
    fail "$f is not installed"
  fi
done
conffiles=$(dpkg-query -W -f='${Conffiles}\n' tether)
for f in /etc/tether/tether.yaml /etc/logrotate.d/tether; do
  grep -q "^ $f " <<<"$conffiles" || fail "$f is not a conffile: $conffiles"
done
[ "$(stat -c '%a %U' /etc/tether)" = "755 root" ] || fail "/etc/tether is $(stat -c '%a %U' /etc/tether)"

# 3. The installed binary and configuration.
out=$(/usr/bin/tether --version)
[ "$out" = "tether $VERSION" ] || fail "tether --version said \"$out\", the package is $VERSION"
say "tether --version: $out"
out=$(tether --check-config --config /etc/tether/tether.yaml 2>&1) ||
  fail "tether --check-config --config /etc/tether/tether.yaml: $out"
say "tether --check-config: $out"
# As the unit runs it: ExecStartPre, with TETHER_CONFIG, as a user that owns nothing
# (DynamicUser=): the configuration must be readable by any user.
out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups \
  env -i TETHER_CONFIG=/etc/tether/tether.yaml /usr/bin/tether --check-config 2>&1) ||
  fail "the unit's ExecStartPre, as an unprivileged user: $out"

# 4. The unit, offline: syntax, every executable and man: page it names. Any output
# (an unknown key, a bad value) fails, though systemd-analyze still exits 0 for it.
verify_args=()
[ -n "$HAVE_MAN" ] || verify_args=(--man=no)
out=$(systemd-analyze verify "${verify_args[@]}" /lib/systemd/system/tether.service 2>&1) ||
  fail "systemd-analyze verify: $out"
[ -z "$out" ] || fail "systemd-analyze verify: $out"
say "systemd-analyze verify /lib/systemd/system/tether.service: ok"
systemd-analyze security --offline=yes /lib/systemd/system/tether.service 2>/dev/null |
  grep 'Overall exposure' | sed 's/^/tests\/package.sh: systemd-analyze security: /' || true

# 5. The man page and the logrotate file.
if [ -n "$HAVE_MAN" ]; then
  [ "$(man -w 8 tether)" = /usr/share/man/man8/tether.8.gz ] || fail "man -w 8 tether: $(man -w 8 tether)"
  out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l -Tutf8 -Z \
    /usr/share/man/man8/tether.8.gz 2>&1 >/dev/null)
  [ -z "$out" ] || fail "man --warnings tether.8: $out"
  say "man 8 tether: renders without a warning"
fi
out=$(logrotate --debug /etc/logrotate.d/tether 2>&1) || fail "logrotate --debug: $out"
! grep -qi '^error' <<<"$out" || fail "logrotate --debug: $out"
say "logrotate --debug /etc/logrotate.d/tether: ok"

# 6. lintian: no error or warning; the tags the package overrides are listed with their
# reasons in packaging/lintian-overrides.
t=$SECONDS
rc=0
out=$(lintian --fail-on error,warning --display-info --pedantic --show-overrides "$DEB" 2>&1) || rc=$?
grep -v 'running with root privileges' <<<"$out" | sed 's/^/tests\/package.sh: lintian: /' || true
[ "$rc" -eq 0 ] || fail "lintian found errors or warnings (exit $rc)"
say "lintian: no error, no warning ($((SECONDS - t)) s)"

# 7. Install over itself, as an upgrade does: a local edit of the configuration survives
# (conffile). The unit is enabled first (systemctl enable works offline), so that the
# steps below check what remove and purge do with it.
echo "# edited by tests/package.sh" >> /etc/tether/tether.yaml
systemctl enable tether.service >/dev/null 2>&1 || fail "systemctl enable tether.service"
[ -L /etc/systemd/system/multi-user.target.wants/tether.service ] || fail "systemctl enable made no symlink"
dpkg -i "$DEB" >/dev/null
tail -n 1 /etc/tether/tether.yaml | grep -q 'edited by tests/package.sh' ||
  fail "reinstalling replaced the edited /etc/tether/tether.yaml"
say "reinstall: the edited configuration is kept"

# 8. Remove, then install again: the conffiles stay and the unit is masked meanwhile;
# the new install unmasks it, still enabled.
dpkg -r tether >/dev/null
[ ! -e /usr/bin/tether ] || fail "dpkg -r left /usr/bin/tether"
grep -q 'edited by tests/package.sh' /etc/tether/tether.yaml || fail "dpkg -r removed the configuration"
[ "$(readlink /etc/systemd/system/tether.service)" = /dev/null ] || fail "dpkg -r did not mask the unit"
dpkg -i "$DEB" >/dev/null
[ ! -e /etc/systemd/system/tether.service ] || fail "installing again did not unmask the unit"
[ -L /etc/systemd/system/multi-user.target.wants/tether.service ] || fail "installing again lost the enable"
grep -q 'edited by tests/package.sh' /etc/tether/tether.yaml || fail "installing again replaced the configuration"
say "remove and install again: configuration kept, unit masked in between, still enabled"

# 9. Purge: nothing of the package is left.
dpkg --purge tether >/dev/null
INSTALLED=""
[ "$(dpkg-query -W -f='${db:Status-Status}' tether 2>/dev/null || true)" != installed ] ||
  fail "tether is still installed after dpkg --purge"
for f in /usr/bin/tether /lib/systemd/system/tether.service /etc/tether /etc/logrotate.d/tether \
         /usr/share/doc/tether /usr/share/man/man8/tether.8.gz \
         /etc/systemd/system/multi-user.target.wants/tether.service \
         /etc/systemd/system/tether.service; do
  if [ -e "$f" ] || [ -L "$f" ]; then fail "$f is left after dpkg --purge"; fi
done
say "dpkg --purge: nothing left"
say "ok in $((SECONDS - T0)) s"
