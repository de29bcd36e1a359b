#!/usr/bin/env bats
# exercise: pre-fork: 4 children that each accept() (Exercises, 5)
#
# Graded by make check N=4. At start-up the server forks 4 children that
# each loop on accept() on the listening socket they inherited, serving one
# client at a time, as Apache's prefork does. So: 4 children before any
# client; 4 clients served at once and a 5th waiting in the backlog until
# one leaves; 10 clients in a row all served by the same 4; SIGTERM stops
# the server and every child.

load ../../tests/check-lib

SERVER="$LAB_ROOT/04-fork-server/server"
POOL=4

# For wait_for: the listening socket has N connections waiting.
queue_is() {
    [ "$(listen_queue "$SERVER_PORT")" = "$1" ]
}

# start_pool: start the server and wait for its 4 children.
start_pool() {
    start_server "$SERVER" -p 0 ||
        fail_with "'server -p 0' did not start; it said: $(head -n 2 "$SERVER_ERR")" \
            "Run it yourself: ./04-fork-server/server -p 0"
    wait_for child_count_is "$SERVER_PID" "$POOL" ||
        fail_with "The server has $(children_of "$SERVER_PID" | wc -l) children before any" \
            "client connects, not $POOL: fork them in main(), after open_listener()" \
            "and before the loop, each running a loop of accept() and echo."
}

@test "4 children before any client, and 10 clients in a row all served by them" {
    start_pool
    local before i
    before=$(children_of "$SERVER_PID" | sort | tr '\n' ' ')
    for ((i = 1; i <= 10; i++)); do
        run_output "$LAB_PEER" -p "$SERVER_PORT" echo 10000
        [ "$RUN_STATUS" -eq 0 ] ||
            fail_with "Client $i of 10 in a row got no whole echo: $RUN_ERR" \
                "Does each child go back to accept() after its client leaves?" \
                "And does it close the connected socket (else the client never sees EOF)?"
    done
    wait_for child_count_is "$SERVER_PID" "$POOL" ||
        fail_with "After 10 clients the server has $(children_of "$SERVER_PID" | wc -l)" \
            "children, not $POOL: a pool is forked once, not once per client."
    lab_note "children: $before"
}

@test "4 clients are served at once; a 5th waits in the backlog until one leaves" {
    start_pool
    local i
    for ((i = 1; i <= POOL; i++)); do
        lab_spawn "idle$i" "$LAB_PEER" -v -p "$SERVER_PORT" idle
    done
    local first_idle=$((${#LAB_PIDS[@]} - POOL))
    first_idle=${LAB_PIDS[first_idle]}
    wait_for queue_is 0
    for ((i = 1; i <= POOL; i++)); do
        wait_for file_has_line "$BATS_TEST_TMPDIR/idle$i.out" '^connected '
    done
    wait_for queue_is 0 ||
        fail_with "$POOL idle clients connected, and $(listen_queue "$SERVER_PORT") of them still wait" \
            "for accept(): each of the $POOL children should have taken one."
    lab_spawn fifth "$LAB_PEER" -p "$SERVER_PORT" echo 1000
    local fifth=$LAB_PID
    wait_for queue_is 1 ||
        fail_with "A 5th client, with $POOL children busy, should wait in the backlog" \
            "(ss -ltn shows Recv-Q 1); Recv-Q is $(listen_queue "$SERVER_PORT")." \
            "Is something still forking a child per client?"
    ! process_gone "$fifth" ||
        fail_with "The 5th client ended while all $POOL children were busy:" \
            "$(cat "$BATS_TEST_TMPDIR/fifth.err")"
    kill -TERM "$first_idle"
    local status=timeout
    wait_exit_status "$fifth" && status=$EXIT_STATUS
    [ "$status" = 0 ] ||
        fail_with "When one of the $POOL clients left, the 5th should have been served;" \
            "it was not: $(cat "$BATS_TEST_TMPDIR/fifth.err")" \
            "Does the child go back to accept() after its client?"
}

@test "SIGTERM stops the server and its 4 children" {
    start_pool
    local kids
    kids=$(children_of "$SERVER_PID")
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID" ||
        fail_with "The server did not exit after SIGTERM."
    [ "$EXIT_STATUS" -eq 0 ] ||
        fail_with "The server exited with status $EXIT_STATUS after SIGTERM, not 0:" \
            "$(head -n 2 "$SERVER_ERR")"
    local kid
    for kid in $kids; do
        lab_wait_gone "$kid" ||
            fail_with "Child $kid is still running after the server exited." \
                "stop_children() stops the children in the children[] table: put the" \
                "pool's children there (live_children too)."
    done
}
