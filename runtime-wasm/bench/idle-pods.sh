#!/usr/bin/env bash
# RSS per idle wasi:http pod: starts N pods of the same component in one
# process (each with its own listener, no Store held while idle), checks
# that every pod answers, and reports the resident-memory growth per pod.
#
#   runtime-wasm/bench/idle-pods.sh            # 1,000 and 10,000 pods
#   PODS="1000" LOGS=1 runtime-wasm/bench/idle-pods.sh   # with per-pod log files
set -euo pipefail
cd "$(dirname "$0")/../.."
COMPONENT=${COMPONENT:-samples/wasm/http-echo.wasm}
PODS=${PODS:-"1000 10000"}
cargo build --release -q -p skiff-runtime-wasm --example serve
for n in $PODS; do
    extra=()
    if [ "${LOGS:-0}" = "1" ]; then extra=(--logs "$(mktemp -d)"); fi
    target/release/examples/serve "$COMPONENT" --pods "$n" "${extra[@]}"
done
