#!/bin/sh
# Runs the sockit benchmarks (see bench/README.md); arguments go to run.py.
exec python3 "$(dirname "$0")/run.py" "$@"
