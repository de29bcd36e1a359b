#!/usr/bin/env bats
# 07-epoll-server/test.bats - what chapter 07's epoll server adds.
#
# tests/run also runs the shared tests (tests/server.bats) against this
# server twice: level-triggered (no option) and edge-triggered (-e). The
# tests here run most checks in both modes too: "LT" and "ET" in a name.

load ../tests/lib

SERVER="$LAB_ROOT/07-epoll-server/server"

# ---- helpers ------------------------------------------------------------------

# mode_args LT|ET: the server options for a mode.
mode_args() {
    if [ "$1" = ET ]; then printf '%s\n' -e; fi
}

# serve_mode LT|ET [ARG...]: start the server in that mode on a free port.
serve_mode() {
    local mode=$1
    shift
    # shellcheck disable=SC2046 # mode_args prints nothing or one word
    start_server "$SERVER" $(mode_args "$mode") -p 0 "$@"
}

# rss_kib PID: the resident memory of PID, in KiB (VmRSS in /proc/PID/status).
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# cpu_ticks PID: user + system CPU time of PID, in clock ticks (/proc/PID/stat
# fields 14 and 15; the command name in parentheses may hold spaces).
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat") || return 1
    read -ra fields <<<"${stat##*) }" # fields[0] is field 3, the state
    echo $((fields[11] + fields[12]))
}

# queues PORT_A PORT_B: "Recv-Q Send-Q" of the local socket PORT_A whose
# peer is PORT_B, as ss shows them.
queues() {
    ss -Htn "sport = :$1 and dport = :$2" | awk '{ print $2, $3; exit }'
}

# peer_port FILE: the local port a peer printed on its "connected" line.
peer_port() {
    sed -n 's/^connected .*://p' "$1"
}

# start_peer NAME MODE [BYTES]: a tests/peer client, waited for until its
# connection is established and the server has accepted it.
start_peer() {
    local name=$1
    shift
    lab_spawn "$name" "$LAB_PEER" -v -p "$SERVER_PORT" "$@"
    if ! wait_for peer_connected "$name" "$LAB_PID"; then
        echo "peer $name did not connect; its stderr:" >&2
        cat "$BATS_TEST_TMPDIR/$name.err" >&2
        return 1
    fi
    wait_for file_has_line "$SERVER_OUT" \
        "^accepted 127\.0\.0\.1:$(peer_port "$BATS_TEST_TMPDIR/$name.out")\$"
}

# peer_connected NAME PID: the peer printed its "connected" line; fails at
# once (status 2) if it exited instead.
peer_connected() {
    file_has_line "$BATS_TEST_TMPDIR/$1.out" '^connected ' && return 0
    process_gone "$2" && return 2
    return 1
}

echo_line_works() {
    local reply
    reply=$(printf 'hello, epoll\n' | timeout "$LAB_WAIT" "$LAB_CLIENT" \
        -p "$SERVER_PORT")
    [ "$reply" = "hello, epoll" ]
}

# ---- many clients, and clients that misbehave --------------------------------

# 100 clients at once, each sending 100 requests of 10,000 bytes.
hundred_clients() {
    serve_mode "$1" -q
    run timeout 60 "$LAB_LOADGEN" -q -p "$SERVER_PORT" -c 100 -w -s 10000 -n 100
    echo "$output"
    [ "$status" -eq 0 ]
    [[ $output == *"requests=10000 errors=0"* ]]
}

@test "LT: 100 clients at once, 100 echoes of 10,000 bytes each" {
    hundred_clients LT
}

@test "ET: 100 clients at once, 100 echoes of 10,000 bytes each" {
    hundred_clients ET
}

# Three bad clients at once: one sends nothing, one half a message, one
# 64 MiB without ever reading. Another client's echo still comes back.
bad_clients_do_not_delay() {
    serve_mode "$1"
    start_peer idle idle
    start_peer partial partial 5
    start_peer flood flood 67108864
    FLOOD_PORT=$(peer_port "$BATS_TEST_TMPDIR/flood.out")
    wait_for flood_stalled
    echo_line_works
    timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" echo 1048576
}

# True once the flooding peer is blocked: the server stopped reading it
# (its socket's Recv-Q holds bytes) and the peer's Send-Q is full, and both,
# with the server's memory, have stayed the same for five looks in a row.
flood_stalled() {
    local now
    now="$(queues "$SERVER_PORT" "$FLOOD_PORT") $(queues "$FLOOD_PORT" "$SERVER_PORT") $(rss_kib "$SERVER_PID")"
    if [ "$now" != "${FLOOD_LAST:-}" ]; then
        FLOOD_LAST=$now
        FLOOD_SAME=0
        return 1
    fi
    FLOOD_SAME=$((FLOOD_SAME + 1))
    [ "$FLOOD_SAME" -ge 5 ]
}

@test "LT: an idle, a stalled and a 64 MiB non-reading client do not delay another" {
    bad_clients_do_not_delay LT
}

@test "ET: an idle, a stalled and a 64 MiB non-reading client do not delay another" {
    bad_clients_do_not_delay ET
}

# The output buffer is bounded: a client that sends 64 MiB and reads none
# of it grows the server by less than a few MiB, because once its buffer is
# full the server stops reading it and the data waits in the kernel.
flood_memory_bounded() {
    serve_mode "$1"
    local before after server_queues
    before=$(rss_kib "$SERVER_PID")
    start_peer flood flood 67108864
    FLOOD_PORT=$(peer_port "$BATS_TEST_TMPDIR/flood.out")
    wait_for flood_stalled
    after=$(rss_kib "$SERVER_PID")
    server_queues=$(queues "$SERVER_PORT" "$FLOOD_PORT")
    echo "server VmRSS: $before KiB before, $after KiB after"
    echo "server socket Recv-Q Send-Q: $server_queues"
    # The server stopped reading: the rest waits in its receive queue.
    [ "${server_queues%% *}" -gt 0 ]
    [ $((after - before)) -lt 4096 ]
}

@test "LT: a 64 MiB non-reader grows the server's memory by less than 4 MiB" {
    flood_memory_bounded LT
}

@test "ET: a 64 MiB non-reader grows the server's memory by less than 4 MiB" {
    flood_memory_bounded ET
}

# ---- big and tiny reads ---------------------------------------------------------

@test "ET: a 16 MiB echo comes back whole" {
    serve_mode ET -q
    timeout 60 "$LAB_PEER" -p "$SERVER_PORT" echo 16777216
}

@test "LT: a 16 MiB echo comes back whole" {
    serve_mode LT -q
    timeout 60 "$LAB_PEER" -p "$SERVER_PORT" echo 16777216
}

# With -B 3 every read takes at most 3 bytes, so each arrival leaves bytes
# behind. Level-triggered, epoll reports the socket again; edge-triggered,
# only the drain loop fetches them: without it the echo would stall.
@test "LT: -B 3 (3-byte reads): 100,000 bytes still echo exactly" {
    serve_mode LT -q -B 3
    timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" echo 100000
}

@test "ET: -B 3 (3-byte reads): 100,000 bytes still echo exactly" {
    serve_mode ET -q -B 3
    timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" echo 100000
}

# shellcheck disable=SC2154 # run --separate-stderr sets stderr_lines
@test "-B 0 and -B 20000 are refused with the value named" {
    run --separate-stderr "$SERVER" -B 0
    [ "$status" -eq 2 ]
    [[ ${stderr_lines[0]} == *"'0'"* ]]
    run --separate-stderr "$SERVER" -B 20000
    [ "$status" -eq 2 ]
    [[ ${stderr_lines[0]} == *"'20000'"* ]]
}

# ---- ten thousand clients --------------------------------------------------------

ten_thousand() {
    local want=10240 hard
    hard=$(ulimit -Hn)
    if [ "$hard" != unlimited ] && [ "$hard" -lt "$want" ]; then
        skip "needs 'ulimit -n $want' for 10,000 connections; the hard limit here is $hard (raise it in /etc/security/limits.conf)"
    fi
    local LAB_WAIT=100 # 10,000 handshakes take a few seconds, more under ASan
    # shellcheck disable=SC2046
    start_server_with_fd_limit "$want" "$SERVER" $(mode_args "$1") -p 0 -q
    local base
    base=$(fd_count "$SERVER_PID")
    # loadgen raises its own limit. -w: all connections are open before
    # any sends; -k: then hold them all until SIGTERM.
    lab_spawn loadgen "$LAB_LOADGEN" -q -p "$SERVER_PORT" -c 10000 -w -k
    local loadgen=$LAB_PID
    wait_for holding_all "$loadgen"
    echo "server fds: $base before, $(fd_count "$SERVER_PID") while held"
    [ "$(fd_count "$SERVER_PID")" -ge $((base + 10000)) ]
    kill -TERM "$loadgen"
    wait_exit_status "$loadgen"
    cat "$BATS_TEST_TMPDIR/loadgen.out" "$BATS_TEST_TMPDIR/loadgen.err"
    [ "$EXIT_STATUS" -eq 0 ]
    file_has_line "$BATS_TEST_TMPDIR/loadgen.out" 'requests=10000 errors=0'
    # Every connection closed: the server holds what it held before.
    wait_for fd_count_is "$SERVER_PID" "$base"
}

# fd_count_at_least PID N: PID holds N descriptors or more.
fd_count_at_least() {
    [ "$(fd_count "$1")" -ge "$2" ]
}

# True once loadgen says it holds them all; fails at once if it died.
holding_all() {
    file_has_line "$BATS_TEST_TMPDIR/loadgen.out" '^holding 10000 connections' &&
        return 0
    process_gone "$1" && return 2
    return 1
}

@test "LT: 10,000 clients at once are all served, then every descriptor comes back" {
    ten_thousand LT
}

@test "ET: 10,000 clients at once are all served, then every descriptor comes back" {
    ten_thousand ET
}

# ---- out of descriptors ----------------------------------------------------------

# With 16 descriptors the server runs out after about 11 clients. It must
# then neither spin (the listener stays readable, so a loop that retries
# accept() at once burns a whole core) nor drop anybody: the extra clients
# wait in the backlog and are served as soon as descriptors come back.
emfile_no_spin() {
    # shellcheck disable=SC2046
    start_server_with_fd_limit 16 "$SERVER" $(mode_args "$1") -p 0
    local i
    for i in $(seq 14); do
        lab_spawn "idle$i" "$LAB_PEER" -v -p "$SERVER_PORT" idle
    done
    for i in $(seq 14); do
        wait_for file_has_line "$BATS_TEST_TMPDIR/idle$i.out" '^connected '
    done
    # Every descriptor is in use (valgrind would add its own).
    wait_for fd_count_at_least "$SERVER_PID" 16
    # A client that arrives now waits in the backlog for its echo.
    lab_spawn waiting "$LAB_PEER" -p "$SERVER_PORT" echo 1000
    local waiting=$LAB_PID

    # Measure one second of the server's life: CPU time and log lines.
    local cpu0 cpu1 lines0 lines1 t0 t1
    cpu0=$(cpu_ticks "$SERVER_PID")
    lines0=$(count_lines "$SERVER_ERR" EMFILE)
    t0=${EPOCHREALTIME/./}
    sleep 1 # the measuring window; nothing is waited for here
    cpu1=$(cpu_ticks "$SERVER_PID")
    lines1=$(count_lines "$SERVER_ERR" EMFILE)
    t1=${EPOCHREALTIME/./}
    local ms=$(((t1 - t0) / 1000)) tick_ms=$((1000 / $(getconf CLK_TCK)))
    echo "in $ms ms: $(((cpu1 - cpu0) * tick_ms)) ms of CPU, $((lines1 - lines0)) EMFILE lines"
    # A spinning server uses most of a core; this one wakes ten times a
    # second. Allow a quarter of the window, and a log line per 50 ms.
    [ $(((cpu1 - cpu0) * tick_ms)) -lt $((ms / 4)) ]
    # It said why it stopped accepting, but did not flood the log.
    file_has_line "$SERVER_ERR" '^server: accept: .*EMFILE'
    [ $((lines1 - lines0)) -le $((ms / 50 + 1)) ]
    kill -0 "$SERVER_PID"

    # Descriptors come back: the waiting client is served, not dropped.
    for i in $(seq 14); do
        kill -TERM "-${LAB_PIDS[$i]}"
    done
    wait_exit_status "$waiting"
    [ "$EXIT_STATUS" -eq 0 ]
    echo_line_works
}

@test "LT: out of descriptors, it does not spin and serves the waiting client after" {
    emfile_no_spin LT
}

@test "ET: out of descriptors, it does not spin and serves the waiting client after" {
    emfile_no_spin ET
}

# ---- idle clients, and a log nobody reads ----------------------------------------

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

# A backlog of echo makes the server ask for EPOLLOUT. Once it has drained,
# the server must stop asking: level-triggered, a writable socket is
# reported by every epoll_wait(), so a server that kept EPOLLOUT would
# never sleep again while the client sits idle.
idle_after_backlog() {
    serve_mode "$1" -q
    # One client sends 8 MiB without reading, until the server holds a
    # full buffer of echo for it and stops reading; on a line from the
    # test it reads all 8 MiB back, then sits idle, connected.
    local go=$BATS_TEST_TMPDIR/go
    mkfifo "$go"
    # shellcheck disable=SC2016 # $0, $1 and $2 are the inner bash's
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
    # One second of the server's life with that client idle.
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

@test "LT: an idle client costs no CPU after its backlog of echo has drained" {
    idle_after_backlog LT
}

@test "ET: an idle client costs no CPU after its backlog of echo has drained" {
    idle_after_backlog ET
}

# Its stdout is a pipe whose reader takes the "listening on" line and then
# never reads again, so the pipe (64 KiB) fills with log lines. The server
# must neither block on them (it would stop serving) nor, blocked with its
# stop signals held back outside epoll_pwait(), ignore SIGTERM.
stalled_log() {
    local fifo=$BATS_TEST_TMPDIR/log
    mkfifo "$fifo"
    # shellcheck disable=SC2016 # $0 and $@ are the inner bash's
    lab_spawn reader bash -c 'exec <"$0" && IFS= read -r line &&
        printf "%s\n" "$line" && exec sleep 1000' "$fifo"
    # shellcheck disable=SC2016,SC2046
    lab_spawn server bash -c 'exec "$@" >"$0"' "$fifo" "$SERVER" \
        $(mode_args "$1") -p 0
    local pid=$LAB_PID port
    wait_for file_has_line "$BATS_TEST_TMPDIR/reader.out" '^listening on '
    port=$(sed -n 's/^listening on .*://p' "$BATS_TEST_TMPDIR/reader.out")
    # 3,000 clients one after another: 6,000 lines, about 140 KiB.
    timeout 60 "$LAB_PEER" -p "$port" cycle 3000
    timeout "$LAB_WAIT" "$LAB_PEER" -p "$port" echo 100000
    kill -TERM "$pid"
    lab_wait_gone "$pid" 3
}

@test "LT: a log reader that stalls: the server still serves, and SIGTERM still stops it" {
    stalled_log LT
}

@test "ET: a log reader that stalls: the server still serves, and SIGTERM still stops it" {
    stalled_log ET
}
