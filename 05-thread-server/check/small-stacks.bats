#!/usr/bin/env bats
# exercise: smaller stacks, 64 KiB for every thread (Exercises, 3)
#
# Graded by make check N=5. The student gives every thread the server
# creates a 64 KiB stack (pthread_attr_setstacksize() on the attribute
# that main creates every thread with). Then each idle client's thread adds
# about 68 kB to the server's virtual memory size, VSZ (64 KiB of stack and
# a 4 KiB guard page), instead of 8,196 (the default 8 MiB stack), and so
# does each worker of a -t pool; the server still echoes as before.
#
# A sanitizer's runtime adds memory of its own for every thread (about
# 100 kB with ASan, 1 MiB with TSan): in such a build the check asks only
# that a thread adds less than 2 MiB, which an 8 MiB stack cannot.

load ../../tests/check-lib

SERVER="$LAB_ROOT/05-thread-server/server"
WHERE="Look at main() in 05-thread-server/server.c, where the attribute 'detached' is set up."

# A sanitizer build: its runtime's own per-thread memory counts in VSZ,
# and ThreadSanitizer starts a thread of its own with the first thread.
SANITIZER=""
if grep -qa __tsan_init "$SERVER"; then
    SANITIZER=ThreadSanitizer
elif grep -qa __asan_init "$SERVER"; then
    SANITIZER=AddressSanitizer
fi

# vsz PID: the virtual memory size of PID in kB, as ps shows it.
vsz() {
    ps -o vsz= -p "$1" | tr -d ' '
}

# expect_small_stacks WHAT KB_PER_THREAD: KB_PER_THREAD, VSZ's growth for
# each new thread, is what a 64 KiB stack gives.
expect_small_stacks() {
    local what=$1 per=$2
    echo "$what: VSZ grew by $per kB per thread${SANITIZER:+ ($SANITIZER build)}"
    if [ -n "$SANITIZER" ]; then
        [ "$per" -lt 2048 ] ||
            fail_with "$what: VSZ grew by $per kB per thread: each still has the" \
                "default stack ($(ulimit -s) kB here, ulimit -s). Give every thread a" \
                "64 KiB stack with pthread_attr_setstacksize(). $WHERE"
        return 0
    fi
    [ "$per" -ge 64 ] ||
        fail_with "$what: VSZ grew by only $per kB per thread: less than the" \
            "64 KiB stack the exercise asks for. $WHERE"
    [ "$per" -le 100 ] ||
        fail_with "$what: VSZ grew by $per kB per thread, not about 68 (a 64 KiB stack" \
            "and a 4 KiB guard page)." \
            "The default stack is $(ulimit -s) kB here (ulimit -s): give every thread" \
            "64 KiB with pthread_attr_setstacksize(&detached, 64 * 1024). $WHERE"
}

# stop_cleanly: SIGTERM ends the server, exit status 0, no sanitizer report.
stop_cleanly() {
    kill -TERM "$SERVER_PID"
    wait_exit_status "$SERVER_PID" ||
        fail_with "The server did not exit after SIGTERM."
    if [ "$EXIT_STATUS" -ne 0 ] || grep -q 'Sanitizer' "$SERVER_ERR"; then
        fail_with "After SIGTERM the server exited with status $EXIT_STATUS; its stderr:" \
            "$(grep -m 1 -v '^=*$' "$SERVER_ERR")" \
            "A 64 KiB stack must hold everything a thread puts on it. $WHERE"
    fi
}

@test "20 idle clients: VSZ grows by about 68 kB per thread, not 8,196" {
    start_server "$SERVER" -p 0 -q
    local before after threads
    threads=$(thread_count "$SERVER_PID")
    before=$(vsz "$SERVER_PID")
    # 20 clients that each send one request, check its echo, and hold on.
    lab_spawn loadgen "$LAB_LOADGEN" -p "$SERVER_PORT" -c 20 -w -k
    wait_for file_has_line "$BATS_TEST_TMPDIR/loadgen.out" '^holding 20 ' ||
        fail_with "20 clients did not all get their echo from 'server -p 0 -q':" \
            "$(head -n 1 "$BATS_TEST_TMPDIR/loadgen.err")" \
            "The server said: $(grep -m 1 -v '^=*$' "$SERVER_ERR")" \
            "A 64 KiB stack must hold everything a thread puts on it. $WHERE"
    wait_for thread_count_is "$SERVER_PID" $((threads + 20))
    after=$(vsz "$SERVER_PID")
    expect_small_stacks "20 idle clients" $(((after - before) / 20))
    stop_cleanly
}

@test "-t: each worker has a 64 KiB stack too" {
    local one many
    start_server "$SERVER" -p 0 -q -t 1
    one=$(vsz "$SERVER_PID")
    stop_cleanly
    start_server "$SERVER" -p 0 -q -t 21
    many=$(vsz "$SERVER_PID")
    expect_small_stacks "-t 21 against -t 1" $(((many - one) / 20))
    # The workers serve as before: 100 kB come back unchanged.
    head -c 100000 /dev/urandom >"$BATS_TEST_TMPDIR/in"
    echo_through_server "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out" ||
        fail_with "With -t 21, a client sending 100 kB got no echo:" \
            "$(grep -m 1 -v '^=*$' "$SERVER_ERR")"
    cmp -s "$BATS_TEST_TMPDIR/in" "$BATS_TEST_TMPDIR/out" ||
        fail_with "With -t 21, a client sending 100 kB got other bytes back."
    stop_cleanly
}
