#!/usr/bin/env bats
# 06-select-server/test.bats - what the select() server adds to SPEC's
# server lines (those are checked by tests/server.bats, which tests/run runs
# against this server too): one thread serves every client at once, however
# badly some of them behave; a client that never reads costs a bounded
# amount of memory; a descriptor past FD_SETSIZE is refused, not passed to
# FD_SET; running out of descriptors does not make the loop spin.

load ../tests/lib

SERVER_BIN=$LAB_ROOT/06-select-server/server

# rss_kib PID: the resident memory of PID, in KiB.
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# bytes_written_by PID: how many bytes PID has handed to write() so far.
bytes_written_by() {
    awk '/^wchar:/ { print $2 }' "/proc/$1/io"
}

# stops_writing PID: PID's count of written bytes stays the same over five
# looks 50 ms apart. For the flooding peer that means the server takes no
# more of its 64 MiB (or it has sent them all: then the server took them).
stops_writing() {
    local before after i
    before=$(bytes_written_by "$1") || return 2
    for i in 1 2 3 4 5; do
        sleep 0.05
        after=$(bytes_written_by "$1") || return 2
        [ "$after" -eq "$before" ] || return 1
    done
}

# has_line FILE REGEX: like file_has_line, but a FILE that a process just
# started has not created yet means "not yet" (1), not "never" (grep's 2,
# which would stop wait_for at once).
has_line() {
    [ -e "$1" ] && file_has_line "$1" "$2"
}

# wait_for runs its command again and again, so a count must be taken inside
# a function: in "wait_for [ "$(fd_count ...)" -eq 8 ]" the $(...) would be
# expanded once, before the first try, and never again.
fd_count_is() {
    [ "$(fd_count "$1")" -eq "$2" ]
}
lines_are() {
    [ "$(count_lines "$2" "$3")" -eq "$1" ]
}
accepted_or_refused() {
    [ $(($(count_lines "$SERVER_OUT" '^accepted ') +
        $(count_lines "$SERVER_ERR" '^server: refused '))) -eq "$1" ]
}

# spawn_peer NAME MODE [BYTES]: start tests/peer in MODE and wait until both
# it and the server know of the connection. Sets PEER_PID.
spawn_peer() {
    local name=$1 addr
    shift
    lab_spawn "$name" "$LAB_PEER" -v -p "$SERVER_PORT" "$@"
    PEER_PID=$LAB_PID
    wait_for has_line "$BATS_TEST_TMPDIR/$name.out" '^connected '
    addr=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/$name.out")
    wait_for file_has_line "$SERVER_OUT" "^accepted $addr\$"
}

# echo_works BYTES: a well-behaved client sends BYTES and gets them back.
echo_works() {
    timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" echo "$1"
}

@test "one thread serves 100 clients while an idle, a stalled and a flooding client are connected" {
    start_server "$SERVER_BIN" -p 0
    spawn_peer idle idle
    spawn_peer partial partial 5 # half a message, then nothing
    spawn_peer flood flood 67108864
    # Once the flooder can write no more, its echo has backed up: a server
    # that blocked on it would be stuck from now on.
    wait_for stops_writing "$PEER_PID"
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
    start_server "$SERVER_BIN" -p 0
    echo_works 1048576 # so that a normal client's cost is already counted
    local before after
    before=$(rss_kib "$SERVER_PID")
    spawn_peer flood flood 67108864
    wait_for stops_writing "$PEER_PID"
    after=$(rss_kib "$SERVER_PID")
    echo "resident memory: ${before} KiB before the flood, ${after} KiB after" >&3
    [ $((after - before)) -lt 4096 ]
    # and the flooder's bytes wait in the kernel, not in the server: the
    # server's socket holds received bytes that it has not read.
    local addr queued
    addr=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/flood.out")
    queued=$(ss -Htn "dport = :${addr##*:}" | awk '{ print $2; exit }')
    [ "${queued:-0}" -gt 0 ]
}

@test "past FD_SETSIZE: 1,100 connections, the extras refused with a log line, the server still serving" {
    local hard
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt 2048 ]; then
        skip "needs a descriptor limit of 2048 (ulimit -Hn is $hard)"
    fi
    # The server may open up to 2048 descriptors, but select() can only
    # watch 0..1023.
    start_server_with_fd_limit 2048 "$SERVER_BIN" -p 0
    # A client that connects first and stays.
    local conn reply
    exec {conn}<>"/dev/tcp/127.0.0.1/$SERVER_PORT"
    wait_for lines_are 1 "$SERVER_OUT" '^accepted '
    local fds
    fds=$(fd_count "$SERVER_PID")

    # 1,100 more, held open by one process.
    lab_spawn holder bash -c 'ulimit -n 2048 || exit 1
        for ((i = 0; i < 1100; i++)); do
            exec {fd}<>"/dev/tcp/127.0.0.1/$0" || exit 1
        done
        echo opened
        exec sleep 1000' "$SERVER_PORT" {conn}>&-
    local holder=$LAB_PID
    wait_for has_line "$BATS_TEST_TMPDIR/holder.out" '^opened$' || {
        cat "$BATS_TEST_TMPDIR/holder.err" >&2
        false
    }
    # Every connection is either accepted or refused, and some are refused.
    wait_for accepted_or_refused 1101
    local refused
    refused=$(count_lines "$SERVER_ERR" '^server: refused ')
    echo "refused $refused of 1,100; first: $(grep -m 1 refused "$SERVER_ERR")" >&3
    [ "$refused" -gt 0 ]
    # Each refusal names the client and a descriptor select() cannot watch.
    [ "$(count_lines "$SERVER_ERR" \
        '^server: refused 127\.0\.0\.1:[0-9]+: descriptor [0-9]+ >= FD_SETSIZE \(1024\)$')" \
        -eq "$refused" ]
    grep -o 'descriptor [0-9]*' "$SERVER_ERR" | awk '$2 < 1024 { exit 1 }'
    # It kept no descriptor past 1023 (a refused one is closed at once).
    [ "$(fd_count "$SERVER_PID")" -le 1024 ]
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
}

@test "out of descriptors (EMFILE): the server sleeps instead of spinning" {
    # 16 descriptors: stdin, stdout, stderr, the listener and 12 clients.
    start_server_with_fd_limit 16 "$SERVER_BIN" -p 0
    local i
    for i in $(seq 16); do
        lab_spawn "idle$i" "$LAB_PEER" -v -p "$SERVER_PORT" idle
    done
    for i in $(seq 16); do
        wait_for has_line "$BATS_TEST_TMPDIR/idle$i.out" '^connected '
    done
    # 4 connections wait in the queue, so the listener stays readable. A
    # loop that went straight back to select() and accept() would never
    # sleep: its state would stay R (running), never S (sleeping).
    wait_for file_has_line "$SERVER_ERR" '^server: accept: .*\(EMFILE\)$'
    wait_for process_state_is "$SERVER_PID" S
    # Once the clients leave, the ones still queued are taken in too, and
    # a new client is served.
    for i in $(seq 16); do
        kill -TERM -- "-${LAB_PIDS[$i]}"
    done
    wait_for lines_are 16 "$SERVER_OUT" '^accepted '
    echo_works 100
}
