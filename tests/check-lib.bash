# tests/check-lib.bash - what the graded exercises' checks share. A check
# is a bats file in a chapter's check/ folder, one per exercise; it loads
#     load ../../tests/check-lib
# and says what it grades on its second line:
#     # exercise: the title tests/check prints
#
# A check asserts what a student would see by hand, and when it fails it
# says what is wrong and where to look, with fail_with. tests/check shows
# those lines under "not yet"; make check N=K runs them.

# Everything the chapter tests have: lab_spawn, start_server, wait_for...
# shellcheck source=tests/lib.bash
source "$(dirname "${BASH_SOURCE[0]}")/lib.bash"

# fail_with LINE...: fail the check and tell the student why, one argument
# a line: what is wrong first, then where to look. Use it as
#     [ "$fd" -ge 3 ] || fail_with "..." "..."
# (bats ends the test at the first command that fails.)
fail_with() {
    printf '>> %s\n' "$@"
    return 1
}

# run_output CMD...: run CMD (bounded: a program that should end at once
# but waits is stopped) and set RUN_STATUS, RUN_OUT and RUN_ERR (its stdout
# and stderr, kept apart).
# shellcheck disable=SC2034 # RUN_STATUS, RUN_OUT and RUN_ERR are for the caller
run_output() {
    RUN_STATUS=0
    timeout "$LAB_WAIT" "$@" >"$BATS_TEST_TMPDIR/run.out" \
        2>"$BATS_TEST_TMPDIR/run.err" 3>&- || RUN_STATUS=$?
    RUN_OUT=$(cat "$BATS_TEST_TMPDIR/run.out")
    RUN_ERR=$(cat "$BATS_TEST_TMPDIR/run.err")
}
