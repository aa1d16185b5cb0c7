#!/bin/sh
# Checks the build and test dependencies of sockit on Debian/Ubuntu and
# installs what is missing: with apt-get when run as root, otherwise it prints
# the exact command to run and fails.
#   scripts/deps.sh build   what `make`/`make run` need
#   scripts/deps.sh test    plus the test peers (python3, socat, nc, openssl)
#   scripts/deps.sh bench   plus the benchmark peers
set -eu
what=${1:-build}

pkgs="gcc make cmake pkg-config libssl-dev liburing-dev"
case "$what" in
  test|bench|all) pkgs="$pkgs libcmocka-dev python3 socat netcat-openbsd openssl iproute2 clang libclang-rt-14-dev valgrind sockperf" ;;
esac
case "$what" in
  bench|all) pkgs="$pkgs libuv1-dev libevent-dev sockperf iperf3 gnuplot-nox" ;;
esac

missing=""
for p in $pkgs; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "sockit: missing packages:$missing (install them with your package manager)" >&2
  exit 1
fi
if [ "$(id -u)" = 0 ]; then
  echo "sockit: installing:$missing" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
  echo "sockit: missing packages:$missing" >&2
  echo "sockit: run: sudo apt-get install -y$missing" >&2
  exit 1
fi
