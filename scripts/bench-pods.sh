#!/usr/bin/env bash
# The node and wasm benchmarks, in release mode, each against a real
# `skiff up` child process (target/release/skiff) driven through the API:
#
#   startup  create → Running of 1,000 wasm pods (http-echo, worker), burst and paced
#   jobs     short wasm pods (hello.wasm) completed per second, bare pods and a Job
#   memory   RSS per idle wasi:http pod at 1,000 and 10,000 pods (the skiff up process)
#   up       skiff up cold/warm time to /readyz and idle RSS
#   http     requests/s to one wasi:http pod vs `wasmtime serve` (needs wrk;
#            the baseline needs the wasmtime CLI 48 on PATH)
#
# then the runtime-only figures of runtime-wasm/bench/ (idle-pods.sh always;
# http.sh when wasmtime is on PATH). Results: Markdown on stdout.
#
#   scripts/bench-pods.sh                 # everything
#   scripts/bench-pods.sh startup jobs    # some of it
#   RUNS=1 scripts/bench-pods.sh up       # fewer repetitions
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
cases=("$@")
[ "${#cases[@]}" -gt 0 ] || cases=(up startup jobs memory http runtime)

# protoc (the harness links etcd-client), runc, the wasm targets: the same
# idempotent set-up as the main job and the test suite.
scripts/setup.sh
if ! command -v wrk >/dev/null; then
    echo "installing wrk (apt-get)" >&2
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y wrk >&2 || { $sudo_cmd apt-get update >&2 && $sudo_cmd apt-get install -y wrk >&2; }
fi

# Two builds, the harness first: one build of both would unify their
# features, and the skiff binary would differ from the one scripts/up.sh
# builds (other symbol names, so build/symbol-order.txt would not apply).
cargo build --release --locked -q -p skiff-bench
cargo build --release --locked -q --bin skiff
bench=target/release/skiff-bench
echo "<!-- $(date -u +%FT%TZ), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg) -->"

for c in "${cases[@]}"; do
    case "$c" in
    up) "$bench" pods up --runs "$((RUNS + 2))" ;;
    startup) "$bench" pods startup --runs "$RUNS" ;;
    jobs) "$bench" pods jobs --runs "$RUNS" ;;
    memory) "$bench" pods memory --pods 1000,10000 ;;
    http) "$bench" pods http --rounds "$RUNS" ;;
    runtime)
        echo "## Runtime only (runtime-wasm/examples/serve.rs, no API, no node agent)"
        echo
        echo '`runtime-wasm/bench/idle-pods.sh` (one JSON line per pod count):'
        echo
        runtime-wasm/bench/idle-pods.sh | sed 's/^/    /'
        if command -v wasmtime >/dev/null && wasmtime --version | grep -q '^wasmtime 48\.'; then
            echo
            echo '`runtime-wasm/bench/http.sh` (serve.rs vs `wasmtime serve`):'
            echo
            ROUNDS="$RUNS" runtime-wasm/bench/http.sh | sed 's/^/    /'
        else
            echo "wasmtime 48 not on PATH: skipping runtime-wasm/bench/http.sh" >&2
        fi
        ;;
    *) echo "unknown case $c (up, startup, jobs, memory, http, runtime)" >&2; exit 2 ;;
    esac
    echo
done
