#!/usr/bin/env bats
# exercise: a socket type TCP/IP does not have (Exercises, 1)
#
# Graded by make check N=1. The student adds socket(AF_INET,
# SOCK_SEQPACKET, 0) to the nonsense table of 01-socket/sockets.c; the
# program then shows the call failing with errno 94, ESOCKTNOSUPPORT.

load ../../tests/check-lib

SOCKETS="$LAB_ROOT/01-socket/sockets"
CALL="socket(AF_INET, SOCK_SEQPACKET, 0)"

@test "the SOCK_SEQPACKET row fails with errno 94, \"Socket type not supported\"" {
    run_output "$SOCKETS"
    [ "$RUN_STATUS" -eq 0 ] ||
        fail_with "./01-socket/sockets exited with status $RUN_STATUS: $RUN_ERR" \
            "Run it yourself and read what it says."
    local row
    # The row and the line below it. (Spaces after the commas may vary.)
    row=$(grep -A 1 -E '^  socket\(AF_INET, *SOCK_SEQPACKET, *0\) +=' <<<"$RUN_OUT") ||
        fail_with "./01-socket/sockets prints no row for $CALL." \
            "Add {AF_INET, SOCK_SEQPACKET, 0, \"$CALL\", \"...\"} to the" \
            "nonsense table in 01-socket/sockets.c, then make chapter 1."
    echo "$row"
    # errno_name() (common/error.c) knows no name for 94 and prints
    # "errno 94"; a student who adds the name gets ESOCKTNOSUPPORT.
    [[ "$row" =~ \)\ +=\ -1\ +errno\ (errno\ 94|ESOCKTNOSUPPORT)\ *$'\n' ]] ||
        fail_with "The row should report -1 and errno 94 (ESOCKTNOSUPPORT); it reads:" \
            "${row%%$'\n'*}" \
            "Check the three arguments: AF_INET, SOCK_SEQPACKET, 0."
    [[ "$row" == *'"Socket type not supported"'* ]] ||
        fail_with "The line under the row should give strerror(94):" \
            "\"Socket type not supported\"; it reads: ${row#*$'\n'}"
    [[ "$RUN_OUT" != *"(unexpected: this kernel accepted it)"* ]] ||
        fail_with "A call in the nonsense table returned a descriptor:" \
            "$(grep -B 1 -F '(unexpected' <<<"$RUN_OUT" | head -n 1)"
}
