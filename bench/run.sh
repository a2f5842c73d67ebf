#!/usr/bin/env bash
# Warpspeed benchmarks: native vs `warpctl record` vs `warpctl replay` on a few workloads.
#
#   bench/run.sh [--no-build]
#
# Builds the release binaries (unless --no-build) and the C workloads in
# bench/workloads/ (gcc -static), then times each workload natively and under
# `warpctl record`, REPEAT times each (default 3), keeping the best time.
# The daemon is started once beforehand (a warm-up recording in a fresh
# WARP_HOME), so its start-up is not in any figure; warpctl's own start-up and
# its connection to the daemon are, in every recorded run.
#
# Prints a table: best native, `strace -f` (the ptrace baseline, when
# strace is installed), recorded wall time with the exitless ring and
# without it (`--no-exitless`: every syscall a VM exit), replayed wall time
# (with the ring), the ratios to
# native, and, when `warpctl record -v` prints a line such as
# `warpctl: N syscalls, M vm exits`, those counts and exits per syscall
# (from one extra -v run, not timed); otherwise "n/a".
#
# Benchmarks report; they do not assert. A recording that fails shows as
# "failed (status N)" and the script goes on.
#
# Environment: REPEAT (runs per measurement, default 3), CARGO_TARGET_DIR
# (where the binaries are, default ./target), CC (default gcc), ONLY (an
# extended regular expression: only the workloads whose names match run).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
REPEAT=${REPEAT:-3}
CC=${CC:-gcc}
build=1
for arg in "$@"; do
    case $arg in
    --no-build) build=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $arg" >&2; exit 2 ;;
    esac
done

if [ "$build" = 1 ]; then
    cargo build --workspace --release --locked
fi
target=${CARGO_TARGET_DIR:-$root/target}
warpctl=$target/release/warpctl
[ -x "$warpctl" ] || { echo "bench: $warpctl not found: build with cargo build --workspace --release" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/warp-bench.XXXXXX")
export WARP_HOME=$work/home
mkdir -p "$WARP_HOME"
cleanup() {
    "$warpctl" daemon stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "building workloads in $work"
for src in bench/workloads/*.c; do
    name=$(basename "$src" .c)
    "$CC" -O2 -Wall -static -o "$work/$name" "$src"
done
echo "generating a 256 MiB input file"
head -c $((256 << 20)) /dev/urandom > "$work/input.bin"

now_ns() { date +%s%N; }

# time_best CMD... : runs CMD REPEAT times (stdout discarded, stderr to
# $work/err), prints the best wall time in ms, or "failed (status N)".
time_best() {
    local best="" t0 t1 ms status
    for _ in $(seq "$REPEAT"); do
        rm -f "$work/output.bin"
        t0=$(now_ns)
        status=0
        "$@" >/dev/null 2>"$work/err" || status=$?
        t1=$(now_ns)
        if [ "$status" != 0 ]; then
            echo "failed (status $status)"
            return
        fi
        ms=$(( (t1 - t0) / 1000 ))
        if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
    done
    awk -v us="$best" 'BEGIN { printf "%.1f", us / 1000 }'
}

# repeat20 CMD... : CMD twenty times in a row (the start-up benchmark).
repeat20() {
    for _ in $(seq 20); do "$@" || return $?; done
}

record() { "$warpctl" record -- "$@"; }
# Every syscall through a VM exit: the figures before the exitless ring.
record_exits() { "$warpctl" record --no-exitless -- "$@"; }

# counts CMD... : "syscalls vm_exits id events trace_bytes" from one
# `warpctl record -v --id-file` run ("n/a" for what is not known).
counts() {
    rm -f "$work/output.bin" "$work/id"
    "$warpctl" record -v --id-file "$work/id" -- "$@" >/dev/null 2>"$work/verbose" || true
    local c id ev tb
    c=$(sed -n -E 's/^warpctl: ([0-9]+) syscalls, ([0-9]+) vm exits.*/\1 \2/p' "$work/verbose" | tail -n 1)
    [ -n "$c" ] || c="n/a n/a"
    id=$(cat "$work/id" 2>/dev/null || echo n/a)
    "$warpctl" show --json "$id" >"$work/show" 2>/dev/null || true
    ev=$(sed -n -E 's/.*"events": *([0-9]+).*/\1/p' "$work/show" | head -n 1)
    tb=$(sed -n -E 's/.*"trace_bytes": *([0-9]+).*/\1/p' "$work/show" | head -n 1)
    lb=$(sed -n -E 's/.*"logical_bytes": *([0-9]+).*/\1/p' "$work/show" | head -n 1)
    echo "$c $id ${ev:-n/a} ${tb:-n/a} ${lb:-n/a}"
}

replay() { "$warpctl" replay "$1"; }

echo "starting the daemon (warm-up recording)"
if ! "$warpctl" record -- "$work/hello" >/dev/null 2>"$work/warmup"; then
    echo "bench: warm-up recording failed; recorded figures will show the failure:" >&2
    sed 's/^/  /' "$work/warmup" >&2
fi

declare -a rows
wanted() { [ -z "${ONLY:-}" ] || [[ $1 =~ $ONLY ]]; }
bench() { # NAME CMD...
    local name=$1
    shift
    wanted "$name" || return 0
    echo "running $name"
    local native traced recorded recorded_exits replayed c sys exits id events bytes logical
    native=$(time_best "$@")
    traced="n/a"
    if command -v strace >/dev/null 2>&1; then
        if [ "$1" = repeat20 ]; then traced=$(time_best repeat20 strace -f -o /dev/null "${@:2}"); else traced=$(time_best strace -f -o /dev/null "$@"); fi
    fi
    if [ "$1" = repeat20 ]; then
        recorded=$(time_best repeat20 record "${@:2}")
        recorded_exits=$(time_best repeat20 record_exits "${@:2}")
        c=$(counts "${@:2}")
    else
        recorded=$(time_best record "$@")
        recorded_exits=$(time_best record_exits "$@")
        c=$(counts "$@")
    fi
    read -r sys exits id events bytes logical <<<"$c"
    replayed="n/a"
    if [ "$id" != n/a ]; then
        if [ "$1" = repeat20 ]; then replayed=$(time_best repeat20 replay "$id"); else replayed=$(time_best replay "$id"); fi
    fi
    rows+=("$(awk -v n="$name" -v nat="$native" -v st="$traced" -v rec="$recorded" -v rex="$recorded_exits" -v rep="$replayed" -v sys="$sys" -v ex="$exits" \
        -v ev="$events" -v tb="$bytes" -v lb="$logical" -v twenty="$([ "$1" = repeat20 ] && echo 20 || echo 1)" '
        function num(x) { return x ~ /^[0-9.]+$/ }
        function ratio(a, b) { return (num(a) && num(b) && b > 0) ? sprintf("%.1fx", a / b) : "n/a" }
        BEGIN {
            per = (num(sys) && num(ex) && sys > 0) ? sprintf("%.2f", ex / sys) : "n/a"
            evs = (num(ev) && num(rec) && rec > 0) ? sprintf("%.0f", ev / (rec / twenty / 1000)) : "n/a"
            bps = (num(lb) && num(sys) && sys > 0) ? sprintf("%.0f", lb / sys) : "n/a"
            printf "%-26s %10s %10s %10s %10s %10s %8s %8s %8s %8s %9s %9s %9s %10s %11s %8s", n, nat, st, rec, rex, rep, ratio(st, nat), ratio(rec, nat), ratio(rex, nat), ratio(rep, nat), sys, per, evs, tb, lb, bps
        }')")
}

bench "read /dev/zero 1B x1e5" "$work/read_zero" 100000
bench "clock_gettime x1e5 (vDSO natively)" "$work/clock_fstat" clock 100000
bench "fstat x1e5" "$work/clock_fstat" fstat 100000
bench "copy 256 MiB, 64 KiB bufs" "$work/copy_file" "$work/input.bin" "$work/output.bin"
bench "compute loop, no syscalls" "$work/compute" 400000000
bench "hello x20 (start-up)" repeat20 "$work/hello"
if [ -x /usr/bin/python3 ]; then
    bench "python3 start-up" /usr/bin/python3 -c pass
    bench "python3 compute 3e6" /usr/bin/python3 -c 'print(sum(i * i for i in range(3000000)))'
else
    echo "bench: /usr/bin/python3 not installed; skipping the python workloads" >&2
fi
bench "sha256sum 256 MiB" sha256sum "$work/input.bin"
bench "threads: ping-pong x1e4" "$work/pingpong" 10000
bench "threads: pipe ping-pong x1e4" "$work/pipe_pingpong" 10000
bench "threads: 4 x compute" "$work/threads_compute" 400000000
# Two threads writing megabytes per time slice (match finder tables,
# memset between blocks): the cost of the interrupt points' memory digest.
if command -v xz >/dev/null 2>&1; then
    awk 'BEGIN { for (i = 0; i < 400000; i++) printf "line %d %d\n", i, (i * 2654435761) % 1000003 }' > "$work/text"
    bench "threads: xz -T2, 7 MiB" xz -T2 --block-size=1MiB -c -1 "$work/text"
else
    echo "bench: xz not installed; skipping xz -T2" >&2
fi
# Process trees: 200 short processes, a fork of 1 GiB touched (with the
# touching itself, natively too), make -j2 of a small C project (gcc, cc1,
# as and ld are each a process).
bench "sh: 200 x /bin/true" /bin/sh -c 'i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done'
bench "fork, 1 GiB touched" "$work/fork_touched" 1024
mkdir -p "$work/proj"
for i in 1 2 3 4; do
    printf 'int f%d(int x) { return x * %d + 1; }\n' "$i" "$i" > "$work/proj/f$i.c"
done
printf 'int f1(int), f2(int), f3(int), f4(int);\nint main(void) { return (f1(1) + f2(2) + f3(3) + f4(4)) & 0; }\n' > "$work/proj/main.c"
printf 'OBJS = main.o f1.o f2.o f3.o f4.o\nprog: $(OBJS)\n\t$(CC) -o $@ $(OBJS)\n%%.o: %%.c\n\t$(CC) -O1 -c -o $@ $<\n' > "$work/proj/Makefile"
if command -v make >/dev/null 2>&1; then
    bench "make -j2, 5 C files" make -s -B -j2 -C "$work/proj" CC="$CC"
else
    echo "bench: make not installed; skipping make -j2" >&2
fi

# Preemption: threads that compute without syscalls are stopped by the
# slice timer; replay has to find each recorded point again (an in-guest
# probe compares registers at native speed). Reported: points recorded,
# points per second of recording, context switches per second, and replay
# time per point against the slice (the goal: within 10x of it).
preempt_row() { # NAME CMD...
    local name=$1
    shift
    wanted "$name" || return 0
    echo "running $name (preemption)"
    rm -f "$work/id"
    local t0 t1 rec rep points switches
    t0=$(now_ns)
    "$warpctl" record --id-file "$work/id" -- "$@" >/dev/null 2>"$work/err" || { prows+=("$(printf '%-26s failed' "$name")"); return; }
    t1=$(now_ns)
    rec=$(( (t1 - t0) / 1000 ))
    local id
    id=$(cat "$work/id")
    "$warpctl" events "$id" >"$work/events" 2>/dev/null || true
    points=$(grep -c -- '--- stopped at rip' "$work/events" || true)
    # A switch: a line whose thread differs from the line before's.
    switches=$(awk -F'[][]' '{ if (NR > 1 && $2 != prev) n++; prev = $2 } END { print n + 0 }' "$work/events")
    t0=$(now_ns)
    "$warpctl" replay --quiet "$id" >/dev/null 2>>"$work/err" || true
    t1=$(now_ns)
    rep=$(( (t1 - t0) / 1000 ))
    prows+=("$(awk -v n="$name" -v rec="$rec" -v rep="$rep" -v p="$points" -v sw="$switches" 'BEGIN {
        per = (p > 0) ? sprintf("%.2f", rep / 1000 / p) : "n/a"
        slice = (p > 0) ? sprintf("%.2fx", rep / 1000 / p / 10) : "n/a"
        printf "%-26s %10.1f %10.1f %8d %10.0f %10.0f %12s %10s", n, rec / 1000, rep / 1000, p, p / (rec / 1e6), sw / (rec / 1e6), per, slice
    }')")
}
declare -a prows
preempt_row "threads: 4 x compute" "$work/threads_compute" 400000000
preempt_row "threads: ping-pong x1e4" "$work/pingpong" 10000

echo
echo "best of $REPEAT runs, wall time in ms; the daemon was already running"
echo "(record: with the exitless ring; exits: record --no-exitless, every syscall a VM exit)"
echo "(syscalls, exits/syscall, events/s and trace bytes: one recording with the ring; hello's for a single start)"
echo "(added B: what the last recording added to the store, sharing blobs with earlier ones;"
echo " unshared B: what it takes alone; B/sys: unshared bytes per syscall)"
printf '%-26s %10s %10s %10s %10s %10s %8s %8s %8s %8s %9s %9s %9s %10s %11s %8s\n' workload native strace record exits replay st/nat rec/nat exi/nat rep/nat syscalls exits/sys events/s "added B" "unshared B" "B/sys"
for row in "${rows[@]}"; do echo "$row"; done
echo
echo "preemption (one recording and its replay, default 10 ms slice; ms; per point: replay ms per recorded point; /slice: that over the slice)"
printf '%-26s %10s %10s %8s %10s %10s %12s %10s\n' workload record replay points points/s switch/s "per point" "/slice"
for row in "${prows[@]}"; do echo "$row"; done
