#!/usr/bin/env bash
# `skiff up` (release build, no manifests) time from exec to /readyz
# answering through kubectl (kubectl's own start-up, ~0.1 s, included), and
# its RSS after 10 s idle: one cold start on a fresh data dir, two warm ones.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -q --bin skiff
dir=$(mktemp -d /tmp/upbench.XXXX)
run() {
  local start=$(date +%s%N)
  target/release/skiff up --data-dir "$dir" --listen 127.0.0.1:0 --node-listen 127.0.0.1:0 >"$dir.log" 2>&1 & local pid=$!
  until [ -f "$dir/kubeconfig.yaml" ] && HOME=$dir KUBECONFIG=$dir/kubeconfig.yaml kubectl get --raw /readyz >/dev/null 2>&1; do sleep 0.01; done
  local ready=$(( ($(date +%s%N) - start) / 1000000 ))
  sleep 10
  local rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  kill $pid; wait $pid 2>/dev/null || true
  echo "$1 ready_ms=$ready rss_kib=$rss"
}
run cold; run warm; run warm
rm -rf "$dir" "$dir.log"
