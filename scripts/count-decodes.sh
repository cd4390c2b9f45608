#!/usr/bin/env bash
# Counts how often a skiff binary parses a stored value (calls of
# `objects::decode_uncached`, the memo's misses) during one `pods jobs`
# run, exactly, with a Linux uprobe. Needs root, perf and a release build
# with symbols (the default `release` profile keeps them).
#
#   scripts/count-decodes.sh [SKIFF_BIN] [PODS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:-target/release/skiff}")
pods=${2:-3000}
symbol=$(nm "$bin" | awk '/decode_uncached/ {print $1; exit}')
[ -n "$symbol" ] || { echo "no decode_uncached symbol in $bin" >&2; exit 1; }
# A uprobe takes a file offset: the symbol's address less its segment's.
read -r seg_offset seg_vaddr < <(readelf -lW "$bin" | awk '$1 == "LOAD" && $8 == "E" {print $2, $3; exit}')
offset=$(printf '0x%x' $((0x$symbol - seg_vaddr + seg_offset)))
events=/sys/kernel/tracing/uprobe_events
name="skiff_decodes_$$"
echo "p:$name $bin:$offset" >>"$events"
trap 'echo "-:$name" >>"$events"' EXIT
perf stat -e "uprobes:$name" -- target/release/skiff-bench pods --skiff "$bin" jobs --runs 1 --pods "$pods" 2>&1 |
    grep -E "uprobes|^\| [0-9J]"
