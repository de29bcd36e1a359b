#!/usr/bin/env bats
# exercise: a ping socket (Going deeper: raw sockets and privilege)
#
# Graded by make check N=1. The student adds the row socket(AF_INET,
# SOCK_DGRAM, IPPROTO_ICMP) to 01-socket/sockets.c. Whether it works
# depends on this machine: the kernel allows it to the groups in
# /proc/sys/net/ipv4/ping_group_range, and refuses everyone else with
# EACCES, root too. The check works out which, and expects that.

load ../../tests/check-lib

SOCKETS="$LAB_ROOT/01-socket/sockets"
CALL="socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)"
RANGE_FILE=/proc/sys/net/ipv4/ping_group_range

# ping_allowed: is one of this process's groups (the effective one or a
# supplementary one, as the kernel checks) in ping_group_range?
ping_allowed() {
    local low high group
    read -r low high <"$RANGE_FILE"
    for group in $(id -G); do
        [ "$group" -ge "$low" ] && [ "$group" -le "$high" ] && return 0
    done
    return 1
}

@test "the ping socket row: a descriptor if ping_group_range holds a group of ours, else EACCES" {
    [ -r "$RANGE_FILE" ] || skip "$RANGE_FILE does not exist: no ping sockets here"
    run_output "$SOCKETS"
    [ "$RUN_STATUS" -eq 0 ] ||
        fail_with "./01-socket/sockets exited with status $RUN_STATUS: $RUN_ERR" \
            "Run it yourself and read what it says."
    local row
    row=$(grep -A 1 -E '^  socket\(AF_INET, *SOCK_DGRAM, *IPPROTO_ICMP\) +=' <<<"$RUN_OUT") ||
        fail_with "./01-socket/sockets prints no row for $CALL." \
            "Add {AF_INET, SOCK_DGRAM, IPPROTO_ICMP, \"$CALL\", \"...\"} to a" \
            "table in 01-socket/sockets.c (which one is yours to choose)."
    echo "$row"
    local first=${row%%$'\n'*}
    if ping_allowed; then
        [[ "$first" =~ \)\ +=\ +[0-9]+\ +socket:\[[0-9]+\] ]] ||
            fail_with "ping_group_range is '$(cat "$RANGE_FILE")' and holds one of your" \
                "groups ($(id -G)), so the call should give a descriptor; the row reads:" \
                "$first"
    else
        [[ "$first" =~ \)\ +=\ -1\ +errno\ EACCES ]] ||
            fail_with "ping_group_range is '$(cat "$RANGE_FILE")': none of your groups" \
                "($(id -G)) is in it, so the call should fail with EACCES; the row reads:" \
                "$first"
        [[ "$row" == *'"Permission denied"'* ]] ||
            fail_with "The line under the row should give strerror(EACCES):" \
                "\"Permission denied\"; it reads: ${row#*$'\n'}"
    fi
    # Whatever it returned, every socket that was opened is closed: the
    # last descriptor row is the one that reused the first number.
    local opened
    opened=$(grep -cE '\) += [0-9]+ +socket:\[' <<<"$RUN_OUT")
    [[ "$RUN_OUT" == *"closed $((opened - 1)) sockets."* ]] ||
        fail_with "It opened $((opened - 1)) sockets but says: $(tail -n 1 <<<"$RUN_OUT")" \
            "Is the new socket remembered in open_fds[], and is that array big enough?"
}
