#!/usr/bin/env bash
# Checks the portable helpers of ./dev (proc_cmdline, detach, with_timeout, lock_fd9, is_ours) by sourcing it:
# with DEV_PORTABLE_FALLBACKS=1 every helper takes its macOS path (ps, perl's setsid, a bash timer, a lock
# directory) even on Linux. Run by tests/tests/dev_script.rs in both modes; prints one line per check and exits
# non-zero on the first failure.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dev-portable.XXXXXX")"
export ATHENA_CONNECT_CACHE="$WORK/cache"
# shellcheck source=../dev
source "$ROOT/dev"

PIDS=()
cleanup() {
    local p
    for p in ${PIDS[@]+"${PIDS[@]}"}; do
        kill "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap 'cleanup 2>/dev/null' EXIT

mode="native"
[[ "${DEV_PORTABLE_FALLBACKS:-0}" == 1 ]] && mode="fallbacks"
fail() {
    printf 'FAIL (%s): %s\n' "$mode" "$*" >&2
    exit 1
}
ok() { printf 'ok   (%s): %s\n' "$mode" "$*"; }

# Waits (at most 5 s) until PID's command line contains TEXT.
wait_cmdline() {
    local pid="$1" text="$2" i
    for ((i = 0; i < 100; i++)); do
        [[ "$(proc_cmdline "$pid")" == *"$text"* ]] && return 0
        sleep 0.05
    done
    return 1
}

# proc_cmdline: the arguments of a live process, nothing for a dead one.
# exec -a: one process (no child left behind) whose command line carries the probe text.
bash -c 'exec -a dev-portable-probe sleep 30' &
pid=$!
PIDS+=("$pid")
wait_cmdline "$pid" "dev-portable-probe" || fail "proc_cmdline $pid: '$(proc_cmdline "$pid")'"
kill "$pid"
wait "$pid" 2>/dev/null || true
[[ -z "$(proc_cmdline "$pid")" ]] || fail "proc_cmdline of a dead pid is not empty"
ok "proc_cmdline"

# detach: $! is the command itself, in its own process group (new session); is_ours recognises it by the
# marker and the cache path on its command line.
detach bash -c 'exec -a "$0" sleep 30' "${MARK_PREFIX}probe $CACHE/probe" </dev/null >/dev/null 2>&1 &
pid=$!
PIDS+=("$pid")
wait_cmdline "$pid" "${MARK_PREFIX}probe" || fail "detach: \$! is not the command: '$(proc_cmdline "$pid")'"
# The marker is on the command line from the start (an argument of perl or setsid), so the new session
# may still be a moment away when it first shows: wait for it, bounded.
for _ in $(seq 1 50); do
    pgid="$(ps -o pgid= -p "$pid" | tr -d ' ')"
    [[ "$pgid" == "$pid" ]] && break
    sleep 0.1
done
[[ "$pgid" == "$pid" ]] || fail "detach: process group $pgid, expected its own ($pid)"
[[ "$(ps -o pgid= -p $$ | tr -d ' ')" != "$pgid" ]] || fail "detach: same process group as the script"
is_ours probe "$pid" || fail "is_ours probe $pid"
! is_ours kafka "$pid" || fail "is_ours kafka matched another name's marker"
kill "$pid"
ok "detach, is_ours"

# with_timeout: GNU timeout's exit codes.
rc=0
with_timeout 1 sleep 30 || rc=$?
[[ "$rc" == 124 ]] || fail "with_timeout on a hang: exit $rc, expected 124"
rc=0
with_timeout 10 sh -c 'exit 3' || rc=$?
[[ "$rc" == 3 ]] || fail "with_timeout passes the exit code on: $rc"
with_timeout 10 true || fail "with_timeout true"
ok "with_timeout"

# lock_fd9: exclusive while held, free once the holder exits.
lockf="$WORK/lock"
(
    exec 9>"$lockf"
    lock_fd9 5 "$lockf" || exit 1
    : >"$WORK/held"
    while [[ ! -e "$WORK/release" ]]; do sleep 0.05; done
) &
holder=$!
PIDS+=("$holder")
for ((i = 0; i < 100; i++)); do
    [[ -e "$WORK/held" ]] && break
    sleep 0.05
done
[[ -e "$WORK/held" ]] || fail "lock_fd9: the first holder never got the lock"
if (exec 9>"$lockf" && lock_fd9 0 "$lockf"); then
    fail "lock_fd9: a second holder got the lock while it was held"
fi
: >"$WORK/release"
wait "$holder" || fail "lock_fd9: the holder failed"
(exec 9>"$lockf" && lock_fd9 5 "$lockf") || fail "lock_fd9: not free after the holder exited"
if [[ "$mode" == fallbacks ]]; then
    # A lock whose owner died (SIGKILL, power loss) is taken over.
    sh -c 'exit 0' &
    dead=$!
    wait "$dead" || true
    mkdir -p "$lockf.d"
    printf '%s\n' "$dead" >"$lockf.d/pid"
    (exec 9>"$lockf" && lock_fd9 2 "$lockf") || fail "lock_fd9: a dead owner's lock was not taken over"
fi
ok "lock_fd9"

printf 'all checks passed (%s)\n' "$mode"
