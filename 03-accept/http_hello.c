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
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BACKLOG 16
#define HEAD_MAX 8192       /* a longer request head gets 431 */
#define REQUEST_TIMEOUT 5   /* seconds a client may take to send its head */
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
                   const char *body, bool head_only)
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

    if (write_all(conn_fd, response, (size_t)len) == -1) {
        if (!stop_requested)
            warn_errno("write %s", peer); /* e.g. EPIPE */
        return;
    }
    if (shutdown(conn_fd, SHUT_WR) == -1) {
        warn_errno("shutdown %s", peer);
        return;
    }
    for (size_t drained = 0; drained < DRAIN_MAX;) {
        ssize_t n = read_retry(conn_fd, sink, sizeof sink);
        if (n <= 0)
            break; /* EOF, the time limit, or an error: we are done */
        drained += (size_t)n;
    }
}

static void serve_client(int conn_fd, const char *peer)
{
    char head[HEAD_MAX], line[HEAD_MAX], body[HEAD_MAX + 128];
    size_t got = 0, end;

    /* Read until the empty line. One read() may bring part of a line or
     * several lines: a stream has no message boundaries. */
    while ((end = head_length(head, got)) == 0) {
        ssize_t n;
        if (got == sizeof head) {
            answer(conn_fd, peer, "431 Request Header Fields Too Large",
                   "request head too large\n", false);
            return;
        }
        n = read_retry(conn_fd, head + got, sizeof head - got);
        if (n == 0) {
            warn_msg("%s: closed before the end of its request head", peer);
            return;
        }
        if (n == -1) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) /* SO_RCVTIMEO */
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
    printf("request %s: %s\n", peer, line);

    snprintf(body, sizeof body,
             "Hello from http_hello.\nYou are %s.\nYou sent: %s\n", peer, line);
    answer(conn_fd, peer, "200 OK", body, strncmp(line, "HEAD ", 5) == 0);
}

int main(int argc, char **argv)
{
    struct server_options opts;
    int opt, listen_fd;

    set_program_name(argv[0]);
    server_options_init(&opts);
    while ((opt = getopt(argc, argv, SERVER_OPTSTRING)) != -1)
        server_option(&opts, opt, usage);
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);
    if (setvbuf(stdout, NULL, _IOLBF, 0) != 0)
        die_errno("setvbuf stdout");
    if (ignore_sigpipe() == -1 || catch_stop_signals() == -1)
        die_errno("sigaction");

    listen_fd = open_listener(opts.addr, opts.port, BACKLOG);
    if (listen_fd == -1 || announce_listening(listen_fd) == -1)
        return 1;

    while (!stop_requested) {
        struct sockaddr_storage peer_addr;
        socklen_t peer_len = sizeof peer_addr;
        struct timeval limit = {.tv_sec = REQUEST_TIMEOUT, .tv_usec = 0};
        char peer[ADDR_TEXT_MAX];
        int conn_fd;

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
            printf("accepted %s\n", peer);
        /* One client at a time: one that never sends its request would
         * hold up every other, so its reads time out (read(): EAGAIN). */
        if (setsockopt(conn_fd, SOL_SOCKET, SO_RCVTIMEO, &limit,
                       sizeof limit) == -1)
            warn_errno("setsockopt SO_RCVTIMEO %s", peer);
        else
            serve_client(conn_fd, peer);
        if (close(conn_fd) == -1)
            warn_errno("close %s", peer);
        if (!opts.quiet)
            printf("closed %s\n", peer);
    }

    if (close(listen_fd) == -1)
        die_errno("close listening socket");
    return 0;
}
