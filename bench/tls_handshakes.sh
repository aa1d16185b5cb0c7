#!/bin/sh
# TLS handshakes per second against sockit-server alone, full and resumed,
# TLS 1.3 and 1.2, ECDSA P-256 and RSA-2048: a shortcut for
# bench/tls_peers.py with only the sockit column and the handshake rows
# (sockit-client --bench --bench-mode connect --tls [--tls-resume], cross-
# checked with openssl s_time -new/-reuse). See bench/README.md.
#
#   bench/tls_handshakes.sh [BIN_DIR]     (default: build/programs)
#
# Environment: RUNS (5), SECS (3), CONNS (8: handshakes in flight for
# sockit-client). Compare against nginx, stunnel, HAProxy and socat with
# bench/tls_peers.py itself.
set -eu
BIN=${1:-build/programs}
exec python3 "$(dirname "$0")/tls_peers.py" --build-dir "$(dirname "$BIN")" \
    --servers '^sockit$' --tests '^hs-' --runs "${RUNS:-5}" \
    --duration "${SECS:-3}" --conns "${CONNS:-8}"
