#!/usr/bin/env bats
# exercise: -s N, a semaphore at the door (Exercises, 8)
#
# Graded by make check N=5. The student adds an option -s N to the
# thread-per-client server: a POSIX semaphore counts N places, main takes
# one before it accepts a client and the client's thread gives it back
# when it has closed its socket. With -s 2 and two idle clients, a third
# client is not accepted (2 "accepted" lines, Recv-Q 1 in ss -ltn) and
# gets no echo until an idle one leaves; then it gets its echo at once.
# Places come back every time a client leaves, and SIGTERM still stops
# the server while main waits for one.

load ../../tests/check-lib

SERVER="$LAB_ROOT/05-thread-server/server"
WHERE="Look at main's loop in 05-thread-server/server.c, and at serve_client()."

accepted() { count_lines "$SERVER_OUT" '^accepted '; }
accepted_is() { [ "$(accepted)" -eq "$1" ]; }
closed_is() { [ "$(count_lines "$SERVER_OUT" '^closed ')" -eq "$1" ]; }

# server_said: the server's first line on stderr that says something (not
# a sanitizer's row of "=").
server_said() {
    grep -m 1 -v '^=*$' "$SERVER_ERR"
}

# start_limited ARGS...: start the server with -p 0 and ARGS, telling the
# student if it refuses them.
start_limited() {
    start_server "$SERVER" -p 0 "$@" ||
        fail_with "'server -p 0 $*' did not start; it said: $(server_said)" \
            "Add the option -s: getopt()'s option string and main()'s option" \
            "loop in 05-thread-server/server.c, and a line for it in the usage."
}

# settled N: N clients have reached the server (accepted, or waiting in the
# backlog), and main is asleep: waiting for a place, or in poll() if it
# accepted every one. Until then main may still be accepting. (2, for
# wait_for to stop waiting, if the server is gone.)
settled() {
    local backlog
    process_gone "$SERVER_PID" && return 2
    backlog=$(listen_queue "$SERVER_PORT")
    [ -n "$backlog" ] && [ $(($(accepted) + backlog)) -eq "$1" ] &&
        process_state_is "$SERVER_PID" S
}

# spawn_idle N NAME: N clients that connect and send nothing; their PIDs
# in IDLE.
spawn_idle() {
    local i
    IDLE=()
    for ((i = 1; i <= $1; i++)); do
        lab_spawn "$2$i" "$LAB_PEER" -p "$SERVER_PORT" idle
        IDLE+=("$LAB_PID")
    done
}

# expect_limit LIMIT CLIENTS: CLIENTS clients are connected to a server
# started with -s LIMIT, the first LIMIT of them idle: it has accepted
# LIMIT of them, and the others wait in the backlog.
expect_limit() {
    local limit=$1 clients=$2 took backlog
    wait_for settled "$clients" ||
        fail_with "With -s $limit and $clients clients connected, the server did not settle:" \
            "$(accepted) accepted, Recv-Q $(listen_queue "$SERVER_PORT")." \
            "Its stderr: $(server_said)"
    took=$(accepted)
    backlog=$(listen_queue "$SERVER_PORT")
    echo "-s $limit, $clients clients: $took accepted, Recv-Q $backlog"
    [ "$took" -le "$limit" ] ||
        fail_with "With -s $limit and $clients clients connected, $limit of them idle, the" \
            "server accepted $took: at most $limit while $limit are served. main must" \
            "take a place (sem_wait) before accept(), and each client keep its" \
            "place until its thread has closed the socket. $WHERE"
    [ "$took" -eq "$limit" ] ||
        fail_with "With -s $limit and $clients clients connected, the server accepted only" \
            "$took: $limit places, $limit clients. Does sem_init() get $limit, and is" \
            "every place given back when a client leaves? $WHERE"
    [ "$backlog" -eq $((clients - limit)) ] ||
        fail_with "ss -ltn shows Recv-Q $backlog: the other $((clients - limit))" \
            "clients should wait in the backlog."
}

# stop_cleanly: SIGTERM ends the server within 5 s, with exit status 0
# and no sanitizer report.
stop_cleanly() {
    kill -TERM "$SERVER_PID"
    lab_wait_gone "$SERVER_PID" 5 ||
        fail_with "The server still runs 5 s after SIGTERM while main waits for a" \
            "place: a signal cannot end sem_wait() here. stop_thread() must" \
            "sem_post() once after setting stop_requested, and main test the" \
            "flag when sem_wait() returns."
    wait_exit_status "$SERVER_PID"
    if [ "$EXIT_STATUS" -ne 0 ] || grep -q 'Sanitizer' "$SERVER_ERR"; then
        fail_with "After SIGTERM the server exited with status $EXIT_STATUS; its stderr:" \
            "$(server_said)"
    fi
}

@test "-s 2: with two idle clients a third waits in the backlog, and gets its echo once one leaves" {
    start_limited -s 2
    spawn_idle 2 idle
    wait_for accepted_is 2 ||
        fail_with "With -s 2, two clients connected but the server accepted $(accepted)." \
            "Its stderr: $(server_said)" "$WHERE"
    lab_spawn third "$LAB_PEER" -p "$SERVER_PORT" echo 1000
    local third=$LAB_PID
    expect_limit 2 3
    ! process_gone "$third" ||
        fail_with "The third client ended while the two idle ones held both places:" \
            "$(head -n 1 "$BATS_TEST_TMPDIR/third.err")" \
            "it should wait in the backlog until one leaves."
    kill -TERM "${IDLE[0]}" # one idle client leaves: its place is free
    wait_exit_status "$third" ||
        fail_with "One idle client left, but the third client still has no echo:" \
            "the place was not given back, or main did not take it. Give it" \
            "back (sem_post) when the client's thread has closed its socket. $WHERE"
    [ "$EXIT_STATUS" -eq 0 ] ||
        fail_with "The third client did not get its 1,000 bytes back:" \
            "$(head -n 1 "$BATS_TEST_TMPDIR/third.err")"
    wait_for closed_is 2
    stop_cleanly
}

@test "-s 2: places come back: after 8 clients have come and gone, 2 at a time again" {
    start_limited -s 2
    spawn_idle 8 first
    expect_limit 2 8
    # All leave, the 6 in the backlog too: the server still accepts each
    # (its read sees the end at once), and gives every place back.
    kill -TERM "${IDLE[@]}"
    wait_for closed_is 8 ||
        fail_with "8 clients left, but the server closed only" \
            "$(count_lines "$SERVER_OUT" '^closed ') and accepted $(accepted): a place" \
            "was not given back. Every client's thread must sem_post() once" \
            "when it has closed its socket. $WHERE"
    # The same again: still two places, no more and no fewer.
    spawn_idle 3 again
    expect_limit_again
    stop_cleanly
}
# expect_limit_again: 3 new idle clients after 8 came and went: 10 accepted
# in all, 1 in the backlog.
expect_limit_again() {
    local backlog
    wait_for settled 11 ||
        fail_with "After 8 clients left, 3 new ones connected but the server did not" \
            "settle: $(accepted) accepted in all. Its stderr: $(server_said)"
    backlog=$(listen_queue "$SERVER_PORT")
    if ! accepted_is 10 || [ "$backlog" -ne 1 ]; then
        fail_with "After 8 clients came and went, 3 new idle ones should find 2" \
            "places: 2 accepted and 1 in the backlog. The server accepted" \
            "$(($(accepted) - 8)) and ss -ltn shows Recv-Q $backlog. Does each" \
            "client give back its place exactly once? $WHERE"
    fi
}

@test "-s 1: SIGTERM stops the server while main waits for a place" {
    start_limited -s 1
    spawn_idle 2 idle
    expect_limit 1 2
    stop_cleanly
}

@test "without -s: every client is accepted at once, as before" {
    start_limited
    spawn_idle 6 idle
    wait_for settled 6
    accepted_is 6 ||
        fail_with "Without -s, 6 idle clients connected but the server accepted" \
            "$(accepted): without -s there is no limit, as before. $WHERE"
    stop_cleanly
}
