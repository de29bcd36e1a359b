#!/usr/bin/env bats
# exercise: ppoll() instead of select(): no FD_SETSIZE (Going deeper: three more exercises, 1)
#
# Graded by make check N=6. The student replaces select() with ppoll() and
# the same stop_wait_mask(), with an array of struct pollfd and a client
# table that grows past FD_SETSIZE. Then the lesson's 1,100-client run has
# every client accepted and served, and no "refused" line; the server still
# echoes, half-closes and stops as before, and gives every descriptor back.

load ../../tests/check-lib

SERVER="$LAB_ROOT/06-select-server/server"
CLIENTS=1100
WHERE="Look at build_sets(), add_client() and the clients[] table in 06-select-server/server.c."

@test "1,100 clients at once are all accepted and served, none refused" {
    local hard
    hard=$(ulimit -Hn)
    [ "$hard" = unlimited ] || [ "$hard" -ge 2048 ] ||
        fail_with "This check needs a descriptor limit of 2048; ulimit -Hn is $hard here."
    start_server_with_fd_limit 2048 "$SERVER" -p 0 ||
        fail_with "'server -p 0' did not start; it said: $(head -n 2 "$SERVER_ERR")" \
            "Run it yourself: ./06-select-server/server -p 0"
    local fds
    fds=$(fd_count "$SERVER_PID")
    # loadgen: $CLIENTS connections, each echoes 64 bytes (checked), then
    # all are held open (-k) until SIGTERM.
    # shellcheck disable=SC2016 # $0 and $@ are the inner bash's
    lab_spawn loadgen bash -c 'ulimit -n "$0" && exec "$@"' 2048 \
        "$LAB_LOADGEN" -p "$SERVER_PORT" -c "$CLIENTS" -w -k -T 60
    local loadgen=$LAB_PID out="$BATS_TEST_TMPDIR/loadgen.out"
    # "holding N connections" once every connection got its echo back.
    LAB_WAIT=60 wait_for file_has_line "$out" '^holding ' || true
    local refused
    refused=$(grep -m 1 'refused' "$SERVER_ERR") || true
    [ -z "$refused" ] ||
        fail_with "With $CLIENTS clients the server still refuses some:" "$refused" \
            "ppoll() has no FD_SETSIZE: a descriptor of any number can be watched." \
            "$WHERE"
    ! process_gone "$SERVER_PID" ||
        fail_with "The server exited: $(head -n 2 "$SERVER_ERR")"
    local accepted
    accepted=$(count_lines "$SERVER_OUT" '^accepted ')
    [ "$accepted" -eq "$CLIENTS" ] ||
        fail_with "Of $CLIENTS clients connected at once, the server logged $accepted" \
            "'accepted' lines: the others are still waiting. $WHERE"

    # One more, above descriptor 1100: a whole echo of 100,000 bytes.
    run_output "$LAB_PEER" -p "$SERVER_PORT" echo 100000
    [ "$RUN_STATUS" -eq 0 ] ||
        fail_with "With $CLIENTS clients held, one more client got no whole echo: $RUN_ERR" \
            "$WHERE"

    # loadgen prints its result when it stops: every echo checked.
    kill -TERM "$loadgen"
    wait_exit_status "$loadgen"
    local result
    result=$(grep -m 1 'errors=' "$out") ||
        result="(no result line: $(tail -n 1 "$BATS_TEST_TMPDIR/loadgen.err"))"
    lab_note "loadgen: $result"
    [[ "$result" == *"requests=$CLIENTS errors=0"* ]] ||
        fail_with "Not every one of $CLIENTS clients got its 64-byte echo back:" \
            "tools/loadgen says: $result" \
            "The server's stderr: $(head -n 1 "$SERVER_ERR")" "$WHERE"

    # And every descriptor comes back once they have left.
    wait_for fd_count_is "$SERVER_PID" "$fds" ||
        fail_with "After the $CLIENTS clients left the server holds $(fd_count "$SERVER_PID")" \
            "descriptors, not $fds as before: is every closed client's slot freed?"
}

@test "the echo still works: 1 MiB, 200 KB owed after a half-close, a reset; SIGTERM exits 0" {
    start_server "$SERVER" -p 0 ||
        fail_with "'server -p 0' did not start; it said: $(head -n 2 "$SERVER_ERR")" \
            "Run it yourself: ./06-select-server/server -p 0"
    run_output "$LAB_PEER" -p "$SERVER_PORT" echo 1048576
    [ "$RUN_STATUS" -eq 0 ] ||
        fail_with "1 MiB echoed through the server did not come back whole: $RUN_ERR" \
            "Are POLLOUT and the out[] buffer used as the writable set was?"
    run_output "$LAB_PEER" -p "$SERVER_PORT" owed 200000
    [ "$RUN_STATUS" -eq 0 ] ||
        fail_with "A client that sent 200,000 bytes, half-closed, and only then read did" \
            "not get them all back: $RUN_ERR" \
            "After read() returns 0, the server must still send what it owes."
    run_output "$LAB_PEER" -p "$SERVER_PORT" reset 1000
    run_output "$LAB_PEER" -p "$SERVER_PORT" echo 1000
    [ "$RUN_STATUS" -eq 0 ] ||
        fail_with "After a client reset its connection, the next one got no echo: $RUN_ERR" \
            "revents can hold POLLERR or POLLHUP without POLLIN: read() then says why."
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID" ||
        fail_with "The server did not exit after SIGTERM: does ppoll() get stop_wait_mask()?"
    [ "$EXIT_STATUS" -eq 0 ] ||
        fail_with "After SIGTERM the server exited with status $EXIT_STATUS, not 0:" \
            "$(head -n 2 "$SERVER_ERR")"
}
