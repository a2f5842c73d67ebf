#!/usr/bin/env bash
# Warpspeed debugging benchmarks: what gdb on a replay costs.
#
#   bench/debug.sh [--no-build]
#
# Records bench/debug/history.c once (a syscall loop, a call loop, a
# memory write) and times, each as one `warpctl replay --gdb -- -batch`:
#   - the first prompt: gdb connected and at the first instruction
#     (static hello, and the same for a dynamically linked one);
#   - reverse-continue across CALLS thousand getppid syscalls of history
#     (from the second `mark` back to the first);
#   - a conditional breakpoint in a loop of TICKS thousand calls whose
#     condition is true once (every hit is a stop gdb evaluates);
#   - checkpoint memory after MIB MiB were written (`monitor checkpoints`).
# Each figure is the wall time of the whole gdb session minus the first
# prompt's, so warpctl's and gdb's start-up are not in it.
#
# Benchmarks report; they do not assert. Environment: CALLS (default 100),
# TICKS (default 20), MIB (default 256), CARGO_TARGET_DIR, CC (gcc).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CALLS=${CALLS:-100}
TICKS=${TICKS:-20}
MIB=${MIB:-256}
CC=${CC:-gcc}
build=1
for arg in "$@"; do
    case $arg in
    --no-build) build=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $arg" >&2; exit 2 ;;
    esac
done
command -v gdb >/dev/null || { echo "bench: gdb is not installed" >&2; exit 1; }
if [ "$build" = 1 ]; then
    cargo build --workspace --release --locked
fi
target=${CARGO_TARGET_DIR:-$root/target}
warpctl=$target/release/warpctl
work=$(mktemp -d "${TMPDIR:-/tmp}/warp-bench-debug.XXXXXX")
export WARP_HOME=$work/home
mkdir -p "$WARP_HOME"
cleanup() {
    "$warpctl" daemon stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"$CC" -g -static -o "$work/history" bench/debug/history.c
"$CC" -g -o "$work/history.dyn" bench/debug/history.c
printf '#include <stdio.h>\nint main(void){puts("hi");return 0;}\n' > "$work/hello.c"
"$CC" -static -o "$work/hello" "$work/hello.c"

record() { "$warpctl" record --id-file "$work/id" -- "$@" >/dev/null 2>&1 || true; cat "$work/id"; }
now() { date +%s.%N; }
# gdb -batch on session $1 with the -ex commands after it: seconds.
session() {
    local id=$1
    shift
    local args=()
    for c in "$@"; do args+=(-ex "$c"); done
    local t0 t1
    t0=$(now)
    "$warpctl" replay "$id" --gdb -- -batch -nx "${args[@]}" > "$work/out" 2>&1 || true
    t1=$(now)
    echo "$t1 - $t0" | bc
}

hello=$(record "$work/hello")
hist=$(record "$work/history" "$CALLS" "$TICKS" "$MIB")
dyn=$(record "$work/history.dyn" 1 1 0)
"$warpctl" replay "$hello" --gdb -- -batch -nx -ex 'info registers rip' >/dev/null 2>&1 || true # warm-up

first_static=$(session "$hello" 'info registers rip')
first_dyn=$(session "$dyn" 'info registers rip')
base=$(session "$hist" 'break mark' 'continue' 'continue')
rc=$(session "$hist" 'break mark' 'continue' 'continue' 'reverse-continue' 'print k')
grep -q '\$1 = 0' "$work/out" && rc_ok=yes || rc_ok="NO (see below)"
rc_out=$(tail -3 "$work/out")
cond_base=$(session "$hist" 'break mark if k == 2' 'continue')
cond=$(session "$hist" 'break tick if i < 0' 'break mark if k == 2' 'continue')
mem=$(session "$hist" 'break mark if k == 3' 'continue' 'monitor checkpoints')
mem_line=$(grep checkpoints "$work/out" || echo "n/a")

printf '%-58s %10s\n' "measure" "seconds"
printf '%-58s %10.3f\n' "first prompt, static hello" "$first_static"
printf '%-58s %10.3f\n' "first prompt, dynamic (ld.so, libc)" "$first_dyn"
printf '%-58s %10.3f\n' "forward to the 2nd mark across ${CALLS}k syscalls" "$base"
printf '%-58s %10.3f\n' "reverse-continue back across ${CALLS}k syscalls (extra)" "$(echo "$rc - $base" | bc)"
echo "  reverse-continue reached the first mark: $rc_ok"
printf '%-58s %10.3f\n' "conditional breakpoint, ${TICKS}k hits (extra over none)" "$(echo "$cond - $cond_base" | bc)"
printf '%-58s %10s\n' "  per hit (ms)" "$(echo "scale=3; ($cond - $cond_base) * 1000 / ($TICKS * 1000)" | bc)"
echo "checkpoints after writing $MIB MiB: $mem_line"
[ "$rc_ok" = yes ] || echo "$rc_out"
