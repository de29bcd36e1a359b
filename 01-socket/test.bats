#!/usr/bin/env bats
# Chapter 01: every socket is a file descriptor, and a call that cannot
# work returns -1 with errno set.

# STATUS and ERR come from lib.bash's run_stdout_broken:
# shellcheck disable=SC2153
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

# row_of OUTPUT CALL: the first line of OUTPUT that reports CALL. (In a
# bash regex, the quoted part matches literally: no need to escape "(".)
row_of() {
    local line
    while IFS= read -r line; do
        if [[ "$line" =~ ^"  $2"\ +=\  ]]; then
            echo "$line"
            return 0
        fi
    done <<<"$1"
    return 1
}

# The descriptor a row reports: "  socket(...) = 5   socket:[123]  ..." -> 5
row_fd() {
    sed -E 's/.*\) += (-?[0-9]+) .*/\1/' <<<"$1"
}

# all_socket_fds OUTPUT: every descriptor a socket() row of OUTPUT reports.
all_socket_fds() {
    sed -nE 's/^  socket\(.*\) += ([0-9]+) +socket:.*/\1/p' <<<"$1"
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

@test "-w stops on SIGTERM and SIGINT even when started with them blocked or ignored" {
    # A process inherits its parent's signal mask and ignored signals; env
    # can start one so. (Check that it does, or this test proves nothing.)
    env_sets_signals --block-signal SigBlk
    env_sets_signals --ignore-signal SigIgn
    local how signal
    for how in block ignore; do
        for signal in TERM INT; do
            lab_spawn "sockets-$how-$signal" env --"$how"-signal=INT,TERM "$SOCKETS" -w
            local pid=$LAB_PID out="$BATS_TEST_TMPDIR/sockets-$how-$signal.out"
            wait_for file_has_line "$out" "ls -l /proc/$pid/fd"
            kill -"$signal" "$pid"
            wait_exit_status "$pid"
            echo "$how, SIG$signal: exit $EXIT_STATUS"
            [ "$EXIT_STATUS" -eq 0 ]
            file_has_line "$out" '^closed [0-9]+ sockets\.$'
        done
    done
}

@test "started with 0 and 2 closed, it opens /dev/null on them: no socket gets 0-2" {
    run bash -c 'exec "$0" <&- 2>&-' "$SOCKETS"
    [ "$status" -eq 0 ]
    [[ "$output" =~ "fd 0 "+"/dev/null "+"standard input" ]]
    [[ "$output" =~ "fd 2 "+"/dev/null "+"standard error" ]]
    local fds fd
    fds=$(all_socket_fds "$output")
    [ "$(wc -l <<<"$fds")" -ge 9 ]
    for fd in $fds; do
        [ "$fd" -ge 3 ]
    done
}

@test "stdout full or closed: exit 1 with a 'write stdout' line, even with -w" {
    local how
    for how in full closed; do
        run_stdout_broken "$how" "$SOCKETS"
        [ "$STATUS" -eq 1 ]
        [[ "$ERR" == "sockets: write stdout: "* ]]
        # -w checks its output before it waits, instead of waiting for a
        # Ctrl-C with nobody to read what it said.
        run_stdout_broken "$how" "$SOCKETS" -w
        [ "$STATUS" -eq 1 ]
        [[ "$ERR" == "sockets: write stdout: "* ]]
    done
    # Each is named as what it is.
    [ "$ERR" = "sockets: write stdout: Bad file descriptor (EBADF)" ]
    run_stdout_broken full "$SOCKETS"
    [ "$ERR" = "sockets: write stdout: No space left on device (ENOSPC)" ]
}

@test "-h prints the usage and exits 0; an unknown option exits 2" {
    run "$SOCKETS" -h
    [ "$status" -eq 0 ]
    [[ "$output" == usage:\ sockets* ]]
    run "$SOCKETS" -x
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown option -x"* ]]
}
