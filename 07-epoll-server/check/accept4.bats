#!/usr/bin/env bats
# exercise: accept4(): sockets born non-blocking (Exercises, 1)
#
# Graded by make check N=7. The student replaces accept() and the
# fcntl(O_NONBLOCK) of each new client with Linux's accept4(fd, addr, len,
# SOCK_NONBLOCK). The check counts the calls as the lesson does (strace
# -f -e trace=fcntl): one fcntl(F_SETFL) for the listener and none per
# client (keep_std_fds_open() adds 3 F_GETFD at start, not counted), every
# accept4() asks for SOCK_NONBLOCK, and every echo still comes back.

load ../../tests/check-lib

SERVER="$LAB_ROOT/07-epoll-server/server"
CLIENTS=100
WHERE=("Look at accept_clients() and add_client() in 07-epoll-server/server.c;"
    "accept4() needs #define _GNU_SOURCE before the first #include.")

@test "100 clients: accept4(..., SOCK_NONBLOCK) for each, and no fcntl(F_SETFL) but the listener's" {
    command -v strace >/dev/null ||
        fail_with "This check traces the server with strace, which is not installed:" \
            "the README's apt-get line installs it."
    local trace="$BATS_TEST_TMPDIR/trace"
    start_server strace -f -qq -o "$trace" -e signal=none \
        -e trace=fcntl,accept,accept4 "$SERVER" -q -p 0 ||
        fail_with "'strace ... server -q -p 0' did not start; it said: $(head -n 2 "$SERVER_ERR")"
    run_output "$LAB_LOADGEN" -p "$SERVER_PORT" -c "$CLIENTS" -w
    [ "$RUN_STATUS" -eq 0 ] && [[ "$RUN_OUT" == *"requests=$CLIENTS errors=0"* ]] ||
        fail_with "Not every one of $CLIENTS clients got its echo: ${RUN_OUT:-$RUN_ERR}" \
            "Is every new socket still non-blocking, and still added to epoll?"
    # Stop strace and its server, so that the whole trace is written.
    kill -TERM -- "-$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    local fcntls plain nonblocking
    fcntls=$(grep -cE '^([0-9]+ +)?fcntl\([0-9]+, F_SETFL' "$trace") || true
    plain=$(grep -cE '^([0-9]+ +)?accept\(' "$trace") || true
    nonblocking=$(grep -E '^([0-9]+ +)?accept4\(' "$trace" | grep -c 'SOCK_NONBLOCK' || true)
    lab_note "$CLIENTS clients: $fcntls fcntl(F_SETFL), $plain accept(), $nonblocking accept4(SOCK_NONBLOCK)"
    [ "$plain" -eq 0 ] ||
        fail_with "strace saw $plain accept() calls: use accept4(listen_fd, addr, &len," \
            "SOCK_NONBLOCK) instead." "${WHERE[@]}"
    [ "$nonblocking" -ge "$CLIENTS" ] ||
        fail_with "strace saw $nonblocking accept4() calls with SOCK_NONBLOCK for $CLIENTS clients:" \
            "pass SOCK_NONBLOCK as accept4()'s flags." "${WHERE[@]}"
    [ "$fcntls" -le 1 ] ||
        fail_with "strace saw $fcntls fcntl(F_SETFL) calls for $CLIENTS clients; the listener" \
            "needs 1, and a client born non-blocking none: drop set_nonblocking()" \
            "for the clients." "${WHERE[@]}"
}
