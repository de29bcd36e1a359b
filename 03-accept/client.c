/*
 * client.c - chapter 03: send standard input to a server, print its reply.
 *
 * socket() -> connect() -> write()/read() -> shutdown(SHUT_WR) -> close().
 *
 * It reads and writes at the same time (poll() tells it which side is
 * ready), so that a large input cannot deadlock: if we only wrote, an echo
 * server blocked on sending us its reply would stop reading, and both sides
 * would wait for each other forever. At the end of input we half-close
 * (shutdown SHUT_WR: "no more data from me") and keep reading until the
 * server closes its side too.
 */
#include "lab.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#define BUF_SIZE 65536

static const char usage[] =
    "usage: client [-b ADDR] [-p PORT] [-h]\n"
    "Sends standard input to a TCP server and writes what comes back to\n"
    "standard output; half-closes at end of input and exits once the server\n"
    "has closed.\n"
    "  -b ADDR  server address (default 127.0.0.1; ::1 for IPv6)\n"
    "  -p PORT  server port (default 8080)\n"
    "  -h       show this help\n";

int main(int argc, char **argv)
{
    const char *addr = DEFAULT_ADDR, *port = DEFAULT_PORT;
    char out[BUF_SIZE], in[BUF_SIZE];
    size_t out_len = 0, out_off = 0; /* input read but not yet sent */
    bool input_done = false, sent_fin = false;
    int opt, sock_fd;

    set_program_name(argv[0]);
    /* Descriptors 0, 1, 2 must be open before connect() takes the lowest
     * free number: a socket on 0 would be "our input", on 1 "our output". */
    keep_std_fds_open();
    while ((opt = getopt(argc, argv, ":b:p:h")) != -1) {
        switch (opt) {
        case 'b':
            if (!is_valid_addr(optarg))
                usage_error(usage,
                            "bad address '%s': not an IPv4 or IPv6 "
                            "address",
                            optarg);
            addr = optarg;
            break;
        case 'p':
            if (!is_valid_port(optarg))
                usage_error(usage, "bad port '%s': not a number in 0-65535",
                            optarg);
            port = optarg;
            break;
        case 'h':
            fputs(usage, stdout);
            return check_stdout() == 0 ? 0 : 1;
        case ':':
            usage_error(usage, "option -%c needs a value", optopt);
        default:
            usage_error(usage, "unknown option -%c", optopt);
        }
    }
    if (optind < argc)
        usage_error(usage, "unexpected argument '%s'", argv[optind]);
    if (ignore_sigpipe() == -1) /* a write to a reset connection: EPIPE */
        die_errno("sigaction SIGPIPE");
    /* The reply goes to stdout: if it was closed at start, say so now
     * rather than send the reply nowhere. */
    if (check_stdout() == -1)
        return 1;

    sock_fd = open_connection(addr, port); /* socket() + connect() */
    if (sock_fd == -1)
        return 1;
    /* Non-blocking, so that a write sends what fits and returns at once
     * instead of waiting with the reply piling up unread. */
    if (set_nonblocking(sock_fd) == -1)
        die_errno("fcntl O_NONBLOCK");

    for (;;) {
        /* poll() skips an entry whose fd is negative. Asking for no events
         * is not enough: POLLHUP is always reported, and a pipe on stdin
         * whose writer has exited would wake us at once, again and again. */
        struct pollfd fds[2] = {
            {.fd = sock_fd, .events = POLLIN},
            {.fd = -1, .events = POLLIN},
        };
        if (out_off < out_len)
            fds[0].events |= POLLOUT; /* room to send more? */
        else if (!input_done)
            fds[1].fd = STDIN_FILENO; /* need more input */
        if (poll(fds, 2, -1) == -1) {
            if (errno == EINTR)
                continue;
            die_errno("poll");
        }

        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(sock_fd, in, sizeof in);
            if (n == -1 && errno != EAGAIN && errno != EINTR)
                die_errno("read from server"); /* e.g. ECONNRESET */
            if (n == 0) {
                /* The server closed its side: we are done. */
                if (!sent_fin) {
                    warn_msg("the server closed the connection before all "
                             "input was sent");
                    return 1;
                }
                break;
            }
            if (n > 0 && write_all(STDOUT_FILENO, in, (size_t)n) == -1)
                die_errno("write stdout");
        }

        if (fds[0].revents & POLLOUT) {
            ssize_t n = write(sock_fd, out + out_off, out_len - out_off);
            if (n == -1 && errno != EAGAIN && errno != EINTR)
                die_errno("write to server"); /* e.g. EPIPE */
            if (n > 0)
                out_off += (size_t)n; /* a short write leaves the rest */
        }

        if (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read_retry(STDIN_FILENO, out, sizeof out);
            if (n == -1)
                die_errno("read stdin");
            if (n == 0)
                input_done = true;
            out_len = (size_t)(n > 0 ? n : 0);
            out_off = 0;
        }

        if (input_done && out_off == out_len && !sent_fin) {
            /* Half-close: the server reads EOF but can still answer. */
            if (shutdown(sock_fd, SHUT_WR) == -1)
                die_errno("shutdown");
            sent_fin = true;
        }
    }

    if (close(sock_fd) == -1)
        die_errno("close");
    return 0;
}
