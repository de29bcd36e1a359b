#!/usr/bin/env bats
# exercise: -Q SLOTS, the size of the pool's queue (Exercises, 2)
#
# Graded by make check N=5. The student adds an option -Q SLOTS to the
# server, the number of clients the -t pool's queue holds (16 without it).
# Then with -t 2 -Q 4 and 30 clients that hold their connections, the
# server accepts 7 (2 held by the workers, 4 in the queue, 1 in main's
# hands waiting for a slot) and the other 23 wait in the kernel's backlog
# (ss -ltn: Recv-Q 23). Every queued client is still served in turn once a
# worker is free, and SIGTERM still stops the server.
#
# What it cannot see: a ring allocated with the -Q size whose ends still
# wrap round at 16 writes past its end, and in a normal build nothing may
# show it. Built with make SAN=address check N=5, the server then stops
# with AddressSanitizer's report, and the check fails.

load ../../tests/check-lib

SERVER="$LAB_ROOT/05-thread-server/server"
WHERE="Look at queue_put() and queue_get() in 05-thread-server/server.c: each must use the -Q size where it used QUEUE_SLOTS."

accepted() { count_lines "$SERVER_OUT" '^accepted '; }
closed_is() { [ "$(count_lines "$SERVER_OUT" '^closed ')" -eq "$1" ]; }

# start_pool ARGS...: start the server with ARGS (and -p 0), telling the
# student if it refuses them.
start_pool() {
    start_server "$SERVER" -p 0 "$@" ||
        fail_with "'server -p 0 $*' did not start; it said: $(head -n 1 "$SERVER_ERR")" \
            "Add the option -Q: getopt()'s option string and main()'s option" \
            "loop in 05-thread-server/server.c, and a line for it in the usage."
}

# server_said: the server's first line on stderr that says something (not
# a sanitizer's row of "=").
server_said() {
    grep -m 1 -v '^=*$' "$SERVER_ERR"
}

# settled N: all N clients have reached the server (accepted, or waiting in
# the backlog), and main is asleep: waiting for a queue slot, or in poll()
# if it accepted every one. Until then main may still be accepting. (2, for
# wait_for to stop waiting, if the server is gone.)
settled() {
    local backlog
    process_gone "$SERVER_PID" && return 2
    backlog=$(listen_queue "$SERVER_PORT")
    [ -n "$backlog" ] && [ $(($(accepted) + backlog)) -eq "$1" ] &&
        process_state_is "$SERVER_PID" S
}

# stop_cleanly: SIGTERM ends the server, exit status 0, no sanitizer report.
stop_cleanly() {
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID" ||
        fail_with "The server did not exit after SIGTERM while main waited for a" \
            "queue slot. stop_thread() wakes main with not_full: does queue_put()" \
            "still test stop_requested before each wait?"
    if [ "$EXIT_STATUS" -ne 0 ] || grep -q 'Sanitizer' "$SERVER_ERR"; then
        fail_with "After SIGTERM the server exited with status $EXIT_STATUS; its stderr:" \
            "$(server_said)"
    fi
}

# expect_backpressure WORKERS SLOTS CLIENTS [ARGS...]: start the server
# with -t WORKERS and ARGS; CLIENTS connections that each send one request
# and then hold on (loadgen -w -k, as in the lesson). Expect WORKERS +
# SLOTS + 1 accepted and the rest in the backlog.
expect_backpressure() {
    local workers=$1 slots=$2 clients=$3 took backlog
    shift 3
    local want=$((workers + slots + 1)) where=$WHERE
    [ $# -gt 0 ] || where="Without -Q the queue holds 16, as before: the default of -Q."
    start_pool -t "$workers" "$@"
    lab_spawn loadgen "$LAB_LOADGEN" -p "$SERVER_PORT" -c "$clients" -w -k -T 600
    if ! wait_for settled "$clients"; then
        ! process_gone "$SERVER_PID" ||
            fail_with "With 'server -t $workers $*' and $clients clients, the server died" \
                "after accepting $(accepted). Its stderr says: $(server_said)" \
                "$WHERE"
        fail_with "With 'server -t $workers $*', $clients clients connected, but the server" \
            "neither accepted them nor left them in the backlog: $(accepted) accepted," \
            "Recv-Q $(listen_queue "$SERVER_PORT"). Its stderr: $(server_said)"
    fi
    took=$(accepted)
    backlog=$(listen_queue "$SERVER_PORT")
    echo "server -t $workers $*, $clients clients: $took accepted, Recv-Q $backlog"
    [ "$took" -eq "$want" ] ||
        fail_with "With 'server -t $workers $*' and $clients clients holding their" \
            "connections, the server accepted $took; it should accept $want:" \
            "$workers held by the workers, $slots in the queue, 1 in main's hands" \
            "waiting for a slot. $where"
    [ "$backlog" -eq $((clients - want)) ] ||
        fail_with "ss -ltn shows Recv-Q $backlog; with $want accepted, the other" \
            "$((clients - want)) clients should wait in the backlog."
    stop_cleanly
}

@test "-t 2 -Q 4: 7 clients accepted (2 + 4 + 1), 23 in the backlog" {
    expect_backpressure 2 4 30 -Q 4
}

@test "-t 1 -Q 1: 3 clients accepted (1 + 1 + 1), 5 in the backlog" {
    expect_backpressure 1 1 8 -Q 1
}

@test "-t 1 -Q 40: a queue larger than 16 holds 40 clients" {
    expect_backpressure 1 40 45 -Q 40
}

@test "-t 2 without -Q: the queue still holds 16 clients" {
    expect_backpressure 2 16 24
}

@test "-t 1 -Q 3: clients that waited in a small queue are each served in turn" {
    start_pool -t 1 -Q 3
    lab_spawn holder "$LAB_PEER" -p "$SERVER_PORT" idle
    local holder=$LAB_PID
    wait_for line_count_is "$SERVER_OUT" '^accepted ' 1
    # 12 clients pass through a ring of 3 slots: its ends wrap round 4 times.
    local i pids=() status
    for ((i = 1; i <= 12; i++)); do
        lab_spawn "echo$i" "$LAB_PEER" -p "$SERVER_PORT" echo 10000
        pids+=("$LAB_PID")
    done
    wait_for settled 13 ||
        fail_with "With 'server -t 1 -Q 3', 13 clients connected but did not settle:" \
            "$(accepted) accepted, Recv-Q $(listen_queue "$SERVER_PORT")." \
            "Its stderr: $(server_said)" "$WHERE"
    kill -TERM "$holder" # the worker is free: the queue drains
    for ((i = 1; i <= 12; i++)); do
        wait_exit_status "${pids[i - 1]}" ||
            fail_with "Client $i of 12 got no echo after the worker was freed: the" \
                "server stopped serving its queue. Its stderr: $(server_said)" "$WHERE"
        status=$EXIT_STATUS
        [ "$status" -eq 0 ] ||
            fail_with "Client $i of 12 did not get its own 10,000 bytes back:" \
                "$(head -n 1 "$BATS_TEST_TMPDIR/echo$i.err")" \
                "Did the ring's head and tail wrap round at the -Q size, and were" \
                "its slots allocated with that size? $WHERE"
    done
    wait_for closed_is 13
    stop_cleanly
}
