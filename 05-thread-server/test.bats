#!/usr/bin/env bats
# Chapter 05: a thread per client, and a pool of threads fed by a bounded
# queue. tests/server.bats runs SPEC's server lines against this server too,
# once as it is and once with -t 4; this file adds what is this chapter's.

load ../tests/lib

SERVER="$LAB_ROOT/05-thread-server/server"
RACE="$LAB_ROOT/05-thread-server/race"

# ThreadSanitizer (make SAN=thread) starts one thread of its own when the
# program creates its first thread; the counts below leave it out.
built_with_tsan() {
    grep -qa __tsan_init "$1"
}
RUNTIME_THREADS=0
if built_with_tsan "$SERVER"; then
    RUNTIME_THREADS=1
fi
# The threads of an idle server: main, and the stop thread that takes
# SIGINT and SIGTERM (sigwait). Clients' threads and workers come on top.
BASE_THREADS=$((2 + RUNTIME_THREADS))

# stop_server: SIGTERM, then expect_clean_exit.
stop_server() {
    kill -TERM "$SERVER_PID"
    expect_clean_exit
}

# expect_clean_exit: the server exits 0 with no sanitizer report
# (ThreadSanitizer exits 66 after a report, ASan and UBSan abort).
expect_clean_exit() {
    local status=0
    if ! lab_wait_gone "$SERVER_PID"; then
        echo "the server did not exit after SIGTERM" >&2
        return 1
    fi
    wait "$SERVER_PID" || status=$?
    if [ "$status" -ne 0 ] || grep -Eq 'Sanitizer|runtime error' "$SERVER_ERR"; then
        echo "the server exited with status $status; its stderr:" >&2
        cat "$SERVER_ERR" >&2
        return 1
    fi
}

accepted() { count_lines "$SERVER_OUT" '^accepted '; }
closed() { count_lines "$SERVER_OUT" '^closed '; }
accepted_is() { [ "$(accepted)" -eq "$1" ]; }
closed_is() { [ "$(closed)" -eq "$1" ]; }
threads_are() { [ "$(thread_count "$SERVER_PID")" -eq "$1" ]; }
listen_queue_is() { [ "$(listen_queue "$SERVER_PORT")" = "$1" ]; }

# Client-side connections to the server that are open: established, or
# half-closed by a client that has sent everything and waits for its echo
# (FIN-WAIT-2), whether or not the server has accept()ed them yet.
connected_clients() {
    ss -Htn state established state fin-wait-1 state fin-wait-2 \
        "( dport = :$SERVER_PORT )" | wc -l
}

# Remember the most threads the server was ever seen running.
MAX_THREADS=0
sample_threads() {
    local n
    n=$(thread_count "$SERVER_PID")
    if [ "$n" -gt "$MAX_THREADS" ]; then
        MAX_THREADS=$n
    fi
}
# For wait_for: sample, then check that N clients are connected.
sampling_until_connected() {
    sample_threads
    [ "$(connected_clients)" -eq "$1" ]
}
# For wait_for: sample, then check that every PID has exited.
sampling_until_gone() {
    local pid
    sample_threads
    for pid in "$@"; do
        process_gone "$pid" || return 1
    done
}

# spawn_peers N NAME ARGS...: N tests/peer processes; their PIDs in PEERS.
spawn_peers() {
    local n=$1 name=$2 i
    shift 2
    PEERS=()
    for ((i = 1; i <= n; i++)); do
        lab_spawn "$name$i" "$LAB_PEER" -p "$SERVER_PORT" "$@"
        PEERS+=("$LAB_PID")
    done
}

# expect_exit_0 PID...: each PID (a peer) exits with status 0.
expect_exit_0() {
    local pid status
    for pid in "$@"; do
        lab_wait_gone "$pid" || { echo "peer $pid did not finish" >&2; return 1; }
        status=0
        wait "$pid" || status=$?
        [ "$status" -eq 0 ] || { echo "peer $pid exited with $status" >&2; return 1; }
    done
}

@test "-t 4: 20 concurrent clients are all served, by main and 4 workers only" {
    start_server "$SERVER" -p 0 -t 4
    local cap=$((BASE_THREADS + 4))
    threads_are "$cap" # the pool is there before the first client

    # Four clients that send nothing hold all four workers...
    spawn_peers 4 holder idle
    local holders=("${PEERS[@]}")
    wait_for accepted_is 4
    # ...so these 16 wait, in the queue, until a worker is free.
    spawn_peers 16 echo echo 100000
    local echoers=("${PEERS[@]}")
    wait_for sampling_until_connected 20
    closed_is 0 # nobody was served: every worker is busy

    kill -TERM "${holders[@]}"
    wait_for sampling_until_gone "${echoers[@]}"
    expect_exit_0 "${echoers[@]}" # each checked its echo, byte for byte
    wait_for closed_is 20
    echo "most threads seen: $MAX_THREADS (allowed: $cap)"
    [ "$MAX_THREADS" -le "$cap" ]
    threads_are "$cap"
    stop_server
}

@test "-t 4: with the workers busy and the queue full, the server stops accepting (backpressure)" {
    start_server "$SERVER" -p 0 -t 4
    spawn_peers 4 holder idle
    wait_for accepted_is 4
    spawn_peers 24 waiter idle
    wait_for sampling_until_connected 28
    # 4 clients held by workers, 16 in the queue (QUEUE_SLOTS), 1 accepted
    # by main, which waits for a free slot; the other 7 stay in the
    # kernel's backlog, where ss shows them as the listening socket's Recv-Q.
    wait_for accepted_is 21
    wait_for listen_queue_is 7
    accepted_is 21
    threads_are $((BASE_THREADS + 4))
    # SIGTERM reaches main even while it waits for a slot.
    stop_server
}
@test "without -t: one thread per connected client, and back to main and the stop thread after they leave" {
    start_server "$SERVER" -p 0
    threads_are "$BASE_THREADS"
    spawn_peers 10 idler idle
    wait_for accepted_is 10
    wait_for threads_are $((BASE_THREADS + 10))
    kill -TERM "${PEERS[@]}"
    wait_for closed_is 10
    wait_for threads_are "$BASE_THREADS"
    stop_server
}

@test "without -t: an idle client does not delay another" {
    start_server "$SERVER" -p 0
    spawn_peers 1 idler -v idle
    wait_for accepted_is 1
    head -c 100000 /dev/urandom >"$BATS_TEST_TMPDIR/in"
    echo_through_server "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
    process_state_is "${PEERS[0]}" S # the idle one is still connected
    stop_server
}

# burst N ARGS...: stop the server (SIGSTOP), let N clients connect and
# send (the kernel completes each handshake and queues the connection),
# then resume it: main accept()s N clients back to back, handing each
# thread its own socket while the previous threads are just starting.
# Each client checks its own echo, byte for byte.
burst() {
    local n=$1
    shift
    start_server "$SERVER" -p 0 "$@"
    kill -STOP "$SERVER_PID"
    spawn_peers "$n" echo echo 1000
    wait_for connected_clients_are "$n"
    kill -CONT "$SERVER_PID"
    expect_exit_0 "${PEERS[@]}"
    stop_server
    file_has_line "$SERVER_OUT" "^served $n clients\$"
}
connected_clients_are() { [ "$(connected_clients)" -eq "$1" ]; }

@test "without -t: 100 clients connected at once each get their echo back" {
    burst 100
}

@test "-t 4: 100 clients connected at once each get their echo back" {
    burst 100 -t 4
}

# served_count ARGS...: 20 clients at once, then the count printed at exit.
served_count() {
    start_server "$SERVER" -p 0 "$@"
    spawn_peers 20 echo echo 10000
    expect_exit_0 "${PEERS[@]}"
    wait_for closed_is 20
    stop_server
    file_has_line "$SERVER_OUT" '^served 20 clients$'
}

@test "without -t: the count of clients served is exact at shutdown" {
    served_count
}

@test "-t 3: the count of clients served is exact at shutdown" {
    served_count -t 3
}

# The kernel gives a signal sent to the process to any one thread that
# does not block it. kill(2) with the ID of one thread offers it to that
# thread first: the server must stop all the same.
sigterm_via_newest_thread() {
    local task tid=0
    for task in "/proc/$SERVER_PID/task"/*; do
        task=${task##*/}
        if [ "$task" -gt "$tid" ]; then
            tid=$task
        fi
    done
    [ "$tid" != "$SERVER_PID" ]
    kill -TERM "$tid"
}

@test "without -t: SIGTERM stops the server even when a client's thread is offered it" {
    start_server "$SERVER" -p 0
    spawn_peers 1 idler idle
    wait_for accepted_is 1
    wait_for threads_are $((BASE_THREADS + 1))
    sigterm_via_newest_thread
    expect_clean_exit
}

@test "-t 2: SIGTERM stops the server even when a worker is offered it" {
    start_server "$SERVER" -p 0 -t 2
    sigterm_via_newest_thread
    expect_clean_exit
}

@test "-t needs a number of threads from 1 to 1024" {
    run "$SERVER" -p 0 -t 0
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == *"'0'"* ]]
    run "$SERVER" -p 0 -t many
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == *"'many'"* ]]
}

@test "race -m: with a mutex, no increment is lost" {
    run "$RACE" -m -t 4 -n 100000
    echo "$output"
    [ "$status" -eq 0 ]
    [[ "$output" == *"expected 400000, got 400000"* ]]
    [[ "$output" != *Sanitizer* ]]
}

@test "race without -m: ThreadSanitizer reports the data race" {
    if ! built_with_tsan "$RACE"; then
        skip "only a ThreadSanitizer build can see it: make SAN=thread test N=5"
    fi
    run "$RACE" -t 2 -n 1000
    echo "$output"
    [ "$status" -eq 66 ] # TSan's exit status after a report
    [[ "$output" == *"WARNING: ThreadSanitizer: data race"* ]]
    [[ "$output" == *"count_up"* ]]
}

# ---- stopping, whatever the threads are doing ----------------------------------

# stopped_within SECONDS: after SIGTERM, the server is gone within SECONDS
# (whole seconds as bash counts them: up to one more on a loaded machine),
# exits 0 and prints its count.
stopped_within() {
    kill -TERM "$SERVER_PID"
    if ! lab_wait_gone "$SERVER_PID" "$1"; then
        echo "the server still runs $1 s after SIGTERM" >&2
        return 1
    fi
    expect_clean_exit
}

@test "-t 2: SIGTERM stops the server at once while main waits for a queue slot and the workers are blocked in read and write" {
    start_server "$SERVER" -p 0 -t 2
    # Worker 1 waits in read() for a client that sends nothing; worker 2
    # waits in write() to a client that sends 64 MiB and never reads.
    spawn_peers 1 idler idle
    wait_for accepted_is 1
    spawn_peers 1 flooder flood 67108864
    wait_for accepted_is 2
    # 16 more fill the queue and one more keeps main waiting for a slot
    # in pthread_cond_wait(), which a signal cannot end.
    spawn_peers 17 waiter idle
    wait_for accepted_is 19
    stopped_within 2
    file_has_line "$SERVER_OUT" '^served 0 clients$'
}

# start_server_with_stalled_log: start the server with its stdout into a
# FIFO (a named pipe), read its "listening on" line from the FIFO, and never
# read again: a log pipe that nobody reads, as with "server | less" left
# alone. Opening the FIFO read-write (<>) never waits for the other end.
start_server_with_stalled_log() {
    local fifo="$BATS_TEST_TMPDIR/log.fifo" line
    mkfifo "$fifo"
    exec {LOG_FD}<>"$fifo"
    # shellcheck disable=SC2016 # the inner sh expands $0 and $@
    lab_spawn server sh -c 'exec "$@" >"$0"' "$fifo" "$SERVER" -p 0
    SERVER_PID=$LAB_PID
    SERVER_OUT="$BATS_TEST_TMPDIR/server.out" # stays empty
    SERVER_ERR="$BATS_TEST_TMPDIR/server.err"
    read -r -t "$LAB_WAIT" -u "$LOG_FD" line
    [[ "$line" == "listening on "* ]]
    SERVER_PORT=${line##*:}
    # shellcheck disable=SC2034 # read by server_host in tests/lib.bash
    SERVER_ADDR=127.0.0.1
}

@test "without -t: a log pipe that nobody reads stops neither serving nor SIGTERM" {
    start_server_with_stalled_log
    # 4 clients at once, 600 connections each: 2,400 accepted/closed line
    # pairs, about 110 kB from many threads, while a pipe holds 64 KiB.
    spawn_peers 4 cycler cycle 600
    expect_exit_0 "${PEERS[@]}"
    # The pipe is full now; a new client is served all the same...
    head -c 100000 /dev/urandom >"$BATS_TEST_TMPDIR/in"
    echo_through_server "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
    cmp "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out"
    # ...and SIGTERM ends it.
    stopped_within 2
    exec {LOG_FD}<&-
}

# ---- standard streams ---------------------------------------------------------

@test "started with stdin and stderr closed, no client's echo carries another client's error line" {
    # Without keep_std_fds_open(), the listening socket would be descriptor
    # 0 and the first client's socket descriptor 2, "stderr": the error
    # line about the second client would be sent to the first.
    # shellcheck disable=SC2016 # the inner sh expands $@
    start_server sh -c 'exec "$@" <&- 2>&-' sh "$SERVER" -p 0

    # The first client: the chapter 03 client, its stdin a FIFO we hold.
    local fifo="$BATS_TEST_TMPDIR/in.fifo" in_fd
    mkfifo "$fifo"
    exec {in_fd}<>"$fifo"
    # shellcheck disable=SC2016 # the inner sh expands $0 and $@
    lab_spawn first sh -c 'exec "$@" <"$0"' "$fifo" "$LAB_CLIENT" -p "$SERVER_PORT"
    local first=$LAB_PID
    wait_for accepted_is 1
    # The second client resets: the server logs "read ...: Connection
    # reset by peer" (or "write ...") on its stderr, then "closed".
    timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" reset 100000
    wait_for closed_is 1
    # Now the first client sends a line and half-closes: its echo must be
    # that line and nothing else.
    echo "only this line" >&"$in_fd"
    exec {in_fd}>&-
    lab_wait_gone "$first"
    echo "the first client received:" >&2
    cat "$BATS_TEST_TMPDIR/first.out" >&2
    [ "$(cat "$BATS_TEST_TMPDIR/first.out")" = "only this line" ]
    # Where the error lines went: nowhere, as the starter chose.
    [ "$(readlink "/proc/$SERVER_PID/fd/2")" = /dev/null ]
    stop_server
}

# ---- libc and threads ----------------------------------------------------------

# Functions that POSIX does not require to be thread-safe (man 7 pthreads)
# and that a server's threads could be tempted to call: the error text
# (strerror's buffer may be shared by all threads), time, addresses, names.
MT_UNSAFE="strerror strtok localtime gmtime ctime asctime inet_ntoa
gethostbyname gethostbyaddr getservbyname rand readdir strsignal"

@test "neither program links a libc function that is unsafe in threads (strerror, ...)" {
    command -v nm >/dev/null || skip "nm (binutils) is not installed"
    local prog fn found=""
    for prog in "$SERVER" "$RACE"; do
        for fn in $MT_UNSAFE; do
            if nm -D --undefined-only "$prog" | grep -Eq "[[:space:]]${fn}(@|\$)"; then
                found+=" ${prog##*/}:$fn"
            fi
        done
    done
    echo "found:${found:- none}"
    [ -z "$found" ]
}
