/* signals.c - stopping cleanly on SIGINT/SIGTERM, and surviving SIGPIPE. */
#include "lab.h"

#include <signal.h>
#include <string.h>

/* C11 (7.14.1.1) lets a signal handler write a lock-free atomic object. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free");
atomic_int stop_requested = 0;

/* A handler may only touch such a flag and call async-signal-safe
 * functions (man 7 signal-safety): so it sets a flag and returns. */
static void on_stop_signal(int signo)
{
    (void)signo;
    stop_requested = 1;
}

int catch_stop_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: blocked calls return EINTR */
    if (sigaction(SIGINT, &sa, NULL) == -1 ||
        sigaction(SIGTERM, &sa, NULL) == -1)
        return -1;
    return 0;
}

int ignore_sigpipe(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGPIPE, &sa, NULL);
}

void wait_for_stop_signal(void)
{
    sigset_t stop_signals, old_mask;

    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &stop_signals, &old_mask) == -1)
        die_errno("sigprocmask");
    while (!stop_requested)
        sigsuspend(&old_mask); /* always returns -1 with EINTR */
    if (sigprocmask(SIG_SETMASK, &old_mask, NULL) == -1)
        die_errno("sigprocmask");
}
