#!/usr/bin/env bats
# 06-select-server/test.bats - what the select() server adds to the contract's
# server lines (those are checked by tests/server.bats, which tests/run runs
# against this server too): one thread serves every client at once, however
# badly some of them behave; a client that never reads costs a bounded
# amount of memory; a descriptor past FD_SETSIZE is refused, not passed to
# FD_SET, and a burst of refusals does not flood the log; running out of
# descriptors does not make the loop spin, and idle clients cost no CPU;
# a log reader that stalls or a closed stderr cannot hurt a client or a stop.

load ../tests/lib

SERVER=$LAB_ROOT/06-select-server/server

# rss_kib PID: the resident memory of PID, in KiB.
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# bytes_written_by PID: how many bytes PID has handed to write() so far.
bytes_written_by() {
    awk '/^wchar:/ { print $2 }' "/proc/$1/io"
}

# flood_stalled PID: the flooding peer PID has written more than 512 KiB
# (far more than the server's own 64 KiB buffer for it, so the server must
# have stopped taking its bytes or be taking all of them), and its count
# of written bytes then stays the same over five looks 50 ms apart: the
# server takes no more of the 64 MiB (or the peer has sent them all).
flood_stalled() {
    local before after i
    before=$(bytes_written_by "$1") || return 2
    [ "$before" -gt 524288 ] || return 1
    for i in 1 2 3 4 5; do
        sleep 0.05
        after=$(bytes_written_by "$1") || return 2
        [ "$after" -eq "$before" ] || return 1
    done
}

# highest_socket_fd PID: the highest descriptor number that PID holds open
# on a socket.
highest_socket_fd() {
    find "/proc/$1/fd" -lname 'socket:*' -printf '%f\n' | sort -n | tail -n 1
}

# listen_queue_is PORT N: N connections wait in PORT's accept queue.
listen_queue_is() {
    [ "$(listen_queue "$1")" -eq "$2" ]
}

# refused_total FILE: how many clients the server's stderr FILE says it
# refused: one per "refused ADDR: descriptor ..." line, plus N per "refused
# N more clients past FD_SETSIZE" line.
refused_total() {
    awk '/^server: refused [0-9]+ more clients past FD_SETSIZE$/ { n += $3; next }
         /^server: refused / { n++ }
         END { print n + 0 }' "$1"
}

# cpu_ticks PID: user + system CPU time of PID, in clock ticks (/proc/PID/stat
# fields 14 and 15; the command name in parentheses may hold spaces).
cpu_ticks() {
    local stat fields
    stat=$(cat "/proc/$1/stat") || return 1
    read -ra fields <<<"${stat##*) }" # fields[0] is field 3, the state
    echo $((fields[11] + fields[12]))
}

# server_queues_stalled: the server's one client connection has bytes in
# both its Recv-Q (the server stopped reading) and its Send-Q (the client
# is not reading), and they stayed the same for five looks in a row.
server_queues_stalled() {
    local now
    now=$(ss -Htn "sport = :$SERVER_PORT" | awk '{ print $2, $3; exit }')
    if [ "$now" != "${STALL_LAST:-}" ] || [ "${now%% *}" = 0 ] ||
        [ "${now##* }" = 0 ]; then
        STALL_LAST=$now
        STALL_SAME=0
        return 1
    fi
    STALL_SAME=$((STALL_SAME + 1))
    [ "$STALL_SAME" -ge 5 ]
}

# spawn_peer NAME MODE [BYTES]: start tests/peer in MODE and wait until both
# it and the server know of the connection. Sets PEER_PID.
spawn_peer() {
    local name=$1 addr
    shift
    lab_spawn "$name" "$LAB_PEER" -v -p "$SERVER_PORT" "$@"
    PEER_PID=$LAB_PID
    wait_for file_has_line "$BATS_TEST_TMPDIR/$name.out" '^connected '
    addr=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/$name.out")
    wait_for file_has_line "$SERVER_OUT" "^accepted $addr\$"
}

# echo_works BYTES: a well-behaved client sends BYTES and gets them back.
echo_works() {
    timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" echo "$1"
}

@test "one thread serves 100 clients while an idle, a stalled and a flooding client are connected" {
    start_server "$SERVER" -p 0
    spawn_peer idle idle
    spawn_peer partial partial 5 # half a message, then nothing
    spawn_peer flood flood 67108864
    # Once the flooder can write no more, its echo has backed up: a server
    # that blocked on it would be stuck from now on.
    wait_for flood_stalled "$PEER_PID"
    echo_works 100
    echo_works 1048576
    # -w: all 100 connections are open before any sends its request.
    run timeout 60 "$LAB_LOADGEN" -q -p "$SERVER_PORT" -c 100 -w -s 1000 -n 1
    [ "$status" -eq 0 ]
    [[ $output == *"requests=100 errors=0"* ]]
    [ "$(thread_count "$SERVER_PID")" -eq 1 ]
    [ -z "$(children_of "$SERVER_PID")" ]
}

@test "a client that sends 64 MiB and never reads costs the server at most a few MiB" {
    start_server "$SERVER" -p 0
    echo_works 1048576 # so that a normal client's cost is already counted
    local before after
    before=$(rss_kib "$SERVER_PID")
    spawn_peer flood flood 67108864
    wait_for flood_stalled "$PEER_PID"
    after=$(rss_kib "$SERVER_PID")
    echo "# resident memory: ${before} KiB before the flood, ${after} KiB after" >&3
    [ $((after - before)) -lt 4096 ]
    # and the flooder's bytes wait in the kernel, not in the server: the
    # server's socket holds received bytes that it has not read.
    local addr queued
    addr=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/flood.out")
    queued=$(ss -Htn "dport = :${addr##*:}" | awk '{ print $2; exit }')
    [ "${queued:-0}" -gt 0 ]
}

@test "past FD_SETSIZE: 1,100 connections, the extras refused with a few log lines, the server still serving" {
    local hard
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt 2048 ]; then
        skip "needs a descriptor limit of 2048 (ulimit -Hn is $hard)"
    fi
    # The server may open up to 2048 descriptors, but select() can only
    # watch 0..1023.
    start_server_with_fd_limit 2048 "$SERVER" -p 0
    # A client that connects first and stays.
    local conn reply
    exec {conn}<>"/dev/tcp/127.0.0.1/$SERVER_PORT"
    wait_for line_count_is "$SERVER_OUT" '^accepted ' 1
    local fds
    fds=$(fd_count "$SERVER_PID")

    # 1,100 more, held open by one process.
    local start=$SECONDS
    # shellcheck disable=SC2016 # $0 is the inner bash's
    lab_spawn holder bash -c 'ulimit -n 2048 || exit 1
        for ((i = 0; i < 1100; i++)); do
            exec {fd}<>"/dev/tcp/127.0.0.1/$0" || exit 1
        done
        echo opened
        exec sleep 1000' "$SERVER_PORT" {conn}>&-
    local holder=$LAB_PID
    wait_for file_has_line "$BATS_TEST_TMPDIR/holder.out" '^opened$' || {
        cat "$BATS_TEST_TMPDIR/holder.err" >&2
        false
    }
    # The server has taken every connection off the queue, and refused
    # some: each refusal line names the client and a descriptor select()
    # cannot watch.
    wait_for listen_queue_is "$SERVER_PORT" 0
    wait_for file_has_line "$SERVER_ERR" \
        '^server: refused 127\.0\.0\.1:[0-9]+: descriptor [0-9]+ >= FD_SETSIZE \(1024\)$'
    grep -o 'descriptor [0-9]*' "$SERVER_ERR" | awk '$2 < 1024 { exit 1 }'
    # It kept no socket past descriptor 1023 (a refused one is closed at
    # once). Only sockets count: valgrind, when used, keeps files up there.
    [ "$(highest_socket_fd "$SERVER_PID")" -lt 1024 ]
    kill -0 "$SERVER_PID"

    # The first client is still served.
    printf 'still here\n' >&"$conn"
    IFS= read -r -t "$LAB_WAIT" -u "$conn" reply
    [ "$reply" = "still here" ]

    # When the 1,100 leave, the server is back to its descriptors and takes
    # new clients again.
    kill -TERM -- "-$holder"
    wait_for fd_count_is "$SERVER_PID" "$fds"
    echo_works 100
    exec {conn}>&-

    # At exit it says how many refusals it did not log one by one. Then
    # every connection was either accepted or refused...
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    local seconds=$((SECONDS - start + 1)) accepted refused lines
    accepted=$(count_lines "$SERVER_OUT" '^accepted ')
    refused=$(refused_total "$SERVER_ERR")
    lines=$(count_lines "$SERVER_ERR" '^server: refused ')
    echo "# accepted $accepted, refused $refused in $lines lines over ${seconds}s:" >&3
    sed 's/^/#   /' "$SERVER_ERR" >&3
    # (1,100, the first client and the echo_works client)
    [ $((accepted + refused)) -eq 1102 ]
    [ "$refused" -gt 0 ]
    # ...and the refusals took at most a line and a count a second, plus
    # the count at exit: not one line each.
    [ "$lines" -le $((2 * seconds + 1)) ]
    [ "$lines" -lt "$refused" ]
}

@test "out of descriptors (EMFILE): the server sleeps instead of spinning" {
    # 32 descriptors: stdin, stdout, stderr, the listener and at most 28
    # clients (fewer if the test runner or valgrind holds some), so at least
    # 4 of the 32 connections wait in the listen queue.
    start_server_with_fd_limit 32 "$SERVER" -p 0
    local i
    for i in $(seq 32); do
        lab_spawn "idle$i" "$LAB_PEER" -v -p "$SERVER_PORT" idle
    done
    for i in $(seq 32); do
        wait_for file_has_line "$BATS_TEST_TMPDIR/idle$i.out" '^connected '
    done
    # Those keep the listener readable. A loop that went straight back to
    # select() and accept() would never sleep: its state would stay R
    # (running), never S (sleeping).
    wait_for file_has_line "$SERVER_ERR" '^server: accept: .*\(EMFILE\)$'
    wait_for process_state_is "$SERVER_PID" S
    # Once the clients leave, the ones still queued are taken in too (the
    # listen queue empties), and a new client is served. (We do not count
    # 'accepted' lines: under valgrind, whose own descriptors sit at the top
    # of the range, an EMFILE can cost the connection it was accepting.)
    for i in $(seq 32); do
        kill -TERM -- "-${LAB_PIDS[$i]}"
    done
    wait_for listen_queue_is "$SERVER_PORT" 0
    echo_works 100
}

@test "started with descriptors 0 and 2 closed: no client socket is stderr, and one client's error never lands in another's echo" {
    # The server opens /dev/null on 0 and 2 first; without that, the
    # listener would be descriptor 0 and the first client descriptor 2.
    # shellcheck disable=SC2016 # $@ is the inner bash's
    start_server bash -c 'exec "$@" <&- 2>&-' server "$SERVER" -p 0
    local conn reply fd
    exec {conn}<>"/dev/tcp/127.0.0.1/$SERVER_PORT"
    wait_for line_count_is "$SERVER_OUT" '^accepted ' 1
    for fd in 0 1 2; do
        [[ $(readlink "/proc/$SERVER_PID/fd/$fd") != socket:* ]]
    done
    # A client that resets makes the server write an error line to fd 2.
    run timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" reset 1000
    wait_for line_count_is "$SERVER_OUT" '^closed ' 1
    # The first client's echo is its own bytes, and nothing else.
    printf 'mine\n' >&"$conn"
    IFS= read -r -t "$LAB_WAIT" -u "$conn" reply
    [ "$reply" = mine ]
    exec {conn}>&-
}

@test "a log reader that stalls: the server still serves, and SIGTERM still stops it" {
    # Its stdout is a pipe whose reader takes the "listening on" line and
    # then never reads again, so the pipe (64 KiB) fills with log lines.
    local fifo=$BATS_TEST_TMPDIR/log
    mkfifo "$fifo"
    # shellcheck disable=SC2016 # $0 and $@ are the inner bash's
    lab_spawn reader bash -c 'exec <"$0" && IFS= read -r line &&
        printf "%s\n" "$line" && exec sleep 1000' "$fifo"
    # shellcheck disable=SC2016
    lab_spawn server bash -c 'exec "$@" >"$0"' "$fifo" "$SERVER" -p 0
    local pid=$LAB_PID port
    wait_for file_has_line "$BATS_TEST_TMPDIR/reader.out" '^listening on '
    port=$(sed -n 's/^listening on .*://p' "$BATS_TEST_TMPDIR/reader.out")
    # 3,000 clients one after another: 6,000 lines, about 140 KiB.
    timeout 60 "$LAB_PEER" -p "$port" cycle 3000
    timeout "$LAB_WAIT" "$LAB_PEER" -p "$port" echo 100000
    kill -TERM "$pid"
    lab_wait_gone "$pid" 3
}


@test "idle clients cost no CPU, even after a backlog of echo has drained" {
    start_server "$SERVER" -p 0 -q
    # One client sends 8 MiB without reading, until the server holds a
    # full buffer of echo for it and stops reading; on a line from the
    # test it reads all 8 MiB back, then sits idle, connected.
    local go=$BATS_TEST_TMPDIR/go
    mkfifo "$go"
    # shellcheck disable=SC2016 # $0 and $1 are the inner bash's
    lab_spawn backlog bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        head -c "$1" /dev/zero >&3 &
        read -r _ <"$2"
        [ "$(head -c "$1" <&3 | wc -c)" -eq "$1" ] || exit 1
        wait $! || exit 1
        echo drained
        exec sleep 1000' "$SERVER_PORT" 8388608 "$go"
    wait_for server_queues_stalled
    echo go >"$go"
    wait_for file_has_line "$BATS_TEST_TMPDIR/backlog.out" '^drained$'
    # And a client beside it that never sent anything.
    lab_spawn idle "$LAB_PEER" -v -p "$SERVER_PORT" idle
    wait_for file_has_line "$BATS_TEST_TMPDIR/idle.out" '^connected '
    # One second of the server's life with two idle clients: a loop that
    # still watched for "writable" would wake at once, every time.
    local cpu0 cpu1 t0 t1 ms tick_ms
    cpu0=$(cpu_ticks "$SERVER_PID")
    t0=${EPOCHREALTIME/./}
    sleep 1 # the measuring window; nothing is waited for here
    cpu1=$(cpu_ticks "$SERVER_PID")
    t1=${EPOCHREALTIME/./}
    ms=$(((t1 - t0) / 1000)) tick_ms=$((1000 / $(getconf CLK_TCK)))
    echo "# in $ms ms idle: $(((cpu1 - cpu0) * tick_ms)) ms of CPU" >&3
    [ $(((cpu1 - cpu0) * tick_ms)) -lt $((ms / 10)) ]
}
