#!/usr/bin/env bash
# Benchmarks skiff's store against etcd 3.4 (Debian's etcd-server) with one
# Rust harness: puts of 1 KiB values from 1 and 64 clients, fsync on.
# Installs etcd-server with apt-get if missing, starts a 1-member and a
# 3-member etcd on 127.0.0.1 (temporary data dirs on the same disk as
# skiff's), runs `skiff-bench store --etcd URL --etcd3 URLS`, and stops
# them. Extra arguments go to the bench (e.g. --rounds 5 for medians over
# five interleaved rounds, --seconds 10). Results:
# Markdown tables on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null; then
    echo "installing etcd-server (apt-get)" >&2
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y etcd-server >&2 || { $sudo_cmd apt-get update >&2 && $sudo_cmd apt-get install -y etcd-server >&2; }
fi
if ! command -v protoc >/dev/null; then
    echo "installing protobuf-compiler (apt-get; the etcd-client crate needs protoc)" >&2
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y protobuf-compiler >&2
fi

mkdir -p target
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
etcd_pids=(); etcd_dirs=()
cleanup() {
    for pid in "${etcd_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${etcd_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    for dir in "${etcd_dirs[@]}"; do rm -rf "$dir" "$dir.log"; done
}
trap cleanup EXIT

# start_etcd CLUSTER_NAME MEMBER_NAMES... : starts one etcd cluster on
# loopback (each member with its own data dir on the same disk as skiff's)
# and sets CLIENT_URLS to its comma-separated client URLs.
start_etcd() {
    local cluster="$1"; shift
    local names=("$@") initial="" client_ports=() peer_ports=() i
    for i in "${!names[@]}"; do
        client_ports[i]="$(free_port)"; peer_ports[i]="$(free_port)"
        initial+="${initial:+,}${names[i]}=http://127.0.0.1:${peer_ports[i]}"
    done
    CLIENT_URLS=""
    for i in "${!names[@]}"; do
        local dir; dir="$(mktemp -d "target/bench-etcd-${names[i]}.XXXXXX")"
        etcd_dirs+=("$dir")
        etcd --name "${names[i]}" --data-dir "$dir" \
            --listen-client-urls "http://127.0.0.1:${client_ports[i]}" --advertise-client-urls "http://127.0.0.1:${client_ports[i]}" \
            --listen-peer-urls "http://127.0.0.1:${peer_ports[i]}" --initial-advertise-peer-urls "http://127.0.0.1:${peer_ports[i]}" \
            --initial-cluster "$initial" --initial-cluster-token "$cluster" --initial-cluster-state new \
            --quota-backend-bytes 8589934592 --log-level error >"$dir.log" 2>&1 &
        etcd_pids+=($!)
        CLIENT_URLS+="${CLIENT_URLS:+,}http://127.0.0.1:${client_ports[i]}"
    done
    for i in "${!names[@]}"; do
        local ok=""
        for _ in $(seq 1 200); do
            curl -sf "http://127.0.0.1:${client_ports[i]}/health" >/dev/null 2>&1 && { ok=1; break; }
            sleep 0.1
        done
        [ -n "$ok" ] || { echo "etcd member ${names[i]} did not become healthy" >&2; exit 1; }
    done
}

start_etcd bench-1 single
one="$CLIENT_URLS"
start_etcd bench-3 e1 e2 e3
three="$CLIENT_URLS"
etcd --version | head -1 >&2

cargo run -q -p skiff-bench --release -- store --etcd "$one" --etcd3 "$three" "$@"
