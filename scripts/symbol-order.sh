#!/usr/bin/env bash
# Regenerates build/symbol-order.txt, the function order build.rs hands lld
# for release builds on x86_64 Linux: every function of the skiff binary that
# an idle `skiff up` runs (start-up, ~60 s of leases, heartbeats and
# informers, then shutdown), as valgrind's callgrind records them, in the
# binary's address order. Run it after changes that rename many functions
# (dependency upgrades, feature changes); a stale file only costs memory.
#
#   scripts/symbol-order.sh            # 60 s idle
#   IDLE=120 scripts/symbol-order.sh
set -euo pipefail
cd "$(dirname "$0")/.."

IDLE=${IDLE:-60}
if ! command -v valgrind >/dev/null; then
    echo "installing valgrind (apt-get)" >&2
    sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get install -y valgrind >&2 || { $sudo_cmd apt-get update >&2 && $sudo_cmd apt-get install -y valgrind >&2; }
fi

# The same build as scripts/up.sh: symbol names depend on the feature set
# the build unifies, so the profile must come from this exact command.
cargo build --release --locked --bin skiff
binary=target/release/skiff
work=$(mktemp -d /tmp/skiff-symbol-order.XXXXXX)
trap 'rm -rf "$work"' EXIT

valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/callgrind.out" \
    "$binary" up --data-dir "$work/data" --listen 127.0.0.1:0 >"$work/up.log" 2>&1 &
pid=$!
deadline=$((SECONDS + 300))
until grep -q "watching pods bound to this node" "$work/up.log"; do
    if ! kill -0 "$pid" 2>/dev/null || [ "$SECONDS" -gt "$deadline" ]; then
        echo "skiff up did not get ready under valgrind; its log:" >&2
        tail -20 "$work/up.log" >&2
        exit 1
    fi
    sleep 1
done
echo "skiff up is ready under valgrind; idling ${IDLE}s" >&2
sleep "$IDLE"
kill -INT "$pid"
wait "$pid" || true

python3 - "$work/callgrind.out" "$binary" build/symbol-order.txt <<'PY'
import re, subprocess, sys

profile, binary, out = sys.argv[1:]
names, ran = {}, set()
for line in open(profile, errors="replace"):
    m = re.match(r"c?fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
    if m:
        ran.add(m.group(1))
        if m.group(2):
            names[m.group(1)] = m.group(2)
ran = {names[i] for i in ran if i in names}
text = []
nm = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True, text=True, check=True)
for line in nm.stdout.splitlines():
    f = line.split(" ", 3)
    if len(f) == 4 and f[2] in "tTwW" and f[3] in ran:
        text.append((int(f[0], 16), int(f[1], 16), f[3]))
text.sort()
with open(out, "w") as o:
    o.writelines(name + "\n" for _, _, name in text)
total = sum(size for _, size, _ in text)
print(f"{out}: {len(text)} functions, {total / 1e6:.1f} MB of code", file=sys.stderr)
PY
