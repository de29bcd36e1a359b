/*
 * signals.c - chapter 04: what a signal is, in five steps.
 *
 *   1. every signal has a disposition; SIG_DFL means its default action,
 *      which for SIGUSR1 is to end the process (seen in a child)
 *   2. a handler replaces the default action
 *   3. a blocked signal is not lost: it stays pending
 *   4. but a standard signal is not queued: sent three times while
 *      blocked, it is delivered once
 *   5. a handler that runs while a call is blocked makes the call fail
 *      with EINTR (unless SA_RESTART)
 *
 * The handlers only count: see README ("What a handler may do").
 */
#include "lab.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_int usr1_count; /* lock-free (common/signals.c checks) */

static void on_usr1(int signo)
{
    (void)signo;
    usr1_count++; /* an atomic increment: safe in a handler */
}

static void on_alarm(int signo)
{
    (void)signo; /* nothing to do: being run is the point */
}

static void catch_signal(int signo, void (*handler)(int), int flags)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = flags;
    if (sigaction(signo, &sa, NULL) == -1)
        die_errno("sigaction %d", signo);
}

static void set_usr1_blocked(bool blocked)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    if (sigprocmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL) == -1)
        die_errno("sigprocmask");
}

int main(int argc, char **argv)
{
    struct sigaction old;
    sigset_t pending;
    int fds[2], status;
    char byte;
    pid_t pid;

    (void)argc;
    set_program_name(argv[0]);
    keep_std_fds_open();
    if (setvbuf(stdout, NULL, _IOLBF, 0) != 0) /* no buffer for fork() */
        die_errno("setvbuf stdout");
    set_usr1_blocked(false); /* whatever mask our parent gave us */

    /* 1. The disposition: SIG_DFL, SIG_IGN or a handler. */
    if (sigaction(SIGUSR1, NULL, &old) == -1) /* NULL: only ask */
        die_errno("sigaction");
    printf("1. SIGUSR1's disposition: %s\n",
           old.sa_handler == SIG_DFL   ? "SIG_DFL (the default action)"
           : old.sa_handler == SIG_IGN ? "SIG_IGN (ignored)"
                                       : "a handler");
    pid = fork();
    if (pid == -1)
        die_errno("fork");
    if (pid == 0) {
        raise(SIGUSR1); /* the default action ends this child here */
        _exit(0);       /* not reached */
    }
    if (waitpid(pid, &status, 0) == -1)
        die_errno("waitpid");
    if (WIFSIGNALED(status))
        printf("   a child that raised it was killed by signal %d (%s)\n",
               WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        printf("   a child that raised it exited with status %d\n",
               WEXITSTATUS(status));

    /* 2. A handler: the signal now runs our function instead. */
    catch_signal(SIGUSR1, on_usr1, 0);
    raise(SIGUSR1); /* the handler has run when raise() returns */
    printf("2. with a handler, raise(SIGUSR1): the handler ran %d time\n",
           usr1_count);

    /* 3. Blocked: the kernel keeps the signal pending until unblocked. */
    set_usr1_blocked(true);
    for (int i = 0; i < 3; i++)
        if (kill(getpid(), SIGUSR1) == -1)
            die_errno("kill");
    if (sigpending(&pending) == -1)
        die_errno("sigpending");
    printf("3. blocked, then sent 3 times: pending %s, handler ran %d time\n",
           sigismember(&pending, SIGUSR1) ? "yes" : "no", usr1_count);

    /* 4. Unblocked: the pending signal is delivered, once. */
    set_usr1_blocked(false);
    printf("4. unblocked: the handler ran %d times in all, not 4\n",
           usr1_count);

    /* 5. A slow call interrupted: read() from a pipe that stays empty. */
    catch_signal(SIGALRM, on_alarm, 0); /* try SA_RESTART here (exercise) */
    if (pipe(fds) == -1)
        die_errno("pipe");
    alarm(1); /* SIGALRM in one second */
    if (read(fds[0], &byte, 1) == -1)
        printf("5. read() blocked, SIGALRM's handler ran: read() failed "
               "with %s\n",
               errno_name(errno));
    else
        printf("5. read() returned\n");

    return check_stdout() == 0 ? 0 : 1;
}
