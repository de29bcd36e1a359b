#!/usr/bin/env bats
# 03-accept/test.bats - what is particular to chapter 03: the client, the
# iterative server's queue, and HTTP on TCP. What every server must do
# (options, echo, half-close, signals, bad clients, descriptors, standard
# streams) is checked by tests/server.bats, which tests/run also runs
# against 03-accept/server.

load ../tests/lib

SERVER="$LAB_ROOT/03-accept/server"
HTTP_HELLO="$LAB_ROOT/03-accept/http_hello"
# An LD_PRELOAD library that sends the program SIGTERM just before its
# first wait for a client (tests/stop_shim.c; the Makefile builds it).
STOP_SHIM="$LAB_ROOT/tests/stop_shim.so"

# ss shows a connection's state; these match one end by its port.
server_side_in_state() { # STATE: a connection to our server port, server end
    [ -n "$(ss -Htn state "$1" "sport = :$SERVER_PORT")" ]
}
client_side_in_state() { # STATE: a connection to our server port, client end
    [ -n "$(ss -Htn state "$1" "dport = :$SERVER_PORT")" ]
}

# For wait_for, which must look again on every try (lib.bash has the
# others: line_count_is, fd_count_is ...).
listen_queue_is() { # N: connections queued on our server's listening socket
    [ "$(listen_queue "$SERVER_PORT")" = "$1" ]
}

# spawn_with_input NAME FILE CMD...: lab_spawn, with stdin from FILE. (A
# background job's stdin is /dev/null, whatever lab_spawn's own is.)
spawn_with_input() {
    local name=$1 input=$2
    shift 2
    # shellcheck disable=SC2016 # $0 and $@ are for sh, not for this shell
    lab_spawn "$name" sh -c 'exec "$@" <"$0"' "$input" "$@"
}

# occupy_server: connect a client that sends nothing and wait until the
# iterative server has accepted it; the server is now busy with it. Sets
# FIRST_PID and FIRST_PEER.
# shellcheck disable=SC2153 # start_server (tests/lib.bash) sets SERVER_OUT
occupy_server() {
    lab_spawn first "$LAB_PEER" -v -p "$SERVER_PORT" idle
    FIRST_PID=$LAB_PID
    wait_for file_has_line "$BATS_TEST_TMPDIR/first.out" '^connected '
    FIRST_PEER=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/first.out")
    wait_for file_has_line "$SERVER_OUT" "^accepted $FIRST_PEER\$"
}

@test "client: 8 MiB of random bytes through the echo server come back identical" {
    start_server "$SERVER" -p 0 -q
    local in="$BATS_TEST_TMPDIR/in" out="$BATS_TEST_TMPDIR/out"
    head -c 8M /dev/urandom >"$in"
    # Through a pipe, as a student types it: the client must send and read
    # at the same time, or both sides block with full buffers (deadlock).
    # shellcheck disable=SC2002 # the pipe is the point
    cat "$in" | timeout "$LAB_WAIT" "$LAB_CLIENT" -p "$SERVER_PORT" >"$out"
    cmp "$in" "$out"
}

@test "iterative server: a second client waits in the backlog until the first leaves" {
    start_server "$SERVER" -p 0
    occupy_server
    printf 'hello from B\n' >"$BATS_TEST_TMPDIR/b.in"
    spawn_with_input second "$BATS_TEST_TMPDIR/b.in" \
        "$LAB_CLIENT" -p "$SERVER_PORT"
    local second_pid=$LAB_PID

    # The kernel completed B's handshake and queued it: the listening
    # socket's Recv-Q counts one connection that accept() has not taken.
    wait_for listen_queue_is 1
    # B's line and its FIN reached the server's kernel; nobody reads them
    # (ss shows the server's end of B in CLOSE-WAIT).
    wait_for server_side_in_state close-wait
    # So B has no echo yet, is still waiting, and the server accepted once.
    [ ! -s "$BATS_TEST_TMPDIR/second.out" ]
    kill -0 "$second_pid"
    line_count_is "$SERVER_OUT" '^accepted ' 1

    # The first client leaves: the server closes it and accepts B.
    kill -TERM "$FIRST_PID"
    wait_exit_status "$second_pid"
    [ "$EXIT_STATUS" -eq 0 ]
    cmp "$BATS_TEST_TMPDIR/b.in" "$BATS_TEST_TMPDIR/second.out"
    wait_for line_count_is "$SERVER_OUT" '^closed ' 2
    run grep -E '^(accepted|closed) ' "$SERVER_OUT"
    [ "${lines[0]}" = "accepted $FIRST_PEER" ]
    [ "${lines[1]}" = "closed $FIRST_PEER" ]
    [[ ${lines[2]} == "accepted 127.0.0.1:"* ]]
    [ "${lines[2]}" != "accepted $FIRST_PEER" ]
}

@test "client: no server listening: exit 1, stderr names connect, the address and why" {
    # Take a port the kernel just handed out, then free it: nobody listens.
    start_server "$SERVER" -p 0
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    run --separate-stderr "$LAB_CLIENT" -p "$SERVER_PORT" </dev/null
    [ "$status" -eq 1 ]
    [ -z "$output" ]
    [[ $stderr == *"connect 127.0.0.1:$SERVER_PORT: Connection refused"* ]]
}

@test "client: started with stdin closed, it sends nothing, half-closes and exits 0" {
    start_server "$SERVER" -p 0
    # With descriptor 0 closed, the socket would become descriptor 0, and
    # the client would take its own socket for its input and wait forever.
    # (sh closes it: a "<&-" on run itself would let run's own pipe take 0.)
    run --separate-stderr sh -c 'exec "$@" <&-' sh \
        timeout "$LAB_WAIT" "$LAB_CLIENT" -p "$SERVER_PORT"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    [ -z "$stderr" ]
    wait_for line_count_is "$SERVER_OUT" '^closed ' 1
}

@test "client: started with stdout closed, it says so and exits 1 without sending" {
    start_server "$SERVER" -p 0
    # With descriptor 1 closed, the socket would become descriptor 1, and
    # the echo would be written back into the server.
    run --separate-stderr sh -c 'printf "hello\n" | "$@" >&-' sh \
        timeout "$LAB_WAIT" "$LAB_CLIENT" -p "$SERVER_PORT"
    [ "$status" -eq 1 ]
    [ "$stderr" = "client: write stdout: Bad file descriptor (EBADF)" ]
    # It never connected: the next client is the server's first.
    [ "$(printf 'next\n' | timeout "$LAB_WAIT" "$LAB_CLIENT" -p "$SERVER_PORT")" = next ]
    line_count_is "$SERVER_OUT" '^accepted ' 1
}

@test "client: half-closes at end of input, then reads the whole reply and exits 0" {
    start_server "$SERVER" -p 0
    occupy_server # so that the server cannot answer before our FIN
    head -c 32768 /dev/urandom >"$BATS_TEST_TMPDIR/b.in"
    spawn_with_input second "$BATS_TEST_TMPDIR/b.in" \
        "$LAB_CLIENT" -p "$SERVER_PORT"
    local second_pid=$LAB_PID

    # The client sent all its input and its FIN (shutdown SHUT_WR), which
    # the server's kernel acknowledged: its end is in FIN-WAIT-2. It has
    # received nothing yet and it is still running, waiting to read.
    wait_for client_side_in_state fin-wait-2
    [ ! -s "$BATS_TEST_TMPDIR/second.out" ]
    kill -0 "$second_pid"

    kill -TERM "$FIRST_PID"
    wait_exit_status "$second_pid"
    [ "$EXIT_STATUS" -eq 0 ]
    cmp "$BATS_TEST_TMPDIR/b.in" "$BATS_TEST_TMPDIR/second.out"
}

@test "server: echoing to a queued client that already left gives EPIPE, not death by SIGPIPE" {
    start_server "$SERVER" -p 0
    occupy_server
    # B connects (bash's /dev/tcp), sends 50000 bytes and closes without
    # reading: it waits in the backlog, its FIN queued behind its data.
    head -c 50000 /dev/zero >"/dev/tcp/127.0.0.1/$SERVER_PORT"
    kill -TERM "$FIRST_PID"
    # The server takes B, reads 16 KiB, echoes them to a closed socket (B's
    # kernel answers RST), reads more and writes again: EPIPE. Had SIGPIPE
    # not been ignored, that second write would kill the server (status 141).
    wait_for line_count_is "$SERVER_OUT" '^closed ' 2
    kill -0 "$SERVER_PID"
    file_has_line "$SERVER_ERR" '^server: write 127\.0\.0\.1:[0-9]+: .*(EPIPE|ECONNRESET)'
    [ "$(printf 'still here\n' | timeout "$LAB_WAIT" "$LAB_CLIENT" -p "$SERVER_PORT")" = "still here" ]
}

# stop_while_out_of_fds PROGRAM: start PROGRAM with room for descriptors
# 0-3 only, queue a client that accept() has no descriptor for, and check
# that SIGTERM still stops it. The listening socket stays ready all along,
# and ppoll() reports a ready descriptor before a pending signal.
stop_while_out_of_fds() {
    start_server_with_fd_limit 4 "$1" -p 0
    lab_spawn idle "$LAB_PEER" -p "$SERVER_PORT" idle
    wait_for file_has_line "$SERVER_ERR" 'accept: Too many open files \(EMFILE\)$'
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
}

@test "server: out of descriptors (EMFILE) with a client queued, SIGTERM still stops it" {
    stop_while_out_of_fds "$SERVER"
}

# ---- http_hello ------------------------------------------------------------

@test "http_hello: a raw HTTP request through the chapter's client gets one 200 response" {
    start_server "$HTTP_HELLO" -p 0
    # A file, not a pipe: the client half-closes as soon as it has sent it,
    # before the server's answer and FIN can arrive.
    printf 'GET /raw HTTP/1.1\r\nHost: lab\r\n\r\n' >"$BATS_TEST_TMPDIR/request"
    run --separate-stderr timeout "$LAB_WAIT" "$LAB_CLIENT" -p "$SERVER_PORT" \
        <"$BATS_TEST_TMPDIR/request"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = $'HTTP/1.1 200 OK\r' ]
    [[ $output == *$'\r\nConnection: close\r\n'* ]]
    [[ $output == *"You sent: GET /raw HTTP/1.1"* ]]
    # Content-Length is the size of what follows the empty line.
    local length body
    length=$(sed -n 's/^Content-Length: \([0-9]*\)\r$/\1/p' <<<"$output")
    body=${output#*$'\r\n\r\n'}
    [ "$length" -eq "$((${#body} + 1))" ] # + the newline that $( ) strips
    # SIGTERM stops it like the echo server: exit 0.
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
}

@test "http_hello: curl gets 200 and a body naming its address; the server logs the request line" {
    if ! command -v curl >/dev/null; then
        skip "curl is not installed (Debian/Ubuntu: apt-get install curl)"
    fi
    start_server "$HTTP_HELLO" -p 0
    run --separate-stderr curl -sS --max-time "$LAB_WAIT" \
        -w '%{http_code}\n' "http://127.0.0.1:$SERVER_PORT/lab?x=1"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "Hello from http_hello." ]
    [[ ${lines[1]} =~ ^You\ are\ (127\.0\.0\.1:[0-9]+)\.$ ]]
    local peer=${BASH_REMATCH[1]}
    [ "${lines[2]}" = "You sent: GET /lab?x=1 HTTP/1.1" ]
    [ "${lines[3]}" = "200" ]
    wait_for file_has_line "$SERVER_OUT" "^closed $peer\$"
    run grep -F -x "request $peer: GET /lab?x=1 HTTP/1.1" "$SERVER_OUT"
    [ "$status" -eq 0 ]
}

@test "http_hello: a client that never sends its request is dropped after the time limit" {
    start_server "$HTTP_HELLO" -p 0
    occupy_server
    # The deadline (5 s) ends the silent client's turn; the next one is
    # served although the silent one is still connected.
    printf 'GET /next HTTP/1.0\r\n\r\n' >"$BATS_TEST_TMPDIR/request"
    run timeout "$LAB_WAIT" "$LAB_CLIENT" -p "$SERVER_PORT" \
        <"$BATS_TEST_TMPDIR/request"
    [ "$status" -eq 0 ]
    [[ $output == *"You sent: GET /next HTTP/1.0"* ]]
    kill -0 "$FIRST_PID"
    file_has_line "$SERVER_ERR" "^http_hello: $FIRST_PEER: no request head within 5 s\$"
}

@test "http_hello: a client sending one byte a second is cut off at the request's deadline" {
    start_server "$HTTP_HELLO" -p 0
    # A time limit per read() never fires for this client: each byte comes
    # within it. One deadline for the whole request (5 s) does. The loop's
    # sleep paces the client; the test itself waits for events.
    # shellcheck disable=SC2016 # the script is for the spawned bash
    lab_spawn trickle bash -c '
        trap "" PIPE
        exec 5<>"/dev/tcp/127.0.0.1/$0" || exit 3
        for _ in $(seq 60); do
            printf x >&5 2>/dev/null || exit 0 # cut off: what we expect
            sleep 1
        done
        exit 1' "$SERVER_PORT"
    local trickle_pid=$LAB_PID
    wait_for file_has_line "$SERVER_ERR" '^http_hello: 127\.0\.0\.1:[0-9]+: no request head within 5 s$'
    wait_exit_status "$trickle_pid"
    [ "$EXIT_STATUS" -eq 0 ]
    printf 'GET /after HTTP/1.0\r\n\r\n' >"$BATS_TEST_TMPDIR/request"
    run timeout "$LAB_WAIT" "$LAB_CLIENT" -p "$SERVER_PORT" <"$BATS_TEST_TMPDIR/request"
    [ "$status" -eq 0 ]
    [[ $output == *"You sent: GET /after HTTP/1.0"* ]]
}

@test "http_hello: a SIGTERM just before its wait for a client stops it (exit 0)" {
    if [ ! -f "$STOP_SHIM" ]; then
        skip "tests/stop_shim.so is not built (make builds it)"
    fi
    # A flag checked before a blocking accept() misses this signal, and the
    # server then waits for a client that never comes.
    # AddressSanitizer wants to be the first library loaded; a preloaded one
    # comes before it, which is harmless here.
    start_server env LD_PRELOAD="$STOP_SHIM" LAB_STOP_BEFORE=wait \
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0" \
        "$HTTP_HELLO" -p 0
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
}

@test "http_hello: started with stdin and stderr closed, no socket takes descriptor 0 or 2" {
    start_server sh -c 'exec "$@" <&- 2>&-' sh "$HTTP_HELLO" -p 0
    occupy_server
    local fd
    for fd in 0 1 2; do
        [[ $(readlink "/proc/$SERVER_PID/fd/$fd") != socket:* ]]
    done
    [ "$(readlink "/proc/$SERVER_PID/fd/0")" = /dev/null ]
    [ "$(readlink "/proc/$SERVER_PID/fd/2")" = /dev/null ]
}

@test "http_hello: with stdout a pipe nobody reads, it still serves and stops" {
    # The log goes to a FIFO that this shell holds open and never reads
    # after the first line: once its 64 KiB are full, a write() to it would
    # block. Each request logs about 300 bytes; 400 requests fill it.
    local fifo="$BATS_TEST_TMPDIR/log" line path
    mkfifo "$fifo"
    exec 7<>"$fifo"
    # shellcheck disable=SC2016 # $0 and $@ are for sh
    lab_spawn http sh -c 'exec "$@" >"$0"' "$fifo" "$HTTP_HELLO" -p 0
    SERVER_PID=$LAB_PID
    read -r -t "$LAB_WAIT" line <&7
    [[ $line == "listening on 127.0.0.1:"* ]]
    SERVER_PORT=${line##*:}
    path=$(printf 'a%.0s' $(seq 300))
    printf 'GET /%s HTTP/1.0\r\n\r\n' "$path" >"$BATS_TEST_TMPDIR/request"
    for _ in $(seq 400); do
        timeout "$LAB_WAIT" "$LAB_CLIENT" -p "$SERVER_PORT" \
            <"$BATS_TEST_TMPDIR/request" >/dev/null
    done
    [ "$(printf 'GET /last HTTP/1.0\r\n\r\n' |
        timeout "$LAB_WAIT" "$LAB_CLIENT" -p "$SERVER_PORT" | tail -n 1)" = "You sent: GET /last HTTP/1.0" ]
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    exec 7<&-
}

@test "http_hello: out of descriptors (EMFILE) with a client queued, SIGTERM still stops it" {
    stop_while_out_of_fds "$HTTP_HELLO"
}
