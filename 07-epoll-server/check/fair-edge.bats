#!/usr/bin/env bats
# exercise: fair edge-triggered: at most 4 reads a turn (Going deeper: more exercises, 1)
#
# Graded by make check N=7. With -e the server drains a ready client until
# EAGAIN, so one busy client holds the loop while the others wait. The
# student caps the drain at 4 reads a turn and keeps a list of clients that
# still have data (epoll will not report them again), served in the next
# round, before the loop sleeps. The check traces the server as the lesson
# does (strace -e trace=read), with -B 4, and sends echoes through it.

load ../../tests/check-lib

SERVER="$LAB_ROOT/07-epoll-server/server"
CAP=4
WHERE=("Look at read_input() in 07-epoll-server/server.c: its do { } while (keep_going())"
    "reads until EAGAIN in edge-triggered mode.")

# max_reads_per_turn TRACE: the most read() calls on one descriptor between
# two epoll waits, in an strace log (from the first wait on: start-up reads
# files). Sets MAX_FD to that descriptor; prints the count.
max_reads_per_turn() {
    awk '
        /^epoll_(p)?wait/ { started = 1; for (fd in n) delete n[fd]; next }
        started && /^(read|recvfrom)\(/ {
            fd = substr($0, index($0, "(") + 1) + 0
            if (++n[fd] > max) { max = n[fd]; max_fd = fd }
        }
        END { print max + 0, max_fd + 0 }' "$1"
}

@test "-e -B 4: a 16 KiB echo comes back whole, with at most 4 reads of it between two epoll waits" {
    command -v strace >/dev/null ||
        fail_with "This check traces the server with strace, which is not installed:" \
            "the README's apt-get line installs it."
    local trace="$BATS_TEST_TMPDIR/trace"
    start_server strace -qq -o "$trace" -e signal=none \
        -e trace=read,recvfrom,epoll_wait,epoll_pwait,epoll_pwait2 \
        "$SERVER" -e -B 4 -q -p 0 ||
        fail_with "'strace ... server -e -B 4 -q -p 0' did not start (see above)."
    run_output "$LAB_PEER" -p "$SERVER_PORT" echo 16384
    local why=$RUN_ERR
    [ "$RUN_STATUS" -ne 124 ] || why="after ${LAB_WAIT}s the client still waited for the rest"
    [ "$RUN_STATUS" -eq 0 ] ||
        fail_with "16 KiB sent with -e -B 4 did not all come back: $why." \
            "A client left with data after its $CAP reads is reported by epoll no more" \
            "(edge-triggered): keep it on a list of clients to read again, and" \
            "while that list is not empty, call epoll_pwait() with timeout 0."
    # Stop strace and its server, so that the whole trace is written.
    kill -TERM -- "-$SERVER_PID"
    wait_exit_status "$SERVER_PID"
    local waits max fd
    waits=$(grep -c '^epoll_' "$trace") || true
    [ "$waits" -gt 0 ] ||
        fail_with "strace saw no epoll_wait() or epoll_pwait() call in the server." \
            "Does the loop still wait in epoll_pwait()?"
    read -r max fd < <(max_reads_per_turn "$trace")
    lab_note "$waits epoll waits; at most $max reads of one client between two"
    [ "$max" -ge 1 ] ||
        fail_with "strace saw the server read nothing from the client after its first" \
            "epoll wait: does it read with read() or recv()?"
    [ "$max" -le "$CAP" ] ||
        fail_with "Between two epoll waits the server read descriptor $fd $max times:" \
            "the cap is $CAP reads a turn." "${WHERE[@]}" \
            "(Twice the cap? A client the cap put on the list gets its next turn" \
            "after the next epoll_pwait(), not again in the round that put it there.)"
}

@test "-e -B 4: three clients at once and one that half-closes all get their whole echo" {
    start_server "$SERVER" -e -B 4 -q -p 0 ||
        fail_with "'server -e -B 4 -q -p 0' did not start; it said: $(head -n 2 "$SERVER_ERR")" \
            "Run it yourself: ./07-epoll-server/server -e -B 4 -q -p 0"
    local pids=() i
    for i in 1 2 3; do
        lab_spawn "echo$i" "$LAB_PEER" -p "$SERVER_PORT" echo 100000
        pids+=("$LAB_PID")
    done
    # owed: sends it all without reading, half-closes, and only then reads.
    lab_spawn owed "$LAB_PEER" -p "$SERVER_PORT" owed 100000
    pids+=("$LAB_PID")
    local names=(echo1 echo2 echo3 owed)
    for i in 0 1 2 3; do
        wait_exit_status "${pids[i]}" ||
            fail_with "Client ${names[i]} (tests/peer ${names[i]%[0-9]} 100000) was not done within" \
                "${LAB_WAIT}s: a client that still had data was not read again." \
                "Is every client the cap leaves with data on the list, and does the" \
                "loop serve the list before it sleeps?"
        [ "$EXIT_STATUS" -eq 0 ] ||
            fail_with "Client ${names[i]} did not get its 100,000 bytes back whole:" \
                "$(head -n 1 "$BATS_TEST_TMPDIR/${names[i]}.err")" \
                "A client that half-closed must still get all it is owed."
    done
}
