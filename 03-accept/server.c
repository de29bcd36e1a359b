/*
 * server.c - chapter 03: an iterative echo server, one client at a time.
 *
 * The listening socket only takes in connections. accept() hands us a NEW,
 * connected socket for each client; we echo on it until the client leaves,
 * close it, and go back to accept() for the next client. While we serve one
 * client, the others wait in the kernel's queue (the backlog).
 */
#include "lab.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#define BACKLOG 16     /* finished connections the kernel may queue for us */
#define BUF_SIZE 16384 /* one read's worth; any size works */

static const char usage[] =
    "usage: server [-b ADDR] [-p PORT] [-q] [-h]\n"
    "An iterative TCP echo server: it serves one client at a time.\n"
    "  -b ADDR  address to listen on (default 127.0.0.1; 0.0.0.0 or :: for "
    "all)\n"
    "  -p PORT  port to listen on (default 8080; 0 lets the kernel choose)\n"
    "  -q       quiet: no accepted/closed lines\n"
    "  -h       show this help\n";

/* Send back everything the client sends, until it half-closes (read()
 * returns 0) or something fails. A stream has no message boundaries: one
 * read() returns whatever has arrived, from 1 byte to the whole buffer. */
static void echo_client(int conn_fd, const char *peer)
{
    char buf[BUF_SIZE];

    for (;;) {
        ssize_t n = read_or_stop(conn_fd, buf, sizeof buf);
        if (n == 0)
            return; /* EOF: the client sent FIN and we owe it nothing */
        if (n == -1) {
            if (!stop_requested) /* else SIGTERM: not the client's fault */
                warn_errno("read %s", peer); /* e.g. ECONNRESET */
            return;
        }
        if (send_all_or_stop(conn_fd, buf, (size_t)n) == -1) {
            if (!stop_requested)
                warn_errno("write %s", peer); /* e.g. EPIPE */
            return;
        }
    }
}

/* Out of descriptors or memory: the client stays in the backlog, so wait a
 * little before trying again rather than spin on the same error. */
static void back_off(void)
{
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};

    /* Ctrl-C is blocked here: a stop waits for the end of this pause. */
    nanosleep(&pause, NULL);
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
    /* Ctrl-C only sets a flag. Keep it blocked (held back) everywhere but
     * in wait_fd_or_stop(), our one place to sleep, so that one arriving
     * just before a wait still ends that wait at once: see README. */
    if (block_stop_signals() == -1)
        die_errno("pthread_sigmask");

    listen_fd = open_listener(opts.addr, opts.port, BACKLOG);
    if (listen_fd == -1 || announce_listening(listen_fd) == -1)
        return 1;

    while (!stop_requested) {
        struct sockaddr_storage peer_addr;
        socklen_t peer_len = sizeof peer_addr; /* value-result: see README */
        char peer[ADDR_TEXT_MAX];
        int conn_fd;

        /* Sleep until a client is queued or Ctrl-C; then accept() has one
         * to take at once. */
        if (wait_fd_or_stop(listen_fd, POLLIN, -1) == -1) {
            if (errno == EINTR)
                break; /* a stop */
            die_errno("ppoll");
        }
        conn_fd = accept(listen_fd, (struct sockaddr *)&peer_addr, &peer_len);
        if (conn_fd == -1) {
            switch (accept_error_action(errno)) {
            case ACCEPT_RETRY:
                continue; /* e.g. EPROTO: see accept_error_action() */
            case ACCEPT_BACKOFF:
                warn_errno("accept");
                back_off();
                continue;
            case ACCEPT_FATAL:
                die_errno("accept");
            }
        }

        format_addr((struct sockaddr *)&peer_addr, peer_len, peer, sizeof peer);
        if (!opts.quiet)
            log_line("accepted %s", peer);
        echo_client(conn_fd, peer);
        if (close(conn_fd) == -1)
            warn_errno("close %s", peer);
        if (!opts.quiet)
            log_line("closed %s", peer);
    }

    if (close(listen_fd) == -1)
        die_errno("close listening socket");
    return 0;
}
