# tests/lib.bash - what every chapter's bats file shares. Load it with
#     load ../tests/lib
#
# It starts programs in the background and always kills them afterwards,
# waits for a server's "listening on" line instead of sleeping, and offers
# small helpers to look at a process through /proc and ss.
#
# Every background program runs in its own process group (setsid), so that
# teardown can kill it together with any child it forked, and with bats's
# descriptors closed: bats waits for its fd 3 to close before it ends a
# test, so a server holding it would hang the run.

# 1.5.0 brought run --separate-stderr, 1.7.0 BATS_TEST_TIMEOUT (tests/run
# sets it); 1.8.0 is the oldest release these files were run with.
bats_require_minimum_version 1.8.0

# The lab's top folder: the one above this file's, wherever the .bats file
# that loads it lives (a chapter folder, or a chapter's check/ folder).
LAB_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LAB_CLIENT="$LAB_ROOT/03-accept/client"
# (The .bats files that load this file use these; shellcheck, reading this
# file alone, cannot see that.)
# shellcheck disable=SC2034
LAB_PEER="$LAB_ROOT/tests/peer"
# shellcheck disable=SC2034
LAB_LOADGEN="$LAB_ROOT/tools/loadgen"
# shellcheck disable=SC2034
LAB_SIGBLOCK="$LAB_ROOT/tests/sigblock"
# shellcheck disable=SC2034
LAB_STOP_SHIM="$LAB_ROOT/tests/stop_shim.so"
LAB_PIDS=()
LAB_SPAWNED=0

# Seconds to wait for something that should take milliseconds; generous
# because sanitizer and valgrind runs are slow and machines are shared.
LAB_WAIT=${LAB_WAIT:-20}

teardown() {
    lab_cleanup
}

# lab_note TEXT...: a line for the reader of the test output. Bats shows
# what a test prints on fd 3 (stdout and stderr only when the test fails);
# the "# " keeps the TAP stream valid.
lab_note() {
    printf '# %s\n' "$*" >&3
}

# lab_cleanup: stop every process group that lab_spawn started, politely
# first (SIGTERM), then for sure (SIGKILL). Safe to call twice.
lab_cleanup() {
    local pid
    for pid in "${LAB_PIDS[@]}"; do
        kill -TERM -- "-$pid" 2>/dev/null || true
    done
    for pid in "${LAB_PIDS[@]}"; do
        lab_wait_gone "$pid" 2 || kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    LAB_PIDS=()
}

# lab_spawn NAME CMD [ARG...]: run CMD in the background in its own process
# group, stdout to $BATS_TEST_TMPDIR/NAME.out and stderr to NAME.err. Sets
# LAB_PID. Stdin is /dev/null: bash gives a background job /dev/null, even
# when lab_spawn's own input is redirected (wrap CMD in sh -c to feed it).
lab_spawn() {
    local name=$1
    shift
    (
        # Start the program as a shell would: with only stdin, stdout and
        # stderr. bats holds more descriptors open (fd 3 among them), which
        # would shift the program's own descriptor numbers and counts.
        for fd in "/proc/$BASHPID/fd"/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        exec setsid "$@"
    ) >"$BATS_TEST_TMPDIR/$name.out" 2>"$BATS_TEST_TMPDIR/$name.err" &
    LAB_PID=$!
    LAB_PIDS+=("$LAB_PID")
}

# wait_for COMMAND...: retry COMMAND every 20 ms until it succeeds, for at
# most $LAB_WAIT seconds. This is how a test waits for an event without
# guessing how long it takes.
# COMMAND may return 2 to say "this will never happen": then wait_for stops.
wait_for() {
    local deadline=$((SECONDS + LAB_WAIT)) rc
    while :; do
        "$@" && return 0
        rc=$?
        [ "$rc" -eq 2 ] && return 1
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "wait_for: gave up after ${LAB_WAIT}s: $*" >&2
            return 1
        fi
        sleep 0.02
    done
}

# file_has_line FILE REGEX: FILE has a line matching the extended REGEX.
# (A file not yet created is "not yet", status 1: grep's own status 2 would
# tell wait_for to give up.)
file_has_line() {
    grep -Eq -- "$2" "$1" 2>/dev/null || return 1
}

# count_lines FILE REGEX: how many lines of FILE match REGEX; 0 while
# FILE does not exist yet (grep then prints nothing, and an empty count
# would make "line_count_is ... N" an error, which ends wait_for at once).
count_lines() {
    local n
    n=$(grep -Ec -- "$2" "$1" 2>/dev/null)
    echo "${n:-0}"
}

# start_server PROGRAM [ARG...]: start a server, wait for its
# "listening on ADDR:PORT" line, and set SERVER_PID, SERVER_PORT,
# SERVER_ADDR (as printed: 127.0.0.1 or [::1]), SERVER_OUT, SERVER_ERR.
# Several servers in one test get server1, server2, ... files.
start_server() {
    LAB_SPAWNED=$((LAB_SPAWNED + 1))
    local name="server$LAB_SPAWNED" wrap
    # LAB_WRAP is a command line (e.g. "valgrind -q"), split at spaces.
    read -ra wrap <<<"${LAB_WRAP:-}"
    lab_spawn "$name" "${wrap[@]}" "$@"
    SERVER_PID=$LAB_PID
    SERVER_OUT="$BATS_TEST_TMPDIR/$name.out"
    SERVER_ERR="$BATS_TEST_TMPDIR/$name.err"
    wait_server_listening "$@"
}

# wait_server_listening [WHAT...]: wait until the server SERVER_PID has
# printed its "listening on ADDR:PORT" line into SERVER_OUT, then set
# SERVER_PORT and SERVER_ADDR from it. start_server calls it; call it
# yourself after starting a server some other way.
wait_server_listening() {
    if ! wait_for server_is_listening; then
        echo "no 'listening on' line from ${*:-the server}" >&2
        echo "--- its stdout:" >&2
        cat "$SERVER_OUT" >&2
        echo "--- its stderr:" >&2
        cat "$SERVER_ERR" >&2
        return 1
    fi
    local line
    line=$(grep -m 1 '^listening on ' "$SERVER_OUT")
    SERVER_PORT=${line##*:}
    SERVER_ADDR=${line#listening on }
    SERVER_ADDR=${SERVER_ADDR%:*}
}

# start_server_with_fd_limit N PROGRAM [ARG...]: start_server with the
# descriptor limit (ulimit -n) set to N for the server only.
start_server_with_fd_limit() {
    local limit=$1
    shift
    # LAB_WRAP (e.g. valgrind) goes after the ulimit, around the server.
    local wrap
    read -ra wrap <<<"${LAB_WRAP:-}"
    # shellcheck disable=SC2016 # $0 and $@ are the inner bash's
    LAB_WRAP="" start_server bash -c 'ulimit -n "$0" && exec "$@"' "$limit" \
        "${wrap[@]}" "$@"
}

# True once the server printed its line; fails at once if it died instead.
server_is_listening() {
    if file_has_line "$SERVER_OUT" '^listening on '; then
        return 0
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null || process_state_is "$SERVER_PID" Z; then
        # It may have printed the line and exited since the look above
        # (a server told to stop at once does): look once more.
        file_has_line "$SERVER_OUT" '^listening on ' && return 0
        echo "server exited before listening" >&2
        return 2 # it never will now: stop waiting
    fi
    return 1
}

# The address to dial: the printed one without IPv6 brackets.
server_host() {
    local host=${SERVER_ADDR#[}
    echo "${host%]}"
}

# echo_through_server INPUT_FILE OUTPUT_FILE: send a file through the
# chapter 03 client to the server started last, with a time limit.
echo_through_server() {
    timeout "$LAB_WAIT" "$LAB_CLIENT" -b "$(server_host)" -p "$SERVER_PORT" \
        <"$1" >"$2"
}

# ---- looking at a process ----------------------------------------------------

# process_state_is PID STATE: the one-letter state in /proc/PID/stat (R, S,
# Z for a zombie, ...).
process_state_is() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) } # the command name may hold spaces; skip past it
    [ "${stat%% *}" = "$2" ]
}

# lab_wait_gone PID [SECONDS]: wait until PID has exited (gone or a zombie).
lab_wait_gone() {
    local LAB_WAIT=${2:-$LAB_WAIT}
    wait_for process_gone "$1" 2>/dev/null
}
process_gone() {
    [ ! -e "/proc/$1" ] || process_state_is "$1" Z
}

# wait_exit_status PID: wait (bounded) for PID, a child of this shell, to
# exit, and set EXIT_STATUS to its exit status. Call it directly, never
# inside $(...): a subshell cannot wait for its parent's child.
wait_exit_status() {
    if [ "$BASH_SUBSHELL" -gt 0 ]; then
        echo "wait_exit_status: call it directly, not in \$(...); it sets EXIT_STATUS" >&2
        return 1
    fi
    lab_wait_gone "$1" || {
        echo "process $1 did not exit within ${LAB_WAIT}s" >&2
        return 1
    }
    local rc=0
    wait "$1" || rc=$?
    # shellcheck disable=SC2034 # for the caller
    EXIT_STATUS=$rc
}

# fd_count PID: how many file descriptors PID holds. (ls is safe here: the
# names under /proc/PID/fd and /proc/PID/task are numbers.)
# shellcheck disable=SC2012
fd_count() {
    ls "/proc/$1/fd" | wc -l
}

# thread_count PID: how many threads PID runs.
# shellcheck disable=SC2012
thread_count() {
    ls "/proc/$1/task" | wc -l
}

# For wait_for, which must re-count on every try (an argument like
# "$(fd_count PID)" would be counted once, before wait_for even starts):
#   wait_for fd_count_is PID N      wait_for thread_count_is PID N
#   wait_for child_count_is PID N   wait_for line_count_is FILE REGEX N
fd_count_is() { [ "$(fd_count "$1")" -eq "$2" ]; }
thread_count_is() { [ "$(thread_count "$1")" -eq "$2" ]; }
thread_count_is_between() {
    local n
    n=$(thread_count "$1")
    [ "$n" -ge "$2" ] && [ "$n" -le "$3" ]
}
child_count_is() { [ "$(children_of "$1" | wc -l)" -eq "$2" ]; }
line_count_is() { [ "$(count_lines "$1" "$2")" -eq "$3" ]; }

# children_of PID: the PIDs of PID's child processes, one per line.
children_of() {
    local task
    for task in /proc/"$1"/task/*/children; do
        tr ' ' '\n' <"$task"
    done | grep -E '^[0-9]+$' || true
}

# zombie_children_of PID: how many of PID's children are zombies.
zombie_children_of() {
    local n=0 child
    for child in $(children_of "$1"); do
        process_state_is "$child" Z && n=$((n + 1))
    done
    echo "$n"
}

# listen_queue PORT: the Recv-Q of the socket listening on PORT, as ss
# shows it: for a listening socket, the connections waiting for accept().
listen_queue() {
    ss -Hltn "sport = :$1" | awk '{ print $2; exit }'
}

# ---- programs started with a broken stdout or odd signals (01, 02) ----------

# run_stdout_broken full|closed CMD...: run CMD (bounded) with its stdout
# on /dev/full or closed; set STATUS and ERR (its stderr).
run_stdout_broken() {
    local how=$1 err="$BATS_TEST_TMPDIR/broken.err"
    shift
    STATUS=0
    if [ "$how" = full ]; then
        timeout "$LAB_WAIT" "$@" >/dev/full 2>"$err" 3>&- || STATUS=$?
    else
        timeout "$LAB_WAIT" "$@" >&- 2>"$err" 3>&- || STATUS=$?
    fi
    ERR=$(cat "$err")
    echo "stdout $how: exit $STATUS; stderr: $ERR"
}

# env_sets_signals OPTION FIELD: does `env OPTION=INT,TERM` start a program
# with SIGINT and SIGTERM (bits 1 and 14 of /proc/self/status's mask FIELD:
# signal N is bit N-1) blocked (--block-signal, SigBlk) or ignored
# (--ignore-signal, SigIgn)?
env_sets_signals() {
    local option=$1 field=$2 hex
    hex=$(env "$option=INT,TERM" grep "^$field:" /proc/self/status)
    hex=${hex##*[[:space:]]}
    (((16#$hex >> 1) & 1)) && (((16#$hex >> 14) & 1))
}
