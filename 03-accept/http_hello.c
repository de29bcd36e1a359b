/*
 * http_hello.c - chapter 03: HTTP rides on TCP.
 *
 * The same iterative accept() loop as server.c, but the bytes on each
 * connection follow HTTP/1.1: the client sends a request head (lines ending
 * in CRLF, closed by an empty line), we answer one response and close. curl
 * or a browser is the client. The request is not parsed beyond its first
 * line: the point is to see that HTTP is text in a TCP stream.
 */
#include "lab.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BACKLOG 16
#define HEAD_MAX 8192       /* a longer request head gets 431 */
#define REQUEST_TIMEOUT 5   /* seconds one client may hold the server, in all */
#define DRAIN_MAX (1 << 16) /* bytes we read and drop after answering */

static const char usage[] =
    "usage: http_hello [-b ADDR] [-p PORT] [-q] [-h]\n"
    "An iterative HTTP/1.1 server: one short text/plain answer per "
    "connection.\n"
    "  -b ADDR  address to listen on (default 127.0.0.1; 0.0.0.0 or :: for "
    "all)\n"
    "  -p PORT  port to listen on (default 8080; 0 lets the kernel choose)\n"
    "  -q       quiet: no accepted/closed lines\n"
    "  -h       show this help\n";

/* Milliseconds from now until DEADLINE (on the monotonic clock, which no
 * one can set back), rounded up; 0 once it has passed. */
static int ms_left(const struct timespec *deadline)
{
    struct timespec now;
    long long ms;

    if (clock_gettime(CLOCK_MONOTONIC, &now) == -1)
        die_errno("clock_gettime");
    ms = (deadline->tv_sec - now.tv_sec) * 1000LL +
         (deadline->tv_nsec - now.tv_nsec + 999999L) / 1000000L;
    return ms > 0 ? (int)ms : 0;
}

/* Wait for EVENTS on FD with the time left until DEADLINE. 1: ready; -1
 * with errno ETIMEDOUT (the deadline passed), EINTR (a stop) or another
 * error. The deadline is for the whole request, not for each wait: a
 * client that sends a byte now and then cannot stretch it. */
static int wait_until(int fd, short events, const struct timespec *deadline)
{
    int ready = wait_fd_or_stop(fd, events, ms_left(deadline));

    if (ready == 0)
        errno = ETIMEDOUT;
    return ready == 1 ? 1 : -1;
}

/* read() once, after waiting for data until DEADLINE: what read() returns
 * (0 = the client closed), or -1 with errno (ETIMEDOUT, EINTR, ...). */
static ssize_t read_until(int fd, void *buf, size_t len,
                          const struct timespec *deadline)
{
    if (wait_until(fd, POLLIN, deadline) == -1)
        return -1;
    return read(fd, buf, len); /* readable: it does not block */
}

/* Send all LEN bytes before DEADLINE. send(MSG_DONTWAIT) takes what fits;
 * for the rest we wait for room. 0, or -1 with errno (ETIMEDOUT, ...). */
static int send_all_until(int fd, const char *buf, size_t len,
                          const struct timespec *deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, buf, len, MSG_DONTWAIT);
        if (n == -1) {
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1; /* EPIPE, ECONNRESET */
            if (wait_until(fd, POLLOUT, deadline) == -1)
                return -1;
            continue;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Length of the head up to and including its empty line ("\r\n\r\n"; a bare
 * "\n\n" is accepted too, as RFC 9112 allows), or 0 if it is not all here. */
static size_t head_length(const char *buf, size_t len)
{
    for (size_t i = 1; i < len; i++)
        if (buf[i] == '\n' &&
            (buf[i - 1] == '\n' ||
             (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')))
            return i + 1;
    return 0;
}

/* Send one response (a HEAD request gets the head only), then close in
 * stages (RFC 9112, 9.6): half-close, and read until the client closes too.
 * Closing with unread bytes (a request body, a second request) would send
 * RST, which can destroy our response before the client has read it. */
static void answer(int conn_fd, const char *peer, const char *status,
                   const char *body, bool head_only,
                   const struct timespec *deadline)
{
    char response[HEAD_MAX + 1024], sink[4096];
    int len = snprintf(response, sizeof response,
                       "HTTP/1.1 %s\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Length: %zu\r\n"
                       "Connection: close\r\n"
                       "\r\n"
                       "%s",
                       status, strlen(body), head_only ? "" : body);

    if (send_all_until(conn_fd, response, (size_t)len, deadline) == -1) {
        if (!stop_requested)
            warn_errno("write %s", peer); /* EPIPE, ETIMEDOUT ... */
        return;
    }
    if (shutdown(conn_fd, SHUT_WR) == -1) {
        warn_errno("shutdown %s", peer);
        return;
    }
    for (size_t drained = 0; drained < DRAIN_MAX;) {
        ssize_t n = read_until(conn_fd, sink, sizeof sink, deadline);
        if (n <= 0)
            break; /* EOF, the deadline, a stop or an error: we are done */
        drained += (size_t)n;
    }
}

/* Serve one request, all of it before DEADLINE. */
static void serve_client(int conn_fd, const char *peer,
                         const struct timespec *deadline)
{
    char head[HEAD_MAX], line[HEAD_MAX], body[HEAD_MAX + 128];
    size_t got = 0, end;

    /* Read until the empty line. One read() may bring part of a line or
     * several lines: a stream has no message boundaries. */
    while ((end = head_length(head, got)) == 0) {
        ssize_t n;
        if (got == sizeof head) {
            answer(conn_fd, peer, "431 Request Header Fields Too Large",
                   "request head too large\n", false, deadline);
            return;
        }
        n = read_until(conn_fd, head + got, sizeof head - got, deadline);
        if (n == 0) {
            warn_msg("%s: closed before the end of its request head", peer);
            return;
        }
        if (n == -1) {
            if (errno == ETIMEDOUT)
                warn_msg("%s: no request head within %d s", peer,
                         REQUEST_TIMEOUT);
            else if (!stop_requested)
                warn_errno("read %s", peer);
            return;
        }
        got += (size_t)n;
    }

    /* The request line, up to its "\r\n", made safe to print. */
    size_t i;
    for (i = 0; i < end && head[i] != '\r' && head[i] != '\n'; i++)
        line[i] = (head[i] >= ' ' && head[i] <= '~') ? head[i] : '?';
    line[i] = '\0';
    log_line("request %s: %s", peer, line);

    snprintf(body, sizeof body,
             "Hello from http_hello.\nYou are %s.\nYou sent: %s\n", peer, line);
    answer(conn_fd, peer, "200 OK", body, strncmp(line, "HEAD ", 5) == 0,
           deadline);
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
    if (ignore_sigpipe() == -1 || catch_stop_signals() == -1)
        die_errno("sigaction");
    /* As in server.c: Ctrl-C gets in only while we wait. */
    if (block_stop_signals() == -1)
        die_errno("pthread_sigmask");

    listen_fd = open_listener(opts.addr, opts.port, BACKLOG);
    if (listen_fd == -1 || announce_listening(listen_fd) == -1)
        return 1;

    while (!stop_requested) {
        struct sockaddr_storage peer_addr;
        socklen_t peer_len = sizeof peer_addr;
        struct timespec deadline;
        char peer[ADDR_TEXT_MAX];
        int conn_fd;

        if (wait_fd_or_stop(listen_fd, POLLIN, -1) == -1) {
            if (errno == EINTR)
                break; /* a stop */
            die_errno("ppoll");
        }
        conn_fd = accept(listen_fd, (struct sockaddr *)&peer_addr, &peer_len);
        if (conn_fd == -1) {
            switch (accept_error_action(errno)) {
            case ACCEPT_RETRY:
                continue;
            case ACCEPT_BACKOFF:
                warn_errno("accept");
                nanosleep(&(struct timespec){.tv_nsec = 100000000}, NULL);
                continue;
            case ACCEPT_FATAL:
                die_errno("accept");
            }
        }

        format_addr((struct sockaddr *)&peer_addr, peer_len, peer, sizeof peer);
        if (!opts.quiet)
            log_line("accepted %s", peer);
        /* One client at a time: one that sends its request slowly, or never,
         * would hold up every other. So each gets one deadline, for all. */
        if (clock_gettime(CLOCK_MONOTONIC, &deadline) == -1)
            die_errno("clock_gettime");
        deadline.tv_sec += REQUEST_TIMEOUT;
        serve_client(conn_fd, peer, &deadline);
        if (close(conn_fd) == -1)
            warn_errno("close %s", peer);
        if (!opts.quiet)
            log_line("closed %s", peer);
    }

    if (close(listen_fd) == -1)
        die_errno("close listening socket");
    return 0;
}
