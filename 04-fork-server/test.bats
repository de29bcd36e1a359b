#!/usr/bin/env bats
# Chapter 04: a child process per client. The server contract's lines (echo,
# bad options, SIGTERM, misbehaving peers...) are checked for every server
# by tests/server.bats; this file checks what forking adds: one child per
# client, the right descriptors closed on each side, every child reaped
# (and, with -z, none), and no child left behind when the server stops.
load ../tests/lib

SERVER="$BATS_TEST_DIRNAME/server"

# lib.bash's teardown, and the copy of the server the EAGAIN test may make.
teardown() {
    lab_cleanup
    if [ -n "${NOBODY_DIR:-}" ]; then rm -rf "$NOBODY_DIR"; fi
}

# socket_inodes PID: the inode numbers of the sockets PID holds, one a line,
# read from its /proc/PID/fd links ("socket:[53866]").
socket_inodes() {
    local link
    for link in /proc/"$1"/fd/*; do
        link=$(readlink "$link") || continue
        case $link in
        socket:\[*\]) link=${link#socket:[} && echo "${link%]}" ;;
        esac
    done
}

# listening_inode PORT / connected_inodes PORT: the inodes of the socket
# listening on PORT and of the server's ends of its connections, as ss -e
# shows them.
listening_inode() {
    ss -Hltne "sport = :$1" | grep -o 'ino:[0-9]*' | cut -d: -f2
}
connected_inodes() {
    ss -Htne state established "sport = :$1" | grep -o 'ino:[0-9]*' |
        cut -d: -f2 | sort
}

child_count_is() {
    [ "$(children_of "$SERVER_PID" | wc -l)" -eq "$1" ]
}
zombie_count_is() {
    [ "$(zombie_children_of "$SERVER_PID")" -eq "$1" ]
}
closed_lines_are() {
    # shellcheck disable=SC2153 # SERVER_OUT is set by start_server
    [ "$(count_lines "$SERVER_OUT" '^closed ')" -eq "$1" ]
}
connected_count_is() {
    [ "$(connected_inodes "$1" | wc -l)" -eq "$2" ]
}
listen_queue_is() {
    [ "$(listen_queue "$1")" -eq "$2" ]
}
# blocked_writing_pipe PID: PID sleeps in the kernel's pipe write, waiting
# for room (/proc/PID/wchan names the kernel function it sleeps in).
blocked_writing_pipe() {
    [[ $(cat "/proc/$1/wchan" 2>/dev/null) == *pipe_write ]]
}

# connect_idle N: N clients that connect and send nothing, each with its
# own child process once the server has accepted it.
connect_idle() {
    local i
    for ((i = 0; i < $1; i++)); do
        lab_spawn "idle$i" "$LAB_PEER" -p "$SERVER_PORT" idle
    done
}

# build_slot_wait_shim: an LD_PRELOAD library (in $SHIM) that sends its
# process SIGTERM once, just before the first wait for signals only: a
# sigsuspend(), or a ppoll() that watches no descriptor. That is where the
# server waits for a free slot, and a stop that lands just before the wait
# must not be lost. (A signal sent from outside almost never hits that
# moment; this hits it every time.)
build_slot_wait_shim() {
    SHIM="$BATS_TEST_TMPDIR/slot_wait_shim.so"
    cc -shared -fPIC -o "$SHIM" -x c - -ldl <<'SHIM'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

static int sent;

static void stop_once(void)
{
    if (!sent) {
        sent = 1;
        kill(getpid(), SIGTERM);
    }
}

int sigsuspend(const sigset_t *mask)
{
    int (*real)(const sigset_t *) =
        (int (*)(const sigset_t *))dlsym(RTLD_NEXT, "sigsuspend");
    stop_once();
    return real(mask);
}

int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
          const sigset_t *mask)
{
    int (*real)(struct pollfd *, nfds_t, const struct timespec *,
                const sigset_t *) =
        (int (*)(struct pollfd *, nfds_t, const struct timespec *,
                 const sigset_t *))dlsym(RTLD_NEXT, "ppoll");
    nfds_t watched = 0;
    for (nfds_t i = 0; i < n; i++)
        if (fds[i].fd >= 0)
            watched++;
    if (watched == 0)
        stop_once();
    return real(fds, n, timeout, mask);
}
SHIM
}

# no_process_left PID...: none of these processes exists any more, not even
# as a zombie: the server waited for all of them before it exited.
no_process_left() {
    local pid
    for pid in "$@"; do
        if [ -e "/proc/$pid" ]; then
            echo "process $pid is still there:" >&2
            ps -o pid,ppid,stat,cmd -p "$pid" >&2
            return 1
        fi
    done
}

@test "each client gets its own child; the parent keeps only the listening socket, each child only its connection" {
    start_server "$SERVER" -p 0
    connect_idle 3
    wait_for child_count_is 3
    # (the parent prints "accepted" before it forks)
    [ "$(count_lines "$SERVER_OUT" '^accepted ')" -eq 3 ]

    listen_ino=$(listening_inode "$SERVER_PORT")
    [ -n "$listen_ino" ]
    wait_for connected_count_is "$SERVER_PORT" 3

    # The parent: the listening socket and nothing else.
    run socket_inodes "$SERVER_PID"
    echo "parent's sockets: $output; listening: $listen_ino"
    [ "$output" = "$listen_ino" ]

    # Each child: exactly one socket, a connected one, and not the listener.
    held=()
    for child in $(children_of "$SERVER_PID"); do
        run socket_inodes "$child"
        echo "child $child's sockets: $output"
        [ "${#lines[@]}" -eq 1 ]
        [ "$output" != "$listen_ino" ]
        held+=("$output")
    done
    # ... and the three children hold the three connections, one each.
    [ "$(printf '%s\n' "${held[@]}" | sort)" = "$(connected_inodes "$SERVER_PORT")" ]
}

@test "after 200 clients have come and gone, the server has no children and no zombies" {
    start_server "$SERVER" -p 0
    run timeout 120 "$LAB_PEER" -p "$SERVER_PORT" cycle 200
    echo "$output"
    [ "$status" -eq 0 ]

    wait_for child_count_is 0
    [ "$(zombie_children_of "$SERVER_PID")" -eq 0 ]
    # One accepted and one closed line per client, none printed twice.
    wait_for closed_lines_are 200
    [ "$(count_lines "$SERVER_OUT" '^accepted ')" -eq 200 ]
}

@test "clients that leave together are all reaped (one SIGCHLD may stand for many)" {
    start_server "$SERVER" -p 0
    connect_idle 50
    wait_for child_count_is 50
    # Hang up all 50 at once: their children exit at nearly the same moment.
    kill -TERM "${LAB_PIDS[@]:1}"
    wait_for child_count_is 0
    wait_for closed_lines_are 50
}

@test "-z: every client that has finished stays a zombie, and ps shows it <defunct>" {
    start_server "$SERVER" -p 0 -z
    run timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" cycle 5
    [ "$status" -eq 0 ]

    wait_for zombie_count_is 5
    child_count_is 5 # five finished clients, five zombies, nothing else
    run ps -o stat=,cmd= --ppid "$SERVER_PID"
    echo "$output"
    [ "${#lines[@]}" -eq 5 ]
    for line in "${lines[@]}"; do
        [[ $line == Z*'<defunct>' ]]
    done
    # Nobody collected them, so the parent has not printed "closed" yet.
    closed_lines_are 0
}

@test "SIGTERM with clients connected: exit status 0 and no child left" {
    start_server "$SERVER" -p 0
    connect_idle 3
    wait_for child_count_is 3
    mapfile -t kids < <(children_of "$SERVER_PID")

    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    no_process_left "${kids[@]}"
    run pgrep -g "$SERVER_PID" # nothing left in the server's process group
    [ "$status" -eq 1 ]
    closed_lines_are 3 # each client still got its "closed" line
}

@test "SIGTERM with -z: the zombies and the running children are all reaped, exit status 0" {
    start_server "$SERVER" -p 0 -z
    run timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" cycle 3
    [ "$status" -eq 0 ]
    connect_idle 2
    wait_for zombie_count_is 3
    wait_for child_count_is 5
    mapfile -t kids < <(children_of "$SERVER_PID")

    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    no_process_left "${kids[@]}"
    run pgrep -g "$SERVER_PID"
    [ "$status" -eq 1 ]
    closed_lines_are 5
}

@test "a child that is killed is reaped and logged; the other clients go on" {
    start_server "$SERVER" -p 0
    lab_spawn victim "$LAB_PEER" -v -p "$SERVER_PORT" idle
    wait_for file_has_line "$BATS_TEST_TMPDIR/victim.out" '^connected ' || {
        cat "$BATS_TEST_TMPDIR/victim.err" "$SERVER_OUT" "$SERVER_ERR"
        false
    }
    victim_addr=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/victim.out")
    wait_for child_count_is 1
    victim_child=$(children_of "$SERVER_PID")
    connect_idle 1
    wait_for child_count_is 2

    kill -KILL "$victim_child"
    wait_for no_process_left "$victim_child" # reaped, not a zombie
    wait_for file_has_line "$SERVER_OUT" "^closed $victim_addr\$"
    child_count_is 1 # the other client's child runs on
    run timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" echo 1000
    [ "$status" -eq 0 ]
}

@test "fork fails (EAGAIN): that client is closed with a log line, and the server serves the next once it can" {
    # RLIMIT_NPROC caps the processes of a user, but not of root: so when
    # we are root, the server runs as nobody. nobody may not be able to
    # reach our server (a clone in /root, mode 700): then it runs a copy,
    # in a directory of its own that everybody may enter.
    server=$SERVER
    as_user=()
    if [ "$(id -u)" -eq 0 ]; then
        command -v setpriv >/dev/null || skip "needs setpriv (util-linux) to run as nobody"
        as_user=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
        if ! "${as_user[@]}" prlimit "$server" -h >/dev/null 2>&1; then
            NOBODY_DIR=$(mktemp -d /tmp/lab04.XXXXXX)
            chmod 755 "$NOBODY_DIR"
            cp "$SERVER" "$NOBODY_DIR/server"
            server=$NOBODY_DIR/server
            "${as_user[@]}" prlimit "$server" -h >/dev/null 2>&1 ||
                skip "nobody cannot run a copy of the server in $NOBODY_DIR (noexec /tmp?)"
        fi
    fi
    LAB_WRAP="${as_user[*]} prlimit --nproc=1:" start_server "$server" -p 0

    run timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" echo 100
    [ "$status" -eq 1 ] # the connection closed without an echo
    wait_for file_has_line "$SERVER_ERR" '^server: fork 127\.0\.0\.1:[0-9]+: .*EAGAIN'
    wait_for closed_lines_are 1
    child_count_is 0

    # Lift the limit: the server never stopped, and the next client is served.
    "${as_user[@]}" prlimit --pid "$SERVER_PID" --nproc="$(ulimit -Hu)":
    run timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" echo 100
    [ "$status" -eq 0 ]
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
}

@test "100 clients connected at once each get their echo, each from its own child" {
    start_server "$SERVER" -p 0 -q
    lab_spawn loadgen "$LAB_LOADGEN" -p "$SERVER_PORT" -c 100 -w -k -q
    loadgen_pid=$LAB_PID
    # 100 connects at once fit the backlog of 128, but 100 forks on a busy
    # 2-core machine take a while (and a full backlog would drop SYNs, sent
    # again a second or more later), so allow loadgen's own limit.
    LAB_WAIT=60 wait_for file_has_line "$BATS_TEST_TMPDIR/loadgen.out" '^holding 100 connections'
    child_count_is 100

    kill -TERM "$loadgen_pid"
    cat "$BATS_TEST_TMPDIR/loadgen.err"
    wait_exit_status "$loadgen_pid"
    [ "$EXIT_STATUS" -eq 0 ]
    file_has_line "$BATS_TEST_TMPDIR/loadgen.out" '^conns=100 requests=100 errors=0 '
    wait_for child_count_is 0
}

@test "-m 2: a third client waits in the backlog until one of the first two leaves" {
    start_server "$SERVER" -p 0 -m 2
    connect_idle 2
    wait_for child_count_is 2
    lab_spawn third "$LAB_PEER" -p "$SERVER_PORT" echo 100
    third=$LAB_PID
    # Connected (the kernel did the handshake) but not accepted.
    wait_for listen_queue_is "$SERVER_PORT" 1
    child_count_is 2
    [ -e "/proc/$third" ]

    kill -TERM "${LAB_PIDS[1]}" # the first idle client leaves
    wait_exit_status "$third"
    [ "$EXIT_STATUS" -eq 0 ]
}

@test "SIGTERM while every slot is taken (-m 1, a client queued): exit 0, no child left" {
    start_server "$SERVER" -p 0 -m 1
    connect_idle 2
    wait_for child_count_is 1
    wait_for listen_queue_is "$SERVER_PORT" 1
    mapfile -t kids < <(children_of "$SERVER_PID")

    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    no_process_left "${kids[@]}"
}

@test "a stop that lands just before the wait for a free slot is not lost" {
    build_slot_wait_shim
    # (verify_asan_link_order=0: ASan wants to be the first library loaded)
    LAB_WRAP="env LD_PRELOAD=$SHIM ASAN_OPTIONS=verify_asan_link_order=0" \
        start_server "$SERVER" -p 0 -m 1
    connect_idle 1 # takes the only slot: the server waits for a free one
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    [ -z "$(pgrep -g "$SERVER_PID")" ]
}

@test "SIGTERM with a child stopped by kill -STOP: the server still ends it and exits 0" {
    start_server "$SERVER" -p 0
    connect_idle 2
    wait_for child_count_is 2
    mapfile -t kids < <(children_of "$SERVER_PID")
    kill -STOP "${kids[0]}"
    wait_for process_state_is "${kids[0]}" T

    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    no_process_left "${kids[@]}"
    closed_lines_are 2
}

@test "a client that resets: the parent logs its child's error, and 'closed'" {
    start_server "$SERVER" -p 0
    lab_spawn resetter "$LAB_PEER" -v -p "$SERVER_PORT" reset 100000
    wait_for file_has_line "$BATS_TEST_TMPDIR/resetter.out" '^connected '
    addr=$(sed -n 's/^connected //p' "$BATS_TEST_TMPDIR/resetter.out")
    wait_for file_has_line "$SERVER_OUT" "^closed $addr\$"
    cat "$SERVER_ERR"
    file_has_line "$SERVER_ERR" "^server: $addr: .*\((ECONNRESET|EPIPE)\)\$"
    child_count_is 0
}

@test "stdout a pipe nobody reads: clients still come and go, are reaped, and SIGTERM still stops the server" {
    fifo="$BATS_TEST_TMPDIR/log"
    mkfifo "$fifo"
    # A reader that takes the first line ("listening on") and then reads
    # nothing more, like a pager nobody scrolls.
    # shellcheck disable=SC2016 # sh -c expands $0 and $1, not us
    lab_spawn reader sh -c 'exec <"$0" && head -n 1 && exec sleep 600' "$fifo"
    # shellcheck disable=SC2016
    lab_spawn server sh -c 'exec "$1" -p 0 >"$0"' "$fifo" "$SERVER"
    SERVER_PID=$LAB_PID
    wait_for file_has_line "$BATS_TEST_TMPDIR/reader.out" '^listening on '
    line=$(cat "$BATS_TEST_TMPDIR/reader.out")
    SERVER_PORT=${line##*:}
    # Fill the pipe: this writer blocks once the pipe is full.
    # shellcheck disable=SC2016
    lab_spawn filler sh -c 'exec head -c 1048576 /dev/zero >"$0"' "$fifo"
    wait_for blocked_writing_pipe "$LAB_PID"

    # Every 'accepted' and 'closed' line now finds the pipe full.
    run timeout "$LAB_WAIT" "$LAB_PEER" -p "$SERVER_PORT" cycle 20
    [ "$status" -eq 0 ]
    wait_for child_count_is 0
    connect_idle 1
    wait_for child_count_is 1

    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    [ "$EXIT_STATUS" -eq 0 ]
    [ -z "$(pgrep -g "$SERVER_PID")" ]
}
