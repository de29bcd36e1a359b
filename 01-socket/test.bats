#!/usr/bin/env bats
# Chapter 01: every socket is a file descriptor, and a call that cannot
# work returns -1 with errno set.

load ../tests/lib

SOCKETS="$LAB_ROOT/01-socket/sockets"

# The calls that must give a socket on any Linux machine.
GOOD_CALLS=(
    "socket(AF_INET, SOCK_STREAM, 0)"
    "socket(AF_INET, SOCK_DGRAM, 0)"
    "socket(AF_INET6, SOCK_STREAM, 0)"
    "socket(AF_INET6, SOCK_DGRAM, 0)"
    "socket(AF_INET, SOCK_STREAM, IPPROTO_TCP)"
    "socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP)"
    "socket(AF_UNIX, SOCK_STREAM, 0)"
    "socket(AF_UNIX, SOCK_DGRAM, 0)"
)

# The regular expression for a text, with ( ) [ ] escaped.
regex_quote() {
    sed 's/[][()]/\\&/g' <<<"$1"
}

# row_of OUTPUT CALL: the first line of OUTPUT that reports CALL.
row_of() {
    grep -m 1 -E "^  $(regex_quote "$2") += " <<<"$1"
}

# The descriptor a row reports: "  socket(...) = 5   socket:[123]  ..." -> 5
row_fd() {
    sed -E 's/.*\) += (-?[0-9]+) .*/\1/' <<<"$1"
}

# has_cap_net_raw: does this test process hold CAP_NET_RAW (bit 13)?
has_cap_net_raw() {
    local hex
    hex=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
    (((16#$hex >> 13) & 1))
}

@test "it runs, exits 0, and closes every socket it opened" {
    run "$SOCKETS"
    [ "$status" -eq 0 ]
    # One row per socket() that returned a descriptor; the last row is the
    # socket that replaced the first one after close().
    local opened
    opened=$(grep -cE '\) += [0-9]+ +socket:\[' <<<"$output")
    [[ "$output" == *"closed $((opened - 1)) sockets."* ]]
}

@test "each socket is a descriptor >= 3 that /proc shows as socket:[inode]" {
    run "$SOCKETS"
    [ "$status" -eq 0 ]
    local call row fd seen=" "
    for call in "${GOOD_CALLS[@]}"; do
        row=$(row_of "$output" "$call")
        echo "row for $call: $row"
        [[ "$row" =~ \)\ +=\ +[0-9]+\ +socket:\[[0-9]+\] ]]
        fd=$(row_fd "$row")
        [ "$fd" -ge 3 ]
        [[ "$seen" != *" $fd "* ]] # a new number for each open socket
        seen+="$fd "
    done
}

@test "0, 1 and 2 are open before main, and socket() takes the lowest free number" {
    run "$SOCKETS" </dev/null
    [ "$status" -eq 0 ]
    [[ "$output" =~ "fd 0 "+"/dev/null "+"standard input" ]]
    [[ "$output" =~ "fd 1 ".*"standard output" ]]
    [[ "$output" =~ "fd 2 ".*"standard error" ]]
    # The first socket gets the lowest number not already open, and after
    # close() the next socket gets that number again.
    local open_before first=3
    open_before=$(sed -nE 's/^  fd ([0-9]+) .*/\1/p' <<<"$output")
    while grep -qx "$first" <<<"$open_before"; do first=$((first + 1)); done
    [ "$(row_fd "$(row_of "$output" "${GOOD_CALLS[0]}")")" -eq "$first" ]
    [[ "$output" == *"  close($first)"* ]]
    local reused
    reused=$(grep -A 1 -F "  close($first)" <<<"$output" | tail -n 1)
    [ "$(row_fd "$reused")" -eq "$first" ]
}

@test "a bad combination returns -1 with errno EPROTONOSUPPORT and its text" {
    run "$SOCKETS"
    [ "$status" -eq 0 ]
    local row
    row=$(grep -A 1 -F "socket(AF_INET, SOCK_STREAM, IPPROTO_UDP)" <<<"$output")
    echo "$row"
    [[ "$row" =~ \)\ +=\ -1\ +errno\ EPROTONOSUPPORT ]]
    [[ "$row" == *'"Protocol not supported"'* ]]
    row=$(grep -A 1 -F "socket(12345, SOCK_STREAM, 0)" <<<"$output")
    [[ "$row" =~ \)\ +=\ -1\ +errno\ EAFNOSUPPORT ]]
    [[ "$row" == *'"Address family not supported by protocol"'* ]]
}

@test "a raw socket works with CAP_NET_RAW and fails with EPERM without it" {
    run "$SOCKETS"
    [ "$status" -eq 0 ]
    local row
    row=$(grep -A 1 -F "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)" <<<"$output")
    echo "$row"
    if has_cap_net_raw; then
        [[ "$row" =~ \)\ +=\ +[0-9]+\ +socket:\[[0-9]+\] ]]
        [[ "$output" == *"allowed: this process has CAP_NET_RAW"* ]]
    else
        [[ "$row" =~ \)\ +=\ -1\ +errno\ EPERM ]]
        [[ "$output" == *"refused: a raw socket needs CAP_NET_RAW"* ]]
    fi
}

@test "as an ordinary user, the raw socket fails with EPERM" {
    [ "$(id -u)" -eq 0 ] || skip "not root: the test above already ran unprivileged"
    command -v setpriv >/dev/null || skip "setpriv (util-linux) is not installed"
    run setpriv --reuid=65534 --regid=65534 --clear-groups "$SOCKETS"
    [ "$status" -eq 0 ]
    local row
    row=$(grep -F "socket(AF_INET, SOCK_RAW, IPPROTO_ICMP)" <<<"$output")
    echo "$row"
    [[ "$row" =~ \)\ +=\ -1\ +errno\ EPERM ]]
    [[ "$output" == *"refused: a raw socket needs CAP_NET_RAW"* ]]
    [[ "$output" != *"allowed:"* ]]
    # The ordinary sockets still work.
    [[ "$(row_of "$output" "${GOOD_CALLS[0]}")" =~ socket:\[[0-9]+\] ]]
}

@test "-w: the printed descriptors are open sockets in /proc/PID/fd, until SIGTERM" {
    lab_spawn sockets "$SOCKETS" -w
    local pid=$LAB_PID out="$BATS_TEST_TMPDIR/sockets.out"
    wait_for file_has_line "$out" "ls -l /proc/$pid/fd"
    # fd -> link, as printed; a later row for the same fd (the socket that
    # reused the first number) replaces the earlier one.
    local -A printed=()
    local fd link
    while read -r fd link; do
        printed[$fd]=$link
    done < <(sed -nE 's/^  socket\(.*\) += ([0-9]+) +(socket:\[[0-9]+\]).*/\1 \2/p' "$out")
    [ "${#printed[@]}" -ge 8 ]
    for fd in "${!printed[@]}"; do
        echo "fd $fd: printed ${printed[$fd]}, /proc says $(readlink "/proc/$pid/fd/$fd")"
        [ "$(readlink "/proc/$pid/fd/$fd")" = "${printed[$fd]}" ]
    done
    # ... and the process holds no other socket.
    local sockets_in_proc
    sockets_in_proc=$(find "/proc/$pid/fd" -lname 'socket:*' | wc -l)
    [ "$sockets_in_proc" -eq "${#printed[@]}" ]

    kill -TERM "$pid"
    wait_exit_status "$pid"
    [ "$EXIT_STATUS" -eq 0 ]
    file_has_line "$out" "^closed ${#printed[@]} sockets\.$"
}

@test "-h prints the usage and exits 0; an unknown option exits 2" {
    run "$SOCKETS" -h
    [ "$status" -eq 0 ]
    [[ "$output" == usage:\ sockets* ]]
    run "$SOCKETS" -x
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown option -x"* ]]
}
