/*
 * server.c - chapter 04: an echo server that forks a child process per
 * client.
 *
 * The parent only accepts. For each connection it fork()s, and the child
 * serves that one client with chapter 03's echo loop, then exits. Each
 * closes the descriptor it does not need: the child the listening socket,
 * the parent the connected one. A child that has exited stays a zombie
 * until its parent collects its exit status with waitpid(), so the parent
 * does that in its SIGCHLD handler, and prints the "closed" line then.
 * With -z it never does, and the zombies pile up for ps to show.
 */
#include "lab.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BACKLOG SOMAXCONN /* a burst of clients arrives faster than we fork */
#define BUF_SIZE 16384    /* one read's worth; any size works */
#define MAX_CHILDREN 1024 /* clients served at once; the rest wait queued */

static const char usage[] =
    "usage: server [-b ADDR] [-p PORT] [-q] [-z] [-h]\n"
    "A TCP echo server that forks a child process for each client.\n"
    "  -b ADDR  address to listen on (default 127.0.0.1; 0.0.0.0 or :: for "
    "all)\n"
    "  -p PORT  port to listen on (default 8080; 0 lets the kernel choose)\n"
    "  -q       quiet: no accepted/closed lines\n"
    "  -z       zombies: never reap a child, so each one that exits stays\n"
    "           <defunct> in ps until the server stops\n"
    "  -h       show this help\n";

/* Our children that have not been reaped yet, and the client each serves:
 * what the parent needs to print "closed" and to stop them all at the end.
 * A free slot has pid 0. The SIGCHLD handler frees slots, so the rest of
 * the program blocks SIGCHLD whenever it looks at the table. */
static struct child {
    pid_t pid;
    char peer[ADDR_TEXT_MAX];
} children[MAX_CHILDREN];
static int child_count;
static bool quiet;

/* Out of descriptors, memory or processes: wait a little before trying
 * again rather than spin on the same error (as in chapter 03). */
static void back_off(void)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};

    nanosleep(&pause, NULL); /* EINTR just ends the pause early */
}

/* Child PID is gone: print "closed PEER" and free its slot. This runs in
 * the SIGCHLD handler, which may have interrupted a printf() halfway
 * through stdio's buffer: so no printf() here. strlen(), memcpy() and
 * write() are async-signal-safe (man 7 signal-safety). */
static void child_ended(pid_t pid)
{
    static const char prefix[] = "closed ";

    for (int i = 0; i < MAX_CHILDREN; i++) {
        if (children[i].pid != pid)
            continue;
        if (!quiet) {
            char line[sizeof prefix + ADDR_TEXT_MAX];
            size_t len = sizeof prefix - 1, peer_len = strlen(children[i].peer);
            memcpy(line, prefix, len);
            memcpy(line + len, children[i].peer, peer_len);
            len += peer_len;
            line[len++] = '\n';
            if (write(STDOUT_FILENO, line, len) == -1) {
                /* nowhere to report it: the log line is lost */
            }
        }
        children[i].pid = 0;
        child_count--;
        return;
    }
}

/* SIGCHLD: at least one child has exited. Signals are not queued, so ten
 * children that exit together may raise SIGCHLD only once: reap in a loop
 * until no zombie is left. WNOHANG makes waitpid() return 0 instead of
 * blocking for the children still running. The last call fails (ECHILD
 * when there are no children at all) and sets errno, which the code we
 * interrupted may be about to read: put it back. */
static void reap_children(int signo)
{
    int saved_errno = errno;
    int status;
    pid_t pid;

    (void)signo;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        child_ended(pid);
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
    /* SA_RESTART: after the handler, the kernel restarts the accept() that
     * SIGCHLD interrupted, instead of failing it with EINTR (our loop would
     * retry it anyway; other calls, like printf()'s write(), would not).
     * SIGINT/SIGTERM are set without it: they must end accept().
     * SA_NOCLDSTOP: no SIGCHLD when a child is only stopped (^Z). */
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    return sigaction(SIGCHLD, &sa, NULL);
}

/* Block SIGCHLD, so that the handler cannot run (and change the table)
 * until unblock_sigchld(); return the mask as it was. */
static sigset_t block_sigchld(void)
{
    sigset_t chld, old;

    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &chld, &old) == -1)
        die_errno("sigprocmask");
    return old;
}

static void unblock_sigchld(const sigset_t *old)
{
    if (sigprocmask(SIG_SETMASK, old, NULL) == -1)
        die_errno("sigprocmask");
}

/* Chapter 03's loop: send back everything the client sends, until it
 * half-closes (read() returns 0) or something fails. 0, or -1 on error. */
static int echo_client(int conn_fd, const char *peer)
{
    char buf[BUF_SIZE];

    for (;;) {
        ssize_t n = read_retry(conn_fd, buf, sizeof buf);
        if (n == 0)
            return 0; /* EOF: the client sent FIN and we owe it nothing */
        if (n == -1) {
            warn_errno("read %s", peer); /* e.g. ECONNRESET */
            return -1;
        }
        if (write_all(conn_fd, buf, (size_t)n) == -1) {
            warn_errno("write %s", peer); /* e.g. EPIPE */
            return -1;
        }
    }
}

/* The child's whole life: serve one client, then exit. */
static _Noreturn void run_child(int listen_fd, int conn_fd, const char *peer,
                                const sigset_t *old_mask)
{
    int rc;

    /* Accepting is the parent's job. A child that kept the listening
     * socket would keep the port open, and clients queuing on it, after
     * the parent has gone. */
    if (close(listen_fd) == -1)
        warn_errno("close listening socket");
    /* A stop signal ends the child at once; the kernel then closes the
     * connection. (The parent's handler only sets a flag: a signal landing
     * just before the child blocked in read() for an idle client would
     * never be noticed, and the parent would wait for the child forever.) */
    if (signal(SIGINT, SIG_DFL) == SIG_ERR ||
        signal(SIGTERM, SIG_DFL) == SIG_ERR)
        warn_errno("signal");
    /* A stop signal that came after fork() but before the lines above still
     * ran the parent's handler, which set this process's copy of the flag. */
    if (stop_requested)
        _exit(EXIT_FAILURE);
    unblock_sigchld(old_mask);

    rc = echo_client(conn_fd, peer);
    if (close(conn_fd) == -1)
        warn_errno("close %s", peer);
    /* _exit(), not exit() or return: those would run atexit() handlers
     * and flush stdio buffers, both copied from the parent. */
    _exit(rc == 0 ? EXIT_SUCCESS : EXIT_FAILURE);
}

/* Fork a child to serve CONN_FD, and close the parent's copy of it. */
static void start_child(int listen_fd, int conn_fd, const char *peer)
{
    sigset_t old_mask;
    pid_t pid;
    int slot;

    /* SIGCHLD waits until the child is in the table: one that finishes
     * at once must not be reaped before we know its pid. */
    old_mask = block_sigchld();
    /* fork() copies stdio's buffer too: whatever is still in it would be
     * printed twice. Line buffering keeps it empty; this makes sure. */
    fflush(stdout);
    pid = fork();
    if (pid == 0)
        run_child(listen_fd, conn_fd, peer, &old_mask); /* never returns */
    if (pid == -1) {
        /* EAGAIN (too many processes) or ENOMEM: this client cannot be
         * served, the ones being served go on. */
        warn_errno("fork %s", peer);
        if (!quiet)
            printf("closed %s\n", peer);
        back_off();
    } else {
        for (slot = 0; children[slot].pid != 0; slot++)
            ; /* wait_for_free_slot() made sure there is one */
        children[slot].pid = pid;
        snprintf(children[slot].peer, sizeof children[slot].peer, "%s", peer);
        child_count++;
    }
    unblock_sigchld(&old_mask);
    /* The child has its own copy of the connected socket. Ours must go:
     * the connection ends only when every copy is closed, so otherwise the
     * client would never see EOF, and we would run out of descriptors. */
    if (close(conn_fd) == -1)
        warn_errno("close %s", peer);
}

/* With MAX_CHILDREN clients being served, wait until one leaves; new
 * clients wait in the backlog meanwhile. sigsuspend() unblocks SIGCHLD and
 * sleeps in one step, so a child that exits just before we sleep still
 * wakes us. */
static void wait_for_free_slot(bool reap)
{
    sigset_t old_mask = block_sigchld();

    if (child_count == MAX_CHILDREN && !reap)
        warn_msg("%d children unreaped (-z): no new client until stopped",
                 MAX_CHILDREN);
    while (child_count == MAX_CHILDREN && !stop_requested)
        sigsuspend(&old_mask); /* returns once a handler has run */
    unblock_sigchld(&old_mask);
}

/* Stop every child and wait for each one, zombies included, so that none
 * is left behind. */
static void stop_children(void)
{
    block_sigchld(); /* from now on we reap them here, not the handler */
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (children[i].pid != 0 && kill(children[i].pid, SIGTERM) == -1)
            warn_errno("kill %ld", (long)children[i].pid);
    for (int i = 0; i < MAX_CHILDREN; i++) {
        pid_t pid = children[i].pid;
        if (pid == 0)
            continue;
        while (waitpid(pid, NULL, 0) == -1) {
            if (errno != EINTR) { /* EINTR: a second ^C; keep waiting */
                warn_errno("waitpid %ld", (long)pid);
                break;
            }
        }
        child_ended(pid);
    }
}

int main(int argc, char **argv)
{
    struct server_options opts;
    bool reap = true;
    int opt, listen_fd;

    set_program_name(argv[0]);
    server_options_init(&opts);
    while ((opt = getopt(argc, argv, SERVER_OPTSTRING "z")) != -1) {
        if (opt == 'z')
            reap = false;
        else
            server_option(&opts, opt, usage);
    }
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);
    quiet = opts.quiet;

    /* Line-buffered stdout: each log line leaves at once, even into a pipe,
     * and nothing is left in the buffer for fork() to copy. */
    if (setvbuf(stdout, NULL, _IOLBF, 0) != 0)
        die_errno("setvbuf stdout");
    if (ignore_sigpipe() == -1 || catch_stop_signals() == -1 ||
        handle_sigchld(reap) == -1)
        die_errno("sigaction");

    listen_fd = open_listener(opts.addr, opts.port, BACKLOG);
    if (listen_fd == -1 || announce_listening(listen_fd) == -1)
        return 1;

    while (!stop_requested) {
        struct sockaddr_storage peer_addr;
        socklen_t peer_len = sizeof peer_addr;
        char peer[ADDR_TEXT_MAX];
        int conn_fd;

        wait_for_free_slot(reap);
        if (stop_requested)
            break;
        conn_fd = accept(listen_fd, (struct sockaddr *)&peer_addr, &peer_len);
        if (conn_fd == -1) {
            switch (accept_error_action(errno)) {
            case ACCEPT_RETRY:
                continue; /* EINTR: SIGINT/SIGTERM; the loop checks */
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
            printf("accepted %s\n", peer); /* before the child can end */
        start_child(listen_fd, conn_fd, peer);
    }

    /* Close the listening socket first: no new client can queue up while
     * we wait for the old ones. */
    if (close(listen_fd) == -1)
        warn_errno("close listening socket");
    stop_children();
    return 0;
}
