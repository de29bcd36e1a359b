/*
 * server.c - chapter 06: one thread serves every client with select().
 *
 * Instead of a process or a thread per client, one loop asks the kernel
 * "which of these descriptors can I read or write right now?" (select),
 * does that much work for each ready one, and asks again. Nothing in the
 * loop may wait for one client, or every other client waits too: so every
 * socket is non-blocking, and echo that a client is not reading yet waits
 * in that client's own small buffer until its socket is writable.
 */
#include "lab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>
#include <unistd.h>

#define BACKLOG 1024  /* finished connections the kernel may queue for us */
#define OUT_CAP 65536 /* echo owed to one client, at most (bytes) */
#define ACCEPT_PAUSE_MS 100 /* after EMFILE, stop accepting this long */
#define REFUSED_LOG_MS 1000 /* at most one "refused" line this often */

static const char usage[] =
    "usage: server [-b ADDR] [-p PORT] [-q] [-h]\n"
    "A TCP echo server: one thread serves every client with select().\n"
    "  -b ADDR  address to listen on (default 127.0.0.1; 0.0.0.0 or :: for "
    "all)\n"
    "  -p PORT  port to listen on (default 8080; 0 lets the kernel choose)\n"
    "  -q       quiet: no accepted/closed lines\n"
    "  -h       show this help\n";

/* What we know about one connection between two rounds of the loop. */
struct client {
    int fd;
    char peer[ADDR_TEXT_MAX]; /* "127.0.0.1:50312", for log lines */
    bool got_fin;             /* the client half-closed: read no more */
    size_t out_len;           /* bytes at the front of out[] still owed */
    char out[OUT_CAP];        /* read from the client, to be echoed back */
};

/* The table of clients, indexed by descriptor. select() can only watch
 * descriptors below FD_SETSIZE, so the table needs no more slots. */
static struct client *clients[FD_SETSIZE];
static bool quiet;
static long long accept_resume_ms; /* 0, or when to accept again (EMFILE) */
static long long refused_logged_ms = -REFUSED_LOG_MS; /* last "refused" line */
static unsigned long refused_unlogged; /* refused since then, not logged */

/* Milliseconds on a clock that never jumps (unlike the time of day). */
static long long now_ms(void)
{
    struct timespec now;

    if (clock_gettime(CLOCK_MONOTONIC, &now) == -1)
        die_errno("clock_gettime");
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* Whether to watch the listener this round. After EMFILE it is paused for
 * ACCEPT_PAUSE_MS; then PAUSE_LEFT is set to the time that is left. */
static bool accepting_now(struct timespec *pause_left)
{
    long long left_ms;

    if (accept_resume_ms == 0)
        return true;
    left_ms = accept_resume_ms - now_ms();
    if (left_ms <= 0) {
        accept_resume_ms = 0; /* the pause is over */
        return true;
    }
    pause_left->tv_sec = (time_t)(left_ms / 1000);
    pause_left->tv_nsec = (long)(left_ms % 1000) * 1000000;
    return false;
}

/* Say how many clients were refused without a line of their own. */
static void log_unlogged_refusals(void)
{
    if (refused_unlogged > 0)
        warn_msg("refused %lu more clients past FD_SETSIZE", refused_unlogged);
    refused_unlogged = 0;
}

/* A client past FD_SETSIZE gets a line, but at most one a second: a burst
 * of a thousand would otherwise write a thousand lines. The others are
 * counted, and the count is said with the next line (or at exit). */
static void log_refusal(const char *peer, int conn_fd)
{
    long long now = now_ms();

    if (now - refused_logged_ms < REFUSED_LOG_MS) {
        refused_unlogged++;
        return;
    }
    log_unlogged_refusals();
    warn_msg("refused %s: descriptor %d >= FD_SETSIZE (%d)", peer, conn_fd,
             FD_SETSIZE);
    refused_logged_ms = now;
}

static void add_client(int conn_fd, const struct sockaddr *addr,
                       socklen_t addr_len)
{
    char peer[ADDR_TEXT_MAX];
    struct client *c;

    format_addr(addr, addr_len, peer, sizeof peer);
    if (conn_fd >= FD_SETSIZE) {
        /* FD_SET(conn_fd) would write past the end of the fd_set. */
        log_refusal(peer, conn_fd);
        if (close(conn_fd) == -1)
            warn_errno("close %s", peer);
        return;
    }
    /* On Linux an accepted socket does not inherit O_NONBLOCK. */
    if (set_nonblocking(conn_fd) == -1 || (c = malloc(sizeof *c)) == NULL) {
        warn_errno("new client %s", peer);
        if (close(conn_fd) == -1)
            warn_errno("close %s", peer);
        return;
    }
    c->fd = conn_fd;
    memcpy(c->peer, peer, sizeof peer);
    c->got_fin = false;
    c->out_len = 0;
    clients[conn_fd] = c;
    if (!quiet)
        log_line("accepted %s", peer); /* never blocks: see the README */
}

static void drop_client(struct client *c)
{
    clients[c->fd] = NULL;
    if (close(c->fd) == -1)
        warn_errno("close %s", c->peer);
    if (!quiet)
        log_line("closed %s", c->peer);
    free(c);
}

/* Take every connection waiting in the queue. The listener is non-blocking,
 * so when the queue is empty accept() fails with EAGAIN instead of waiting. */
static void accept_clients(int listen_fd)
{
    for (;;) {
        struct sockaddr_storage addr;
        socklen_t addr_len = sizeof addr; /* value-result, as in chapter 03 */
        int conn_fd = accept(listen_fd, (struct sockaddr *)&addr, &addr_len);

        if (conn_fd == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* the queue is empty */
            switch (accept_error_action(errno)) {
            case ACCEPT_RETRY:
                continue; /* e.g. ECONNABORTED: take the next one */
            case ACCEPT_BACKOFF:
                /* EMFILE: the connection stays queued and the listener stays
                 * readable, so select() would return at once, forever. Stop
                 * watching the listener for a while instead. */
                warn_errno("accept");
                accept_resume_ms = now_ms() + ACCEPT_PAUSE_MS;
                return;
            case ACCEPT_FATAL:
                die_errno("accept");
            }
        }
        add_client(conn_fd, (struct sockaddr *)&addr, addr_len);
    }
}

/* Send what the client is owed, as much as its socket takes now. Returns
 * false when we are done with the client: it failed, or it half-closed and
 * has got everything back. */
static bool handle_writable(struct client *c)
{
    ssize_t n = write(c->fd, c->out, c->out_len);

    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return true; /* its send buffer is full: wait for select */
        warn_errno("write %s", c->peer); /* EPIPE, ECONNRESET */
        return false;
    }
    c->out_len -= (size_t)n; /* a short write keeps the rest for later */
    memmove(c->out, c->out + n, c->out_len);
    return !(c->got_fin && c->out_len == 0);
}

/* Read what has arrived, into the free end of the client's buffer, then try
 * to echo it at once: the socket is usually writable, and if it is not,
 * write() says EAGAIN and the bytes wait in the buffer. */
static bool handle_readable(struct client *c)
{
    ssize_t n = read(c->fd, c->out + c->out_len, OUT_CAP - c->out_len);

    if (n == -1) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return true;                /* nothing after all: not an error */
        warn_errno("read %s", c->peer); /* e.g. ECONNRESET */
        return false;
    }
    if (n == 0) {
        c->got_fin = true; /* EOF: send what we still owe, then close */
        return c->out_len > 0;
    }
    c->out_len += (size_t)n;
    return handle_writable(c);
}

/* Fill in the sets for this round and return the highest descriptor in
 * them. select() overwrites the sets with its answer, so they are built
 * afresh every round from what each client wants now. */
static int build_sets(int listen_fd, bool accepting, fd_set *readable,
                      fd_set *writable)
{
    int max_fd = -1;

    FD_ZERO(readable);
    FD_ZERO(writable);
    if (accepting) {
        FD_SET(listen_fd, readable);
        max_fd = listen_fd;
    }
    for (int fd = 0; fd < FD_SETSIZE; fd++) {
        struct client *c = clients[fd];
        if (c == NULL)
            continue;
        /* A full buffer means: read nothing more until it drains. This is
         * what bounds the memory a client that never reads can cost us. */
        if (!c->got_fin && c->out_len < OUT_CAP)
            FD_SET(fd, readable);
        if (c->out_len > 0)
            FD_SET(fd, writable);
        max_fd = fd > max_fd ? fd : max_fd;
    }
    return max_fd;
}

static void serve_clients(int max_fd, fd_set *readable, fd_set *writable)
{
    for (int fd = 0; fd <= max_fd; fd++) {
        struct client *c = clients[fd];
        bool keep = true;

        if (c == NULL)
            continue;
        if (FD_ISSET(fd, readable))
            keep = handle_readable(c);
        if (keep && FD_ISSET(fd, writable) && c->out_len > 0)
            keep = handle_writable(c);
        if (!keep)
            drop_client(c);
    }
}

int main(int argc, char **argv)
{
    struct server_options opts;
    int opt, listen_fd;

    set_program_name(argv[0]);
    keep_std_fds_open(); /* before any socket can take descriptor 0, 1, 2 */
    server_options_init(&opts);
    while ((opt = getopt(argc, argv, SERVER_OPTSTRING)) != -1)
        server_option(&opts, opt, usage);
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);
    quiet = opts.quiet;

    if (ignore_sigpipe() == -1 || catch_stop_signals() == -1)
        die_errno("sigaction");
    /* Keep SIGINT and SIGTERM blocked except inside pselect(), which lets
     * them in (stop_wait_mask()) only while it waits: a signal that arrives
     * while we serve clients stays pending until then, and is never lost
     * between the check of stop_requested and the wait (see the README). */
    if (block_stop_signals() == -1)
        die_errno("pthread_sigmask");

    listen_fd = open_listener(opts.addr, opts.port, BACKLOG);
    if (listen_fd == -1)
        return 1;
    if (listen_fd >= FD_SETSIZE) {
        warn_msg("listening socket is descriptor %d >= FD_SETSIZE (%d)",
                 listen_fd, FD_SETSIZE);
        return 1;
    }
    if (set_nonblocking(listen_fd) == -1)
        die_errno("fcntl O_NONBLOCK listening socket");
    if (announce_listening(listen_fd) == -1)
        return 1;

    while (!stop_requested) {
        fd_set readable, writable;
        struct timespec pause_left;
        bool accepting = accepting_now(&pause_left);
        int max_fd = build_sets(listen_fd, accepting, &readable, &writable);

        /* No time limit (NULL) unless the listener is paused after EMFILE:
         * then wake up when the pause ends, even if nothing else happens. */
        if (pselect(max_fd + 1, &readable, &writable, NULL,
                    accepting ? NULL : &pause_left, stop_wait_mask()) == -1) {
            if (errno == EINTR)
                continue; /* a signal: the loop checks stop_requested */
            die_errno("pselect");
        }
        /* Ready descriptors win over a pending stop, which pselect() then
         * leaves pending: under steady traffic it would never get in. */
        if (take_pending_stop())
            break;
        if (accepting && FD_ISSET(listen_fd, &readable))
            accept_clients(listen_fd);
        serve_clients(max_fd, &readable, &writable);
    }

    for (int fd = 0; fd < FD_SETSIZE; fd++)
        if (clients[fd] != NULL)
            drop_client(clients[fd]);
    log_unlogged_refusals();
    if (close(listen_fd) == -1)
        die_errno("close listening socket");
    return 0;
}
