/*
 * server.c - chapter 04: an echo server that forks a child process per
 * client.
 *
 * The parent only accepts. For each connection it fork()s, and the child
 * serves that one client with chapter 03's echo loop, then exits. Each
 * closes the descriptor it does not need: the child the listening socket,
 * the parent the connected one. A child that has exited stays a zombie
 * until its parent collects its exit status with waitpid(): the SIGCHLD
 * handler does that, and only that. With -z nobody does, and the zombies
 * pile up for ps to show.
 */
#define _GNU_SOURCE /* ppoll(): poll() with a signal mask, as in pselect() */
#include "lab.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BACKLOG SOMAXCONN  /* a burst of clients arrives faster than we fork */
#define BUF_SIZE 16384     /* one read's worth; any size works */
#define MAX_CHILDREN 1024  /* -m: clients served at once; the rest wait */
#define STOP_GRACE_MS 500  /* how long a child may take to end on SIGTERM */

static const char usage[] =
    "usage: server [-b ADDR] [-p PORT] [-q] [-m N] [-z] [-h]\n"
    "A TCP echo server that forks a child process for each client.\n"
    "  -b ADDR  address to listen on (default 127.0.0.1; 0.0.0.0 or :: for "
    "all)\n"
    "  -p PORT  port to listen on (default 8080; 0 lets the kernel choose)\n"
    "  -q       quiet: no accepted/closed lines\n"
    "  -m N     serve at most N clients at once, 1-1024 (default 1024); the\n"
    "           next ones wait in the backlog\n"
    "  -z       zombies: never reap a child, so each one that exits stays\n"
    "           <defunct> in ps until the server stops\n"
    "  -h       show this help\n";

/* What the SIGCHLD handler hands over: each child it reaped, with its exit
 * status. Only the handler writes (an entry, then the count), only main()
 * reads (the count, then the entries up to it). The count is a lock-free
 * atomic, which a handler may write (C11 7.14.1.1). At most MAX_CHILDREN
 * children are unreaped or unread at any time, so the ring never fills. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_uint must be lock-free");
static struct ended {
    pid_t pid;
    int status;
} ended[MAX_CHILDREN];
static atomic_uint ended_count; /* how many the handler has written */
static unsigned ended_read;     /* how many main() has read */

/* Our children that main() has not yet seen end, and the client each
 * serves: for the "closed" line, and to stop them all at the end. A free
 * slot has pid 0. Only main() touches these. */
static struct child {
    pid_t pid;
    char peer[ADDR_TEXT_MAX];
} children[MAX_CHILDREN];
static int live_children;
static bool quiet;

/* SIGCHLD: at least one child has ended. Signals are not queued, so ten
 * children that end together may raise SIGCHLD only once: reap in a loop
 * until none is left. WNOHANG makes waitpid() return 0 instead of waiting
 * for the children still running. The last call fails (ECHILD when there
 * are no children at all) and sets errno, which the code we interrupted
 * may be about to read: put it back. Nothing else happens here. */
static void reap_children(int signo)
{
    int saved_errno = errno;
    int status;
    pid_t pid;

    (void)signo;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        unsigned n = atomic_load(&ended_count);
        ended[n % MAX_CHILDREN] = (struct ended){.pid = pid, .status = status};
        atomic_store(&ended_count, n + 1); /* the entry is ready for main */
    }
    errno = saved_errno;
}

static int handle_sigchld(bool reap)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    /* -z: SIG_DFL, not SIG_IGN. Ignoring SIGCHLD would tell the kernel to
     * reap for us (man 2 waitpid) and hide the very zombies -z shows. */
    sa.sa_handler = reap ? reap_children : SIG_DFL;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: SIGCHLD only gets in during ppoll(), which is never
     * restarted anyway. SA_NOCLDSTOP: no SIGCHLD for a child that is only
     * stopped (kill -STOP, Ctrl-Z). */
    sa.sa_flags = SA_NOCLDSTOP;
    return sigaction(SIGCHLD, &sa, NULL);
}

/* Out of descriptors, memory or processes: wait a little before trying
 * again rather than spin on the same error (as in chapter 03). */
static void back_off(void)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};

    nanosleep(&pause, NULL);
}

/* The parent's one place to sleep: until FD is readable, a signal comes,
 * or TIMEOUT (NULL: no limit) passes. SIGCHLD, SIGINT and SIGTERM are
 * blocked everywhere else; ppoll() lets them in only while it sleeps, so
 * one that came earlier is pending and ends the sleep at once. poll()
 * ignores a negative FD: then only a signal or the timeout wakes us.
 * Returns true when FD is readable. */
static bool sleep_until(int fd, const struct timespec *timeout)
{
    struct pollfd pfd = {.fd = fd, .events = POLLIN, .revents = 0};
    int n = ppoll(&pfd, 1, timeout, stop_wait_mask());

    if (n == -1 && errno != EINTR)
        die_errno("ppoll");
    /* A ready FD wins over a pending signal, which then stays pending:
     * look for a stop ourselves (it sets stop_requested). */
    if (n > 0 && take_pending_stop())
        return false;
    return n > 0;
}

/* Chapter 03's loop: send back everything the client sends, until it
 * half-closes (read() returns 0). 0, or the errno of the call that failed
 * (ECONNRESET, EPIPE...). */
static int echo_client(int conn_fd)
{
    char buf[BUF_SIZE];

    for (;;) {
        ssize_t n = read_retry(conn_fd, buf, sizeof buf);
        if (n == 0)
            return 0; /* EOF: the client sent FIN and we owe it nothing */
        if (n == -1 || write_all(conn_fd, buf, (size_t)n) == -1)
            return errno;
    }
}

/* The child's whole life: serve one client, then exit. It prints nothing:
 * the parent alone writes the log, so that a log nobody reads can never
 * block it (see README). Its exit status says how the client went: 0, or
 * the errno of the call that failed (every Linux errno fits in 8 bits). */
static _Noreturn void run_child(int listen_fd, int conn_fd)
{
    int err;

    /* Accepting is the parent's job. A child that kept the listening
     * socket would keep the port open, and clients queuing on it, after
     * the parent has gone. */
    if (close(listen_fd) == -1)
        _exit(errno);
    /* SIGINT and SIGTERM end a child at once, wherever it is blocked (their
     * default action); the kernel then closes its connection. Set the
     * defaults first, then unblock: a stop that came after fork() is
     * pending, and ends the child here. */
    if (signal(SIGINT, SIG_DFL) == SIG_ERR ||
        signal(SIGTERM, SIG_DFL) == SIG_ERR ||
        sigprocmask(SIG_SETMASK, stop_wait_mask(), NULL) == -1)
        _exit(errno);

    err = echo_client(conn_fd);
    if (close(conn_fd) == -1 && err == 0)
        err = errno;
    /* _exit(), not exit() or return: those would run atexit() handlers
     * and flush stdio buffers, all copies of the parent's. */
    _exit(err);
}

/* Fork a child to serve CONN_FD, and close the parent's copy of it. */
static void start_child(int listen_fd, int conn_fd, const char *peer)
{
    pid_t pid = fork();

    if (pid == 0)
        run_child(listen_fd, conn_fd); /* never returns */
    /* The child has its own copy of the connected socket. Ours must go:
     * the connection ends only when every copy is closed, so otherwise the
     * client would never see EOF, and we would run out of descriptors. */
    if (close(conn_fd) == -1)
        warn_errno("close %s", peer);
    if (pid == -1) {
        /* EAGAIN (too many processes) or ENOMEM: this client cannot be
         * served, the ones being served go on. */
        warn_errno("fork %s", peer);
        if (!quiet)
            log_line("closed %s", peer);
        back_off();
        return;
    }
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i].pid == 0) { /* main() made sure there is one */
            children[i].pid = pid;
            strcpy(children[i].peer, peer); /* both ADDR_TEXT_MAX long */
            live_children++;
            return;
        }
    }
}

/* Child PID has been reaped with STATUS: say how it went, print "closed",
 * and free its slot. */
static void child_ended(pid_t pid, int status)
{
    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i].pid != pid)
            continue;
        if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
            errno = WEXITSTATUS(status); /* the child's error: run_child() */
            warn_errno("%s", children[i].peer); /* e.g. ECONNRESET */
        } else if (WIFSIGNALED(status) && !stop_requested) {
            warn_msg("%s: child %ld killed by signal %d", children[i].peer,
                     (long)pid, WTERMSIG(status));
        }
        if (!quiet)
            log_line("closed %s", children[i].peer);
        children[i].pid = 0;
        live_children--;
        return;
    }
}

/* Read what the handler wrote since last time. */
static void collect_ended(void)
{
    while (ended_read != atomic_load(&ended_count)) {
        struct ended e = ended[ended_read % MAX_CHILDREN];
        ended_read++;
        child_ended(e.pid, e.status);
    }
}

static void signal_children(int signo)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i].pid != 0 && kill(children[i].pid, signo) == -1)
            warn_errno("kill %ld", (long)children[i].pid);
}

/* Milliseconds since START, on the clock that never jumps. */
static long ms_since(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 +
           (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Stop every child and reap it, so that none is left behind, not even a
 * zombie. The table holds exactly the children not yet reaped (SIGCHLD is
 * blocked, so the handler cannot reap one behind our back), and a PID stays
 * ours until it is reaped: kill() cannot hit a stranger. */
static void stop_children(void)
{
    const struct timespec tick = {.tv_sec = 0, .tv_nsec = 10 * 1000000L};
    struct timespec start;
    bool killed = false;

    /* -z reaped nobody: reap now, the zombies first. */
    if (handle_sigchld(true) == -1)
        die_errno("sigaction");
    reap_children(SIGCHLD); /* a plain call: the signal is blocked here */
    collect_ended();

    /* A stopped child (kill -STOP, Ctrl-Z) acts on no signal but SIGKILL
     * until it is continued: SIGTERM waits, pending, for the SIGCONT. */
    signal_children(SIGTERM);
    signal_children(SIGCONT);
    clock_gettime(CLOCK_MONOTONIC, &start);
    while (live_children > 0) {
        if (!killed && ms_since(&start) >= STOP_GRACE_MS) {
            /* SIGKILL cannot be caught, blocked or ignored. */
            warn_msg("%d children still running: SIGKILL", live_children);
            signal_children(SIGKILL);
            killed = true;
        }
        sleep_until(-1, &tick); /* a child's end wakes us sooner */
        collect_ended();
    }
}

int main(int argc, char **argv)
{
    struct server_options opts;
    sigset_t chld;
    bool reap = true;
    long max_children = MAX_CHILDREN;
    int opt, listen_fd;

    set_program_name(argv[0]);
    keep_std_fds_open(); /* before any socket can take descriptor 0, 1, 2 */
    server_options_init(&opts);
    while ((opt = getopt(argc, argv, SERVER_OPTSTRING "m:z")) != -1) {
        if (opt == 'z')
            reap = false;
        else if (opt == 'm') {
            if (!parse_number(optarg, 1, MAX_CHILDREN, &max_children))
                usage_error(usage, "bad -m '%s': a number 1-%d", optarg,
                            MAX_CHILDREN);
        } else
            server_option(&opts, opt, usage);
    }
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);
    quiet = opts.quiet;

    if (ignore_sigpipe() == -1 || catch_stop_signals() == -1 ||
        handle_sigchld(reap) == -1)
        die_errno("sigaction");
    /* Block SIGCHLD, SIGINT and SIGTERM: they get in only in sleep_until().
     * SIGCHLD is unblocked first (a parent may have blocked it, and the
     * mask is inherited), so that stop_wait_mask() lets it in. */
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_UNBLOCK, &chld, NULL) == -1 ||
        block_stop_signals() == -1 ||
        sigprocmask(SIG_BLOCK, &chld, NULL) == -1)
        die_errno("sigprocmask");

    listen_fd = open_listener(opts.addr, opts.port, BACKLOG);
    if (listen_fd == -1 || announce_listening(listen_fd) == -1)
        return 1;

    while (!stop_requested) {
        struct sockaddr_storage peer_addr;
        socklen_t peer_len = sizeof peer_addr;
        char peer[ADDR_TEXT_MAX];
        bool slot_free = live_children < max_children;
        bool ready;
        int conn_fd;

        /* With every slot taken, we wait for a child to end, not for a
         * client: new clients wait in the backlog meanwhile. */
        ready = sleep_until(slot_free ? listen_fd : -1, NULL);
        collect_ended();
        if (!ready)
            continue; /* a signal: a child ended, or a stop */
        conn_fd = accept(listen_fd, (struct sockaddr *)&peer_addr, &peer_len);
        if (conn_fd == -1) {
            switch (accept_error_action(errno)) {
            case ACCEPT_RETRY:
                continue;
            case ACCEPT_BACKOFF:
                warn_errno("accept"); /* EMFILE: the client stays queued */
                back_off();
                continue;
            case ACCEPT_FATAL:
                die_errno("accept");
            }
        }

        format_addr((struct sockaddr *)&peer_addr, peer_len, peer, sizeof peer);
        if (!quiet)
            log_line("accepted %s", peer); /* before the child can end */
        start_child(listen_fd, conn_fd, peer);
        if (!reap && live_children == max_children)
            warn_msg("%ld children unreaped (-z): no new client until stopped",
                     max_children);
    }

    /* Close the listening socket first: no new client can queue up while
     * we wait for the old ones. */
    if (close(listen_fd) == -1)
        warn_errno("close listening socket");
    stop_children();
    return 0;
}
