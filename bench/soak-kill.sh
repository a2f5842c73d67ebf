#!/usr/bin/env bash
# Soak: SIGKILL warpd at random points of a mix of recordings, then check
# that no finished recording was lost.
#
#   bench/soak-kill.sh [KILLS]     (default 100)
#
# In a fresh WARP_HOME, each round starts one recording from a mix (a shell
# loop, a checksum of a large file, python3 computing, a program that writes
# a lot), waits a random 0-1.5 s, and SIGKILLs that home's warpd (whatever
# it is doing: starting, recording, flushing, idle after the end). The next
# round's warpctl starts a fresh daemon. At the end every session in the
# store is checked:
#   complete   -> `warpctl replay` must reproduce it (exit 0);
#   incomplete -> counted (the recording warpd died in);
#   anything else, an unreadable store, or a replay that fails -> a failure.
# It also counts first calls after a kill that failed (the daemon must start
# again reliably). Prints the figures; exits 1 if anything failed.
#
# Uses target/release binaries if built, else target/debug (CARGO_TARGET_DIR
# is honoured). Run it alone: it times nothing, but it keeps a core busy.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
kills=${1:-100}
case $kills in '' | *[!0-9]*) echo "soak: KILLS must be a number" >&2; exit 2 ;; esac
pick_binaries soak

export WARP_HOME
WARP_HOME=$(mktemp -d /tmp/warp-soak.XXXXXX)
work=$(mktemp -d /tmp/warp-soak-work.XXXXXX)
trap 'pkill -KILL -f "$bin/warpd" 2>/dev/null || true; rm -rf "$work"' EXIT
head -c $((64 << 20)) /dev/urandom > "$work/big"

workload() {
    case $(($1 % 4)) in
    0) echo /bin/sh -c 'for i in $(seq 1 300); do echo line $i; done' ;;
    1) echo /usr/bin/sha256sum "$work/big" ;;
    2) echo /usr/bin/python3 -c 'print(sum(i * i for i in range(2_000_000)))' ;;
    3) echo /usr/bin/head -c 50000000 /dev/zero ;;
    esac
}

first_call_failures=0
for round in $(seq 1 "$kills"); do
    # shellcheck disable=SC2046 # the workload's words are its argv
    "$warpctl" record -- $(workload "$round") > /dev/null 2> "$work/err" < /dev/null &
    rec=$!
    sleep "$(awk -v s="$RANDOM" 'BEGIN { srand(s); printf "%.3f", rand() * 1.5 }')"
    for p in $(daemon_pids); do kill -KILL "$p" 2>/dev/null || true; done
    wait "$rec" || true
    # The first call after the kill must start a fresh daemon and answer.
    if ! "$warpctl" ls > /dev/null 2> "$work/ls-err"; then
        first_call_failures=$((first_call_failures + 1))
        echo "round $round: first call after the kill failed: $(cat "$work/ls-err")" >&2
    fi
done

complete=0 incomplete=0 replayed=0 failures=0
while IFS= read -r line; do
    id=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
    status=$(printf '%s' "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
    case $status in
    complete)
        complete=$((complete + 1))
        if "$warpctl" replay "$id" > /dev/null 2> "$work/replay-err" < /dev/null; then
            replayed=$((replayed + 1))
        else
            failures=$((failures + 1))
            echo "session $id: complete but its replay failed: $(tail -2 "$work/replay-err")" >&2
        fi
        ;;
    incomplete) incomplete=$((incomplete + 1)) ;;
    *)
        failures=$((failures + 1))
        echo "session $id: status $status" >&2
        ;;
    esac
done < <("$warpctl" ls --json)

printf 'kills %d, sessions %d: %d complete (%d replayed exactly), %d incomplete; first calls after a kill that failed: %d; failures: %d\n' \
    "$kills" $((complete + incomplete + failures)) "$complete" "$replayed" "$incomplete" "$first_call_failures" "$failures"
[ "$failures" -eq 0 ] && [ "$first_call_failures" -eq 0 ]
