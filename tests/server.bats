#!/usr/bin/env bats
# tests/server.bats - SPEC's server lines, checked against every server.
#
# tests/run runs this file once per server chapter (03 to 07), with
#     LAB_SERVER=NN-chapter/server   the program under test
#     LAB_SERVER_ARGS="-t 4"         options for a variant of the model
# By hand: LAB_SERVER=04-fork-server/server bats tests/server.bats
#
# The echo checks use chapter 03's client and tests/peer, a client that
# misbehaves on purpose. Tests about serving clients concurrently are skipped
# for chapter 03, whose whole point is that it serves one at a time (its own
# test.bats shows the second client waiting).

# (bats's `load lib`, spelled so that shellcheck follows it)
# shellcheck source=tests/lib.bash
source "$BATS_TEST_DIRNAME/lib.bash"

setup() {
    if [ -z "${LAB_SERVER:-}" ]; then
        echo "set LAB_SERVER, e.g. LAB_SERVER=03-accept/server" >&2
        return 1
    fi
    case $LAB_SERVER in
    /*) SERVER_BIN=$LAB_SERVER ;;
    *) SERVER_BIN=$LAB_ROOT/$LAB_SERVER ;;
    esac
    read -ra SERVER_ARGS <<<"${LAB_SERVER_ARGS:-}"
}

# serve [ARG...]: start the server under test on an ephemeral port.
serve() {
    start_server "$SERVER_BIN" "${SERVER_ARGS[@]}" -p 0 "$@"
}

is_iterative() {
    [[ $SERVER_BIN == */03-accept/server ]]
}

skip_if_iterative() {
    if is_iterative; then
        skip "chapter 03 serves one client at a time, by design"
    fi
}

# A line of text through the server, as a student would try it first.
echo_line_works() {
    local reply
    reply=$(printf 'hello, server\n' | timeout "$LAB_WAIT" "$LAB_CLIENT" \
        -b "$(server_host)" -p "$SERVER_PORT")
    [ "$reply" = "hello, server" ]
}

# ---- usage and bad input ------------------------------------------------------

# bad_usage ARG...: the server must exit 2, print nothing on stdout, and on
# stderr one line naming the bad value followed by the usage.
bad_usage() {
    local bad=$1
    shift
    run --separate-stderr "$SERVER_BIN" "$@"
    [ "$status" -eq 2 ]
    [ -z "$output" ]
    # shellcheck disable=SC2154 # run --separate-stderr sets stderr_lines
    [[ ${stderr_lines[0]} == *"$bad"* ]]
    [[ ${stderr_lines[1]} == usage:* ]]
}

@test "-h prints the usage on stdout and exits 0" {
    run --separate-stderr "$SERVER_BIN" -h
    [ "$status" -eq 0 ]
    [[ ${lines[0]} == usage:* ]]
    [ -z "$stderr" ]
}

@test "-p abc: exit 2, the bad port named, then the usage" {
    bad_usage "'abc'" -p abc
}

@test "-p 70000: exit 2, the out-of-range port named" {
    bad_usage "'70000'" -p 70000
}

@test "an unknown option: exit 2, the option named" {
    bad_usage "-Y" -Y
}

@test "a bad address: exit 2, the address named" {
    bad_usage "'300.1.2.3'" -b 300.1.2.3
}

# ---- listening ------------------------------------------------------------------

@test "-p 0: the kernel picks a port and the server prints it" {
    serve
    [[ $(head -n 1 "$SERVER_OUT") =~ ^listening\ on\ 127\.0\.0\.1:[0-9]+$ ]]
    [ "$SERVER_PORT" -gt 0 ]
    # ss agrees that this port is listening
    [ -n "$(ss -Hltn "sport = :$SERVER_PORT")" ]
}

@test "listens on loopback only by default" {
    serve
    run ss -Hltn "sport = :$SERVER_PORT"
    [ "${#lines[@]}" -eq 1 ]
    [[ $output == *" 127.0.0.1:$SERVER_PORT "* ]]
}

@test "-b ::1: listens on IPv6 loopback and echoes over it" {
    if ! grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6 2>/dev/null; then
        skip "this machine has no IPv6 loopback address"
    fi
    serve -b ::1
    [[ $(head -n 1 "$SERVER_OUT") =~ ^listening\ on\ \[::1\]:[0-9]+$ ]]
    [ "$SERVER_ADDR" = "[::1]" ]
    echo_line_works
}

@test "a port in use: exit 1, and stderr names bind, the address and why" {
    serve
    run --separate-stderr timeout "$LAB_WAIT" "$SERVER_BIN" "${SERVER_ARGS[@]}" -p "$SERVER_PORT"
    [ "$status" -eq 1 ]
    # shellcheck disable=SC2154 # run --separate-stderr sets stderr_lines
    [[ ${stderr_lines[0]} == *"bind 127.0.0.1:$SERVER_PORT: Address already in use"* ]]
}

# ---- echo -----------------------------------------------------------------------

@test "echoes a line of text" {
    serve
    echo_line_works
}

@test "echoes 1 MiB of binary data, NUL bytes included, unchanged" {
    serve
    local in="$BATS_TEST_TMPDIR/in" out="$BATS_TEST_TMPDIR/out"
    { printf 'a\0b\0\0c'; head -c 1048576 /dev/urandom; printf '\0'; } >"$in"
    echo_through_server "$in" "$out"
    cmp "$in" "$out"
}

@test "half-close: after the client's FIN the server sends all it owes" {
    serve
    # peer owed: send 64 KiB without reading, shutdown(SHUT_WR), and only
    # then read; it checks every byte and the server's EOF after them.
    timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" owed 65536
}

@test "logs 'accepted' and 'closed' with the client's address" {
    serve
    timeout "$LAB_WAIT" "$LAB_PEER" -v -p "$SERVER_PORT" echo 100 >"$BATS_TEST_TMPDIR/peer.out"
    local peer
    peer=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/peer.out")
    [[ $peer =~ ^127\.0\.0\.1:[0-9]+$ ]]
    wait_for file_has_line "$SERVER_OUT" "^closed $peer\$"
    # one 'accepted' line for it, before its 'closed' line
    local accepted closed
    accepted=$(grep -n -x "accepted $peer" "$SERVER_OUT" | cut -d: -f1)
    closed=$(grep -n -x "closed $peer" "$SERVER_OUT" | cut -d: -f1)
    [ -n "$accepted" ] && [ "$accepted" -lt "$closed" ]
}

@test "-q: no accepted/closed lines, and it still echoes" {
    serve -q
    echo_line_works
    # Stop it, so that everything it would print has been printed.
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    run cat "$SERVER_OUT"
    [ "${#lines[@]}" -eq 1 ]
    [[ ${lines[0]} == "listening on "* ]]
}

# ---- stopping ---------------------------------------------------------------------

# stop_with SIGNAL: with one client connected, the server exits 0 and
# leaves no process of its group behind (no child of a forking server).
stop_with() {
    serve
    lab_spawn idle "$LAB_PEER" -v -p "$SERVER_PORT" idle
    wait_for file_has_line "$BATS_TEST_TMPDIR/idle.out" '^connected '
    is_iterative || wait_for file_has_line "$SERVER_OUT" '^accepted '
    kill "-$1" "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    # (nothing left in its process group, where a child would be)
    [ -z "$(pgrep -g "$SERVER_PID")" ]
}

@test "SIGTERM: the server exits 0 and leaves no process behind" {
    stop_with TERM
}

@test "SIGINT: the server exits 0 and leaves no process behind" {
    stop_with INT
}

# ---- clients that misbehave -------------------------------------------------------

@test "survives a client that resets the connection" {
    serve
    timeout "$LAB_WAIT" "$LAB_PEER" -v -p "$SERVER_PORT" reset 100000 >"$BATS_TEST_TMPDIR/peer.out"
    local peer
    peer=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/peer.out")
    wait_for file_has_line "$SERVER_OUT" "^closed $peer\$"
    echo_line_works
}

@test "survives clients that close before reading their echo (SIGPIPE)" {
    serve
    # Each peer sends 60,000 bytes and its FIN in one segment (TCP_CORK),
    # then is gone: the server, in CLOSE_WAIT, echoes into a closed socket,
    # gets RST, and its next write fails with EPIPE, raising SIGPIPE unless
    # it is ignored. Measured here: every time for chapters 03-05, most
    # times for 07; ten rounds make it all but certain.
    local i peer
    for i in $(seq 10); do
        timeout "$LAB_WAIT" "$LAB_PEER" -v -p "$SERVER_PORT" hangup 60000 >"$BATS_TEST_TMPDIR/peer.out"
        peer=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/peer.out")
        wait_for file_has_line "$SERVER_OUT" "^closed $peer\$"
    done
    echo_line_works
}

@test "an idle client that leaves does not wedge the server" {
    serve
    lab_spawn idle "$LAB_PEER" -v -p "$SERVER_PORT" idle
    wait_for file_has_line "$BATS_TEST_TMPDIR/idle.out" '^connected '
    wait_for file_has_line "$SERVER_OUT" '^accepted '
    kill -TERM "$LAB_PID"
    echo_line_works
}

@test "out of descriptors (EMFILE): the server lives on and serves again" {
    # 16 descriptors: a few are stdin/out/err and the listener, the rest run
    # out while 16 idle clients are connected.
    start_server_with_fd_limit 16 "$SERVER_BIN" "${SERVER_ARGS[@]}" -p 0
    local i
    for i in $(seq 16); do
        lab_spawn "idle$i" "$LAB_PEER" -v -p "$SERVER_PORT" idle
    done
    for i in $(seq 16); do
        wait_for file_has_line "$BATS_TEST_TMPDIR/idle$i.out" '^connected '
    done
    case $SERVER_BIN in
    */05-*|*/06-*|*/07-*)
        # These accept eagerly, so they must have hit the limit.
        wait_for file_has_line "$SERVER_ERR" 'EMFILE' ;;
    esac
    kill -0 "$SERVER_PID"
    # Let the idle clients go; the server must take new ones again.
    for i in $(seq 16); do
        kill -TERM "-${LAB_PIDS[$i]}"
    done
    echo_line_works
}

# ---- resources come back ----------------------------------------------------------

@test "after 300 clients: the same descriptors, threads and children as before" {
    serve
    local fds threads children
    fds=$(fd_count "$SERVER_PID")
    threads=$(thread_count "$SERVER_PID")
    children=$(children_of "$SERVER_PID" | wc -l)
    timeout 120 "$LAB_PEER" -p "$SERVER_PORT" cycle 300
    wait_for line_count_is "$SERVER_OUT" '^closed ' 300
    wait_for fd_count_is "$SERVER_PID" "$fds"
    # ThreadSanitizer starts a thread of its own at the first
    # pthread_create(), after our first count: allow for it.
    if grep -qa __tsan_init "$SERVER_BIN"; then
        wait_for thread_count_is_between "$SERVER_PID" "$threads" $((threads + 1))
    else
        wait_for thread_count_is "$SERVER_PID" "$threads"
    fi
    wait_for child_count_is "$SERVER_PID" "$children"
}

# ---- serving clients at once (not chapter 03) -------------------------------------

@test "100 clients connected at once each get their echo" {
    skip_if_iterative
    serve
    # -w: all 100 connections are open before any sends its request
    run timeout 60 "$LAB_LOADGEN" -q -p "$SERVER_PORT" -c 100 -w -s 1000 -n 1
    [ "$status" -eq 0 ]
    [[ $output == *"requests=100 errors=0"* ]]
}

# not_delayed_by MODE [BYTES]: with a peer misbehaving in MODE connected,
# another client still gets its echo.
not_delayed_by() {
    skip_if_iterative
    serve
    lab_spawn bad "$LAB_PEER" -v -p "$SERVER_PORT" "$@"
    wait_for file_has_line "$BATS_TEST_TMPDIR/bad.out" '^connected '
    BAD_PEER=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/bad.out")
    wait_for file_has_line "$SERVER_OUT" "^accepted $BAD_PEER\$"
}

@test "a client that connects and sends nothing does not delay another" {
    not_delayed_by idle
    echo_line_works
}

@test "a client that sends half a message and stalls does not delay another" {
    not_delayed_by partial 5
    echo_line_works
}

# The bytes waiting, unread, in the flooding peer's receive queue.
flooder_receive_queue_over() {
    local queued
    queued=$(ss -Htn "sport = :${BAD_PEER##*:}" | awk '{ print $2; exit }')
    [ "${queued:-0}" -gt "$1" ]
}

@test "a client that sends 64 MiB and never reads does not delay another" {
    not_delayed_by flood 67108864
    # Wait until the echo has backed up: the flooder's receive queue fills
    # because it never reads, so the server can send it no more.
    wait_for flooder_receive_queue_over 65536
    echo_line_works
}
