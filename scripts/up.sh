#!/usr/bin/env bash
# skiff's main job on a fresh machine: installs what it needs, builds skiff,
# and runs an all-in-one cluster (embedded store) with the samples applied.
# Extra arguments go to `skiff up` (e.g. --listen 127.0.0.1:7443).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo build --release --locked --bin skiff
exec target/release/skiff up --data-dir "${SKIFF_DATA_DIR:-$PWD/.skiff-data}" --apply samples/manifests "$@"
