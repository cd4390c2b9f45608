#!/usr/bin/env bash
# Benchmarks skiff's store against etcd 3.4 (Debian's etcd-server) with one
# Rust harness: puts of 1 KiB values from 1 and 64 clients, fsync on.
# Installs etcd-server with apt-get if missing, starts it on 127.0.0.1 with a
# temporary data dir on the same disk as skiff's, runs
# `skiff-bench store --etcd URL`, and stops etcd. Extra arguments go to the
# bench (e.g. --seconds 10). Results: a Markdown table on stdout.
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
etcd_dir="$(mktemp -d target/bench-etcd.XXXXXX)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client_port="$(free_port)"; peer_port="$(free_port)"
etcd --name bench --data-dir "$etcd_dir" \
    --listen-client-urls "http://127.0.0.1:$client_port" --advertise-client-urls "http://127.0.0.1:$client_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "bench=http://127.0.0.1:$peer_port" \
    --quota-backend-bytes 8589934592 --log-level error >"$etcd_dir.log" 2>&1 &
etcd_pid=$!
cleanup() { kill "$etcd_pid" 2>/dev/null || true; wait "$etcd_pid" 2>/dev/null || true; rm -rf "$etcd_dir" "$etcd_dir.log"; }
trap cleanup EXIT

for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$client_port/health" >/dev/null 2>&1 && break
    sleep 0.1
done
etcd --version | head -1 >&2

cargo run -q -p skiff-bench --release -- store --etcd "http://127.0.0.1:$client_port" "$@"
