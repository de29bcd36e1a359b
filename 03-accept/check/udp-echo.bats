#!/usr/bin/env bats
# exercise: a UDP echo server, udp_echo.c (Exercises, 7)
#
# Graded by make check N=3. The student writes 03-accept/udp_echo.c (make
# builds every .c file of the chapter into a program of the same name): a
# UDP socket, bind(), and a loop of recvfrom()/sendto(). Like server.c it
# takes -p PORT (server_option() does) and prints "listening on ADDR:PORT"
# (announce_listening() does), so that the check can find it on -p 0.
# Bash's /dev/udp sends one datagram per write, as the lesson's check does.

load ../../tests/check-lib

UDP_ECHO="$LAB_ROOT/03-accept/udp_echo"
WHERE="Look at the recvfrom()/sendto() loop in 03-accept/udp_echo.c."
REPLY_WAIT=5 # seconds to wait for a datagram on loopback: plenty

# start_udp_echo: start udp_echo -p 0 and wait for its "listening on" line.
start_udp_echo() {
    [ -e "$UDP_ECHO.c" ] ||
        fail_with "There is no 03-accept/udp_echo.c: write the server there, then" \
            "make chapter 3 (every .c file of the chapter becomes a program)."
    [ -x "$UDP_ECHO" ] ||
        fail_with "03-accept/udp_echo.c is there but 03-accept/udp_echo is not built:" \
            "run make chapter 3 and read what the compiler says."
    start_server "$UDP_ECHO" -p 0 ||
        fail_with "'udp_echo -p 0' printed no 'listening on ADDR:PORT' line; it said:" \
            "$(head -n 2 "$SERVER_ERR")" \
            "Take -p as server.c does (server_option()), and after bind() call" \
            "announce_listening(fd): it prints the port the kernel chose, at once" \
            "(a printf() line to a file waits in stdio's buffer until fflush())."
}

# open_udp NAME: a UDP socket connected to the server (bash's /dev/udp), in
# the variable NAME. Its own port differs from every other such socket's.
open_udp() {
    local fd
    exec {fd}<>"/dev/udp/127.0.0.1/$SERVER_PORT"
    printf -v "$1" '%s' "$fd"
}

# receive FD: one datagram from FD, whole (dd with count=1 does one read(),
# and one read() of a UDP socket takes exactly one datagram), into REPLY_FILE.
# Fails if none comes within REPLY_WAIT seconds.
receive() {
    REPLY_FILE="$BATS_TEST_TMPDIR/reply"
    timeout "$REPLY_WAIT" dd bs=65536 count=1 status=none <&"$1" >"$REPLY_FILE"
}

@test "one datagram 'hi' comes back as 'hi'" {
    start_udp_echo
    local sock
    open_udp sock
    echo hi >&"$sock"
    receive "$sock" ||
        fail_with "Sent 'hi' to 127.0.0.1:$SERVER_PORT; no datagram came back within ${REPLY_WAIT}s." \
            "Does the loop send back to the address recvfrom() filled in, with the" \
            "length it returned? $WHERE"
    [ "$(cat "$REPLY_FILE")" = hi ] ||
        fail_with "Sent 'hi'; the reply was '$(head -c 80 "$REPLY_FILE")'." \
            "Send back the n bytes recvfrom() returned, unchanged. $WHERE"
    exec {sock}<&-
}

@test "two datagrams come back as two: a datagram is a message, not a stream" {
    start_udp_echo
    local sock
    open_udp sock
    echo one >&"$sock"
    echo two >&"$sock"
    receive "$sock" && [ "$(cat "$REPLY_FILE")" = one ] ||
        fail_with "Sent 'one' then 'two' as two datagrams; the first reply was" \
            "'$(head -c 80 "$REPLY_FILE")', not 'one'. One recvfrom() takes one datagram:" \
            "answer each with one sendto(). $WHERE"
    receive "$sock" && [ "$(cat "$REPLY_FILE")" = two ] ||
        fail_with "Sent 'one' then 'two' as two datagrams; the second reply was" \
            "'$(head -c 80 "$REPLY_FILE")', not 'two'. Does the loop go round again? $WHERE"
    exec {sock}<&-
}

@test "two clients each get their own echo back, in turn" {
    start_udp_echo
    local first second
    open_udp first
    open_udp second
    echo from-first >&"$first"
    receive "$first" && [ "$(cat "$REPLY_FILE")" = from-first ] ||
        fail_with "The first client got no echo of 'from-first'. $WHERE"
    # A server that connect()s to its first client, or keeps the first
    # address, answers the second one wrongly.
    echo from-second >&"$second"
    receive "$second" && [ "$(cat "$REPLY_FILE")" = from-second ] ||
        fail_with "A second client (another port) sent 'from-second' and got no echo." \
            "Each reply goes to the address of the datagram it answers: pass sendto()" \
            "the address and length the same loop's recvfrom() filled in, and reset" \
            "the length to sizeof the address before each recvfrom(). $WHERE"
    echo again >&"$first"
    receive "$first" && [ "$(cat "$REPLY_FILE")" = again ] ||
        fail_with "After the second client, the first one's 'again' got no echo. $WHERE"
    exec {first}<&- {second}<&-
}

@test "a 1000-byte datagram comes back whole" {
    start_udp_echo
    local sock sent="$BATS_TEST_TMPDIR/sent"
    open_udp sock
    # 1000 bytes without NUL or newline, in one write(): one datagram.
    head -c 1000 /dev/zero | tr '\0' x >"$sent"
    dd bs=1000 count=1 status=none <"$sent" >&"$sock"
    receive "$sock" ||
        fail_with "Sent one 1000-byte datagram; nothing came back within ${REPLY_WAIT}s. $WHERE"
    cmp -s "$sent" "$REPLY_FILE" ||
        fail_with "Sent one 1000-byte datagram; $(wc -c <"$REPLY_FILE") bytes came back." \
            "recvfrom() discards what does not fit in its buffer (a datagram is" \
            "taken whole or cut): give it a buffer of at least a few KiB (the" \
            "largest UDP datagram is 65,507 bytes). $WHERE"
    exec {sock}<&-
}
