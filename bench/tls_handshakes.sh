#!/bin/sh
# TLS handshakes per second against sockit-server, full and resumed, TLS 1.3
# and 1.2, ECDSA P-256 and RSA-2048: the table of docs/PERFORMANCE.md
# ("TLS handshakes: full and resumed").
#
#   bench/tls_handshakes.sh [BIN_DIR]     (default: build/programs)
#
# The server runs pinned to core 0, the load generators to core 1 (taskset).
# TLS 1.3 is measured with sockit-client --bench --bench-mode connect --tls
# (full; --tls-resume for resumed), TLS 1.2 with openssl s_time -tls1_2
# (-new / -reuse), since sockit-client cannot cap the protocol version;
# openssl s_time -tls1_3 -new cross-checks the full-handshake figure.
# Every cell is the median of RUNS runs of SECS seconds, with min-max.
# Environment: RUNS (5), SECS (3), CONNS (8: handshakes in flight for
# sockit-client; s_time makes one at a time). Needs openssl and taskset.
set -eu

BIN=${1:-build/programs}
RUNS=${RUNS:-5}
SECS=${SECS:-3}
CONNS=${CONNS:-8}
SERVER="$BIN/sockit-server"
CLIENT="$BIN/sockit-client"
for p in "$SERVER" "$CLIENT"; do
    [ -x "$p" ] || { echo "no $p (give the programs' directory)" >&2; exit 2; }
done
command -v openssl >/dev/null && command -v taskset >/dev/null ||
    { echo "needs openssl and taskset" >&2; exit 2; }

TMP=$(mktemp -d)
PIDS=
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || :; done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey rsa:2048 -nodes -keyout "$TMP/rsa.key" \
    -out "$TMP/rsa.crt" -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null

# start NAME ARGS...: runs sockit-server on core 0 and sets ADDR_NAME to the
# tls:// address of its readiness line (waits up to 10 s for it).
start() {
    name=$1
    shift
    taskset -c 0 "$SERVER" -q --workers 1 --tls -l 127.0.0.1:0 "$@" \
        2>"$TMP/$name.log" &
    PIDS="$PIDS $!"
    i=0
    while ! grep -q 'listening on tls://' "$TMP/$name.log"; do
        i=$((i + 1))
        [ $i -le 100 ] || { echo "server $name did not start:" >&2;
                            cat "$TMP/$name.log" >&2; exit 1; }
        sleep 0.1
    done
    addr=$(sed -n 's,.*listening on tls://\([0-9.:]*\).*,\1,p' \
        "$TMP/$name.log" | head -n 1)
    eval "ADDR_$name=\$addr"
}

start ecdsa --self-signed
start rsa --cert "$TMP/rsa.crt" --key "$TMP/rsa.key"

# stats: reads one number a line, prints "median (min-max)".
stats() {
    sort -n | awk '{ v[NR] = $1 }
        END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
              printf "%.0f (%.0f-%.0f)", m, v[1], v[NR] }'
}

# sockit ADDR [--tls-resume]: handshakes/s of RUNS runs; the share resumed
# goes to $TMP/resumed.
sockit() {
    addr=$1
    shift
    : >"$TMP/resumed"
    for _ in $(seq "$RUNS"); do
        taskset -c 1 "$CLIENT" --bench "$addr" --bench-mode connect --tls \
            --insecure --conns "$CONNS" --duration "$SECS" --warmup 0.5 \
            --interval 0 --json "$@" 2>/dev/null |
            python3 -c 'import json, sys
r = json.load(sys.stdin)
print(r["connects_per_sec"])
print(r["resumed"], r["handshakes"], r["errors"], file=open(sys.argv[1], "a"))' \
                "$TMP/resumed"
    done | stats
    awk '{ r += $1; h += $2; e += $3 }
        END { printf ", %.1f%% resumed, %d errors", h ? 100 * r / h : 0, e }' \
        "$TMP/resumed"
}

# stime ADDR ARGS...: connections/s (real time) of RUNS openssl s_time runs.
stime() {
    addr=$1
    shift
    for _ in $(seq "$RUNS"); do
        taskset -c 1 openssl s_time -connect "$addr" -time "$SECS" "$@" \
            2>/dev/null |
            awk '/connections in [0-9.]+ real seconds/ {
                     printf "%.1f\n", $1 / $4 }' | tail -n 1
    done | stats
}

echo "TLS handshakes/s, median of $RUNS runs of $SECS s (min-max);"
echo "server on core 0, client on core 1; sockit-client with $CONNS in flight"
for key in ecdsa rsa; do
    eval "addr=\$ADDR_$key"
    echo "$key TLS 1.3 full     sockit-client: $(sockit "$addr")"
    echo "$key TLS 1.3 resumed  sockit-client: $(sockit "$addr" --tls-resume)"
    echo "$key TLS 1.3 full     s_time -new:   $(stime "$addr" -tls1_3 -new)"
    echo "$key TLS 1.2 full     s_time -new:   $(stime "$addr" -tls1_2 -new)"
    echo "$key TLS 1.2 resumed  s_time -reuse: $(stime "$addr" -tls1_2 -reuse)"
done
