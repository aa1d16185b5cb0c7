#!/bin/sh
# Runs every libFuzzer target for a bounded time: fuzz/run.sh BUILD_DIR SECONDS
# Seeds come from fuzz/corpus/<name>/ (read-only); new inputs go to a work
# corpus under BUILD_DIR, so the committed seeds stay small. A crash leaves
# its input in BUILD_DIR/crashes/ and fails the run.
set -eu
build=${1:-build-fuzz}
secs=${2:-60}
here=$(cd "$(dirname "$0")" && pwd)
status=0
mkdir -p "$build/crashes"

# One target: runs it, reports, returns non-zero on a finding.
run_one() {
  bin=$1
  name=$(basename "$bin" | sed 's/^fuzz_//')
  work="$build/corpus-$name"
  mkdir -p "$work"
  echo "fuzz: $name for ${secs}s"
  # The CLI targets run a whole main() per input and longjmp out of usage
  # errors, leaving what it allocated: leaks there are not findings.
  extra=""
  asan="${ASAN_OPTIONS:-}"
  case $name in cli_*) extra="-detect_leaks=0" asan="detect_leaks=0" ;; esac
  # shellcheck disable=SC2086
  if ! ASAN_OPTIONS="$asan" "$bin" -max_total_time="$secs" -max_len=4096 -print_final_stats=1 $extra \
      -artifact_prefix="$build/crashes/$name-" "$work" "$here/corpus/$name" \
      >"$build/fuzz-$name.log" 2>&1; then
    echo "fuzz: $name FAILED (see $build/fuzz-$name.log and $build/crashes/)"
    tail -30 "$build/fuzz-$name.log"
    return 1
  fi
  echo "fuzz: $name: $(grep -E 'stat::number_of_executed_units' "$build/fuzz-$name.log" | awk '{print $2}') inputs, no finding"
}

# Two at a time: the machine has two cores.
pids=""
for bin in "$build"/fuzz/fuzz_*; do
  [ -x "$bin" ] || continue
  run_one "$bin" &
  pids="$pids $!"
  if [ "$(echo $pids | wc -w)" -ge 2 ]; then
    for p in $pids; do wait "$p" || status=1; done
    pids=""
  fi
done
for p in $pids; do wait "$p" || status=1; done
exit $status
