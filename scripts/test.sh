#!/usr/bin/env bash
# The whole test suite, on a fresh machine of this kind: installs what the
# tests need (scripts/setup.sh), then runs every test of the workspace —
# unit tests, store and API integration tests, and the end-to-end tests that
# drive a real `skiff up` with kubectl, kube-rs and the Python client.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh

export PATH="$PWD/.venv/bin:$PATH"
# Two cores: let cargo build with both, and run test binaries two at a time.
cargo test --workspace --locked -- --test-threads "${SKIFF_TEST_THREADS:-2}"
