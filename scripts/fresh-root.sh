#!/bin/bash
# The newcomer's first hour, checked: builds a fresh Debian 12 root with
# debootstrap (--variant=minbase plus git, make and ca-certificates, as the
# README assumes), and inside it, in private mount, pid and UTS namespaces,
# clones this repository and runs the README's two commands the way a new
# user would, including after an interrupted first try:
#
#   1. as a non-root user: `make run` and `make test` stop and print the
#      exact apt-get line for what is missing;
#   2. as root: a first `make run` killed during its configure (the build
#      directory is left with a CMakeCache.txt and no Makefile, the state a
#      failed configure leaves), then `make run` until the readiness line,
#      stopped with SIGINT (must exit 0), then `make test` (must pass), then
#      `make run` again;
#   3. as the non-root user again, everything installed: `make run` works
#      without sudo;
#   4. `make deb`, `apt-get install ./build-deb/*.deb`, and a program built
#      out of tree against the installed package (pkg-config and CMake
#      find_package), run against the installed /usr/bin/sockit-server.
#
# Usage (as root): scripts/fresh-root.sh [REPO]
#   REPO defaults to this checkout; its committed HEAD is what is tested.
# Environment:
#   SK_FRESH_WORKTREE=1   test the working tree (tracked and untracked, not
#                         ignored files) instead of HEAD, for development
#   SK_FRESH_CACHE=DIR    where the debootstrap tarball is kept between runs
#                         (default /var/cache/sockit); without it the packages
#                         are downloaded again
#   SK_DEBIAN_MIRROR=URL  the Debian mirror; by default the one this machine's
#                         own apt sources use for bookworm
#   SK_FRESH_KEEP=1       keep the root directory afterwards (for debugging)
#   SK_FRESH_LOGS=DIR     where the logs of the steps inside are copied at the
#                         end (default /tmp/sockit-fresh-logs)
#   SK_FRESH_CTEST_ARGS=  CTEST_ARGS for the `make test` inside (default: the
#                         Makefile's), e.g. to leave out a test known broken
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
repo=$(cd "${1:-$here}" && pwd)
suite=bookworm
cache=${SK_FRESH_CACHE:-/var/cache/sockit}
arch=$(dpkg --print-architecture)
tarball=$cache/debian12-minbase-$arch.tar
include=git,make,ca-certificates

say() { printf 'fresh-root: %s\n' "$*" >&2; }
die() { say "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mounts)"
for tool in debootstrap unshare chroot git; do
  command -v "$tool" >/dev/null || die "$tool not found (apt-get install debootstrap util-linux git)"
done

# The Debian mirror this machine itself uses for bookworm, from
# /etc/apt/sources.list (one-line form) or /etc/apt/sources.list.d/*.sources
# (deb822 form).
host_mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    # deb [options] URI SUITE COMPONENTS...
    sed -e 's/#.*//' -e 's/\[[^]]*\]//' "$f" |
      awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }'
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # Stanzas are separated by blank lines; fields are "Key: value".
    awk -v s="$suite" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ") &&
            enabled != "no" && uris != "") { split(uris, u, " "); print u[1]; exit }
        types = suites = uris = ""; enabled = "yes"
      }
      BEGIN { enabled = "yes" }
      /^#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); sub(/^[^:]*:[ \t]*/, ""); }
      key == "types:" { types = $0 } key == "suites:" { suites = $0 }
      key == "uris:" { uris = $0 } key == "enabled:" { enabled = tolower($0) }
      END { flush() }' "$f"
  done
}
mirror=${SK_DEBIAN_MIRROR:-$(host_mirror | head -n 1)}
[ -n "$mirror" ] || die "no Debian $suite mirror in /etc/apt/sources.list{,.d/*.sources}; set SK_DEBIAN_MIRROR"
say "mirror $mirror"

work=$(mktemp -d /tmp/sockit-fresh.XXXXXX)
logs=${SK_FRESH_LOGS:-/tmp/sockit-fresh-logs}
root=$work/root
cleanup() {
  # The mounts live in the namespace that ended with its last process;
  # refuse to delete anything that is still mounted.
  if [ -d "$root/root/logs" ]; then
    rm -rf "$logs" && cp -r "$root/root/logs" "$logs" && say "logs in $logs"
  fi
  if grep -q " $work" /proc/self/mounts; then
    say "mounts left under $work; not removing it"
  elif [ "${SK_FRESH_KEEP:-0}" = 1 ]; then
    say "kept $work"
  else
    rm -rf --one-file-system "$work"
  fi
}
trap cleanup EXIT

# 1. The root: packages downloaded once into a tarball (cached), then
#    installed by debootstrap from it.
start=$SECONDS
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  say "downloading the $suite minbase packages into $tarball"
  debootstrap --variant=minbase --include=$include --make-tarball="$tarball.part" \
    "$suite" "$work/tarball" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap --make-tarball"; }
  mv "$tarball.part" "$tarball"
  rm -rf "$work/tarball"
fi
say "installing the root from $tarball"
if ! debootstrap --variant=minbase --include=$include --unpack-tarball="$tarball" \
    "$suite" "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 20 "$work/debootstrap.log" >&2
  die "debootstrap --unpack-tarball (remove $tarball to download again)"
fi
say "root ready in $((SECONDS - start)) s"

# What the Debian installer writes, and working name resolution for apt.
echo sockit-fresh >"$root/etc/hostname"
cat >"$root/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	sockit-fresh

# The following lines are desirable for IPv6 capable hosts
::1     localhost ip6-localhost ip6-loopback
ff02::1 ip6-allnodes
ff02::2 ip6-allrouters
EOF
cp -L /etc/resolv.conf "$root/etc/resolv.conf"

# 2. The repository, as a bare clone inside the root: HEAD of REPO, or a
#    snapshot commit of its working tree.
src=$repo
if [ "${SK_FRESH_WORKTREE:-0}" = 1 ]; then
  src=$work/worktree
  mkdir -p "$src"
  (cd "$repo" && git ls-files -co --exclude-standard -z) |
    (cd "$repo" && while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done) |
    tar -C "$repo" --null -T - -cf - | tar -C "$src" -xf -
  git -C "$src" init -q
  git -C "$src" add -A
  git -C "$src" -c user.name=fresh-root -c user.email=fresh-root@localhost commit -qm "working tree"
fi
git -c safe.directory='*' clone -q --bare --no-hardlinks "$src" "$root/srv/sockit.git"
# Root owns it; the non-root user clones it too.
printf '[safe]\n\tdirectory = /srv/sockit.git\n' >"$root/etc/gitconfig"

# 3. The checks, run inside the root.
cat >"$root/root/fresh-inside.sh" <<'INSIDE'
#!/bin/bash
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
user=newcomer
mkdir -p /root/logs # kept on disk: copied out to the host at the end
ready='sockit-server: listening on '
step() { printf '\n=== fresh-root [%4d s] %s\n' "$SECONDS" "$*"; }
fail() { printf 'fresh-root: FAIL: %s\n' "$*" >&2; exit 1; }
as_user() { runuser -u "$user" -- "$@"; }

# The pid of the one process named $1 (this pid namespace holds only ours).
pid_of() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = "$1" ] && { echo "${p#/proc/}"; return 0; }
  done
  return 1
}

# run_until_ready LOG CMD...: starts `make run` (CMD) in its own session,
# waits for the readiness line, stops the server with SIGINT as Ctrl-C
# would, and requires make (so the server) to exit 0.
run_until_ready() {
  local log=$1 deadline=$((SECONDS + 1500)) pid spid rc=0
  shift
  setsid "$@" >"$log" 2>&1 &
  pid=$!
  until grep -qs "$ready" "$log"; do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$log" >&2; fail "'$*' ended before the readiness line"; }
    [ "$SECONDS" -lt "$deadline" ] || { kill -KILL -- "-$pid"; tail -n 30 "$log" >&2; fail "'$*': no readiness line in time"; }
    sleep 1 # polling a log file for a line: there is no event to wait on
  done
  grep "$ready" "$log"
  spid=$(pid_of sockit-server) || fail "no sockit-server process"
  kill -INT "$spid"
  wait "$pid" || rc=$?
  [ "$rc" = 0 ] || { tail -n 30 "$log" >&2; fail "'$*' exited $rc after SIGINT"; }
  echo "stopped with SIGINT, exit 0"
}

useradd -m -s /bin/bash "$user"
cd /root
git clone -q /srv/sockit.git sockit
as_user git clone -q /srv/sockit.git "/home/$user/sockit"

step "non-root, nothing installed: make run / make test print the apt-get line and stop"
for t in run test; do
  rc=0
  out=$(cd "/home/$user/sockit" && as_user make $t 2>&1) || rc=$?
  echo "$out"
  [ "$rc" != 0 ] || fail "make $t as non-root succeeded without its packages"
  line=$(echo "$out" | grep -E '^sockit: as root, run: apt-get update && apt-get install -y ') ||
    fail "make $t as non-root: no apt-get line"
  for p in gcc cmake pkg-config libssl-dev liburing-dev libc-ares-dev; do
    echo "$line" | grep -qw -- "$p" || fail "make $t: $p missing from: $line"
  done
  if [ $t = test ]; then
    for p in libcmocka-dev python3; do
      echo "$line" | grep -qw -- "$p" || fail "make test: $p missing from: $line"
    done
  fi
  if echo "$line" | grep -qw make; then fail "make $t lists make, which is installed"; fi
  if [ -e "/home/$user/sockit/build/CMakeCache.txt" ]; then fail "make $t as non-root configured anyway"; fi
done

step "root: a first make run, killed during its configure"
cd /root/sockit
setsid make run >/root/logs/first.log 2>&1 &
pid=$!
deadline=$((SECONDS + 900))
until [ -e build/CMakeCache.txt ]; do
  kill -0 "$pid" 2>/dev/null || { tail -n 30 /root/logs/first.log >&2; fail "first make run ended before configuring"; }
  [ "$SECONDS" -lt "$deadline" ] || fail "first make run: no configure in time"
  sleep 0.05 # catching the moment cmake writes its cache
done
kill -KILL -- "-$pid" 2>/dev/null || echo "(it had ended already)"
wait "$pid" || true
# Leave exactly what a failed configure leaves: a cache and no Makefile.
rm -f build/Makefile build/build.ninja
tail -n 15 /root/logs/first.log
ls build
if dpkg-query -W -f='${Status}' libcmocka-dev 2>/dev/null | grep -q 'install ok installed'; then
  fail "make run installed the test dependencies"
fi
echo "make run installed only the build dependencies"

step "root: make run until the readiness line, then SIGINT"
run_until_ready /root/logs/run1.log make run

step "root: make test"
if ! make test ${SK_FRESH_CTEST_ARGS:+CTEST_ARGS="$SK_FRESH_CTEST_ARGS"} >/root/logs/test.log 2>&1; then
  # Each failed test's output, then the summary.
  awk '/\*\*\*Failed|\*\*\*Timeout|\*\*\*Exception/ { on = 1 } / Start +[0-9]+:/ { on = 0 } on' /root/logs/test.log | head -n 400 >&2
  tail -n 30 /root/logs/test.log >&2
  fail "make test"
fi
grep -E 'tests passed|tests failed' /root/logs/test.log

step "root: make run again after make test"
run_until_ready /root/logs/run2.log make run

step "non-root, everything installed: make run without sudo"
if command -v sudo >/dev/null; then fail "sudo is installed in a minbase root?"; fi
run_until_ready /root/logs/run3.log runuser -u "$user" -- make -C "/home/$user/sockit" run

step "packages: make deb, apt-get install, an out-of-tree consumer"
if ! grep -q '^deb:' Makefile; then
  echo "fresh-root: SKIPPED: this tree has no 'make deb' target" >&2
  echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
elif ! make deb >/root/logs/deb.log 2>&1; then
  if [ ! -e build-deb/CPackConfig.cmake ]; then
    tail -n 5 /root/logs/deb.log >&2
    echo "fresh-root: SKIPPED: no CPack configuration in this tree (make deb failed)" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  else
    tail -n 40 /root/logs/deb.log >&2
    fail "make deb"
  fi
else
  ls -l build-deb/*.deb
  apt-get install -y -qq ./build-deb/*.deb >/root/logs/apt-deb.log 2>&1 ||
    { tail -n 20 /root/logs/apt-deb.log >&2; fail "apt-get install ./build-deb/*.deb"; }
  [ -x /usr/bin/sockit-server ] || fail "the packages installed no /usr/bin/sockit-server"
  pkg-config --modversion sockit || fail "pkg-config does not know sockit"
  man -w sockit-server >/dev/null || fail "man sockit-server: no page"
  app=tests/consumer/app
  [ -d "$app" ] || app=tests/consumer
  if [ ! -d "$app" ]; then
    echo "fresh-root: SKIPPED: no tests/consumer in this tree" >&2
    echo "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!" >&2
  else
    # Out of tree: a copy of the consumer, nothing else of the checkout.
    rm -rf /tmp/consumer && cp -r "$app" /tmp/consumer && cd /tmp/consumer
    /usr/bin/sockit-server -l 127.0.0.1:0 >/root/logs/srv.log 2>&1 &
    srv=$!
    deadline=$((SECONDS + 30))
    until grep -q "$ready" /root/logs/srv.log; do
      kill -0 "$srv" 2>/dev/null || { cat /root/logs/srv.log >&2; fail "/usr/bin/sockit-server ended"; }
      [ "$SECONDS" -lt "$deadline" ] || fail "/usr/bin/sockit-server: no readiness line"
      sleep 0.2
    done
    addr=$(grep -o 'tcp://[^ ]*' /root/logs/srv.log | head -n 1)
    addr=${addr#tcp://}
    built=0
    for src in *.c *.cpp; do
      [ -e "$src" ] || continue
      case $src in *.c) cc=cc ;; *) cc=c++ ;; esac
      # shellcheck disable=SC2046
      $cc -o "/tmp/pc-${src%.*}" "$src" $(pkg-config --cflags --libs sockit) ||
        fail "pkg-config build of $src"
      "/tmp/pc-${src%.*}" "$addr" || fail "pkg-config build of $src: run against $addr"
      # shellcheck disable=SC2046
      $cc -o "/tmp/pcs-${src%.*}" "$src" $(pkg-config --static --cflags --libs sockit) ||
        fail "pkg-config --static build of $src"
      "/tmp/pcs-${src%.*}" "$addr" || fail "static build of $src: run against $addr"
      built=1
    done
    [ $built = 1 ] || fail "tests/consumer has no .c or .cpp file"
    if [ -e CMakeLists.txt ]; then
      cmake -S . -B /tmp/consumer-build >/root/logs/consumer-cmake.log 2>&1 &&
        cmake --build /tmp/consumer-build >>/root/logs/consumer-cmake.log 2>&1 ||
        { tail -n 30 /root/logs/consumer-cmake.log >&2; fail "find_package build of tests/consumer"; }
      for exe in $(find /tmp/consumer-build -maxdepth 1 -type f -executable); do
        "$exe" "$addr" || fail "find_package build: $exe against $addr"
      done
    fi
    kill -INT "$srv"
    wait "$srv" || fail "/usr/bin/sockit-server exited $? after SIGINT"
    echo "consumer built with pkg-config (shared, static) and find_package; ran against /usr/bin/sockit-server"
  fi
fi

step "all checks passed"
INSIDE

say "entering the root"
# Private mount, pid and UTS namespaces: the mounts, the processes and the
# host name end with the check; nothing is left on the host.
unshare --mount --pid --uts --fork --propagation private /bin/bash -euc '
  root=$1
  hostname sockit-fresh
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys" 2>/dev/null || mount --rbind /sys "$root/sys"
  mount --bind /dev "$root/dev"
  mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
  mount --bind "$root/dev/pts/ptmx" "$root/dev/ptmx"
  mount -t tmpfs tmpfs "$root/dev/shm"
  mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
  exec chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb \
    SK_FRESH_CTEST_ARGS="${SK_FRESH_CTEST_ARGS:-}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash /root/fresh-inside.sh
' fresh-root "$root"
say "passed in $((SECONDS - start)) s"
