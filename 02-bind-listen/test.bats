#!/usr/bin/env bats
# Chapter 02: bind() and listen() without accept(). The kernel completes
# the handshakes and queues the connections; ss shows them in Recv-Q.

load ../tests/lib

LISTENER="$LAB_ROOT/02-bind-listen/listener"

# run_briefly CMD...: run a command that should end at once (bounded, in
# case it wrongly keeps listening) and set STATUS, plus OUT and ERR (its
# stdout and stderr, kept apart).
run_briefly() {
    STATUS=0
    timeout "$LAB_WAIT" "$@" >"$BATS_TEST_TMPDIR/brief.out" \
        2>"$BATS_TEST_TMPDIR/brief.err" 3>&- || STATUS=$?
    OUT=$(cat "$BATS_TEST_TMPDIR/brief.out")
    ERR=$(cat "$BATS_TEST_TMPDIR/brief.err")
    echo "exit $STATUS; stdout: $OUT"
    echo "stderr: $ERR"
}

# tw_overflows: how many connections the kernel has closed without a
# TIME-WAIT because its table of them was full (net.ipv4.tcp_max_tw_buckets,
# reached on a machine that many load tests share).
tw_overflows() {
    awk '/^TcpExt:/ {
        if (!col) { for (i = 2; i <= NF; i++) if ($i == "TCPTimeWaitOverflow") col = i; next }
        print $col
    }' /proc/net/netstat
}

# queue_is PORT N: the listening socket on PORT has N connections waiting.
queue_is() {
    [ "$(listen_queue "$1")" = "$2" ]
}

# connect_idle NAME: a client that connects to the listener and then sits;
# returns once its connect() has succeeded ("connected ADDR:PORT").
connect_idle() {
    lab_spawn "$1" "$LAB_PEER" -v -p "$SERVER_PORT" idle
    PEER_PID=$LAB_PID
    PEER_NAME=$1
    if ! wait_for peer_connected; then
        echo "connect_idle: $1 did not connect; its stderr:" >&2
        cat "$BATS_TEST_TMPDIR/$1.err" >&2
        ss -tan "( sport = :$SERVER_PORT or dport = :$SERVER_PORT )" >&2
        return 1
    fi
}

# True once the peer started last printed "connected"; fails at once (2)
# if it exited instead.
peer_connected() {
    file_has_line "$BATS_TEST_TMPDIR/$PEER_NAME.out" '^connected ' && return 0
    process_gone "$PEER_PID" && return 2
    return 1
}

# How ss describes the socket listening on PORT: "LISTEN 127.0.0.1:PORT".
listening_socket() {
    ss -Hltn "sport = :$1" | awk '{ print $1, $4 }'
}

@test "-p 0: it prints the port the kernel chose, and ss shows it LISTEN" {
    start_server "$LISTENER" -p 0
    [ "$SERVER_ADDR" = 127.0.0.1 ]
    # An ephemeral port, from the kernel's range for them.
    local low high
    read -r low high </proc/sys/net/ipv4/ip_local_port_range
    [ "$SERVER_PORT" -ge "$low" ]
    [ "$SERVER_PORT" -le "$high" ]
    run listening_socket "$SERVER_PORT"
    [ "$output" = "LISTEN 127.0.0.1:$SERVER_PORT" ]
}

@test "-b ::1 listens on IPv6" {
    start_server "$LISTENER" -b ::1 -p 0
    [ "$SERVER_ADDR" = "[::1]" ]
    run listening_socket "$SERVER_PORT"
    [ "$output" = "LISTEN [::1]:$SERVER_PORT" ]
}

@test "it prints the port's two bytes in network byte order" {
    start_server "$LISTENER" -p 0
    local bytes
    bytes=$(printf '%02x %02x' $((SERVER_PORT >> 8)) $((SERVER_PORT & 255)))
    file_has_line "$SERVER_OUT" "^port $SERVER_PORT is stored as the bytes $bytes "
}

@test "clients connect although it never accepts: ss counts them in Recv-Q" {
    start_server "$LISTENER" -p 0
    local fds_before
    fds_before=$(fd_count "$SERVER_PID")
    connect_idle peer1
    connect_idle peer2
    connect_idle peer3
    # Every connect() returned 0: the kernel finished the handshakes. The
    # three connections wait in the listening socket's queue...
    wait_for queue_is "$SERVER_PORT" 3
    run ss -Htn state established "sport = :$SERVER_PORT"
    [ "${#lines[@]}" -eq 3 ]
    # ... and none was accepted: the program holds no new descriptor, and
    # its only socket is the listening one (the same inode as ss shows).
    [ "$(fd_count "$SERVER_PID")" -eq "$fds_before" ]
    local listen_inode
    listen_inode=$(ss -Hltne "sport = :$SERVER_PORT" |
        sed -nE 's/.* ino:([0-9]+) .*/\1/p')
    run find "/proc/$SERVER_PID/fd" -lname 'socket:*' -printf '%l\n'
    [ "$output" = "socket:[$listen_inode]" ]
}

@test "data a client sends waits in the kernel, unread" {
    start_server "$LISTENER" -p 0
    lab_spawn sender "$LAB_PEER" -v -p "$SERVER_PORT" partial 1000
    wait_for file_has_line "$BATS_TEST_TMPDIR/sender.out" '^connected '
    # The queued connection's receive buffer holds the 1000 bytes.
    recv_q_is_1000() {
        [ "$(ss -Htn state established "sport = :$SERVER_PORT" |
            awk '{ print $1 }')" = 1000 ]
    }
    wait_for recv_q_is_1000
}

@test "-l sets the backlog: the queue stops growing, later clients wait in SYN-SENT" {
    start_server "$LISTENER" -p 0 -l 2
    # For a listening socket, ss shows the backlog in the Send-Q column.
    [ "$(ss -Hltn "sport = :$SERVER_PORT" | awk '{ print $3 }')" = 2 ]
    # Linux lets backlog + 1 connections wait.
    connect_idle peer1
    connect_idle peer2
    connect_idle peer3
    wait_for queue_is "$SERVER_PORT" 3
    # The next client's SYN is dropped while the queue is full: its
    # connect() has not returned, and the queue still holds 3.
    lab_spawn peer4 "$LAB_PEER" -v -p "$SERVER_PORT" idle
    syn_sent() {
        [ -n "$(ss -Htn state syn-sent "dport = :$SERVER_PORT")" ]
    }
    wait_for syn_sent
    queue_is "$SERVER_PORT" 3
    run file_has_line "$BATS_TEST_TMPDIR/peer4.out" '^connected '
    [ "$status" -ne 0 ]
}

@test "a second listener on the same port fails: exit 1, bind ... EADDRINUSE" {
    start_server "$LISTENER" -p 0
    local expected="listener: bind 127.0.0.1:$SERVER_PORT: Address already in use (EADDRINUSE)"
    # SO_REUSEADDR does not let two sockets listen on one port, so the
    # answer is the same with it on (the default) and off.
    run_briefly "$LISTENER" -p "$SERVER_PORT"
    [ "$STATUS" -eq 1 ]
    [ "$ERR" = "$expected" ]
    [ -z "$OUT" ]
    run_briefly "$LISTENER" -p "$SERVER_PORT" -r off
    [ "$STATUS" -eq 1 ]
    [ "$ERR" = "$expected" ]
}

@test "TIME_WAIT on the port: bind fails with -r off, works with SO_REUSEADDR" {
    # Chapter 03's server (it sets SO_REUSEADDR) accepts a client, then is
    # stopped: it closes the connection first, so the TIME_WAIT stays on
    # the server's port once the client closes too.
    local overflows_before
    overflows_before=$(tw_overflows)
    start_server "$LAB_ROOT/03-accept/server" -p 0
    local first_pid=$SERVER_PID port=$SERVER_PORT
    connect_idle client
    local client_pid=$LAB_PID
    wait_for file_has_line "$SERVER_OUT" '^accepted '
    kill -TERM "$first_pid"
    wait_exit_status "$first_pid"
    [ "$EXIT_STATUS" -eq 0 ]
    kill -TERM "$client_pid"
    time_wait_on_port() {
        [ -n "$(ss -Htn state time-wait "sport = :$port")" ]
    }
    if ! wait_for time_wait_on_port; then
        if [ "$(tw_overflows)" != "$overflows_before" ]; then
            skip "the kernel's TIME-WAIT table is full (tcp_max_tw_buckets): no TIME-WAIT to test with"
        fi
        return 1
    fi

    run_briefly "$LISTENER" -p "$port" -r off
    [ "$STATUS" -eq 1 ]
    [ "$ERR" = "listener: bind 127.0.0.1:$port: Address already in use (EADDRINUSE)" ]

    start_server "$LISTENER" -p "$port" # SO_REUSEADDR on
    [ "$SERVER_PORT" = "$port" ]
    time_wait_on_port # still there: the new listener did not need it gone
}

@test "bad -p, -b, -l, -r and unknown options exit 2 naming the value" {
    run_briefly "$LISTENER" -p abc
    [ "$STATUS" -eq 2 ]
    [[ "$ERR" == "listener: bad port 'abc'"* ]]
    [[ "$ERR" == *"usage: listener"* ]]
    run_briefly "$LISTENER" -p 70000
    [ "$STATUS" -eq 2 ]
    [[ "$ERR" == "listener: bad port '70000'"* ]]
    run_briefly "$LISTENER" -b 300.1.2.3
    [ "$STATUS" -eq 2 ]
    [[ "$ERR" == "listener: bad address '300.1.2.3'"* ]]
    run_briefly "$LISTENER" -l -1
    [ "$STATUS" -eq 2 ]
    [[ "$ERR" == "listener: bad backlog '-1'"* ]]
    run_briefly "$LISTENER" -r maybe
    [ "$STATUS" -eq 2 ]
    [[ "$ERR" == "listener: bad value 'maybe' for -r"* ]]
    run_briefly "$LISTENER" -x
    [ "$STATUS" -eq 2 ]
    [[ "$ERR" == "listener: unknown option -x"* ]]
}

@test "-h prints the usage on stdout and exits 0" {
    run_briefly "$LISTENER" -h
    [ "$STATUS" -eq 0 ]
    [[ "$OUT" == "usage: listener"* ]]
}

@test "SIGTERM and SIGINT stop it with exit 0, even with clients queued" {
    local signal
    for signal in TERM INT; do
        start_server "$LISTENER" -p 0
        connect_idle "peer$signal"
        wait_for queue_is "$SERVER_PORT" 1
        kill -"$signal" "$SERVER_PID"
        wait_exit_status "$SERVER_PID"
        [ "$EXIT_STATUS" -eq 0 ]
        file_has_line "$SERVER_OUT" '^stopped$'
        [ -z "$(ss -Hltn "sport = :$SERVER_PORT")" ]
    done
}

@test "it stops on SIGTERM and SIGINT even when started with them blocked or ignored" {
    # A process inherits its parent's signal mask and ignored signals; env
    # can start one so. (Check that it does, or this test proves nothing.)
    env_sets_signals --block-signal SigBlk
    env_sets_signals --ignore-signal SigIgn
    local how signal
    for how in block ignore; do
        for signal in TERM INT; do
            start_server env --"$how"-signal=INT,TERM "$LISTENER" -p 0
            kill -"$signal" "$SERVER_PID"
            wait_exit_status "$SERVER_PID"
            echo "$how, SIG$signal: exit $EXIT_STATUS"
            [ "$EXIT_STATUS" -eq 0 ]
            file_has_line "$SERVER_OUT" '^stopped$'
        done
    done
}

@test "started with 0 and 2 closed, it opens /dev/null on them: the socket is not 0-2" {
    # shellcheck disable=SC2016 # "$0" "$@" are the inner bash's to expand
    start_server bash -c 'exec "$0" "$@" <&- 2>&-' "$LISTENER" -p 0
    [ "$(readlink "/proc/$SERVER_PID/fd/0")" = /dev/null ]
    [ "$(readlink "/proc/$SERVER_PID/fd/2")" = /dev/null ]
    # Its one socket, the listening one, has a number of 3 or more.
    run find "/proc/$SERVER_PID/fd" -lname 'socket:*' -printf '%f\n'
    [ "${#lines[@]}" -eq 1 ]
    [ "${lines[0]}" -ge 3 ]
}

@test "stdout full or closed: exit 1 at once with a 'write stdout' line" {
    local how
    for how in full closed; do
        # It checks its output before it waits: no Ctrl-C is needed.
        run_stdout_broken "$how" "$LISTENER" -p 0
        [ "$STATUS" -eq 1 ]
        [[ "$ERR" == "listener: write stdout: "* ]]
    done
    # Each is named as what it is (not a death by SIGPIPE, status 141).
    [ "$ERR" = "listener: write stdout: Bad file descriptor (EBADF)" ]
    run_stdout_broken full "$LISTENER" -p 0
    [ "$ERR" = "listener: write stdout: No space left on device (ENOSPC)" ]
}
