#!/usr/bin/env bats
# exercise: count the clients served, in the parent (Exercises, 1)
#
# Graded by make check N=4. A counter in the child counts at most 1, in its
# own copy of the variable; the parent must count, in start_child() or
# child_ended(), and print "served N" from main() after stop_children(), as
# the last line of its log.

load ../../tests/check-lib

SERVER="$LAB_ROOT/04-fork-server/server"
WHERE=("Count in the parent: it learns of each client in start_child() and"
    "child_ended(), in 04-fork-server/server.c; print with"
    "log_line(\"served %ld\", served) after stop_children() in main().")

# serve_then_stop N: start the server, send N clients through it one after
# another (two at a time for the last two), stop it with SIGTERM, and set
# LAST_LINE to the last line of its stdout.
serve_then_stop() {
    local n=$1 i pids=()
    start_server "$SERVER" -p 0 ||
        fail_with "'server -p 0' did not start; it said: $(head -n 2 "$SERVER_ERR")" \
            "Run it yourself: ./04-fork-server/server -p 0"
    for ((i = 1; i <= n - 2; i++)); do
        timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" echo 1000 ||
            fail_with "Client $i of $n got no echo: the server must still serve."
    done
    for i in 1 2; do
        lab_spawn "pair$i" "$LAB_PEER" -p "$SERVER_PORT" echo 1000
        pids+=("$LAB_PID")
    done
    for i in 0 1; do
        wait_exit_status "${pids[i]}" ||
            fail_with "A client served at the same time as another got no echo."
        [ "$EXIT_STATUS" -eq 0 ] ||
            fail_with "A client served at the same time as another got no echo:" \
                "$(cat "$BATS_TEST_TMPDIR/pair$((i + 1)).err")"
    done
    # Every child has ended and been reaped ("closed") before the stop.
    wait_for line_count_is "$SERVER_OUT" '^closed ' "$n" ||
        fail_with "After $n clients the server logged $(count_lines "$SERVER_OUT" '^closed ')" \
            "'closed' lines, not $n: does the parent still reap each child?"
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID" ||
        fail_with "The server did not exit after SIGTERM."
    [ "$EXIT_STATUS" -eq 0 ] ||
        fail_with "The server exited with status $EXIT_STATUS after SIGTERM, not 0:" \
            "$(head -n 2 "$SERVER_ERR")"
    LAST_LINE=$(tail -n 1 "$SERVER_OUT")
    lab_note "$n clients, then SIGTERM: the last line is '$LAST_LINE'"
}

# expect_served N: LAST_LINE says N clients were served.
expect_served() {
    if [[ "$LAST_LINE" =~ ^served:?\ ([0-9]+) ]]; then
        [ "${BASH_REMATCH[1]}" -eq "$1" ] && return 0
        local said=${BASH_REMATCH[1]}
        if [ "$said" -le 1 ]; then
            fail_with "After $1 clients the last line says served $said." \
                "Is the counting done in a child? A child has its own copy of the" \
                "variable, and the parent's stays 0." "${WHERE[@]}"
        fi
        fail_with "After $1 clients the last line says served $said, not $1." "${WHERE[@]}"
    fi
    fail_with "After $1 clients and a SIGTERM, the server's last line should be" \
        "'served $1'; it is '$LAST_LINE'." "${WHERE[@]}"
}

@test "three clients, then SIGTERM: the last line is 'served 3'" {
    serve_then_stop 3
    expect_served 3
}

@test "five clients, then SIGTERM: the last line is 'served 5'" {
    serve_then_stop 5
    expect_served 5
}
