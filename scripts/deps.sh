#!/bin/sh
# Checks the build and test dependencies of sockit on Debian/Ubuntu and
# installs what is missing: with apt-get when run as root, otherwise it prints
# the exact command to run (as root) and fails.
#   scripts/deps.sh build   what `make`/`make run` need, nothing more
#   scripts/deps.sh test    plus the test suite's (cmocka, python3, the test
#                           peers (haproxy and nginx's stream module for
#                           the PROXY protocol, stunnel4 for the forwarding
#                           bench's test), clang for fuzzing, g++ for
#                           the C++ smoke test, man-db for the man page
#                           checks, dpkg-dev for `make deb`, gnuplot for
#                           the benchmark report's plots)
#   scripts/deps.sh deb     what `make deb` needs: build, plus dpkg-dev, file
#   scripts/deps.sh bench   plus the benchmark peers
#   scripts/deps.sh GROUP --check   only tells: exit 0 if all are installed
set -eu
what=${1:-build}
check=${2:-}

pkgs="gcc make cmake pkg-config libssl-dev liburing-dev libc-ares-dev libsystemd-dev"
case "$what" in
  deb) pkgs="$pkgs dpkg-dev file" ;;
esac
case "$what" in
  test|bench|all) pkgs="$pkgs libcmocka-dev python3 socat netcat-openbsd openssl iproute2 clang libclang-rt-14-dev valgrind sockperf g++ man-db groff-base dpkg-dev file curl prometheus systemd zsh haproxy nginx libnginx-mod-stream stunnel4 gnuplot-nox" ;;
esac
case "$what" in
  bench|all) pkgs="$pkgs libuv1-dev libevent-dev iperf3" ;;
esac

missing=""
for p in $pkgs; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0
[ "$check" = --check ] && exit 1

if ! command -v apt-get >/dev/null 2>&1; then
  echo "sockit: missing packages:$missing (install them with your package manager)" >&2
  exit 1
fi
if [ "$(id -u)" != 0 ]; then
  echo "sockit: missing packages:$missing" >&2
  echo "sockit: as root, run: apt-get update && apt-get install -y$missing" >&2
  exit 1
fi
echo "sockit: installing:$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# A fresh system has no package lists yet: update before installing.
apt-get update -qq >/dev/null
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
