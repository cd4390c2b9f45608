#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian (bookworm) machine for skiff's main job
# (scripts/up.sh) and its test suite (scripts/test.sh). Quick (about a
# second) when everything is already there; installs only what is missing:
#
#   - rustup targets wasm32-wasip1 and wasm32-wasip2 (to rebuild samples/);
#   - Debian packages: runc (OCI containers), etcd-server (the etcd the
#     store benchmark compares with), protobuf-compiler and libprotobuf-dev
#     (protoc and its well-known types, which the
#     benchmark's etcd-client crate needs to build), docker-registry (a local OCI registry
#     the pull tests start on loopback), python3-venv;
#   - .venv/ — a project-local Python venv with the `kubernetes` client;
#   - .tools/kubectl-1.20/kubectl — the old kubectl of Debian's
#     kubernetes-client package (1.20.5+really1.20.2 on bookworm, i.e. a
#     kubectl v1.20.2), unpacked from the .deb without installing it, for
#     compatibility tests next to the preinstalled /usr/bin/kubectl;
#   - only with SKIFF_SETUP_BENCH=1: the `wasmtime` CLI 48 (cargo install,
#     several minutes), the baseline of the wasi:http benchmark.
#
# Works as root (no sudo needed) or as a user with sudo. No other network
# access than Debian's archive, PyPI and the rustup dist server.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

log() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1; then
    as_root() { sudo "$@"; }
else
    as_root() {
        log "need root for: $*"
        return 1
    }
fi

# --- Rust targets -----------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
    installed="$(rustup target list --installed)"
    missing_targets=()
    for t in wasm32-wasip1 wasm32-wasip2; do
        grep -qx "$t" <<<"$installed" || missing_targets+=("$t")
    done
    if [ "${#missing_targets[@]}" -gt 0 ]; then
        log "rustup target add ${missing_targets[*]}"
        rustup target add "${missing_targets[@]}"
    fi
else
    log "rustup not found: skipping wasm targets (only needed to rebuild samples/)"
fi

# --- Debian packages --------------------------------------------------------
apt_updated=0
apt_update_once() {
    if [ "$apt_updated" -eq 0 ]; then
        log "apt-get update"
        as_root apt-get update -qq
        apt_updated=1
    fi
}

missing_pkgs=()
for pkg in runc etcd-server docker-registry python3-venv protobuf-compiler libprotobuf-dev; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing_pkgs+=("$pkg")
    fi
done
if [ "${#missing_pkgs[@]}" -gt 0 ]; then
    apt_update_once
    log "apt-get install ${missing_pkgs[*]}"
    # Keep packaged services from starting: tests start their own instances.
    policy=/usr/sbin/policy-rc.d
    created_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        created_policy=1
    fi
    status=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing_pkgs[@]}" >/dev/null || status=$?
    if [ "$created_policy" -eq 1 ]; then
        as_root rm -f "$policy"
    fi
    [ "$status" -eq 0 ] || exit "$status"
fi

# --- Python client in a project-local venv ----------------------------------
if ! .venv/bin/python -c 'import kubernetes' >/dev/null 2>&1; then
    if [ ! -x .venv/bin/python ]; then
        log "python3 -m venv .venv"
        python3 -m venv .venv || /usr/bin/python3 -m venv .venv
    fi
    log "pip install kubernetes (into .venv)"
    .venv/bin/python -m pip install -q --disable-pip-version-check kubernetes
fi

# --- kubectl 1.20 from Debian's kubernetes-client, unpacked locally ---------
kubectl_dir="$ROOT/.tools/kubectl-1.20"
if [ ! -x "$kubectl_dir/kubectl" ]; then
    apt_update_once
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    log "apt-get download kubernetes-client → .tools/kubectl-1.20/"
    # _apt cannot write into root-only temp dirs; download as ourselves.
    (cd "$work" && apt-get download -qq kubernetes-client)
    rm -rf "$kubectl_dir"
    mkdir -p "$kubectl_dir"
    dpkg-deb -x "$work"/kubernetes-client_*.deb "$kubectl_dir"
    ln -sf usr/bin/kubectl "$kubectl_dir/kubectl"
    "$kubectl_dir/kubectl" version --client >/dev/null
fi

# --- Benchmark baseline (opt-in: it compiles wasmtime) ---------------------
if [ "${SKIFF_SETUP_BENCH:-0}" = "1" ] && ! command -v wasmtime >/dev/null 2>&1; then
    log "cargo install wasmtime-cli 48 (for benchmarks)"
    cargo install --locked --quiet wasmtime-cli --version '^48'
fi

log "ready (kubectl 1.20: .tools/kubectl-1.20/kubectl; python: .venv/bin/python)"
