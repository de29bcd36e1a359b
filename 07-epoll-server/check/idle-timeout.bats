#!/usr/bin/env bats
# exercise: idle timeout: a client silent for 5 s is closed (Exercises, 2)
#
# Graded by make check N=7. The student closes a client that has sent
# nothing for 5 seconds, without polling: epoll_pwait() sleeps until the
# oldest client's time is up. The check looks at what a student looks at:
# the "closed" line about 5 s after "accepted", the server sleeping (ps
# shows S) in between, and a client that talks now and then kept open.

load ../../tests/check-lib

SERVER="$LAB_ROOT/07-epoll-server/server"
WHERE=("Look at the main loop in 07-epoll-server/server.c: epoll_pwait()'s timeout,"
    "and a last-activity time in struct conn, set on accept and on every read.")
TIMEOUT=5  # seconds, as the exercise asks
EARLIEST=4 # a close before this is too early, whatever the machine's load

# now_ms: the time in milliseconds.
now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    echo "${t:0:-3}"
}

# spawn_idle: a client that connects and sends nothing; waits until the
# server logged it, and sets IDLE_PEER (its address) and IDLE_START (ms).
spawn_idle() {
    lab_spawn idle "$LAB_PEER" -v -p "$SERVER_PORT" idle
    wait_for file_has_line "$BATS_TEST_TMPDIR/idle.out" '^connected '
    IDLE_PEER=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/idle.out")
    wait_for file_has_line "$SERVER_OUT" "^accepted $IDLE_PEER\$"
    IDLE_START=$(now_ms)
}

# For wait_for: has the idle client been closed? Meanwhile, count how
# often the server was seen running (R) rather than sleeping.
SAMPLES=0 RUNNING=0
idle_closed_sampling() {
    SAMPLES=$((SAMPLES + 1))
    process_state_is "$SERVER_PID" R && RUNNING=$((RUNNING + 1))
    file_has_line "$SERVER_OUT" "^closed $IDLE_PEER\$"
}

# wait_idle_closed WHAT: wait for the idle client's "closed" line, and check
# that it came no sooner than EARLIEST seconds after "accepted".
wait_idle_closed() {
    local elapsed
    LAB_WAIT=$((TIMEOUT + LAB_WAIT)) wait_for idle_closed_sampling ||
        fail_with "$1: a client that sent nothing was still open $((TIMEOUT + LAB_WAIT)) s after" \
            "'accepted $IDLE_PEER' (no 'closed' line)." "${WHERE[@]}"
    elapsed=$(($(now_ms) - IDLE_START))
    lab_note "$1: the idle client was closed $((elapsed / 1000)).$((elapsed % 1000 / 100)) s after 'accepted'"
    [ "$elapsed" -ge $((EARLIEST * 1000)) ] ||
        fail_with "$1: the idle client was closed $elapsed ms after 'accepted'; it should be" \
            "$TIMEOUT s. Is the timeout in milliseconds ($((TIMEOUT * 1000)))?" "${WHERE[@]}"
    ! process_gone "$SERVER_PID" ||
        fail_with "$1: the server exited: $(head -n 1 "$SERVER_ERR")"
}

@test "a silent client is closed about 5 s after 'accepted'; the server sleeps meanwhile" {
    start_server "$SERVER" -p 0 ||
        fail_with "'server -p 0' did not start; it said: $(head -n 2 "$SERVER_ERR")" \
            "Run it yourself: ./07-epoll-server/server -p 0"
    spawn_idle
    wait_idle_closed "level-triggered"
    # A server that sleeps in epoll_pwait() is seen as S; one that spins
    # (a timeout of 0, again and again) is R, running or about to.
    lab_note "the server was running in $RUNNING of $SAMPLES looks"
    [ "$((RUNNING * 2))" -lt "$SAMPLES" ] ||
        fail_with "While it waited for the idle client's time, the server was running (ps" \
            "shows R) in $RUNNING of $SAMPLES looks: it spins instead of sleeping." \
            "Give epoll_pwait() the ms until the oldest client expires, not 0."
    # The next client is served as before.
    run_output "$LAB_PEER" -p "$SERVER_PORT" echo 1000
    [ "$RUN_STATUS" -eq 0 ] ||
        fail_with "After the idle client was closed, a new client got no echo: $RUN_ERR"
}

@test "-e: a silent client is closed while another, talking every second, stays" {
    start_server "$SERVER" -p 0 -e ||
        fail_with "'server -p 0 -e' did not start; it said: $(head -n 2 "$SERVER_ERR")" \
            "Run it yourself: ./07-epoll-server/server -p 0 -e"
    # The talker sends a line a second for 7 s: never silent for 5 s, but
    # connected longer than that. (The sleeps pace the client; the check
    # waits for the server only with wait_for.)
    local expected="$BATS_TEST_TMPDIR/expected"
    seq 1 7 >"$expected"
    # shellcheck disable=SC2016 # $0 and $1 are for the inner sh
    lab_spawn talker sh -c 'for i in 1 2 3 4 5 6 7; do echo "$i"; sleep 1; done |
        "$0" -p "$1"' "$LAB_CLIENT" "$SERVER_PORT"
    local talker_pid=$LAB_PID
    spawn_idle
    wait_idle_closed "edge-triggered (-e)"
    local status=timeout
    wait_exit_status "$talker_pid" && status=$EXIT_STATUS
    [ "$status" = 0 ] && cmp -s "$expected" "$BATS_TEST_TMPDIR/talker.out" ||
        fail_with "A client that sent a line every second for 7 s did not get its 7 lines" \
            "back (it said: $(head -n 1 "$BATS_TEST_TMPDIR/talker.err"))." \
            "Only silence counts: every read that gets bytes starts the client's 5 s again," \
            "and a client that talks is never closed. ${WHERE[1]}"
}
