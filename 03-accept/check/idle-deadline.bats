#!/usr/bin/env bats
# exercise: a deadline: an idle client is dropped after 10 s (Exercises, 6)
#
# Graded by make check N=3. The student gives 03-accept/server.c a deadline
# like http_hello's: a client that sends nothing is closed 10 s after it was
# accepted (or after its last byte: either is right), and the client that
# waited behind it in the backlog is served next.

load ../../tests/check-lib

SERVER="$LAB_ROOT/03-accept/server"
WHERE=("Look at echo_client() in 03-accept/server.c: read_or_stop() waits for"
    "ever; wait_fd_or_stop(conn_fd, POLLIN, MS) waits at most MS ms (returns 0).")
DEADLINE=10  # seconds, as the exercise asks
EARLIEST=9   # a close before this is too early, whatever the machine's load

# now_ms: the time in milliseconds, for measuring what the server did.
now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    echo "${t:0:-3}"
}

@test "an idle client is closed after 10 s, and the client behind it is served" {
    start_server "$SERVER" -p 0 ||
        fail_with "'server -p 0' did not start; it said: $(head -n 2 "$SERVER_ERR")" \
            "Run it yourself: ./03-accept/server -p 0"
    lab_spawn idle "$LAB_PEER" -v -p "$SERVER_PORT" idle
    wait_for file_has_line "$BATS_TEST_TMPDIR/idle.out" '^connected '
    local peer start elapsed
    peer=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/idle.out")
    wait_for file_has_line "$SERVER_OUT" "^accepted $peer\$"
    start=$(now_ms)
    # A second client, queued behind the first (an iterative server).
    lab_spawn next "$LAB_PEER" -p "$SERVER_PORT" echo 100
    local next_pid=$LAB_PID

    LAB_WAIT=$((DEADLINE + LAB_WAIT)) wait_for file_has_line "$SERVER_OUT" "^closed $peer\$" ||
        fail_with "A client that sent nothing was still connected $((DEADLINE + LAB_WAIT)) s after" \
            "the server accepted it (no 'closed $peer' line)." "${WHERE[@]}"
    elapsed=$(($(now_ms) - start))
    lab_note "the idle client was closed $((elapsed / 1000)).$((elapsed % 1000 / 100)) s after 'accepted'"
    [ "$elapsed" -ge $((EARLIEST * 1000)) ] ||
        fail_with "The idle client was closed $elapsed ms after it was accepted: the deadline" \
            "is $DEADLINE s. Is the timeout in milliseconds ($((DEADLINE * 1000)))?" "${WHERE[@]}"
    ! process_gone "$SERVER_PID" ||
        fail_with "The server exited when the deadline passed: $(head -n 1 "$SERVER_ERR")" \
            "A deadline ends one client, never the server."

    wait_exit_status "$next_pid" ||
        fail_with "The client queued behind the idle one was not served within ${LAB_WAIT}s" \
            "of the idle one's close. Does the loop go back to accept() afterwards?"
    [ "$EXIT_STATUS" -eq 0 ] ||
        fail_with "The client queued behind the idle one did not get its 100 bytes back:" \
            "$(cat "$BATS_TEST_TMPDIR/next.err")"
}

@test "a client that keeps talking within the deadline gets its whole echo" {
    start_server "$SERVER" -p 0 ||
        fail_with "'server -p 0' did not start; it said: $(head -n 2 "$SERVER_ERR")" \
            "Run it yourself: ./03-accept/server -p 0"
    run_output "$LAB_PEER" -p "$SERVER_PORT" echo 1048576
    [ "$RUN_STATUS" -eq 0 ] ||
        fail_with "1 MiB echoed through the server did not come back whole: $RUN_ERR" \
            "The deadline must not cut a client that is sending." "${WHERE[@]}"
}
