/*
 * sigblock - run a program with SIGINT and SIGTERM blocked, for the tests.
 *
 *   sigblock PROGRAM [ARG...]
 *
 * A process inherits its signal mask across fork() and execve() (man 7
 * signal), so a parent can start a program with signals blocked without
 * the program knowing: a shell's `trap` cannot do it, this can. A server
 * that catches SIGTERM must unblock it too, or a blocked SIGTERM just stays
 * pending and the server never stops.
 */
#include "lab.h"

#include <signal.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    sigset_t stop_signals;

    set_program_name(argv[0]);
    if (argc < 2)
        usage_error("usage: sigblock PROGRAM [ARG...]\n", "no program");
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stop_signals, NULL) == -1)
        die_errno("sigprocmask");
    execvp(argv[1], argv + 1);
    die_errno("execvp %s", argv[1]);
}
