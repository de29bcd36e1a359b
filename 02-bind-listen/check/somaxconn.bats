#!/usr/bin/env bats
# exercise: the backlog the kernel really uses (Exercises, 2)
#
# Graded by make check N=2. The student makes the listener read
# /proc/sys/net/core/somaxconn and, when -l asks for more, print
#     backlog 4096 (asked for 65535; somaxconn caps it), SO_REUSEADDR on; ...
# instead of "backlog 65535, ...". A backlog that fits is printed as before.

load ../../tests/check-lib

LISTENER="$LAB_ROOT/02-bind-listen/listener"
SOMAXCONN_FILE=/proc/sys/net/core/somaxconn
WHERE="Look at the printf() of the 'backlog' line in main(), 02-bind-listen/listener.c."
CAP_NOTE="" # more to say when the cap differs from this machine's

# backlog_line: the listener's "backlog ..." line, from the server started
# last.
backlog_line() {
    grep -m 1 '^backlog ' "$SERVER_OUT"
}

# ss_backlog PORT: the backlog ss shows for the socket listening on PORT
# (its Send-Q): the one the kernel uses.
ss_backlog() {
    ss -Hltn "sport = :$1" | awk '{ print $3; exit }'
}

# expect_backlog ASKED SOMAXCONN [WHERE...]: start the listener with -l
# ASKED and check its backlog line against what the kernel uses.
expect_backlog() {
    local asked=$1 cap=$2 line real
    shift 2
    start_server "$@" "$LISTENER" -p 0 -l "$asked"
    line=$(backlog_line) ||
        fail_with "With -l $asked the listener printed no line starting 'backlog '." "$WHERE"
    real=$(ss_backlog "$SERVER_PORT")
    [ -z "$real" ] || [ "$real" = "$((asked < cap ? asked : cap))" ] ||
        fail_with "ss shows backlog $real for -l $asked, somaxconn $cap: not what" \
            "the check expected. Is something else listening on port $SERVER_PORT?"
    echo "-l $asked, somaxconn $cap: $line"
    if [ "$asked" -le "$cap" ]; then
        [[ "$line" == "backlog $asked, "* ]] ||
            fail_with "With -l $asked (not more than somaxconn, $cap) the line should" \
                "start 'backlog $asked, ' as before; it reads: $line" \
                "Only a backlog larger than somaxconn is capped. $WHERE"
    else
        [[ "$line" =~ ^backlog\ $cap\ \(asked\ for\ ${asked}[\;\)] ]] ||
            fail_with "With -l $asked and somaxconn $cap, the line should start" \
                "'backlog $cap (asked for $asked; somaxconn caps it)'; it reads: $line" \
                ${CAP_NOTE:+"$CAP_NOTE"} "$WHERE"
    fi
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
}

@test "-l larger than somaxconn prints the capped backlog, and what was asked" {
    local cap
    cap=$(cat "$SOMAXCONN_FILE")
    [ "$cap" -lt 65535 ] ||
        skip "somaxconn is $cap here: no -l (0-65535) is larger, nothing to check"
    expect_backlog 65535 "$cap"
    expect_backlog "$((cap + 1))" "$cap"
    # At exactly somaxconn nothing is capped (the kernel lowers only a
    # larger backlog), and a small backlog is printed as it always was.
    expect_backlog "$cap" "$cap"
    expect_backlog 2 "$cap"
}

@test "the cap is read from somaxconn, not written into the program" {
    # A new network namespace has its own somaxconn, which root may set.
    # shellcheck disable=SC2016 # for the inner sh
    unshare -n sh -c 'echo 100 >"$0"' "$SOMAXCONN_FILE" 2>/dev/null ||
        skip "cannot make a network namespace here (needs root and unshare)"
    CAP_NOTE="(The check ran it where $SOMAXCONN_FILE holds 100: read the cap from that file.)"
    # shellcheck disable=SC2016 # for the inner sh
    expect_backlog 65535 100 \
        unshare -n sh -c 'ip link set lo up 2>/dev/null; echo 100 >"$0" && exec "$@"' \
        "$SOMAXCONN_FILE"
}
