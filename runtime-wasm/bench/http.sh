#!/usr/bin/env bash
# Requests/s to one wasi:http pod: skiff's wasm runtime (examples/serve.rs,
# the same code path the node uses: per-request Store from a shared
# ProxyPre, pooling allocator, epoch interruption on) versus `wasmtime serve`
# 48.0.8 on the same component, in the same run, alternating A/B rounds.
#
#   runtime-wasm/bench/http.sh                 # defaults below
#   ROUNDS=3 DURATION=10s CONNS=32 REQUEST_PATH=/healthz runtime-wasm/bench/http.sh
#
# Needs wrk (apt-get install wrk); installs wasmtime-cli 48.0.8 if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."

COMPONENT=${COMPONENT:-samples/wasm/http-echo.wasm}
REQUEST_PATH=${REQUEST_PATH:-/healthz}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-2}
SKIFF_PORT=${SKIFF_PORT:-18081}
WASMTIME_PORT=${WASMTIME_PORT:-18082}

command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
if ! command -v wasmtime >/dev/null || ! wasmtime --version | grep -q '^wasmtime 48\.'; then
    cargo install wasmtime-cli --version 48.0.8 --locked
fi
cargo build --release -q -p skiff-runtime-wasm --example serve
SKIFF_SERVE=target/release/examples/serve

wait_port() {
    for _ in $(seq 1 200); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$1$REQUEST_PATH" 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "server on port $1 did not come up" >&2; return 1
}

# Runs wrk against port $1 and prints requests/s.
measure() {
    wrk -t1 -c"$CONNS" -d2s "http://127.0.0.1:$1$REQUEST_PATH" >/dev/null # warm-up
    wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" "http://127.0.0.1:$1$REQUEST_PATH" |
        awk '/Requests\/sec/ {print $2} /Non-2xx/ {print "non-2xx: " $0 > "/dev/stderr"}'
}

run_skiff() {
    "$SKIFF_SERVE" "$COMPONENT" --addr "127.0.0.1:$SKIFF_PORT" 2>/dev/null & local pid=$!
    wait_port "$SKIFF_PORT"; measure "$SKIFF_PORT"; kill "$pid"; wait "$pid" 2>/dev/null || true
}

run_wasmtime() {
    wasmtime serve -Scli --addr "127.0.0.1:$WASMTIME_PORT" "$COMPONENT" >/dev/null 2>&1 & local pid=$!
    wait_port "$WASMTIME_PORT"; measure "$WASMTIME_PORT"; kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "component=$COMPONENT path=$REQUEST_PATH conns=$CONNS threads=$THREADS duration=$DURATION rounds=$ROUNDS cpus=$(nproc)"
skiff_total=0; wasmtime_total=0
for round in $(seq 1 "$ROUNDS"); do
    s=$(run_skiff); w=$(run_wasmtime)
    echo "round $round: skiff ${s} req/s, wasmtime serve ${w} req/s"
    skiff_total=$(echo "$skiff_total + $s" | bc -l); wasmtime_total=$(echo "$wasmtime_total + $w" | bc -l)
done
skiff_mean=$(echo "$skiff_total / $ROUNDS" | bc -l); wasmtime_mean=$(echo "$wasmtime_total / $ROUNDS" | bc -l)
printf 'mean: skiff %.0f req/s, wasmtime serve %.0f req/s, ratio %.2fx\n' \
    "$skiff_mean" "$wasmtime_mean" "$(echo "$skiff_mean / $wasmtime_mean" | bc -l)"
