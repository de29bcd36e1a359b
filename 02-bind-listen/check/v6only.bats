#!/usr/bin/env bats
# exercise: -6, a listener for IPv6 clients only (Exercises, 3)
#
# Graded by make check N=2. The student adds an option -6 to the listener
# that sets IPV6_V6ONLY on its IPv6 socket before bind(). Then a listener
# on :: takes clients that dial ::1 but not those that dial 127.0.0.1
# (without -6 it takes both, as IPv4-mapped addresses), and -6 changes
# nothing for an IPv4 address.

load ../../tests/check-lib

LISTENER="$LAB_ROOT/02-bind-listen/listener"
WHERE="Look at listen_on() in 02-bind-listen/listener.c: setsockopt() before bind()."
DIALS=0

# dial ADDR PORT: a client that connects to ADDR:PORT and then sits. Returns
# 0 once it is connected, 1 if it exited instead (its stderr in DIAL_ERR).
dial() {
    DIALS=$((DIALS + 1))
    DIAL_NAME="dial$DIALS"
    lab_spawn "$DIAL_NAME" "$LAB_PEER" -v -b "$1" -p "$2" idle
    DIAL_PID=$LAB_PID
    wait_for dial_settled
    DIAL_ERR=$(cat "$BATS_TEST_TMPDIR/$DIAL_NAME.err")
    file_has_line "$BATS_TEST_TMPDIR/$DIAL_NAME.out" '^connected '
}
dial_settled() {
    file_has_line "$BATS_TEST_TMPDIR/$DIAL_NAME.out" '^connected ' ||
        process_gone "$DIAL_PID"
}

# ipv4_listener_on PORT: does any IPv4 socket listen on PORT?
ipv4_listener_on() {
    [ -n "$(ss -Hltn4 "sport = :$1")" ]
}

# start_v6only: start "listener -b :: -p 0 -6" on a port that no IPv4
# socket holds (with IPV6_V6ONLY the kernel may choose a port that another
# program on this machine listens on over IPv4: then a client that dials
# 127.0.0.1 would reach that one).
start_v6only() {
    for _ in 1 2 3 4 5; do
        if ! start_server "$LISTENER" -b :: -p 0 -6; then
            fail_with "'listener -b :: -p 0 -6' did not start; it said: $(head -n 1 "$SERVER_ERR")" \
                "Add the option -6: getopt()'s option string and the switch in main()," \
                "and a line for it in the usage."
        fi
        ipv4_listener_on "$SERVER_PORT" || return 0
        kill -TERM "$SERVER_PID"
        wait_exit_status "$SERVER_PID"
    done
    fail_with "5 ports in a row were taken over IPv4: try again later."
}

@test "-b :: -6: a client dialling ::1 connects, one dialling 127.0.0.1 is refused" {
    start_v6only
    [ "$SERVER_ADDR" = "[::]" ] ||
        fail_with "'listener -b :: -p 0 -6' printed 'listening on $SERVER_ADDR:...'," \
            "not [::]: -6 must not change the address."
    dial ::1 "$SERVER_PORT" ||
        fail_with "A client dialling [::1]:$SERVER_PORT was not let in: $DIAL_ERR" \
            "-6 must keep IPv6 clients. $WHERE"
    wait_for queue_is "$SERVER_PORT" 1
    if dial 127.0.0.1 "$SERVER_PORT"; then
        fail_with "With -6, a client dialling 127.0.0.1:$SERVER_PORT still connected to" \
            "the listener on [::]: IPV6_V6ONLY is not on when bind() runs." \
            "Set it with setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, ...). $WHERE"
    fi
    [[ "$DIAL_ERR" == *"Connection refused"* ]] ||
        fail_with "The IPv4 client should be refused (ECONNREFUSED); it said: $DIAL_ERR"
    # The listener is still there, with its one IPv6 client queued.
    ! process_gone "$SERVER_PID" ||
        fail_with "The listener exited: $(head -n 1 "$SERVER_ERR")"
    queue_is "$SERVER_PORT" 1
}

@test "without -6, a listener on :: still takes IPv4 clients" {
    [ "$(cat /proc/sys/net/ipv6/bindv6only)" = 0 ] ||
        skip "net.ipv6.bindv6only is 1 here: every IPv6 socket is IPv6-only by default"
    start_server "$LISTENER" -b :: -p 0
    dial 127.0.0.1 "$SERVER_PORT" ||
        fail_with "Without -6, a client dialling 127.0.0.1:$SERVER_PORT was refused: $DIAL_ERR" \
            "Set IPV6_V6ONLY only when -6 is given. $WHERE"
}

@test "-6 with an IPv4 address changes nothing: it listens on 127.0.0.1" {
    start_server "$LISTENER" -b 127.0.0.1 -p 0 -6 ||
        fail_with "'listener -b 127.0.0.1 -p 0 -6' did not start; it said: $(head -n 1 "$SERVER_ERR")" \
            "IPV6_V6ONLY exists only on an IPv6 socket (ai_family AF_INET6)." \
            "$WHERE"
    dial 127.0.0.1 "$SERVER_PORT" ||
        fail_with "A client dialling 127.0.0.1:$SERVER_PORT was refused: $DIAL_ERR"
}

# queue_is PORT N: the listening socket on PORT has N connections waiting.
queue_is() {
    [ "$(listen_queue "$1")" = "$2" ]
}
