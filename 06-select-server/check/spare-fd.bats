#!/usr/bin/env bats
# exercise: the spare descriptor: EMFILE turns a client away at once (Going deeper: three more exercises, 2)
#
# Graded by make check N=6. The student keeps one descriptor open on
# /dev/null; on EMFILE the server closes it, accept()s the waiting
# connection, closes that at once, and reopens the spare. In the lesson's
# "ulimit -n 16" run, the clients that do not fit are then turned away at
# once instead of waiting in the listen queue (Recv-Q 0), and once clients
# leave, the server serves again with the descriptors it had.

load ../../tests/check-lib

SERVER="$LAB_ROOT/06-select-server/server"
LIMIT=16
WHERE=("Look at accept_clients() in 06-select-server/server.c: the ACCEPT_BACKOFF case,"
    "and open(\"/dev/null\", O_RDONLY) once at start, after open_listener().")

queue_is() { # N: connections waiting on our listening socket
    [ "$(listen_queue "$SERVER_PORT")" = "$1" ]
}

@test "with 16 descriptors and 16 idle clients, none waits in the queue; a new one ends at once" {
    start_server_with_fd_limit "$LIMIT" "$SERVER" -p 0 ||
        fail_with "'server -p 0' with ulimit -n $LIMIT did not start; it said: $(head -n 2 "$SERVER_ERR")" \
            "Run it yourself: (ulimit -n $LIMIT && exec ./06-select-server/server -p 0)"
    local fds i
    fds=$(fd_count "$SERVER_PID")
    for i in $(seq "$LIMIT"); do
        lab_spawn "idle$i" "$LAB_PEER" -v -p "$SERVER_PORT" idle
    done
    for i in $(seq "$LIMIT"); do
        wait_for file_has_line "$BATS_TEST_TMPDIR/idle$i.out" '^connected '
    done
    wait_for queue_is 0 ||
        fail_with "With the server out of descriptors, $(listen_queue "$SERVER_PORT") clients still wait in its" \
            "listen queue (ss -ltn: Recv-Q): on EMFILE, close the spare, accept()" \
            "the client, close it at once, and reopen the spare." "${WHERE[@]}"

    # Full, the server sleeps (S) until a client does something.
    wait_for process_state_is "$SERVER_PID" S ||
        fail_with "Out of descriptors, the server never sleeps (ps shows R): it spins." \
            "accept() fails with EMFILE before it looks at the queue, even an empty" \
            "one: when the accept() after giving up the spare finds no client" \
            "(EAGAIN), reopen the spare and stop accepting for this round." "${WHERE[@]}"

    # A new client, while the server is full: turned away at once, no echo.
    run_output "$LAB_PEER" -p "$SERVER_PORT" echo 100
    [ "$RUN_STATUS" -ne 124 ] ||
        fail_with "A new client, with the server out of descriptors, waited ${LAB_WAIT}s for an" \
            "echo: it should be closed at once." "${WHERE[@]}"
    [ "$RUN_STATUS" -ne 0 ] ||
        fail_with "A new client got its echo though the server should be out of descriptors:" \
            "is the limit of $LIMIT descriptors still what it was?"
    ! process_gone "$SERVER_PID" ||
        fail_with "The server exited: $(head -n 2 "$SERVER_ERR")"

    # The clients leave; the server serves again, and holds the same
    # descriptors as before they came: the spare is open again.
    for i in $(seq "$LIMIT"); do
        kill -TERM -- "-${LAB_PIDS[i]}"
    done
    wait_for fd_count_is "$SERVER_PID" "$fds" ||
        fail_with "After every client left, the server holds $(fd_count "$SERVER_PID") descriptors," \
            "not $fds as before they came: is the spare reopened after each use?"
    run_output "$LAB_PEER" -p "$SERVER_PORT" echo 1000
    [ "$RUN_STATUS" -eq 0 ] ||
        fail_with "After the clients left, a new client got no echo: $RUN_ERR" \
            "Is the spare reopened, and is the listener still watched?"
    # And a second round of clients gets the same treatment: the spare is back.
    for i in $(seq "$LIMIT"); do
        lab_spawn "again$i" "$LAB_PEER" -v -p "$SERVER_PORT" idle
    done
    for i in $(seq "$LIMIT"); do
        wait_for file_has_line "$BATS_TEST_TMPDIR/again$i.out" '^connected '
    done
    wait_for queue_is 0 ||
        fail_with "The second time the server ran out of descriptors, clients waited in the" \
            "queue again: the spare was used once and not reopened." "${WHERE[@]}"
}
