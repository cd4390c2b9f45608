#!/usr/bin/env bash
# Rebuilds the sample wasm apps (samples/*/) and copies them to
# samples/wasm/*.wasm, which are committed so tests and `skiff up` never need
# a wasm toolchain. Run after changing a sample's source; commit the result.
#   p1 command modules (wasm32-wasip1): hello, log-processor, crasher,
#       memory-bomb, busy-loop, toolbox
#   p2 command components (wasm32-wasip2): worker, hello-p2
#   wasi:http components (wasm32-wasip2): http-echo, web
set -euo pipefail
cd "$(dirname "$0")/../samples"

rustup target add wasm32-wasip1 wasm32-wasip2 >/dev/null 2>&1 ||
    rustup target add wasm32-wasip1 wasm32-wasip2

# A target dir of its own, so this never waits on the main build's lock.
export CARGO_TARGET_DIR="$PWD/target"
cargo build --release --locked --target wasm32-wasip1 \
    -p hello -p log-processor -p crasher -p memory-bomb -p busy-loop -p toolbox
cargo build --release --locked --target wasm32-wasip2 -p worker -p hello -p http-echo -p web

p1="$CARGO_TARGET_DIR/wasm32-wasip1/release"
p2="$CARGO_TARGET_DIR/wasm32-wasip2/release"
mkdir -p wasm
for app in hello log-processor crasher memory-bomb busy-loop toolbox; do
    cp "$p1/$app.wasm" "wasm/$app.wasm"
done
cp "$p2/worker.wasm" wasm/worker.wasm
cp "$p2/hello.wasm" wasm/hello-p2.wasm
cp "$p2/http_echo.wasm" wasm/http-echo.wasm
cp "$p2/web.wasm" wasm/web.wasm
ls -l wasm/
