/* signals.c - stopping cleanly on SIGINT/SIGTERM, and surviving SIGPIPE. */
#include "lab.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

/* C11 (7.14.1.1) lets a signal handler write a lock-free atomic object. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free");
atomic_int stop_requested = 0;

static sigset_t wait_mask; /* set by block_stop_signals() */

/* A handler may only touch such a flag and call async-signal-safe
 * functions (man 7 signal-safety): so it sets a flag and returns. */
static void on_stop_signal(int signo)
{
    (void)signo;
    stop_requested = 1;
}

static void stop_signal_set(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
}

int catch_stop_signals(void)
{
    struct sigaction sa;
    sigset_t stop_signals;
    int err;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* no SA_RESTART: blocked calls return EINTR */
    if (sigaction(SIGINT, &sa, NULL) == -1 ||
        sigaction(SIGTERM, &sa, NULL) == -1)
        return -1;
    /* The mask is inherited across fork() and exec(): a parent that had
     * blocked these signals would have made us deaf to them. */
    stop_signal_set(&stop_signals);
    err = pthread_sigmask(SIG_UNBLOCK, &stop_signals, NULL);
    if (err != 0) {
        errno = err; /* pthread_ functions return the error number */
        return -1;
    }
    return 0;
}

int block_stop_signals(void)
{
    sigset_t stop_signals;
    int err;

    stop_signal_set(&stop_signals);
    err = pthread_sigmask(SIG_BLOCK, &stop_signals, &wait_mask);
    if (err != 0) {
        errno = err;
        return -1;
    }
    /* Whatever the old mask said, the wait must let the stop signals in. */
    sigdelset(&wait_mask, SIGINT);
    sigdelset(&wait_mask, SIGTERM);
    return 0;
}

bool take_pending_stop(void)
{
    sigset_t pending;

    if (sigpending(&pending) == -1)
        return false; /* cannot fail with a valid pointer (man 2 sigpending) */
    if (sigismember(&pending, SIGINT) != 1 &&
        sigismember(&pending, SIGTERM) != 1)
        return false;
    stop_requested = 1; /* what the handler would have done */
    return true;
}

const sigset_t *stop_wait_mask(void)
{
    return &wait_mask;
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
    if (block_stop_signals() == -1)
        die_errno("pthread_sigmask");
    while (!stop_requested)
        sigsuspend(stop_wait_mask()); /* always returns -1 with EINTR */
    if (pthread_sigmask(SIG_SETMASK, stop_wait_mask(), NULL) != 0)
        die_errno("pthread_sigmask");
}
