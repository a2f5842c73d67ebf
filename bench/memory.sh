#!/usr/bin/env bash
# Memory of a long-running daemon: warpd's resident set after N short
# recordings, at checkpoints, in one daemon's life.
#
#   bench/memory.sh [N]     (default 1000)
#
# In a fresh WARP_HOME, records a small static program (it writes a line
# and exits) N times with the embedded daemon, which stays up between the
# calls, and prints warpd's VmRSS and VmHWM (from /proc/PID/status) after
# 10, 100, 250, 500 and N recordings, then the ratio of the last RSS to the
# one after 10 (the goal: within 1.2x). A `warpctl ls`, `events` and
# `replay` of the last session run before each reading, so the figures
# include what serving those costs. Last, the RSS of a fresh daemon on the
# same store after 10 recordings: what the store's size alone costs.
#
# Uses target/release binaries if built, else target/debug (CARGO_TARGET_DIR
# is honoured). Run it alone.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
n=${1:-1000}
case $n in '' | *[!0-9]*) echo "memory: N must be a number" >&2; exit 2 ;; esac
[ "$n" -ge 10 ] || { echo "memory: N must be at least 10" >&2; exit 2; }
pick_binaries memory

export WARP_HOME
WARP_HOME=$(mktemp -d /tmp/warp-memory.XXXXXX)
work=$(mktemp -d /tmp/warp-memory-work.XXXXXX)
cleanup() {
    for p in $(daemon_pids); do kill "$p" 2>/dev/null || true; done
    rm -rf "$work" "$WARP_HOME"
}
trap cleanup EXIT

printf '#include <stdio.h>\nint main(void){puts("a short recording");return 0;}\n' > "$work/short.c"
gcc -static -O2 -o "$work/short" "$work/short.c"

kib() { awk '/^'"$1"':/ { print $2 }' "/proc/$2/status"; }

echo "bin: $bin"
printf '%10s %10s %10s %12s\n' recordings rss_kib hwm_kib store_kib
first_rss=
for i in $(seq 1 "$n"); do
    "$warpctl" record -- "$work/short" > /dev/null 2>&1 < /dev/null
    case $i in 10 | 100 | 250 | 500 | "$n") ;; *) continue ;; esac
    id=$("$warpctl" ls --json | python3 -c 'import json,sys; print([json.loads(l) for l in sys.stdin][-1]["id"])')
    "$warpctl" events "$id" > /dev/null
    "$warpctl" replay "$id" > /dev/null < /dev/null
    pid=$(daemon_pids | head -n 1)
    [ -n "$pid" ] || { echo "memory: no warpd for $WARP_HOME after $i recordings" >&2; exit 1; }
    rss=$(kib VmRSS "$pid")
    hwm=$(kib VmHWM "$pid")
    store=$(du -sk "$WARP_HOME" | cut -f1)
    printf '%10d %10d %10d %12d\n' "$i" "$rss" "$hwm" "$store"
    [ -n "$first_rss" ] || first_rss=$rss
done
awk -v a="$first_rss" -v b="$rss" 'BEGIN { printf "rss after %s / after 10: %.2fx (goal: 1.20x or less)\n", "'"$n"'", b / a }'

# What a fresh daemon on the same store holds after 10 recordings: the
# part of the figure above that comes with the store's size rather than
# with the daemon's age.
for p in $(daemon_pids); do kill "$p"; done
for _ in $(seq 50); do [ -z "$(daemon_pids)" ] && break; sleep 0.1; done
for _ in $(seq 10); do "$warpctl" record -- "$work/short" > /dev/null 2>&1 < /dev/null; done
pid=$(daemon_pids | head -n 1)
echo "a fresh warpd on the same store, after 10 recordings: rss $(kib VmRSS "$pid") kib" 
