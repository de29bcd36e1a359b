/*
 * server.c - chapter 07: one thread serves every client, with epoll.
 *
 * The kernel keeps the list of sockets we watch (the interest list) and
 * epoll_wait() hands back only the ones that are ready, so a round of the
 * loop costs what the ready clients cost, not what the connected ones do.
 * No call may block: the sockets are non-blocking, and an echo the client
 * is too slow to take waits in that client's output buffer, bounded, until
 * epoll says the socket is writable again.
 *
 * Level-triggered by default; -e makes it edge-triggered, where epoll
 * reports a socket once per change, so every ready socket is drained until
 * EAGAIN. -B BYTES reads at most BYTES at a time, to watch the difference.
 */
#include "lab.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define READ_MAX 16384 /* one read's worth, and the -B maximum */
#define OUT_MAX 65536  /* an unread echo past this: stop reading the client */
#define MAX_EVENTS 256 /* ready sockets taken per epoll_wait() */
#define BACKOFF_MS 100 /* out of descriptors: stop accepting for this long */

static const char usage[] =
    "usage: server [-b ADDR] [-p PORT] [-q] [-e] [-B BYTES] [-h]\n"
    "A TCP echo server: one thread serves every client, with epoll.\n"
    "  -b ADDR   address to listen on (default 127.0.0.1; 0.0.0.0 or :: for "
    "all)\n"
    "  -p PORT   port to listen on (default 8080; 0 lets the kernel choose)\n"
    "  -q        quiet: no accepted/closed lines\n"
    "  -e        edge-triggered epoll (default: level-triggered)\n"
    "  -B BYTES  read at most BYTES (1-16384) per read() (default 16384)\n"
    "  -h        show this help\n";

/* One client. Its output buffer exists only while an echo waits in it, so
 * an idle client costs just this struct (and the kernel's socket). */
struct conn {
    int fd;
    uint32_t events;  /* what we asked epoll for, to skip needless changes */
    bool peer_closed; /* read() returned 0: the client sent its FIN */
    char *out;        /* echo the socket did not take yet, or NULL */
    size_t out_start, out_end; /* unsent bytes are out[out_start..out_end) */
    struct conn *prev, *next;  /* every client, to close them all at exit */
    char peer[ADDR_TEXT_MAX];
};

/* One thread, so these are the loop's state, touched by nobody else. */
static int epoll_fd, listen_fd;
static bool edge_triggered, quiet;
static size_t read_size = READ_MAX;
static char read_buf[READ_MAX]; /* every client reads here in turn */
static struct conn *clients;
static bool accept_paused;
static long long resume_at; /* ms: when to accept again after EMFILE */

static bool would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK; /* same value on Linux */
}

/* Level-triggered: a socket that still has data is reported again by the
 * next epoll_wait(), so one read (or accept) per report is enough, and every
 * ready client gets its turn. Edge-triggered: it is reported once, when data
 * arrives, so whatever we leave behind waits for the client's next packet:
 * go on until EAGAIN. */
static bool keep_going(void)
{
    return edge_triggered;
}

static void add_client(int fd, const struct sockaddr_storage *addr,
                       socklen_t len)
{
    char peer[ADDR_TEXT_MAX];
    struct conn *c = NULL;
    struct epoll_event ev;

    format_addr((const struct sockaddr *)addr, len, peer, sizeof peer);
    /* A new socket does not inherit O_NONBLOCK from the listener. */
    if (set_nonblocking(fd) == -1) {
        warn_errno("fcntl O_NONBLOCK %s", peer);
        goto refuse;
    }
    if ((c = calloc(1, sizeof *c)) == NULL) {
        warn_errno("calloc %s", peer);
        goto refuse;
    }
    c->fd = fd;
    memcpy(c->peer, peer, sizeof peer);
    c->events = EPOLLIN | (edge_triggered ? EPOLLET : 0);
    ev.events = c->events;
    ev.data.ptr = c;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        warn_errno("epoll_ctl ADD %s", peer); /* e.g. ENOSPC, ENOMEM */
        goto refuse;
    }
    c->next = clients;
    if (clients != NULL)
        clients->prev = c;
    clients = c;
    if (!quiet)
        log_line("accepted %s", peer); /* never blocks: see the README */
    return;

refuse: /* this client only: log, close, and the server goes on */
    free(c);
    if (close(fd) == -1)
        warn_errno("close %s", peer);
}

static void close_client(struct conn *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        clients = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    /* close() also takes the socket off the interest list. */
    if (close(c->fd) == -1)
        warn_errno("close %s", c->peer);
    if (!quiet)
        log_line("closed %s", c->peer);
    free(c->out);
    free(c);
}

static long long now_ms(void)
{
    struct timespec now;

    if (clock_gettime(CLOCK_MONOTONIC, &now) == -1)
        die_errno("clock_gettime");
    return now.tv_sec * 1000LL + now.tv_nsec / 1000000;
}

/* Out of descriptors: the listener stays readable, so a level-triggered
 * loop would wake at once, fail again and spin. Stop watching it for a
 * moment instead; the waiting clients stay queued in the backlog. */
static void pause_accepting(void)
{
    if (epoll_ctl(epoll_fd, EPOLL_CTL_DEL, listen_fd, NULL) == -1)
        die_errno("epoll_ctl DEL listening socket");
    accept_paused = true;
    resume_at = now_ms() + BACKOFF_MS;
}

/* The epoll_wait() timeout: forever, or until accepting resumes. */
static int ms_until_resume(void)
{
    long long ms;

    if (!accept_paused)
        return -1;
    ms = resume_at - now_ms();
    return ms > 0 ? (int)ms : 0;
}

/* Watch the listener again (at start, and when a pause ends). If this
 * epoll_ctl() fails (ENOMEM, ENOSPC), the server could never accept again,
 * so it stops: the one error after start-up that ends it. */
static void watch_listener(void)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};

    if (edge_triggered)
        ev.events |= EPOLLET;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listen_fd, &ev) == -1)
        die_errno("epoll_ctl ADD listening socket");
    accept_paused = false;
}

static void accept_clients(void)
{
    do {
        struct sockaddr_storage addr;
        socklen_t len = sizeof addr; /* value-result, as in chapter 03 */
        int fd = accept(listen_fd, (struct sockaddr *)&addr, &len);

        if (fd == -1) {
            switch (accept_error_action(errno)) {
            case ACCEPT_RETRY:
                if (would_block(errno))
                    return; /* the queue is empty */
                continue;   /* the client left while queued */
            case ACCEPT_BACKOFF:
                warn_errno("accept");
                pause_accepting();
                return;
            case ACCEPT_FATAL:
                die_errno("accept");
            }
        }
        add_client(fd, &addr, len);
    } while (keep_going());
}

/* Send what the socket still owes the client. Returns -1 if it failed. */
static int flush_output(struct conn *c)
{
    while (c->out_start < c->out_end) {
        ssize_t n =
            write(c->fd, c->out + c->out_start, c->out_end - c->out_start);
        if (n == -1) {
            if (would_block(errno))
                return 0; /* its send buffer is full: wait for EPOLLOUT */
            if (errno == EINTR)
                continue;
            warn_errno("write %s", c->peer); /* EPIPE, ECONNRESET */
            return -1;
        }
        c->out_start += (size_t)n;
    }
    /* All sent: give the buffer back, so an idle client costs no buffer. */
    free(c->out);
    c->out = NULL;
    c->out_start = c->out_end = 0;
    return 0;
}

/* Echo LEN bytes: write them at once if nothing is waiting ahead of them,
 * and keep only what the socket did not take. The caller never reads more
 * than fits (OUT_MAX - out_end), so no byte ever moves inside the buffer. */
static int send_or_keep(struct conn *c, const char *data, size_t len)
{
    if (c->out_start == c->out_end) {
        ssize_t n = write(c->fd, data, len);
        if (n == -1 && !would_block(errno) && errno != EINTR) {
            warn_errno("write %s", c->peer);
            return -1;
        }
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        }
        if (len == 0)
            return 0; /* the common case: no buffer needed */
    }
    if (c->out == NULL && (c->out = malloc(OUT_MAX)) == NULL) {
        warn_errno("malloc output buffer %s", c->peer);
        return -1;
    }
    memcpy(c->out + c->out_end, data, len);
    c->out_end += len;
    return 0;
}

/* Read what the client sent and echo it. Returns -1 if it failed. */
static int read_input(struct conn *c)
{
    do {
        size_t room = OUT_MAX - c->out_end;
        ssize_t n;

        if (room == 0)
            return 0; /* buffer full: want_events() stops reading */
        n = read(c->fd, read_buf, room < read_size ? room : read_size);
        if (n == -1) {
            if (would_block(errno))
                return 0; /* drained */
            if (errno == EINTR)
                continue;
            warn_errno("read %s", c->peer); /* e.g. ECONNRESET */
            return -1;
        }
        if (n == 0) {
            c->peer_closed = true; /* FIN: send what we owe, then close */
            return 0;
        }
        if (send_or_keep(c, read_buf, (size_t)n) == -1)
            return -1;
    } while (keep_going());
    return 0;
}

/* Ask epoll for what the client's state needs: input while it is open and
 * its buffer has room, output while it is owed something. */
static int want_events(struct conn *c)
{
    uint32_t events = edge_triggered ? EPOLLET : 0;
    struct epoll_event ev;

    if (!c->peer_closed && c->out_end < OUT_MAX)
        events |= EPOLLIN;
    if (c->out_start < c->out_end)
        events |= EPOLLOUT;
    if (events == c->events)
        return 0; /* the usual case: no system call */
    ev.events = events;
    ev.data.ptr = c;
    if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, c->fd, &ev) == -1) {
        warn_errno("epoll_ctl MOD %s", c->peer);
        return -1;
    }
    c->events = events;
    return 0;
}

/* EPOLLERR and EPOLLHUP come whether asked for or not: the read or write
 * they wake us for then fails and names the error. */
static void serve_client(struct conn *c, uint32_t ready)
{
    uint32_t trouble = EPOLLERR | EPOLLHUP;
    int rc = 0;

    if (ready & (EPOLLOUT | trouble))
        rc = flush_output(c);
    if (rc == 0 && (c->events & EPOLLIN) && (ready & (EPOLLIN | trouble)))
        rc = read_input(c);
    if (rc == 0 && c->peer_closed && c->out_start == c->out_end)
        rc = -1; /* half-closed and nothing owed: done */
    if (rc == -1 || want_events(c) == -1)
        close_client(c);
}

int main(int argc, char **argv)
{
    struct server_options opts;
    struct epoll_event ready[MAX_EVENTS];
    long bytes;
    int opt;

    set_program_name(argv[0]);
    keep_std_fds_open(); /* before any socket can take descriptor 0, 1, 2 */
    server_options_init(&opts);
    while ((opt = getopt(argc, argv, SERVER_OPTSTRING "eB:")) != -1) {
        if (opt == 'e') {
            edge_triggered = true;
        } else if (opt == 'B') {
            if (!parse_number(optarg, 1, READ_MAX, &bytes))
                usage_error(usage, "bad read size '%s': not a number in 1-%d",
                            optarg, READ_MAX);
            read_size = (size_t)bytes;
        } else {
            server_option(&opts, opt, usage);
        }
    }
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);
    quiet = opts.quiet;

    if (ignore_sigpipe() == -1 || catch_stop_signals() == -1)
        die_errno("sigaction");
    /* SIGINT and SIGTERM stay blocked except inside epoll_pwait(), which
     * lets them in (stop_wait_mask()) atomically: a stop can't slip in
     * between the check of stop_requested and the wait, and no other call
     * sees EINTR. */
    if (block_stop_signals() == -1)
        die_errno("pthread_sigmask");

    listen_fd = open_listener(opts.addr, opts.port, SOMAXCONN);
    if (listen_fd == -1 || announce_listening(listen_fd) == -1)
        return 1;
    /* Non-blocking even in level-triggered mode: a client can leave between
     * epoll's report and our accept(), which must not then block. */
    if (set_nonblocking(listen_fd) == -1)
        die_errno("fcntl O_NONBLOCK listening socket");
    if ((epoll_fd = epoll_create1(EPOLL_CLOEXEC)) == -1)
        die_errno("epoll_create1");
    watch_listener();

    while (!stop_requested) {
        int n = epoll_pwait(epoll_fd, ready, MAX_EVENTS, ms_until_resume(),
                            stop_wait_mask());
        if (n == -1) {
            if (errno == EINTR)
                continue; /* a signal: the loop checks stop_requested */
            die_errno("epoll_pwait");
        }
        /* Ready events win over a pending stop, which epoll_pwait() then
         * leaves pending: under steady traffic it would never get in. */
        if (take_pending_stop())
            break;
        for (int i = 0; i < n; i++) {
            if (ready[i].data.ptr == NULL) /* the listening socket */
                accept_clients();
            else
                serve_client(ready[i].data.ptr, ready[i].events);
        }
        if (accept_paused && ms_until_resume() == 0)
            watch_listener();
    }

    while (clients != NULL)
        close_client(clients);
    if (close(epoll_fd) == -1)
        die_errno("close epoll instance");
    if (close(listen_fd) == -1)
        die_errno("close listening socket");
    return 0;
}
