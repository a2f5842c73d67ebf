# Shared by the bench scripts (sourced): which binaries to use, and the
# daemon of this WARP_HOME.

# Sets `bin` and `warpctl` to target/release if built, else target/debug
# (CARGO_TARGET_DIR is honoured); exits 2 when neither is. $1: the
# script's name, for the message.
pick_binaries() {
    local root target
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    target=${CARGO_TARGET_DIR:-$root/target}
    if [ -x "$target/release/warpctl" ] && [ -x "$target/release/warpd" ]; then bin=$target/release; else bin=$target/debug; fi
    [ -x "$bin/warpctl" ] || { echo "$1: build first (cargo build --workspace)" >&2; exit 2; }
    warpctl=$bin/warpctl
}

# The daemon of this home: the warpd whose environment has our WARP_HOME.
daemon_pids() {
    local p
    for p in $(pgrep -f "$bin/warpd" || true); do
        if tr '\0' '\n' 2>/dev/null < "/proc/$p/environ" | grep -qx "WARP_HOME=$WARP_HOME"; then
            echo "$p"
        fi
    done
}
